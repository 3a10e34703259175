-- Ends a session only for its owner: the OAuth client it was issued to
-- (RFC 7009, ARGV[2] = 'c'), or the one it belongs to (DELETE
-- /sessions/{sid}, ARGV[2] = 's': a user's sub, or client:<id>).
-- KEYS[1] session key, KEYS[2] its owner's index
-- ARGV: who asks, what they are ('c' or 's'), sid (text), reason
--       (SessionEnded's), then ended.lua's five
-- Returns 1 ended, 0 unknown, 2 someone else's (left alone)
local v = redis.call('HMGET', KEYS[1], 's', 'c', 'k', 't', 'm')
if not v[1] then
  return 0
end
local mine
if ARGV[2] == 'c' then
  mine = v[2] == ARGV[1]
else
  mine = owner(v[1], v[2]) == ARGV[1]
end
if not mine then
  return 2
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[3])
session_ended(ARGV[3], owner(v[1], v[2]), last_issued(v[3], v[4]), ARGV[4], v[5])
return 1
