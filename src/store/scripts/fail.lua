-- Counts one failed credential check on every counter.
-- KEYS failure counters
-- ARGV: the limit of each counter (in the order of KEYS), then the window (ms)
-- A counter lives one window from its first failure; the failure that
-- reaches its limit holds it one full window from now.
local window = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 or n >= tonumber(ARGV[i]) then
    redis.call('PEXPIRE', key, window)
  end
end
return 1
