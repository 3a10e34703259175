-- Caches what the database says of an API token (SPEC §9).
-- KEYS[1] tg:at:<sha256 hex>
-- ARGV[1] ttl (ms), ARGV[2] '1' = overwrite (a revocation's tombstone),
-- '' = only if absent (a fill after a miss: it must not replace a tombstone
-- written while it read the database), ARGV[3] why dead, or '' if live;
-- then for a live token ARGV[4] id, ARGV[5] name, ARGV[6] scopes,
-- ARGV[7] created (ms), ARGV[8] expiry (ms, '' = none), ARGV[9] last use (ms).
-- Replies 1 if written, 0 if an entry was already there.
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'd', ARGV[3])
else
  redis.call('HSET', KEYS[1], 'i', ARGV[4], 'n', ARGV[5], 's', ARGV[6], 'c', ARGV[7],
    'x', ARGV[8], 'u', ARGV[9])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
