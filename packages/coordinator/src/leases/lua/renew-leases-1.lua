--[[
  renew-leases: renews the leases a host holds, in one call per renewal round however many it holds.
  Each lease is extended by leaseDurationMs from now when ARGV[1] still holds it with its counter and
  it has not expired. While a handoff request is pending the expiry never goes past
  handoffAtMs + leaseDurationMs: an owner that does not hand over in time loses the lease then, without
  ever overlapping with the requester. A renewal changes nothing other hosts allocate by: the group
  version stays.

  Per lease one HMGET (every lease has a counter: none means no such lease) and, when renewed, one
  HSET: this runs for every lease of every host each renewal period.

  KEYS[1]  the shard index (sorted set)  <prefix>:{<group>:<stream>}:shards
           Lease hashes are KEYS[1] with 'shards' replaced by 'lease:<shardId>' (see ensure-leases).
  ARGV[1]  hostId
  ARGV[2]  leaseDurationMs
  ARGV     then pairs: shardId, counter (fencing token from acquire)

  Returns  { nowMs, { shardId, status, fields }, ... }  in ARGV order; fields, for 'OK' only (else
           empty), the lease after the change as the values of owner, counter, expiresAtMs, checkpoint,
           subSequenceNumber, parents, children, handoffTo, handoffAtMs, failure in this order (nil
           where unset). status:
           'OK'             renewed
           'NOT_FOUND'      no such lease
           'NOT_OWNER'      free, or held by another host
           'STALE_COUNTER'  held by this host under another counter (acquired again since)
           'EXPIRED'        expired: acquire it again
]]
local index = KEYS[1]
local base = string.sub(index, 1, #index - #'shards')
local host = ARGV[1]
local duration = tonumber(ARGV[2])
local now = server_now_ms()

local out = { now }
for i = 3, #ARGV, 2 do
  local shardId, counter = ARGV[i], tonumber(ARGV[i + 1])
  local key = base .. 'lease:' .. shardId
  local f = redis.call('HMGET', key, 'owner', 'counter', 'expiresAtMs', 'checkpoint', 'subSequenceNumber',
    'parents', 'children', 'handoffTo', 'handoffAtMs', 'failure')
  local owner, current, expires, handoffTo, handoffAt = f[1], tonumber(f[2]), tonumber(f[3]), f[8], tonumber(f[9])
  local status = 'OK'
  local fields = {}
  if not f[2] then
    status = 'NOT_FOUND'
  elseif owner ~= host then
    status = 'NOT_OWNER'
  elseif current ~= counter then
    status = 'STALE_COUNTER'
  elseif not expires or expires <= now then
    status = 'EXPIRED'
  else
    local expiry = now + duration
    if handoffTo and handoffAt and handoffAt + duration < expiry then expiry = handoffAt + duration end
    f[3] = string.format('%.0f', expiry)
    redis.call('HSET', key, 'expiresAtMs', f[3])
    fields = f
  end
  out[#out + 1] = { shardId, status, fields }
end
return out
