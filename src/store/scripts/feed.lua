-- Applies the feed's writes that scripts handed back on a Redis Cluster
-- (ended.lua's FEED_DEFER; store/redis/feed.rs), in order, on the feed's
-- own slot: each {op, now, args...} as the script would have made it then.
-- KEYS: tg:{feed}:expiry, tg:{feed}:ended, tg:{feed}:epoch, the events
-- stream (same hash tag)
-- ARGV: the ops, each its name, now (ms) and a fixed number of arguments;
--       then ended.lua's five ('' first: apply)
--   e kind subject data            an event (data JSON)
--   u member                       unwatch
--   s sid owner issued reason max_ends feed('1'/'0')   a session's end
--   w member expires existing('1'/'')                  watch
--   p since ttl                    the epoch
--   x member expires left          the sweep's look (store/redis/feed.rs
--                                  measured the key's PTTL)
-- Returns the ends the sweep's looks logged.
local arity = {e = 3, u = 1, s = 6, w = 3, p = 2, x = 3}
local logged = 0
local i, last = 1, #ARGV - 5
while i <= last do
  local op = ARGV[i]
  FEED_NOW = tonumber(ARGV[i + 1])
  local a = {unpack(ARGV, i + 2, i + 1 + arity[op])}
  if op == 'e' then
    emit_json(a[1], a[2], a[3])
  elseif op == 'u' then
    unwatch(a[1])
  elseif op == 's' then
    session_ended(a[1], a[2], tonumber(a[3]), a[4], a[5], a[6] == '1')
  elseif op == 'w' then
    watch(a[1], tonumber(a[2]), FEED_NOW, a[3] == '1')
  elseif op == 'p' then
    keep_epoch(a[1], tonumber(a[2]))
  elseif op == 'x' then
    logged = logged + swept(a[1], tonumber(a[2]), tonumber(a[3]))
  end
  i = i + 2 + arity[op]
end
return logged
