-- Reads the session behind a refresh token if the token is current; writes
-- nothing (token introspection).
-- KEYS[1] session key
-- ARGV: generation, refresh hash, now (ms)
-- Returns {1, sub, client, scope, end, email, verified} or {0}
local v = redis.call('HMGET', KEYS[1], 'g', 'r', 's', 'c', 'p', 'e', 'x', 'v')
if not v[1] or tonumber(v[1]) ~= tonumber(ARGV[1]) or v[2] ~= ARGV[2]
    or tonumber(v[6]) <= tonumber(ARGV[3]) then
  return {0}
end
return {1, v[3], v[4] or '', v[5] or '', tonumber(v[6]), v[7] or '', v[8] or ''}
