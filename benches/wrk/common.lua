-- Shared by every wrk script of scripts/bench: thread numbering, token files,
-- and a done() that prints one machine-readable line for the harness.
--
-- Each wrk thread runs its own Lua state; setup() and done() run in a third
-- one. setup() hands every thread its number, done() reads per-thread
-- counters back (thread:get) and prints them with the summary.

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

-- The lines of `path` that belong to thread `tid` of `nthreads` (round robin),
-- so threads never share a token.
function thread_lines(path, tid, nthreads)
  local lines, i = {}, 0
  local f = assert(io.open(path, "r"), "cannot open " .. path)
  for line in f:lines() do
    if line ~= "" then
      if i % nthreads == tid then
        lines[#lines + 1] = line
      end
      i = i + 1
    end
  end
  f:close()
  return lines
end

-- A script may name more per-thread counters (globals it increments) in
-- `extra_counters`; done() reports them under "extra". The table is defined
-- at the script's top level, so done()'s Lua state sees it too.
extra_counters = extra_counters or {}

local function counter(name)
  local n = 0
  for _, t in ipairs(threads) do
    n = n + (tonumber(t:get(name)) or 0)
  end
  return n
end

local function extra_json()
  local parts = {}
  for _, name in ipairs(extra_counters) do
    parts[#parts + 1] = string.format('"%s":%d', name, counter(name))
  end
  return table.concat(parts, ",")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d},' ..
    '"counters":{"fresh":%d,"repeated":%d,"captured":%d,"non2xx":%d},"extra":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max,
    counter("fresh"), counter("repeated"), counter("captured"), counter("non2xx"),
    extra_json()))
end
