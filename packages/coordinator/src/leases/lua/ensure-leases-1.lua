--[[
  ensure-leases: creates the leases of shards that have none (free, counter 0, no checkpoint) and adds
  them to the shard index; on existing leases, adds parent and child ids not yet recorded. Never touches
  owner, counter, expiry or checkpoint of an existing lease. Raises the group version when it created,
  changed or indexed any.

  KEYS[1]  the shard index (sorted set, all scores 0)  <prefix>:{<group>:<stream>}:shards
           Lease hashes are KEYS[1] with 'shards' replaced by 'lease:<shardId>': derived here, so they
           carry the same hash tag (same Cluster slot) and any client-side key prefix; the version key
           likewise with 'version'.
  ARGV     triples: shardId, parent ids (JSON array of strings), child ids (JSON array of strings)

  Returns  { created, updated }  how many leases were created, and how many existing ones gained ids
]]
local index = KEYS[1]
local base = string.sub(index, 1, #index - #'shards')

-- Appends the ids of `extra` missing from `list`; returns whether any was added.
local function merge(list, extra)
  local seen = {}
  for _, id in ipairs(list) do seen[id] = true end
  local added = false
  for _, id in ipairs(extra) do
    if not seen[id] then
      seen[id] = true
      list[#list + 1] = id
      added = true
    end
  end
  return added
end

local created, updated, indexed = 0, 0, 0
for i = 1, #ARGV, 3 do
  local shardId, parents, children = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = base .. 'lease:' .. shardId
  -- Every lease has a counter: none means no such lease.
  local f = redis.call('HMGET', key, 'counter', 'parents', 'children')
  if not f[1] then
    redis.call('HSET', key, 'counter', '0', 'parents', parents, 'children', children)
    created = created + 1
  else
    local oldParents = cjson.decode(f[2] or '[]')
    local oldChildren = cjson.decode(f[3] or '[]')
    local changed = false
    if merge(oldParents, cjson.decode(parents)) then
      redis.call('HSET', key, 'parents', cjson.encode(oldParents))
      changed = true
    end
    if merge(oldChildren, cjson.decode(children)) then
      redis.call('HSET', key, 'children', cjson.encode(oldChildren))
      changed = true
    end
    if changed then updated = updated + 1 end
  end
  -- 1 when the id was not indexed yet: a listing shows the lease from now on.
  indexed = indexed + redis.call('ZADD', index, 0, shardId)
end
if created + updated + indexed > 0 then bump_version(base .. 'version') end
return { created, updated }
