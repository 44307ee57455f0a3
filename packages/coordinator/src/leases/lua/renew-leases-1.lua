--[[
  renew-leases: renews the leases a host holds, in one call per renewal round however many it holds.
  Each lease is extended by leaseDurationMs from now when ARGV[1] still holds it with its counter and
  it has not expired. While a handoff request is pending the expiry never goes past
  handoffAtMs + leaseDurationMs: an owner that does not hand over in time loses the lease then, without
  ever overlapping with the requester.

  KEYS[1]  the shard index (sorted set)  <prefix>:{<group>:<stream>}:shards
           Lease hashes are KEYS[1] with 'shards' replaced by 'lease:<shardId>' (see ensure-leases).
  ARGV[1]  hostId
  ARGV[2]  leaseDurationMs
  ARGV     then pairs: shardId, counter (fencing token from acquire)

  Returns  { nowMs, { shardId, status, lease }, ... }  in ARGV order; lease the HGETALL array (after
           the change for 'OK'), empty for 'NOT_FOUND'. status:
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
  local status = 'OK'
  if redis.call('EXISTS', key) == 0 then
    status = 'NOT_FOUND'
  else
    local f = redis.call('HMGET', key, 'owner', 'counter', 'expiresAtMs', 'handoffTo', 'handoffAtMs')
    local owner, current, expires, handoffTo, handoffAt = f[1], tonumber(f[2]), tonumber(f[3]), f[4], tonumber(f[5])
    if owner ~= host then
      status = 'NOT_OWNER'
    elseif current ~= counter then
      status = 'STALE_COUNTER'
    elseif not expires or expires <= now then
      status = 'EXPIRED'
    else
      local expiry = now + duration
      if handoffTo and handoffAt and handoffAt + duration < expiry then expiry = handoffAt + duration end
      redis.call('HSET', key, 'expiresAtMs', string.format('%.0f', expiry))
    end
  end
  local lease = {}
  if status ~= 'NOT_FOUND' then lease = redis.call('HGETALL', key) end
  out[#out + 1] = { shardId, status, lease }
end
return out
