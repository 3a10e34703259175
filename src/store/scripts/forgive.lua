-- Takes back an attempt admit.lua counted, when the secret was right or
-- could not be checked.
-- KEYS failure counters
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 1
