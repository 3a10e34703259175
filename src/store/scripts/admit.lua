-- Before a credential check: refuse if any failure counter is at its limit,
-- else count this attempt as a failure on every counter, atomically, so that
-- concurrent guesses can never get past a limit together (forgive.lua takes
-- it back when the secret was right).
-- KEYS failure counters
-- ARGV: the limit of each counter (in the order of KEYS), then the window (ms)
-- Returns {} when admitted; when refused, for each counter the ms it stays
-- closed, or -1 if it is open.
-- A counter lives one window from its first failure; the failure that
-- reaches its limit holds it one full window from then.
local waits, refused = {}, false
for i, key in ipairs(KEYS) do
  waits[i] = -1
  if tonumber(redis.call('GET', key) or '0') >= tonumber(ARGV[i]) then
    local left = redis.call('PTTL', key)
    if left > 0 then
      waits[i] = left
      refused = true
    end
  end
end
if refused then
  return waits
end
local window = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  local n = redis.call('INCR', key)
  if n == 1 or n >= tonumber(ARGV[i]) then
    redis.call('PEXPIRE', key, window)
  end
end
return {}
