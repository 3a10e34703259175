-- POST /refresh {"refresh": "<token>"}, every token used exactly once.
--
-- The pool made beforehand (mkpool.lua) is used first. Each 200 answer
-- carries the successor refresh token, which goes to the back of the queue,
-- so the run never runs dry however fast the machine is, and never presents
-- a token twice (that would be reuse: 401 and the session ended). This is
-- what a real client does: it refreshes with the token it got last.
--
-- The price: wrk parses every response in Lua (response() is defined). That
-- costs wrk some CPU; see benches/README.md for the measured effect.
--
-- Arguments (after --): pool file ("<access> <refresh>" lines), thread count.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.path = "/refresh"
wrk.headers["Content-Type"] = "application/json"

local queue, head, tail = {}, 1, 0
fresh, repeated, captured, non2xx = 0, 0, 0, 0

local function push(token)
  tail = tail + 1
  queue[tail] = token
end

function init(args)
  for _, line in ipairs(thread_lines(args[1], tid, tonumber(args[2]))) do
    push(line:match("%s(%S+)$"))
  end
  assert(tail > 0, "empty token pool")
end

function request()
  if head > tail then
    -- Cannot happen while every answer is a 200 with a successor: each
    -- request takes one token and each answer gives one back. If it does,
    -- send a request that is bound to fail so the run is marked broken.
    repeated = repeated + 1
    return wrk.format(nil, nil, nil, '{"refresh":"pool-exhausted"}')
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  fresh = fresh + 1
  return wrk.format(nil, nil, nil, '{"refresh":"' .. token .. '"}')
end

function response(status, headers, body)
  if status ~= 200 then
    non2xx = non2xx + 1
    return
  end
  local token = body:match('"refresh":"([^"]+)"')
  if token then
    captured = captured + 1
    push(token)
  else
    non2xx = non2xx + 1
  end
end
