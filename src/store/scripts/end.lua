-- Ends a session (logout) and takes it off its owner's index.
-- KEYS[1] session key, KEYS[2] its owner's index; ARGV: sid (text), reason
-- (SessionEnded's), then ended.lua's five
-- Returns 1 if the session was live, else 0.
local v = redis.call('HMGET', KEYS[1], 's', 'c', 'k', 't', 'm')
if not v[1] then
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
session_ended(ARGV[1], owner(v[1], v[2]), last_issued(v[3], v[4]), ARGV[2], v[5])
return 1
