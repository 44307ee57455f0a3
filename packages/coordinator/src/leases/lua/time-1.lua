--[[
  time: the server clock in ms, read on the node that holds KEYS[1] (on a Redis Cluster, the node whose
  clock lease expiry is measured on; a bare TIME could go to any node).

  KEYS[1]  any key of the group and stream  <prefix>:{<group>:<stream>}:shards
  ARGV     none

  Returns  nowMs
]]
return server_now_ms()
