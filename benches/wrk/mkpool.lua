-- Creates sessions through POST /login and keeps their tokens, one line per
-- session: "<access> <refresh>". Not a measurement: the harness uses it to
-- fill Redis (memory per session) and to make the token pools of the refresh
-- and logout cases.
--
-- Arguments (after --): output file prefix, sessions to create per thread.
-- Each thread writes <prefix>.<tid>, stops itself after its share and
-- leaves <prefix>.<tid>.done; the harness then ends wrk with SIGINT (wrk's
-- main thread would otherwise sleep until -d has passed).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local out, want, prefix
captured, non2xx = 0, 0
local next_user = 0

function init(args)
  prefix = args[1] .. "." .. tid
  out = assert(io.open(prefix, "w"))
  want = tonumber(args[2])
end

function request()
  next_user = next_user + 1
  return wrk.format(nil, nil, nil, '{"user_id":' .. (tid * 10000000 + next_user) .. '}')
end

function response(status, headers, body)
  if status ~= 200 then
    non2xx = non2xx + 1
    return
  end
  if captured >= want then
    return
  end
  local access = body:match('"access":"([^"]+)"')
  local refresh = body:match('"refresh":"([^"]+)"')
  if access and refresh then
    out:write(access, " ", refresh, "\n")
    captured = captured + 1
    if captured >= want then
      -- Tell the harness this thread is done (wrk itself would run until -d).
      out:close()
      assert(io.open(prefix .. ".done", "w")):close()
      wrk.thread:stop()
    end
  else
    non2xx = non2xx + 1
  end
end
