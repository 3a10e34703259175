-- Refresh rotation with a single successor and reuse detection, decided
-- atomically: the mirror of `store/rotation.rs::decide` (keep them in step;
-- tests/api/rotation_rules.rs holds both to one table). The replica has
-- already authenticated the presented token (its MAC), so a presented
-- generation is genuine.
-- KEYS[1] session key
-- ARGV: presented generation, presented hash, successor hash,
--       successor jti, now (ms), grace (ms), idle (ms), refresh lifetime (ms),
--       client ('' = a /login session), scopes asked for ('' = none named),
--       sid (text: the member of its user's index tg:u:<sub>, which is named
--       here from the session's sub and moved to the new end)
-- Returns {1, sub, client, scope, end, email}                   rotated: the successor is current
--         {2, sub, client, scope, end, jti, rotated_at, email}  replayed: answer the same successor
--         {3}                                            reused: the session is ended
--         {4}                                            a scope asked for is not held
--         {0}                                            unknown
local v = redis.call('HMGET', KEYS[1], 'g', 'r', 'a', 't', 'e', 's', 'c', 'p', 'q', 'm', 'x')
local email = v[11] or ''
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
-- Every scope asked for must be one of `held`.
local function holds_all(held)
  held = ' ' .. held .. ' '
  for asked in string.gmatch(ARGV[10], '%S+') do
    if not string.find(held, ' ' .. asked .. ' ', 1, true) then
      return false
    end
  end
  return true
end
if ends <= now then
  redis.call('DEL', KEYS[1])
  return {0}
end
if presented == generation then
  if v[2] ~= ARGV[2] then
    return {0}
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
  redis.call('PEXPIRE', KEYS[1], math.min(idle, new_ends - now))
  local index = 'tg:u:' .. v[6]
  redis.call('ZADD', index, new_ends, ARGV[11])
  if redis.call('PTTL', index) < new_ends - now then
    redis.call('PEXPIRE', index, new_ends - now)
  end
  return {1, v[6], client, granted, new_ends, email}
end
if presented == generation - 1 and now < tonumber(v[4]) + tonumber(ARGV[6]) then
  -- Exactly the successor already issued; a retry may not ask for more.
  local successor = v[9] or scope
  if not holds_all(successor) then
    return {4}
  end
  redis.call('PEXPIRE', KEYS[1], math.min(idle, ends - now))
  return {2, v[6], client, successor, ends, v[3], tonumber(v[4]), email}
end
if presented < generation then
  redis.call('DEL', KEYS[1])
  local index = 'tg:u:' .. v[6]
  redis.call('ZREM', index, ARGV[11])
  if redis.call('ZCARD', index) == 0 then
    redis.call('DEL', index)
  end
  return {3}
end
return {0}
