--[[
  checkpoint: records how far a shard was processed, only when ARGV[1] holds the lease with counter
  ARGV[2] (an expired lease nobody took since is still this host's: its late checkpoint is safe).
  SHARD_END is final: a position after it is refused, SHARD_END again is accepted.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  ARGV[1]  hostId
  ARGV[2]  counter (fencing token from acquire)
  ARGV[3]  sequence number, or 'SHARD_END'
  ARGV[4]  sub-sequence number, or '' for none

  Returns  { status, nowMs, lease }  lease the HGETALL array (after the change for 'OK'). status:
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

if redis.call('EXISTS', key) == 0 then return { 'NOT_FOUND', now, {} } end
local f = redis.call('HMGET', key, 'owner', 'counter', 'checkpoint')
if f[1] ~= host then return { 'NOT_OWNER', now, redis.call('HGETALL', key) } end
if tonumber(f[2]) ~= counter then return { 'STALE_COUNTER', now, redis.call('HGETALL', key) } end
if f[3] == 'SHARD_END' and position ~= 'SHARD_END' then
  return { 'ENDED', now, redis.call('HGETALL', key) }
end

redis.call('HSET', key, 'checkpoint', position)
if subSeq == '' then
  redis.call('HDEL', key, 'subSequenceNumber')
else
  redis.call('HSET', key, 'subSequenceNumber', subSeq)
end
return { 'OK', now, redis.call('HGETALL', key) }
