--[[
  live-hosts: hosts whose last heartbeat is within leaseDurationMs of now (server clock), in host id
  order. Read-only: pruning is the heartbeat's job.

  KEYS[1]  hosts by last heartbeat (sorted set, score = ms)  <prefix>:{<group>:<stream>}:hosts
  KEYS[2]  lease count per host (hash)                       <prefix>:{<group>:<stream>}:host-shards
  ARGV[1]  leaseDurationMs

  Returns  { nowMs, { hostId, lastSeenAtMs, shards }, ... }
]]
local now = server_now_ms()
local cutoff = now - tonumber(ARGV[1])
local seen = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', cutoff), '+inf', 'WITHSCORES')
local hosts = {}
for i = 1, #seen, 2 do
  hosts[#hosts + 1] = { seen[i], tonumber(seen[i + 1]), tonumber(redis.call('HGET', KEYS[2], seen[i]) or '0') }
end
table.sort(hosts, function(a, b) return a[1] < b[1] end)
local out = { now }
for _, h in ipairs(hosts) do out[#out + 1] = h end
return out
