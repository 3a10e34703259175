-- Prepended to the scripts that log in or end sessions (store/redis.rs):
-- the log behind GET /events/sessions (SPEC §13, store/ended.rs) and the
-- log of events (SPEC §14, store/event_log.rs).
-- tg:{feed}:ended is a stream of {sid, sub, until}: `until` (unix seconds)
-- is when the session's last access token expires. Entries older than any
-- access token lives (plus a minute for clocks) are trimmed as new ones
-- come, and the stream itself expires that long after its newest entry.
-- tg:{feed}:expiry watches every session, by when its key may expire at the
-- earliest: sweep.lua logs the ends of those that expired (an expiry runs
-- no script), as SessionEnded events and, while their last access token
-- lives, in tg:{feed}:ended. Its members are '<sid>:<m>:<issued>:<owner>'
-- (m the session's absolute end, issued when its last access token was
-- issued, both ms; owner names the session's key); members '<sid> <sub>'
-- of older versions are read as well.
-- The last five arguments of each such script are: '1' to hand these
-- writes back rather than make them (a Redis Cluster, where the feed's keys
-- live in a slot of their own: store/redis/feed.rs applies them with
-- feed.lua), the events stream, its MAXLEN (0 = none), now (ms) and the
-- access token lifetime (ms).
local FEED_DEFER = ARGV[#ARGV - 4] == '1'
local FEED_EVENTS = ARGV[#ARGV - 3]
local FEED_EVENTS_MAX = tonumber(ARGV[#ARGV - 2])
local FEED_NOW = tonumber(ARGV[#ARGV - 1])
local FEED_ACCESS = tonumber(ARGV[#ARGV])
local FEED_ENDED, FEED_EXPIRY, FEED_EPOCH = 'tg:{feed}:ended', 'tg:{feed}:expiry', 'tg:{feed}:epoch'
-- The writes handed back: {op, now, args...} each (see feed.lua).
local FEED_OPS = {}

local function defer(op, ...)
  FEED_OPS[#FEED_OPS + 1] = {op, FEED_NOW, ...}
end

-- When a session's last access token was issued: its last rotation, else
-- its login (fields t and k as text; a record without either: now).
local function last_issued(login, rotated)
  local issued = math.max(tonumber(login) or 0, tonumber(rotated) or 0)
  if issued == 0 then
    return FEED_NOW
  end
  return issued
end

-- The sub of a session's owner (see owner.lua).
local function sub_of(who)
  return string.match(who, '^client:(.*)$') or who
end

-- A uuid v7 (RFC 9562): FEED_NOW's 48 bits of ms, then 74 random bits.
local function uuid_v7()
  local r = math.random
  return string.format('%08x-%04x-7%03x-%04x-%04x%04x%04x',
    math.floor(FEED_NOW / 65536), FEED_NOW % 65536, r(0, 0xfff),
    0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end

-- Appends an event (fields as store/event_log.rs's NewEvent::fields),
-- `data` as JSON.
local function emit_json(kind, subject, data)
  if FEED_DEFER then
    return defer('e', kind, subject, data)
  end
  local args = {FEED_EVENTS}
  if FEED_EVENTS_MAX > 0 then
    args[#args + 1] = 'MAXLEN'
    args[#args + 1] = '~'
    args[#args + 1] = FEED_EVENTS_MAX
  end
  for _, v in ipairs({'*', 'id', uuid_v7(), 'type', kind, 'version', '1',
      'subject', subject, 'occurred_at', FEED_NOW, 'data', data,
      'created_at', FEED_NOW}) do
    args[#args + 1] = v
  end
  redis.call('XADD', unpack(args))
end

local function emit(kind, subject, data)
  emit_json(kind, subject, cjson.encode(data))
end

-- The member of tg:{feed}:expiry that watches session `sid` of `who`.
local function expiry_member(sid, who, max_ends, issued)
  return sid .. ':' .. (tonumber(max_ends) or 0) .. ':' .. issued .. ':' .. who
end

-- Stops watching `member`.
local function unwatch(member)
  if FEED_DEFER then
    return defer('u', member)
  end
  redis.call('ZREM', FEED_EXPIRY, member)
end

-- Logs the end of session `sid` of `who` (its owner; absolute end
-- `max_ends`), whose last access token was issued at `issued` (ms), for
-- `reason` (a SessionEnded reason); to tg:{feed}:ended unless `feed` is
-- false.
local function session_ended(sid, who, issued, reason, max_ends, feed)
  if FEED_DEFER then
    return defer('s', sid, who, issued, reason, tonumber(max_ends) or 0,
      feed == false and '0' or '1')
  end
  local sub = sub_of(who)
  redis.call('ZREM', FEED_EXPIRY, expiry_member(sid, who, max_ends, issued),
    sid .. ' ' .. sub)
  emit('SessionEnded', sub, {sid = sid, sub = sub, reason = reason})
  if feed == false then
    return
  end
  local kept = FEED_ACCESS + 60000
  redis.call('XADD', FEED_ENDED, 'MINID', '~', FEED_NOW - kept, '*',
    'sid', sid, 'sub', sub, 'until', math.ceil((issued + FEED_ACCESS) / 1000))
  redis.call('PEXPIRE', FEED_ENDED, kept)
end

-- Watches `member`, whose key expires at `expires` at the earliest; only
-- if it is watched already when `existing` (the sweep's second look).
local function watch(member, expires, now, existing)
  if FEED_DEFER then
    return defer('w', member, expires, existing and '1' or '')
  end
  if existing then
    redis.call('ZADD', FEED_EXPIRY, 'XX', expires, member)
  else
    redis.call('ZADD', FEED_EXPIRY, expires, member)
  end
  -- The set outlives its latest entry by a minute, for the sweep.
  local left = expires - now + 60000
  if redis.call('PTTL', FEED_EXPIRY) < left then
    redis.call('PEXPIRE', FEED_EXPIRY, left)
  end
end

-- Watches session `sid` of `who`, whose key expires at `expires` at the
-- earliest, its access token issued at `now`.
local function watch_expiry(sid, who, max_ends, expires, now)
  watch(expiry_member(sid, who, max_ends, now), expires, now)
end

-- Since when this Redis has kept sessions (store/ended.rs): `since` unless
-- already set, kept at least `ttl` ms from now.
local function keep_epoch(since, ttl)
  if FEED_DEFER then
    return defer('p', since, ttl)
  end
  if not redis.call('SET', FEED_EPOCH, since, 'NX', 'PX', ttl) then
    if redis.call('PTTL', FEED_EPOCH) < ttl then
      redis.call('PEXPIRE', FEED_EPOCH, ttl)
    end
  end
end

-- A member of tg:{feed}:expiry: sid, absolute end, issued, owner; the last
-- three nil for an older member '<sid> <sub>'.
local function watched(member)
  local max_ends, issued, who = string.match(member, '^:(%d+):(%d+):(.*)$', 37)
  return string.sub(member, 1, 36), tonumber(max_ends), tonumber(issued), who
end

-- The key of session `sid` of `who` (store/redis/keys.rs).
local function watched_key(sid, who)
  return 'tg:{u:' .. who .. '}:s:' .. sid
end

-- The sweep's verdict on `member`, due since `expires`, whose session key
-- has `left` ms to live (PTTL: -2 gone, -1 made permanent by hand). A key
-- still there is looked at again when it may expire next, since activity
-- only ever moves that later; a gone one's end is logged: SessionEnded with
-- reason max_session if the key went at the session's absolute end, else
-- idle (inactivity, or the refresh lifetime ran out), and in
-- tg:{feed}:ended while its last access token lives.
-- Returns 1 if it logged an end, else 0.
local function swept(member, expires, left)
  if left > 0 then
    watch(member, FEED_NOW + left, FEED_NOW, true)
    return 0
  end
  unwatch(member)
  if left == -1 then
    return 0 -- made permanent by hand: nothing will expire
  end
  local sid, max_ends, issued, who = watched(member)
  local reason = 'idle'
  if not who then
    -- An older member '<sid> <sub>': its last access token was issued
    -- before now at the latest, and it was watched for the feed.
    who, issued, max_ends = string.sub(member, 38), FEED_NOW, 0
  elseif max_ends > 0 and max_ends <= expires + 1000 then
    -- The key was last seen expiring at `expires`; within a second of the
    -- absolute end, that end is what ended it.
    reason = 'max_session'
  end
  session_ended(sid, who, issued, reason, max_ends, issued + FEED_ACCESS > FEED_NOW)
  return 1
end
