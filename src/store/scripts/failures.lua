-- Is any failure counter at its limit? (checked before any argon2 work)
-- KEYS failure counters
-- ARGV: the limit of each counter, in the order of KEYS
-- Returns the most ms left on a counter at or past its limit, or -1.
local wait = -1
for i, key in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', key) or '0')
  if n >= tonumber(ARGV[i]) then
    local left = redis.call('PTTL', key)
    if left > wait then
      wait = left
    end
  end
end
return wait
