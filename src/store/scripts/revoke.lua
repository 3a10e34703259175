-- Ends a session only for its owner: the OAuth client it was issued to
-- (RFC 7009), or its user (DELETE /sessions/{sid}).
-- KEYS[1] session key
-- ARGV: owner, the field that names it ('c' client, 's' sub)
-- Returns 1 ended, 0 unknown, 2 another owner (left alone)
local v = redis.call('HMGET', KEYS[1], 's', ARGV[2])
if not v[1] then
  return 0
end
if v[2] ~= ARGV[1] then
  return 2
end
redis.call('DEL', KEYS[1])
return 1
