--[[
  acquire: takes a shard lease for ARGV[1] when it is free, expired, or already held by ARGV[1] (a retry
  after an ambiguous reply), unless a live handoff reservation names another host. Increments the
  counter (the fencing token) on every acquisition; clears the handoff request and a failure note;
  notes the server time of the lease's first acquisition (firstAcquiredAtMs, kept for good: where a
  reader that started at LATEST began, for the next owner when no checkpoint was written); raises the
  group version.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  KEYS[2]  the group version  <prefix>:{<group>:<stream>}:version
  ARGV[1]  hostId
  ARGV[2]  leaseDurationMs

  Returns  { status, nowMs, lease }  nowMs on the Redis server clock; lease the HGETALL array after the
           change ('OK') or as it is (refusals), empty for 'NOT_FOUND'. status:
           'OK'         acquired
           'NOT_FOUND'  no such lease (ensureLeases creates leases)
           'HELD'       another host holds it and it has not expired
           'RESERVED'   its owner was asked to hand it to another host, and that request is still live
]]
local key = KEYS[1]
local host = ARGV[1]
local duration = tonumber(ARGV[2])
local now = server_now_ms()

-- Every lease has a counter: none means no such lease.
local f = redis.call('HMGET', key, 'counter', 'owner', 'expiresAtMs', 'handoffTo', 'handoffAtMs')
if not f[1] then return { 'NOT_FOUND', now, {} } end
local owner, expires, handoffTo, handoffAt = f[2], tonumber(f[3]), f[4], tonumber(f[5])

if owner and expires and expires > now and owner ~= host then
  return { 'HELD', now, redis.call('HGETALL', key) }
end
if handoffTo and handoffTo ~= host and handoffAt and handoffAt + duration > now then
  return { 'RESERVED', now, redis.call('HGETALL', key) }
end

redis.call('HINCRBY', key, 'counter', 1)
redis.call('HSET', key, 'owner', host, 'expiresAtMs', string.format('%.0f', now + duration))
redis.call('HSETNX', key, 'firstAcquiredAtMs', string.format('%.0f', now))
redis.call('HDEL', key, 'handoffTo', 'handoffAtMs', 'failure')
bump_version(KEYS[2])
return { 'OK', now, redis.call('HGETALL', key) }
