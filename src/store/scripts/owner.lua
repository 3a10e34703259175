-- Prepended to the scripts that need it (store/redis.rs).
-- Who a session belongs to, as the gate names it and its owner's index is
-- keyed (tg:u:<owner>): a user's sub, or client:<id> for an OAuth client's
-- own session, so that neither can stand for the other (tokens::owner).
local function owner(sub, client)
  if client and client ~= '' then
    return 'client:' .. sub
  end
  return sub
end

