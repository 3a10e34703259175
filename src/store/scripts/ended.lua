-- Prepended to the scripts that log in or end sessions (store/redis.rs):
-- the log behind GET /events/sessions (SPEC §13, store/ended.rs) and the
-- log of events (SPEC §14, store/event_log.rs).
-- tg:ended is a stream of {sid, sub, until}: `until` (unix seconds) is when
-- the session's last access token expires. Entries older than any access
-- token lives (plus a minute for clocks) are trimmed as new ones come, and
-- the stream itself expires that long after its newest entry.
-- tg:expiry watches every session, by when its key may expire at the
-- earliest: sweep.lua logs the ends of those that expired (an expiry runs
-- no script), as SessionEnded events and, while their last access token
-- lives, in tg:ended. Its members are '<sid>:<m>:<issued>:<sub>' (m the
-- session's absolute end, issued when its last access token was issued,
-- both ms); members '<sid> <sub>' of older versions are read as well.
-- The last four arguments of each such script are the events stream, its
-- MAXLEN (0 = none), now (ms) and the access token lifetime (ms).
local FEED_EVENTS = ARGV[#ARGV - 3]
local FEED_EVENTS_MAX = tonumber(ARGV[#ARGV - 2])
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

-- A uuid v7 (RFC 9562): FEED_NOW's 48 bits of ms, then 74 random bits.
local function uuid_v7()
  local r = math.random
  return string.format('%08x-%04x-7%03x-%04x-%04x%04x%04x',
    math.floor(FEED_NOW / 65536), FEED_NOW % 65536, r(0, 0xfff),
    0x8000 + r(0, 0x3fff), r(0, 0xffff), r(0, 0xffff), r(0, 0xffff))
end

-- Appends an event (fields as store/event_log.rs's NewEvent::fields).
local function emit(kind, subject, data)
  local args = {FEED_EVENTS}
  if FEED_EVENTS_MAX > 0 then
    args[#args + 1] = 'MAXLEN'
    args[#args + 1] = '~'
    args[#args + 1] = FEED_EVENTS_MAX
  end
  for _, v in ipairs({'*', 'id', uuid_v7(), 'type', kind, 'version', '1',
      'subject', subject, 'occurred_at', FEED_NOW, 'data', cjson.encode(data),
      'created_at', FEED_NOW}) do
    args[#args + 1] = v
  end
  redis.call('XADD', unpack(args))
end

-- The member of tg:expiry that watches session `sid` of `sub`.
local function expiry_member(sid, sub, max_ends, issued)
  return sid .. ':' .. (tonumber(max_ends) or 0) .. ':' .. issued .. ':' .. sub
end

-- Logs the end of session `sid` of `sub` (absolute end `max_ends`), whose
-- last access token was issued at `issued` (ms), for `reason` (a
-- SessionEnded reason); to tg:ended unless `feed` is false.
local function session_ended(sid, sub, issued, reason, max_ends, feed)
  redis.call('ZREM', 'tg:expiry', expiry_member(sid, sub, max_ends, issued),
    sid .. ' ' .. sub)
  emit('SessionEnded', sub, {sid = sid, sub = sub, reason = reason})
  if feed == false then
    return
  end
  local kept = FEED_ACCESS + 60000
  redis.call('XADD', 'tg:ended', 'MINID', '~', FEED_NOW - kept, '*',
    'sid', sid, 'sub', sub, 'until', math.ceil((issued + FEED_ACCESS) / 1000))
  redis.call('PEXPIRE', 'tg:ended', kept)
end

-- Watches `member`, whose key expires at `expires` at the earliest.
local function watch(member, expires, now)
  redis.call('ZADD', 'tg:expiry', expires, member)
  -- The set outlives its latest entry by a minute, for the sweep.
  local left = expires - now + 60000
  if redis.call('PTTL', 'tg:expiry') < left then
    redis.call('PEXPIRE', 'tg:expiry', left)
  end
end

-- Watches session `sid` of `sub`, whose key expires at `expires` at the
-- earliest, its access token issued at `now`.
local function watch_expiry(sid, sub, max_ends, expires, now)
  watch(expiry_member(sid, sub, max_ends, now), expires, now)
end
