--[[
  prelude: prepended to every lease script by scripts.ts (so its line numbers come first in errors).

  Scripts that write replicate their effects, not the script (TIME makes a script non-deterministic;
  Redis 5+ always does this, older servers need the call).
  server_now_ms(): the Redis server clock in ms, the one every lease expiry is measured on.
]]
if redis.replicate_commands then redis.replicate_commands() end

local function server_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
