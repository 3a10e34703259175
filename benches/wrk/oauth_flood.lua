-- A flood of wrong client secrets: the attacker's side of the flood cases, at
-- POST /oauth/token (an OAuth client) or POST /login (a login client). Every
-- request guesses a new secret; what the server answered is counted by status
-- (401 wrong secret, 429 throttled, 503 argon2 pool full; a 200 would be a
-- broken server).
--
-- Arguments (after --): mode, client id, endpoint (oauth, the default, or login).
--   same-id        every guess for the one real client id
--   random-ids     every guess for a new made-up id (same address: loopback)
--   random-addrs   a new made-up id, and X-Forwarded-For a random address of
--                  198.18.0.0/15 (RFC 2544's benchmark range): a botnet, as
--                  the server sees it when it trusts the proxy (the harness
--                  configures server.trusted_proxies: [127.0.0.1])
--   other-addr     every guess for the real client id from one address,
--                  X-Forwarded-For 198.18.0.1, other than the honest client's
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "common.lua")

extra_counters = { "s200", "s401", "s429", "s503", "sother" }
s200, s401, s429, s503, sother = 0, 0, 0, 0, 0

local mode, client, n = "same-id", "bench", 0
local body = "grant_type=client_credentials"
local content_type = "application/x-www-form-urlencoded"

local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local quad = ""
    for shift = 3, 0, -1 do
      local d = math.floor(v / 64 ^ shift) % 64
      quad = quad .. alphabet:sub(d + 1, d + 1)
    end
    if not b then
      quad = quad:sub(1, 2) .. "=="
    elseif not c then
      quad = quad:sub(1, 3) .. "="
    end
    out[#out + 1] = quad
  end
  return table.concat(out)
end

local modes = { ["same-id"] = true, ["random-ids"] = true, ["random-addrs"] = true,
  ["other-addr"] = true }

function init(args)
  mode = args[1] or mode
  client = args[2] or client
  assert(modes[mode], "unknown mode " .. mode)
  if args[3] == "login" then
    body = '{"user_id":"bench"}'
    content_type = "application/json"
  end
  math.randomseed(os.time() * 100 + tid)
end

function request()
  n = n + 1
  local id = client
  if mode == "random-ids" or mode == "random-addrs" then
    id = string.format("guess-%d-%d-%d", tid, n, math.random(1, 1000000000))
  end
  local headers = {
    ["Content-Type"] = content_type,
    ["Authorization"] = "Basic " .. base64(id .. ":wrong-" .. tid .. "-" .. n),
  }
  if mode == "random-addrs" then
    headers["X-Forwarded-For"] = string.format("198.%d.%d.%d",
      math.random(18, 19), math.random(0, 255), math.random(1, 254))
  elseif mode == "other-addr" then
    headers["X-Forwarded-For"] = "198.18.0.1"
  end
  return wrk.format("POST", nil, headers, body)
end

function response(status, headers, body)
  if status == 200 then
    s200 = s200 + 1
  elseif status == 401 then
    s401 = s401 + 1
  elseif status == 429 then
    s429 = s429 + 1
  elseif status == 503 then
    s503 = s503 + 1
  else
    sother = sother + 1
  end
end
