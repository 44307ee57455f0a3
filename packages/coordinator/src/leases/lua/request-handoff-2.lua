--[[
  request-handoff: asks the owner of a live lease to hand it to ARGV[1]. The owner sees handoffTo on its
  next renew; from then on its renewals do not extend the lease past handoffAtMs + leaseDurationMs.
  Raises the group version.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  KEYS[2]  the group version  <prefix>:{<group>:<stream>}:version
  ARGV[1]  the requesting hostId
  ARGV[2]  leaseDurationMs

  Returns  { status, nowMs, lease }  lease the HGETALL array (after the change for 'OK'). status:
           'OK'         requested
           'NOT_FOUND'  no such lease
           'FREE'       nobody holds it (or the holder's lease expired): acquire it instead
           'SELF'       ARGV[1] holds it already
           'ASKED'      a request (by any host) is already pending
]]
local key = KEYS[1]
local host = ARGV[1]
local duration = tonumber(ARGV[2])
local now = server_now_ms()

-- Every lease has a counter: none means no such lease.
local f = redis.call('HMGET', key, 'counter', 'owner', 'expiresAtMs', 'handoffTo', 'handoffAtMs')
if not f[1] then return { 'NOT_FOUND', now, {} } end
local owner, expires, handoffTo, handoffAt = f[2], tonumber(f[3]), f[4], tonumber(f[5])

if not owner or not expires or expires <= now then return { 'FREE', now, redis.call('HGETALL', key) } end
if owner == host then return { 'SELF', now, redis.call('HGETALL', key) } end
if handoffTo and handoffAt and handoffAt + duration > now then
  return { 'ASKED', now, redis.call('HGETALL', key) }
end

redis.call('HSET', key, 'handoffTo', host, 'handoffAtMs', string.format('%.0f', now))
bump_version(KEYS[2])
return { 'OK', now, redis.call('HGETALL', key) }
