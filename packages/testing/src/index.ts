export type {
  ErrorFault,
  FaultAction,
  FaultErrorName,
  FaultProxyCounters,
  FaultProxyEvents,
  FaultProxyOptions,
  FaultProxyRequestEvent,
  FaultRule,
  FaultRuleHandle,
  KinesisOperation,
  LatencyFault,
  PartialFailureFault,
  ResetFault,
} from './fault-proxy.js';
export { FAULT_PROXY_DEFAULTS, FaultProxy, resolveFaultProxyOptions } from './fault-proxy.js';
export type { LimitsOptions } from './fault-proxy-limits.js';
export { LIMITS_DEFAULTS } from './fault-proxy-limits.js';
export type {
  CreatedStream,
  CreateStreamOptions,
  LocalKinesis,
  LocalKinesisEngine,
  LocalKinesisOptions,
  ResolvedLocalKinesisOptions,
} from './local-kinesis.js';
export { LOCAL_KINESIS_DEFAULTS, resolveLocalKinesisOptions, startLocalKinesis } from './local-kinesis.js';
export type { FreePortOptions } from './ports.js';
export { getFreePort, getFreePorts, isPortOpen } from './ports.js';
export type { RedisServer, RedisServerOptions, ResolveRedisUrlOptions, TestRedis } from './redis.js';
export { pingRedis, REDIS_DEFAULTS, resolveRedisUrl, startRedisServer, useTestRedis } from './redis.js';
