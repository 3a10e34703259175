-- POST /login {"email", "password"} of users registered beforehand (the
-- harness's setup), each thread cycling through its share of them. Every
-- login succeeds: failed logins are counted per account and per address
-- (users.max_failures), and every request here comes from 127.0.0.1, so a
-- wrong password would soon be 429 for all. Successes are never counted.
-- Requests are built once in init(), as in logout.lua.
--
-- Arguments (after --): users file (one email a line), thread count, password.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local requests, i = {}, 0
fresh, repeated, non2xx = 0, 0, 0

function init(args)
  local password = args[3]
  for _, email in ipairs(thread_lines(args[1], tid, tonumber(args[2]))) do
    requests[#requests + 1] = wrk.format("POST", "/login",
      { ["Content-Type"] = "application/json" },
      '{"email":"' .. email .. '","password":"' .. password .. '"}')
  end
  assert(#requests > 0, "no users to log in")
end

function request()
  i = i + 1
  if i > #requests then
    i = 1
  end
  if fresh < #requests then
    fresh = fresh + 1
  else
    repeated = repeated + 1
  end
  return requests[i]
end

function response(status, headers, body)
  if status ~= 200 or not body:find('"access"', 1, true) then
    non2xx = non2xx + 1
  end
end
