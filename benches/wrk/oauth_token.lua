-- POST /oauth/token grant_type=client_credentials: a fixed request, so no Lua
-- per request. The client's HTTP Basic credentials come from wrk's command
-- line (-H "Authorization: Basic ..."). The honest client of the flood cases:
-- after its first request its secret is remembered, so it never hashes again.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
