-- POST /login {"user_id":42}: a fixed request, so no Lua per request. Every
-- login creates a new session, whoever the user is. A login client's HTTP
-- Basic credentials, where needed, come from wrk's command line (-H).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.body = '{"user_id":42}'
wrk.headers["Content-Type"] = "application/json"
