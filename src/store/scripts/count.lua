-- One request in a fixed window (per-client rate limit, shared by replicas).
-- KEYS[1] counter key
-- ARGV: limit, window (ms)
-- Returns -1 within the limit, else the ms left in the window.
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if n > tonumber(ARGV[1]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    -- A window without expiry can only come from an old crash; heal it.
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    left = tonumber(ARGV[2])
  end
  return left
end
return -1
