-- Does ARGV[1] hash the handle of the session's browser cookie (SPEC §15)?
-- If so, restart the idle clock, never past the session's end, note the
-- activity, and say who it is. The hashes are compared as they are: both
-- are SHA-256 digests of secrets no caller chooses, so timing tells nothing.
-- KEYS[1] session key
-- ARGV: handle hash (16 bytes), now (ms), idle (ms)
-- Returns {sub, email, email verified ('1' or ''), amr} or false (a browser
-- session has no scope).
local v = redis.call('HMGET', KEYS[1], 'h', 'e', 's', 'x', 'v', 'f')
if not v[1] or v[1] ~= ARGV[1] then
  return false
end
local ttl = math.min(tonumber(ARGV[3]), tonumber(v[2]) - tonumber(ARGV[2]))
if ttl <= 0 then
  redis.call('DEL', KEYS[1])
  return false
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('HSET', KEYS[1], 'l', ARGV[2])
return {v[3], v[4] or '', v[5] or '', v[6] or ''}
