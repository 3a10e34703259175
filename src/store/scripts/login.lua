-- Creates a session (see store/mod.rs for the record) and lists it in its
-- owner's index, ending the owner's oldest sessions beyond the cap.
-- KEYS[1] session key, KEYS[2] the owner's index (same hash tag; a sorted
-- set: sid → end of its refresh lifetime, which rotate.lua moves)
-- ARGV: sub, access jti (16 bytes), refresh hash (16 bytes), end (ms),
--       ttl (ms), client ('' = none), scope ('' = none), absolute end (ms),
--       now (ms), sid (text), email ('' = none), email verified ('1' or ''),
--       most sessions the owner keeps (0 = no limit), browser handle hash
--       ('' = not a browser's session), amr (browser sessions), then
--       ended.lua's five
-- Appends SessionEnded (evicted) for each session the cap ends, and
-- UserLoggedIn. Returns how many older sessions the cap ended.
-- The owner's other sessions are looked at before anything is written: on
-- a Redis Cluster whose slot is moving, a look at a key already moved fails
-- the script, and it must fail before it wrote the new session.
--
-- No session outlives its refresh lifetime, so neither does its entry: the
-- index forgets those here, and itself after its last session's end. Of
-- the entries whose session ended sooner (logout, idle, theft), the two
-- oldest are looked at on every login, which keeps the index near the
-- number of live sessions without scanning it.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[9])
local me = owner(ARGV[1], ARGV[6])
local function live(sid)
  local v = redis.call('HMGET', session_key_beside(KEYS[2], sid), 's', 'c')
  return v[1] and owner(v[1], v[2]) == me
end
for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, 1)) do
  if sid ~= ARGV[10] and not live(sid) then
    redis.call('ZREM', KEYS[2], sid)
  end
end
-- Over the cap (auth.max_sessions_per_user) with the new one: the entries
-- of ended sessions go, then the oldest live sessions (the soonest refresh
-- ends), never the new one, until the cap holds. Only a login past the cap
-- pays this scan of the index, at most cap + the ended entries not yet
-- pruned. (A repeat of this login finds its session listed already.)
local ended = 0
local cap = tonumber(ARGV[13])
local listed = redis.call('ZCARD', KEYS[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[10]) then
  listed = listed + 1
end
if cap > 0 and listed > cap then
  local older, gone = {}, {}
  for _, sid in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    if sid ~= ARGV[10] then
      local key = session_key_beside(KEYS[2], sid)
      local o = redis.call('HMGET', key, 's', 'c', 'k', 't', 'm')
      if o[1] and owner(o[1], o[2]) == me then
        older[#older + 1] = {sid, key, o}
      else
        gone[#gone + 1] = sid
      end
    end
  end
  for _, sid in ipairs(gone) do
    redis.call('ZREM', KEYS[2], sid)
  end
  for i = 1, #older + 1 - cap do
    local sid, key, o = older[i][1], older[i][2], older[i][3]
    redis.call('DEL', key)
    session_ended(sid, me, last_issued(o[3], o[4]), 'evicted', o[5])
    redis.call('ZREM', KEYS[2], sid)
    ended = ended + 1
  end
end
redis.call('HSET', KEYS[1], 's', ARGV[1], 'a', ARGV[2], 'r', ARGV[3], 'g', 0,
  'e', ARGV[4], 'm', ARGV[8], 'k', ARGV[9], 'l', ARGV[9])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 'c', ARGV[6])
end
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[1], 'p', ARGV[7])
end
if ARGV[11] ~= '' then
  redis.call('HSET', KEYS[1], 'x', ARGV[11])
end
if ARGV[12] ~= '' then
  redis.call('HSET', KEYS[1], 'v', ARGV[12])
end
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[1], 'h', ARGV[14], 'f', ARGV[15])
end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
watch_expiry(ARGV[10], me, ARGV[8], FEED_NOW + tonumber(ARGV[5]), FEED_NOW)
local function given(text)
  if text == '' then
    return cjson.null
  end
  return text
end
emit('UserLoggedIn', ARGV[1], {sid = ARGV[10], client_id = given(ARGV[6]),
  scope = given(ARGV[7])})
-- Since when this Redis has kept sessions (store/ended.rs): kept while a
-- session or its last access token may live.
keep_epoch(ARGV[9], tonumber(ARGV[8]) - FEED_NOW + FEED_ACCESS)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[10])
local left = tonumber(ARGV[4]) - tonumber(ARGV[9])
if redis.call('PTTL', KEYS[2]) < left then
  redis.call('PEXPIRE', KEYS[2], left)
end
return ended
