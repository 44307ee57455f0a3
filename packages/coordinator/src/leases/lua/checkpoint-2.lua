--[[
  checkpoint: records how far a shard was processed, only when ARGV[1] holds the lease with counter
  ARGV[2] (an expired lease nobody took since is still this host's: its late checkpoint is safe).
  SHARD_END is final: a position after it is refused, SHARD_END again is accepted.

  Raises the group version only for what other hosts allocate by: the lease's first checkpoint (a
  child with one no longer needs its parents' leases kept) and SHARD_END (its children may start). A
  position moving on does not: checkpoints are frequent, and other hosts' listings would be read in
  full each time.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  KEYS[2]  the group version  <prefix>:{<group>:<stream>}:version
  ARGV[1]  hostId
  ARGV[2]  counter (fencing token from acquire)
  ARGV[3]  sequence number, or 'SHARD_END'
  ARGV[4]  sub-sequence number, or '' for none

  Returns  { status, nowMs, lease }  lease the HGETALL array for refusals; empty for 'OK' (the caller
           knows what it wrote) and 'NOT_FOUND'. status:
           'OK'             written
           'NOT_FOUND'      no such lease
           'NOT_OWNER'      free, or held by another host
           'STALE_COUNTER'  held by this host under another counter
           'ENDED'          the shard is checkpointed at SHARD_END and ARGV[3] is a position
]]
local key = KEYS[1]
local host = ARGV[1]
local counter = tonumber(ARGV[2])
local position = ARGV[3]
local subSeq = ARGV[4]
local now = server_now_ms()

-- Every lease has a counter: none means no such lease.
local f = redis.call('HMGET', key, 'owner', 'counter', 'checkpoint')
if not f[2] then return { 'NOT_FOUND', now, {} } end
if f[1] ~= host then return { 'NOT_OWNER', now, redis.call('HGETALL', key) } end
if tonumber(f[2]) ~= counter then return { 'STALE_COUNTER', now, redis.call('HGETALL', key) } end
if f[3] == 'SHARD_END' and position ~= 'SHARD_END' then
  return { 'ENDED', now, redis.call('HGETALL', key) }
end

if subSeq == '' then
  redis.call('HSET', key, 'checkpoint', position)
  redis.call('HDEL', key, 'subSequenceNumber')
else
  redis.call('HSET', key, 'checkpoint', position, 'subSequenceNumber', subSeq)
end
if not f[3] or (position == 'SHARD_END' and f[3] ~= 'SHARD_END') then bump_version(KEYS[2]) end
return { 'OK', now, {} }
