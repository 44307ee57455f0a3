--[[
  prelude: prepended to every lease script by scripts.ts (so its line numbers come first in errors).

  Scripts that write replicate their effects, not the script (TIME makes a script non-deterministic;
  Redis 5+ always does this, older servers need the call).
  server_now_ms(): the Redis server clock in ms, the one every lease expiry is measured on.
  bump_version(key): raises the group version (<prefix>:{<group>:<stream>}:version), which every change
  another host must see to allocate raises in the same script (see list-leases). A missing key starts
  at the server time in µs rather than at 1, so a version lost with its data (a flushed Redis) is not
  taken again by the counter for a while: a host's cached listing of the old data never matches it.
]]
if redis.replicate_commands then redis.replicate_commands() end

local function server_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function bump_version(key)
  if redis.call('INCR', key) == 1 then
    redis.call('SET', key, string.format('%.0f', server_now_ms() * 1000))
  end
end
