--[[
  heartbeat: records ARGV[1] as alive now (server clock) holding ARGV[2] leases, and forgets hosts not
  seen within leaseDurationMs.

  KEYS[1]  hosts by last heartbeat (sorted set, score = ms)  <prefix>:{<group>:<stream>}:hosts
  KEYS[2]  lease count per host (hash)                       <prefix>:{<group>:<stream>}:host-shards
  ARGV[1]  hostId
  ARGV[2]  number of leases the host holds
  ARGV[3]  leaseDurationMs

  Returns  { nowMs, pruned }  pruned: how many dead hosts were removed
]]
local now = server_now_ms()
local cutoff = now - tonumber(ARGV[3])

redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', cutoff))
for _, host in ipairs(dead) do
  redis.call('ZREM', KEYS[1], host)
  redis.call('HDEL', KEYS[2], host)
end
return { now, #dead }
