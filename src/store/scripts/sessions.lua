-- An owner's live sessions, oldest first (GET /sessions).
-- KEYS[1] the owner's index; ARGV: owner, now (ms), most to list
-- Session keys are named here from the index's members: the same hash tag,
-- so on a Redis Cluster the same slot (as in logout_all.lua and login.lua).
-- Replies {sid, created (ms), last activity (ms), client ('' = none),
-- browser ('1' or ''), ...};
-- entries of sessions that ended (logout, idle, theft) are dropped on the way.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)) do
  local v = redis.call('HMGET', session_key_beside(KEYS[1], sid), 's', 'k', 'l', 'c', 'h')
  if v[1] and owner(v[1], v[4]) == ARGV[1] then
    out[#out + 1] = sid
    out[#out + 1] = v[2] or '0'
    out[#out + 1] = v[3] or v[2] or '0'
    out[#out + 1] = v[4] or ''
    out[#out + 1] = v[5] and '1' or ''
  else
    redis.call('ZREM', KEYS[1], sid)
  end
end
return out
