-- Ends every session of a user, on every replica at once (POST /logout
-- {"all": true}, POST /admin/users/{sub}/logout).
-- KEYS[1] the user's index; ARGV: sub
-- Returns how many live sessions were ended.
local ended = 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = 'tg:s:' .. sid
  if redis.call('HGET', key, 's') == ARGV[1] then
    redis.call('DEL', key)
    ended = ended + 1
  end
end
redis.call('DEL', KEYS[1])
return ended
