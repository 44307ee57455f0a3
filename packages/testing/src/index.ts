export type {
  FaultProxyCounters,
  FaultProxyEvents,
  FaultProxyRequestEvent,
} from './fault-proxy/events.js';
export type { LimitsOptions } from './fault-proxy/limits.js';
export { LIMITS_DEFAULTS } from './fault-proxy/limits.js';
export type { FaultProxyOptions } from './fault-proxy/options.js';
export { FAULT_PROXY_DEFAULTS, resolveFaultProxyOptions } from './fault-proxy/options.js';
export { FaultProxy } from './fault-proxy/proxy.js';
export type {
  ErrorFault,
  FaultAction,
  FaultErrorName,
  FaultRule,
  FaultRuleHandle,
  JsonBody,
  KinesisOperation,
  LatencyFault,
  PartialFailureFault,
  ResetFault,
  TransformAction,
} from './fault-proxy/rules.js';
export type { LocalDynamoDb, LocalDynamoDbOptions } from './local-dynamodb.js';
export { LOCAL_DYNAMODB_DEFAULTS, startLocalDynamoDb } from './local-dynamodb.js';
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
export type { TcpCloseReason } from './tcp-fault-proxy/connection.js';
export type {
  ResolvedTcpFaultProxyOptions,
  TcpFaultProxyOptions,
  TcpProxyTarget,
} from './tcp-fault-proxy/options.js';
export { resolveTcpFaultProxyOptions, TCP_FAULT_PROXY_DEFAULTS } from './tcp-fault-proxy/options.js';
export type {
  TcpConnectionFilter,
  TcpFaultProxy,
  TcpFaultProxyCounters,
  TcpFaultProxyEvents,
  TcpProxyClosedConnection,
  TcpProxyConnection,
} from './tcp-fault-proxy/proxy.js';
export { startTcpFaultProxy } from './tcp-fault-proxy/proxy.js';
