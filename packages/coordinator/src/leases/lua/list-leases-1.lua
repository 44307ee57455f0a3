--[[
  list-leases: every lease of the group and stream, in shard id order, read at one instant.

  KEYS[1]  the shard index (sorted set, all scores 0)  <prefix>:{<group>:<stream>}:shards
           Lease hashes are KEYS[1] with 'shards' replaced by 'lease:<shardId>' (see ensure-leases).
  ARGV     none

  Returns  { nowMs, { shardId, lease }, ... }  lease the HGETALL array
]]
local index = KEYS[1]
local base = string.sub(index, 1, #index - #'shards')
local now = server_now_ms()
local out = { now }
for _, shardId in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  out[#out + 1] = { shardId, redis.call('HGETALL', base .. 'lease:' .. shardId) }
end
return out
