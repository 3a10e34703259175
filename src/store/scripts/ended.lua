-- Prepended to the scripts that end sessions (store/redis.rs): the log
-- behind GET /events/sessions (SPEC §13, store/ended.rs).
-- tg:ended is a stream of {sid, sub, until}: `until` (unix seconds) is when
-- the session's last access token expires. Entries older than any access
-- token lives (plus a minute for clocks) are trimmed as new ones come, and
-- the stream itself expires that long after its newest entry.
-- tg:expiry holds the sessions whose key may expire before their last
-- access token does ('<sid> <sub>' by when the key may expire at the
-- earliest): sweep.lua logs those ends, since an expiry runs no script.
-- The last two arguments of each such script are now (ms) and the access
-- token lifetime (ms).
local FEED_NOW = tonumber(ARGV[#ARGV - 1])
local FEED_ACCESS = tonumber(ARGV[#ARGV])

-- When a session's last access token was issued: its last rotation, else
-- its login (fields t and k as text; a record without either: now).
local function last_issued(login, rotated)
  local issued = math.max(tonumber(login) or 0, tonumber(rotated) or 0)
  if issued == 0 then
    return FEED_NOW
  end
  return issued
end

-- Logs the end of session `sid` of `sub`, whose last access token was
-- issued at `issued` (ms).
local function session_ended(sid, sub, issued)
  local kept = FEED_ACCESS + 60000
  redis.call('ZREM', 'tg:expiry', sid .. ' ' .. sub)
  redis.call('XADD', 'tg:ended', 'MINID', '~', FEED_NOW - kept, '*',
    'sid', sid, 'sub', sub, 'until', math.ceil((issued + FEED_ACCESS) / 1000))
  redis.call('PEXPIRE', 'tg:ended', kept)
end

-- Whether a key that expires at `expires` at the earliest may go before
-- the access token issued at `now`: then sweep.lua must watch it.
local function outlived(expires, now)
  return expires < now + FEED_ACCESS
end

-- Watches the session whose key expires at `expires` at the earliest.
local function watch_expiry(sid, sub, expires, now)
  redis.call('ZADD', 'tg:expiry', expires, sid .. ' ' .. sub)
  -- The set outlives its latest entry by a minute, for the sweep.
  local left = expires - now + 60000
  if redis.call('PTTL', 'tg:expiry') < left then
    redis.call('PEXPIRE', 'tg:expiry', left)
  end
end
