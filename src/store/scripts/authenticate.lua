-- Is ARGV[1] the session's current access token? If so, restart the idle
-- clock, never past the end of the refresh lifetime, and note the activity
-- (l, for listing a user's sessions).
-- KEYS[1] session key
-- ARGV: access jti (16 bytes), now (ms), idle (ms)
-- Returns 1 (current, extended) or 0.
local v = redis.call('HMGET', KEYS[1], 'a', 'e')
if v[1] ~= ARGV[1] then
  return 0
end
local ttl = math.min(tonumber(ARGV[3]), tonumber(v[2]) - tonumber(ARGV[2]))
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'l', ARGV[2])
return 1
