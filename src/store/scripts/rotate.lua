-- Refresh rotation with a single successor and reuse detection, decided
-- atomically: the mirror of `store/rotation.rs::decide` (keep them in step;
-- tests/api/rotation_rules.rs holds both to one table). The replica has
-- already authenticated the presented token (its MAC), so a presented
-- generation is genuine.
-- KEYS[1] session key, KEYS[2] its owner's index (same hash tag)
-- ARGV: presented generation, presented hash, successor hash,
--       successor jti, now (ms), grace (ms), idle (ms), refresh lifetime (ms),
--       client ('' = a /login session), scopes asked for ('' = none named),
--       sid (text: the session's member of its owner's index, moved to the
--       new end),
--       '1' if the client's scopes now bound the session's (else ''), those scopes,
--       then ended.lua's five
-- Returns {1, sub, client, scope, end, email, verified}                   rotated: the successor is current
--         {2, sub, client, scope, end, jti, rotated_at, email, verified}  replayed: answer the same successor
--         {3}                                            reused: the session is ended
--         {4}                                            a scope asked for is not held
--         {0}                                            unknown
local v = redis.call('HMGET', KEYS[1], 'g', 'r', 'a', 't', 'e', 's', 'c', 'p', 'q', 'm', 'x', 'v', 'k')
local email, verified = v[11] or '', v[12] or ''
if not v[1] or (v[7] or '') ~= ARGV[9] then
  return {0}
end
local now = tonumber(ARGV[5])
local idle = tonumber(ARGV[7])
local generation = tonumber(v[1])
local presented = tonumber(ARGV[1])
local ends = tonumber(v[5])
-- A session written before max_session existed ends with its refresh token.
local max_ends = tonumber(v[10]) or ends
local client, scope = v[7] or '', v[8] or ''
-- Whether the space-separated `held` has `one`.
local function has(held, one)
  return string.find(' ' .. held .. ' ', ' ' .. one .. ' ', 1, true) ~= nil
end
-- Every scope asked for must be one of `held`.
local function holds_all(held)
  for asked in string.gmatch(ARGV[10], '%S+') do
    if not has(held, asked) then
      return false
    end
  end
  return true
end
if ends <= now then
  redis.call('DEL', KEYS[1])
  return {0}
end
local me = owner(v[6], client)
if presented == generation then
  if v[2] ~= ARGV[2] then
    return {0}
  end
  -- A client's sessions hold at most what the client may have now.
  if ARGV[12] == '1' then
    local kept = {}
    for held in string.gmatch(scope, '%S+') do
      if has(ARGV[13], held) then
        kept[#kept + 1] = held
      end
    end
    if #kept == 0 then
      redis.call('HDEL', KEYS[1], 'p')
    end
    scope = table.concat(kept, ' ')
  end
  if not holds_all(scope) then
    return {4}
  end
  local granted = scope
  if ARGV[10] ~= '' then
    granted = ARGV[10]
  end
  local new_ends = math.min(now + tonumber(ARGV[8]), max_ends)
  redis.call('HSET', KEYS[1], 'g', generation + 1, 'r', ARGV[3], 'a', ARGV[4],
    't', ARGV[5], 'l', ARGV[5], 'e', new_ends, 'q', granted)
  if scope ~= '' then
    redis.call('HSET', KEYS[1], 'p', scope)
  end
  local ttl = math.min(idle, new_ends - now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  -- Watched for the previous access token: now for this one.
  unwatch(expiry_member(ARGV[11], me, v[10], last_issued(v[13], v[4])))
  watch_expiry(ARGV[11], me, v[10], now + ttl, now)
  redis.call('ZADD', KEYS[2], new_ends, ARGV[11])
  if redis.call('PTTL', KEYS[2]) < new_ends - now then
    redis.call('PEXPIRE', KEYS[2], new_ends - now)
  end
  return {1, v[6], client, granted, new_ends, email, verified}
end
if presented == generation - 1 and now < tonumber(v[4]) + tonumber(ARGV[6]) then
  -- Exactly the successor already issued; a retry may not ask for more.
  local successor = v[9] or scope
  if not holds_all(successor) then
    return {4}
  end
  redis.call('PEXPIRE', KEYS[1], math.min(idle, ends - now))
  return {2, v[6], client, successor, ends, v[3], tonumber(v[4]), email, verified}
end
if presented < generation then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[11])
  session_ended(ARGV[11], me, last_issued(v[13], v[4]), 'reuse', v[10])
  return {3}
end
return {0}
