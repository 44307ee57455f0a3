--[[
  remove-lease: deletes the lease of a shard gone from the stream, and takes it off the shard index,
  only when nobody holds it (free, or its owner's lease expired) and its counter is still ARGV[2] (the
  counter the caller saw when it decided the lease was no longer needed: an acquisition since then
  keeps it). Raises the group version when it removed the lease.

  KEYS[1]  the shard index (sorted set)  <prefix>:{<group>:<stream>}:shards
           Lease hashes are KEYS[1] with 'shards' replaced by 'lease:<shardId>' (see ensure-leases),
           the version key likewise with 'version'.
  ARGV[1]  shardId
  ARGV[2]  counter the caller saw

  Returns  { status, nowMs }  status:
           'OK'             removed
           'NOT_FOUND'      no such lease (removed already); the index entry is dropped too
           'HELD'           a host holds it and it has not expired
           'STALE_COUNTER'  acquired since the caller looked
]]
local index = KEYS[1]
local base = string.sub(index, 1, #index - #'shards')
local shardId = ARGV[1]
local counter = tonumber(ARGV[2])
local key = base .. 'lease:' .. shardId
local now = server_now_ms()

-- Every lease has a counter: none means no such lease (a listing shows no lease for the index entry).
local f = redis.call('HMGET', key, 'owner', 'counter', 'expiresAtMs')
if not f[2] then
  redis.call('ZREM', index, shardId)
  return { 'NOT_FOUND', now }
end
local owner, current, expires = f[1], tonumber(f[2]), tonumber(f[3])
if owner and expires and expires > now then return { 'HELD', now } end
if current ~= counter then return { 'STALE_COUNTER', now } end
redis.call('DEL', key)
redis.call('ZREM', index, shardId)
bump_version(base .. 'version')
return { 'OK', now }
