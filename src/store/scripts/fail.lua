-- Counts one failed credential check on every counter.
-- KEYS failure counters
-- ARGV: limit, window (ms)
-- A counter lives one window from its first failure; the failure that
-- reaches the limit holds it one full window from now.
for _, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 or n >= tonumber(ARGV[1]) then
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 1
