-- Ends a batch of an owner's sessions (POST /logout {"all": true}, POST
-- /admin/users/{sub}/logout); the caller repeats it until the index is
-- empty, so that a huge index never holds Redis for more than one batch.
-- KEYS[1] the owner's index; ARGV: owner, batch size, reason (SessionEnded's:
-- logout_all or admin), then ended.lua's five
-- Returns {live sessions ended, entries left in the index}.
-- The batch is looked at before any of it is ended (see login.lua): on a
-- moving cluster slot a batch fails whole or ends whole.
local batch = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
local found = {}
for i, sid in ipairs(batch) do
  local key = session_key_beside(KEYS[1], sid)
  found[i] = {key, redis.call('HMGET', key, 's', 'c', 'k', 't', 'm')}
end
local ended = 0
for i, sid in ipairs(batch) do
  local key, v = found[i][1], found[i][2]
  if v[1] and owner(v[1], v[2]) == ARGV[1] then
    redis.call('DEL', key)
    session_ended(sid, ARGV[1], last_issued(v[3], v[4]), ARGV[3], v[5])
    ended = ended + 1
  end
  redis.call('ZREM', KEYS[1], sid)
end
return {ended, redis.call('ZCARD', KEYS[1])}
