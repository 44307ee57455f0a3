--[[
  leave: removes ARGV[1] from the live hosts at once (a graceful stop), so the others recompute their
  fair share now instead of a lease duration later.

  KEYS[1]  hosts by last heartbeat (sorted set)  <prefix>:{<group>:<stream>}:hosts
  KEYS[2]  lease count per host (hash)           <prefix>:{<group>:<stream>}:host-shards
  ARGV[1]  hostId

  Returns  1 if the host was listed, else 0
]]
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
