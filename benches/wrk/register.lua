-- POST /register {"email", "password"}, every email new: the `register` case.
--
-- Emails are <run>-<tid>-<n>@bench.example, <run> made at init from the clock
-- and a random number, so a warm-up and the measured run (or two runs on one
-- database) never register the same address twice: a second registration
-- would be 409 email_taken and fail the run. The password is the same for all.
--
-- Arguments (after --): password.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.path = "/register"
wrk.headers["Content-Type"] = "application/json"

local password, run
local n = 0
fresh, non2xx = 0, 0

function init(args)
  password = assert(args[1], "usage: register.lua PASSWORD")
  math.randomseed(os.time() * 1000 + tid)
  run = string.format("b%d%06d", os.time(), math.random(0, 999999))
end

function request()
  n = n + 1
  fresh = fresh + 1
  local email = string.format("%s-%d-%d@bench.example", run, tid, n)
  return wrk.format(nil, nil, nil,
    '{"email":"' .. email .. '","password":"' .. password .. '"}')
end

function response(status, headers, body)
  if status ~= 201 then
    non2xx = non2xx + 1
  end
end
