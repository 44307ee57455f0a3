--[[
  renew: extends a lease by leaseDurationMs from now when ARGV[1] still holds it with counter ARGV[2]
  and it has not expired. While a handoff request is pending the expiry never goes past
  handoffAtMs + leaseDurationMs: an owner that does not hand over in time loses the lease then, without
  ever overlapping with the requester.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  ARGV[1]  hostId
  ARGV[2]  counter (fencing token from acquire)
  ARGV[3]  leaseDurationMs

  Returns  { status, nowMs, lease }  lease the HGETALL array (after the change for 'OK'). status:
           'OK'             renewed
           'NOT_FOUND'      no such lease
           'NOT_OWNER'      free, or held by another host
           'STALE_COUNTER'  held by this host under another counter (acquired again since)
           'EXPIRED'        expired: acquire it again
]]
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local host = ARGV[1]
local counter = tonumber(ARGV[2])
local duration = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('EXISTS', key) == 0 then return { 'NOT_FOUND', now, {} } end
local f = redis.call('HMGET', key, 'owner', 'counter', 'expiresAtMs', 'handoffTo', 'handoffAtMs')
local owner, current, expires, handoffTo, handoffAt = f[1], tonumber(f[2]), tonumber(f[3]), f[4], tonumber(f[5])

if owner ~= host then return { 'NOT_OWNER', now, redis.call('HGETALL', key) } end
if current ~= counter then return { 'STALE_COUNTER', now, redis.call('HGETALL', key) } end
if not expires or expires <= now then return { 'EXPIRED', now, redis.call('HGETALL', key) } end

local expiry = now + duration
if handoffTo and handoffAt and handoffAt + duration < expiry then expiry = handoffAt + duration end
redis.call('HSET', key, 'expiresAtMs', string.format('%.0f', expiry))
return { 'OK', now, redis.call('HGETALL', key) }
