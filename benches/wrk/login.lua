-- POST /login {"user_id":N}: every login a new session of a user of its own,
-- as when many users sign in (auth.max_sessions_per_user never applies; the
-- cost of a login past a user's cap is the cost run's login_at_cap). A login
-- client's HTTP Basic credentials, where needed, come from wrk's command
-- line (-H).
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local next_user = 0

function request()
  next_user = next_user + 1
  return wrk.format(nil, nil, nil, '{"user_id":' .. (500000000 + tid * 10000000 + next_user) .. '}')
end
