-- POST /login {"user_id":42}: a fixed request, so no Lua per request. Every
-- login creates a new session, whoever the user is.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.body = '{"user_id":42}'
wrk.headers["Content-Type"] = "application/json"
