-- POST /logout with "Authorization: Bearer <access>", each from a session
-- made beforehand (mkpool.lua). Requests are built once in init(), so the
-- per-request Lua work is a table lookup.
--
-- When the pool runs out before the run ends, the thread starts over: logout
-- of an ended session is 200 by contract (idempotent) and takes the same
-- path (verify, one DEL), only Redis deletes nothing. The harness reports
-- the fresh/repeated split.
--
-- Arguments (after --): pool file ("<access> <refresh>" lines), thread count.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local requests, i = {}, 0
fresh, repeated = 0, 0

function init(args)
  for _, line in ipairs(thread_lines(args[1], tid, tonumber(args[2]))) do
    local access = line:match("^(%S+)")
    requests[#requests + 1] = wrk.format("POST", "/logout",
      { ["Authorization"] = "Bearer " .. access }, nil)
  end
  assert(#requests > 0, "empty token pool")
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
