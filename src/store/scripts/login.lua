-- Creates a session (see store/mod.rs for the record) and lists it in its
-- user's index.
-- KEYS[1] session key, KEYS[2] the user's index (sorted set: sid → end of
-- its refresh lifetime, which rotate.lua moves)
-- ARGV: sub, access jti (16 bytes), refresh hash (16 bytes), end (ms),
--       ttl (ms), client ('' = none), scope ('' = none), absolute end (ms),
--       now (ms), sid (text), email ('' = none)
redis.call('HSET', KEYS[1], 's', ARGV[1], 'a', ARGV[2], 'r', ARGV[3], 'g', 0,
  'e', ARGV[4], 'm', ARGV[8], 'k', ARGV[9], 'l', ARGV[9])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'c', ARGV[6])
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'p', ARGV[7])
end
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'x', ARGV[11])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
-- No session outlives its refresh lifetime, so neither does its entry: the
-- index forgets those here, and itself after its last session's end. Of
-- the entries whose session ended sooner (logout, idle, theft), the two
-- oldest are looked at on every login, which keeps the index near the
-- number of live sessions without scanning it.
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[10])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[9])
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, 1)) do
  if redis.call('EXISTS', 'tg:s:' .. sid) == 0 then
    redis.call('ZREM', KEYS[2], sid)
  end
end
local left = tonumber(ARGV[4]) - tonumber(ARGV[9])
if redis.call('PTTL', KEYS[2]) < left then
  redis.call('PEXPIRE', KEYS[2], left)
end
return 1
