-- Prepended to the scripts that need it (store/redis.rs).
-- Who a session belongs to, as the gate names it and its keys are tagged
-- (tg:{u:<owner>}:s:<sid>, tg:{u:<owner>}:idx): a user's sub, or
-- client:<id> for an OAuth client's own session, so that neither can stand
-- for the other (tokens::owner).
local function owner(sub, client)
  if client and client ~= '' then
    return 'client:' .. sub
  end
  return sub
end

-- The key of session `sid` beside its owner's index `index` (same hash tag,
-- so the same Redis Cluster slot).
local function session_key_beside(index, sid)
  return string.sub(index, 1, -4) .. 's:' .. sid
end
