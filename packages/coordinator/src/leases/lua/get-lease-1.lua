--[[
  get-lease: one lease, with the server time it was read at.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  ARGV     none

  Returns  { nowMs, lease }  lease the HGETALL array, empty when there is no such lease
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return { now, redis.call('HGETALL', KEYS[1]) }
