-- peek.lua for a browser's cookie (SPEC §10, §15): does ARGV[1] hash the
-- session's cookie handle, and for how long will Redis keep the session
-- without a touch? Read-only while the session is far from its end, as
-- peek.lua; closer than the margin, it restarts the idle clock as
-- browser.lua does.
-- KEYS[1] session key
-- ARGV: handle hash (16 bytes), margin (ms), now (ms), idle (ms)
-- Returns {time to live (ms), or -1 if touched now; access jti (16 bytes),
-- which the cache's touches name; sub; email; email verified; amr}, or
-- false if the handle opens no session.
local v = redis.call('HMGET', KEYS[1], 'h', 'e', 'a', 's', 'x', 'v', 'f')
if not v[1] or v[1] ~= ARGV[1] then
  return false
end
local left = redis.call('PTTL', KEYS[1])
if left <= tonumber(ARGV[2]) then
  local ttl = math.min(tonumber(ARGV[4]), tonumber(v[2]) - tonumber(ARGV[3]))
  if ttl <= 0 then
    redis.call('DEL', KEYS[1])
    return false
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('HSET', KEYS[1], 'l', ARGV[3])
  left = -1
end
return {left, v[3], v[4], v[5] or '', v[6] or '', v[7] or ''}
