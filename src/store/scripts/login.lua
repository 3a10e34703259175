-- Creates a session (see store/mod.rs for the record).
-- KEYS[1] session key
-- ARGV: sub, access jti (16 bytes), refresh hash (16 bytes), end (ms),
--       ttl (ms), client ('' = none), scope ('' = none), absolute end (ms)
redis.call('HSET', KEYS[1], 's', ARGV[1], 'a', ARGV[2], 'r', ARGV[3], 'g', 0,
  'e', ARGV[4], 'm', ARGV[8])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'c', ARGV[6])
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'p', ARGV[7])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
