-- Is ARGV[1] the session's current access token, and for how long will
-- Redis keep the session without a touch? Writes nothing while the session
-- is far from its end: a replica's local cache (auth.local_cache) learns
-- from it, and a write would invalidate the very entry being learned
-- (CLIENT TRACKING reports every write). Closer to its end than the margin,
-- it restarts the idle clock as authenticate.lua does, so the request still
-- costs one round trip.
-- KEYS[1] session key
-- ARGV: access jti (16 bytes), margin (ms), now (ms), idle (ms)
-- Returns its time to live (ms) if current and longer than the margin;
-- -1 if current, close to its end and touched now; 0 if not current.
local v = redis.call('HMGET', KEYS[1], 'a', 'e')
if v[1] ~= ARGV[1] then
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left > tonumber(ARGV[2]) then
  return left
end
local ttl = math.min(tonumber(ARGV[4]), tonumber(v[2]) - tonumber(ARGV[3]))
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'l', ARGV[3])
return -1
