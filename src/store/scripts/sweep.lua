-- Logs the ends of the sessions of tg:expiry whose key has expired (see
-- ended.lua): SessionEnded with reason max_session if the key went at the
-- session's absolute end, else idle (inactivity, or the refresh lifetime
-- ran out), and in tg:ended while its last access token lives. A key
-- still there is looked at again when it may expire next, since activity
-- only ever moves that later.
-- ARGV: most entries to look at, then ended.lua's four
-- Returns {ends logged, entries looked at}.
local logged = 0
local due = redis.call('ZRANGEBYSCORE', 'tg:expiry', '-inf', FEED_NOW,
  'LIMIT', 0, tonumber(ARGV[1]), 'WITHSCORES')
for i = 1, #due, 2 do
  local member, expires = due[i], tonumber(due[i + 1])
  local sid = string.sub(member, 1, 36)
  local left = redis.call('PTTL', 'tg:s:' .. sid)
  if left > 0 then
    watch(member, FEED_NOW + left, FEED_NOW)
  elseif left == -1 then
    -- Made permanent by hand: nothing will expire.
    redis.call('ZREM', 'tg:expiry', member)
  else
    local max_ends, issued, sub = string.match(member, '^:(%d+):(%d+):(.*)$', 37)
    local reason = 'idle'
    if not sub then
      -- An older member '<sid> <sub>': its last access token was issued
      -- before now at the latest, and it was watched for the feed.
      sub, issued, max_ends = string.sub(member, 38), FEED_NOW, 0
    else
      issued, max_ends = tonumber(issued), tonumber(max_ends)
      -- The key was last seen expiring at `expires`; within a second of
      -- the absolute end, that end is what ended it.
      if max_ends > 0 and max_ends <= expires + 1000 then
        reason = 'max_session'
      end
    end
    redis.call('ZREM', 'tg:expiry', member)
    session_ended(sid, sub, issued, reason, max_ends, issued + FEED_ACCESS > FEED_NOW)
    logged = logged + 1
  end
end
return {logged, #due / 2}
