-- Logs the sessions of tg:expiry whose key has expired (see ended.lua): a
-- key still there is looked at again when it may expire next, since
-- activity only ever moves that later.
-- ARGV: most entries to look at, now (ms), access token lifetime (ms)
-- Returns how many ends it logged.
local logged = 0
local due = redis.call('ZRANGEBYSCORE', 'tg:expiry', '-inf', FEED_NOW,
  'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local sid = string.sub(member, 1, 36)
  local left = redis.call('PTTL', 'tg:s:' .. sid)
  if left > 0 then
    redis.call('ZADD', 'tg:expiry', FEED_NOW + left, member)
  elseif left == -1 then
    -- Made permanent by hand: nothing will expire.
    redis.call('ZREM', 'tg:expiry', member)
  else
    -- Its last access token was issued before now at the latest.
    session_ended(sid, string.sub(member, 38), FEED_NOW)
    logged = logged + 1
  end
end
return logged
