-- GET /authenticate with "Authorization: Bearer <access>" once for each
-- session of a pool made beforehand (mkpool.lua). Not a measurement: the
-- harness uses it to fill a replica's local cache (auth.local_cache) with
-- every session of the pool, for the RSS figure of cached_rss. Requests are
-- built once in init().
--
-- Arguments (after --): pool file ("<access> <refresh>" lines), thread count,
-- done-marker prefix. Each thread leaves <prefix>.<tid>.done once it has had
-- as many 200 answers as it has sessions (every request is sent in pool
-- order, so by then each of its sessions has been asked for at least once);
-- the harness then ends wrk with SIGINT. Past the end of its share a thread
-- starts over: those are answered from memory.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

local requests, i, prefix, finished = {}, 0, nil, false
fresh, repeated, captured, non2xx = 0, 0, 0, 0

function init(args)
  for _, line in ipairs(thread_lines(args[1], tid, tonumber(args[2]))) do
    local access = line:match("^(%S+)")
    requests[#requests + 1] = wrk.format("GET", "/authenticate",
      { ["Authorization"] = "Bearer " .. access }, nil)
  end
  assert(#requests > 0, "empty token pool")
  prefix = args[3] .. "." .. tid
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
  if status ~= 200 then
    non2xx = non2xx + 1
    return
  end
  captured = captured + 1
  if not finished and captured >= #requests then
    finished = true
    assert(io.open(prefix .. ".done", "w")):close()
    wrk.thread:stop()
  end
end
