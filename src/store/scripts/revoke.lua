-- Ends a session only for the OAuth client it was issued to (RFC 7009).
-- KEYS[1] session key
-- ARGV: client
-- Returns 1 ended, 0 unknown, 2 another owner (left alone)
local v = redis.call('HMGET', KEYS[1], 's', 'c')
if not v[1] then
  return 0
end
if v[2] ~= ARGV[1] then
  return 2
end
redis.call('DEL', KEYS[1])
return 1
