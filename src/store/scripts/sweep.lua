-- Logs the ends of the sessions of tg:{feed}:expiry whose key has expired
-- (see ended.lua's `swept`).
-- ARGV: most entries to look at, then ended.lua's five
-- (One Redis: on a Redis Cluster, store/redis/feed.rs sweeps, with
-- feed.lua.)
-- Returns {ends logged, entries looked at}.
local logged = 0
local due = redis.call('ZRANGEBYSCORE', FEED_EXPIRY, '-inf', FEED_NOW,
  'LIMIT', 0, tonumber(ARGV[1]), 'WITHSCORES')
for i = 1, #due, 2 do
  local member = due[i]
  local sid, _, _, who = watched(member)
  local left = -2
  if who then
    left = redis.call('PTTL', watched_key(sid, who))
  end
  logged = logged + swept(member, tonumber(due[i + 1]), left)
end
return {logged, #due / 2}
