--[[
  list-leases: every lease of the group and stream, in shard id order, read at one instant with the
  group version; or, when the caller's cached listing is still good, only that it is.

  The version (<prefix>:{<group>:<stream>}:version) is raised by every change another host must see to
  allocate (see bump_version in prelude.lua); renewals, which only push an expiry forward, leave it.
  A cached listing is good while the version is the one it was read at and the server clock is before
  its due time: the caller's earliest expiry or handoff deadline still ahead in it (less a margin), so
  a lease that runs out unrenewed (a dead host) is read again once it may have.

  KEYS[1]  the shard index (sorted set, all scores 0)  <prefix>:{<group>:<stream>}:shards
           Lease hashes are KEYS[1] with 'shards' replaced by 'lease:<shardId>' (see ensure-leases),
           the version key likewise with 'version'.
  ARGV[1]  the version of the caller's cached listing, or '' for none
  ARGV[2]  its due time (server ms), or '' for none (nothing in it runs out)

  Returns  { nowMs, version, 'SAME' }  the cached listing is good (version as given)
           { nowMs, version, 'ALL', { shardId, lease }, ... }  lease the HGETALL array; version '' when
           the key is missing (nothing changed since the data was loaded: not to be cached)
]]
local index = KEYS[1]
local base = string.sub(index, 1, #index - #'shards')
local now = server_now_ms()
local version = redis.call('GET', base .. 'version') or ''
if version ~= '' and version == ARGV[1] and (ARGV[2] == '' or now < tonumber(ARGV[2])) then
  return { now, version, 'SAME' }
end
local out = { now, version, 'ALL' }
for _, shardId in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  out[#out + 1] = { shardId, redis.call('HGETALL', base .. 'lease:' .. shardId) }
end
return out
