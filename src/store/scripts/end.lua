-- Ends a session (logout) and takes it off its user's index.
-- KEYS[1] session key; ARGV: sid (text)
-- The index tg:u:<sub> is named here from the session's sub.
-- Returns 1 if the session was live, else 0.
local sub = redis.call('HGET', KEYS[1], 's')
if not sub then
  return 0
end
redis.call('DEL', KEYS[1])
local index = 'tg:u:' .. sub
redis.call('ZREM', index, ARGV[1])
if redis.call('ZCARD', index) == 0 then
  redis.call('DEL', index)
end
return 1
