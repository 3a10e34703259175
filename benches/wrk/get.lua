-- A fixed request built from wrk's command line (URL, -H headers): no Lua per
-- request, so wrk spends the least CPU on its side. Used by ping,
-- authenticate and the nginx cases.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")
