-- Reads the ended-sessions log (store/ended.rs) and its epoch, which a
-- Redis without one (new, or one that lost its data) starts now.
-- KEYS[1] the log (tg:{feed}:ended), KEYS[2] its epoch (tg:{feed}:epoch)
-- ARGV: first id ('(ms-seq': after that entry; 'ms': since that time),
--       most entries, now (ms), how long a new epoch is kept (ms: the
--       longest a session and its last access token live)
-- Returns {epoch, newest id, then id, sid, sub, until for each entry}
redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[4])
local out = {redis.call('GET', KEYS[2]), '0-0'}
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if newest[1] then
  out[2] = newest[1][1]
end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', tonumber(ARGV[2]))
for _, entry in ipairs(entries) do
  local fields = {}
  for i = 1, #entry[2], 2 do
    fields[entry[2][i]] = entry[2][i + 1]
  end
  out[#out + 1] = entry[1]
  out[#out + 1] = fields.sid or ''
  out[#out + 1] = fields.sub or ''
  out[#out + 1] = fields['until'] or '0'
end
return out
