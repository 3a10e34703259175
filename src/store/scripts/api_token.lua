-- Looks up an API token's cache entry (SPEC §9): one round trip per validation.
-- KEYS[1] tg:at:<sha256 hex>
-- ARGV[1] now (ms), ARGV[2] touch interval (ms)
-- Fields: d why dead (revoked/unknown/expired) or absent; i id, n name,
-- s scopes, c created (ms), x expiry (ms, '' = none), u last use (ms).
-- Replies {0} miss, {1, why} dead, {2, id, name, scopes, created, expiry,
-- touch}:
-- touch = 1 when the last use recorded is touch-interval old, at most once
-- per interval however many replicas ask (the database's last_used_at is
-- written behind by the replica that got the 1).
local v = redis.call('HMGET', KEYS[1], 'd', 'i', 'n', 's', 'c', 'x', 'u')
if v[1] then
  return {1, v[1]}
end
if not v[2] then
  return {0}
end
local now = tonumber(ARGV[1])
local touch = 0
if now - (tonumber(v[7]) or 0) >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'u', ARGV[1])
  touch = 1
end
return {2, v[2], v[3], v[4], v[5], v[6], touch}
