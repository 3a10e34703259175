-- Is ARGV[1] the session's current access token, and for how long will
-- Redis keep the session without a touch? Writes nothing: a replica's local
-- cache (auth.local_cache) learns from it, and a write would invalidate the
-- very entry being learned (CLIENT TRACKING reports every write).
-- KEYS[1] session key
-- ARGV: access jti (16 bytes), margin (ms)
-- Returns its time to live (ms) if current and longer than the margin;
-- -1 if current but closer to its end (authenticate.lua must restart the
-- idle clock now); 0 if not current.
if redis.call('HGET', KEYS[1], 'a') ~= ARGV[1] then
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left > tonumber(ARGV[2]) then
  return left
end
return -1
