--[[
  release: frees a lease held by ARGV[1] with counter ARGV[2] (expired or not: nobody else took it).
  Keeps the checkpoint. A pending handoff request stays as a reservation: until its deadline
  (handoffAtMs + leaseDurationMs) only the requester may acquire the lease. Raises the group version.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  KEYS[2]  the group version  <prefix>:{<group>:<stream>}:version
  ARGV[1]  hostId
  ARGV[2]  counter (fencing token from acquire)
  ARGV[3]  optional: why the host stopped reading the shard (JSON), kept in 'failure' until the next
           acquire

  Returns  { status, nowMs, lease }  lease the HGETALL array (after the change for 'OK'). status:
           'OK'             released
           'NOT_FOUND'      no such lease
           'NOT_OWNER'      free, or held by another host
           'STALE_COUNTER'  held by this host under another counter
]]
local key = KEYS[1]
local host = ARGV[1]
local counter = tonumber(ARGV[2])
local now = server_now_ms()

-- Every lease has a counter: none means no such lease.
local f = redis.call('HMGET', key, 'owner', 'counter')
if not f[2] then return { 'NOT_FOUND', now, {} } end
if f[1] ~= host then return { 'NOT_OWNER', now, redis.call('HGETALL', key) } end
if tonumber(f[2]) ~= counter then return { 'STALE_COUNTER', now, redis.call('HGETALL', key) } end

redis.call('HDEL', key, 'owner', 'expiresAtMs')
if ARGV[3] and ARGV[3] ~= '' then redis.call('HSET', key, 'failure', ARGV[3]) end
bump_version(KEYS[2])
return { 'OK', now, redis.call('HGETALL', key) }
