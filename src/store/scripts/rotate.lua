-- Refresh rotation with a single successor and reuse detection, decided
-- atomically. The replica has already authenticated the presented token
-- (its MAC), so a presented generation is genuine.
-- KEYS[1] session key
-- ARGV: presented generation, presented hash, successor hash,
--       successor jti, now (ms), grace (ms), idle (ms), refresh lifetime (ms),
--       client ('' = a /login session), scopes asked for ('' = the session's)
-- Returns {1, sub, client, scope}                   rotated: the successor is current
--         {2, sub, client, scope, jti, rotated_at}  replayed: answer the same successor
--         {3}                                       reused: the session is ended
--         {4}                                       a scope asked for was never granted
--         {0}                                       unknown
local v = redis.call('HMGET', KEYS[1], 'g', 'r', 'a', 't', 'e', 's', 'c', 'p')
if not v[1] or (v[7] or '') ~= ARGV[9] then
  return {0}
end
local now = tonumber(ARGV[5])
local idle = tonumber(ARGV[7])
local generation = tonumber(v[1])
local presented = tonumber(ARGV[1])
local ends = tonumber(v[5])
local client, scope = v[7] or '', v[8] or ''
-- Every scope asked for must be one the session holds.
local function granted()
  local held = ' ' .. scope .. ' '
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
  if not granted() then
    return {4}
  end
  local lifetime = tonumber(ARGV[8])
  redis.call('HSET', KEYS[1], 'g', generation + 1, 'r', ARGV[3], 'a', ARGV[4],
    't', ARGV[5], 'e', now + lifetime)
  redis.call('PEXPIRE', KEYS[1], math.min(idle, lifetime))
  return {1, v[6], client, scope}
end
if presented == generation - 1 and now < tonumber(v[4]) + tonumber(ARGV[6]) then
  if not granted() then
    return {4}
  end
  redis.call('PEXPIRE', KEYS[1], math.min(idle, ends - now))
  return {2, v[6], client, scope, v[3], tonumber(v[4])}
end
if presented < generation then
  redis.call('DEL', KEYS[1])
  return {3}
end
return {0}
