--[[
  get-lease: one lease, with the server time it was read at.

  KEYS[1]  the lease hash  <prefix>:{<group>:<stream>}:lease:<shardId>
  ARGV     none

  Returns  { nowMs, lease }  lease the HGETALL array, empty when there is no such lease
]]
local now = server_now_ms()
return { now, redis.call('HGETALL', KEYS[1]) }
