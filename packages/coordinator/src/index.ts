export type {
  Coordinator,
  CoordinatorStatus,
  ShardFailureStatus,
  ShardStatus,
  StreamStatus,
} from './coordinator.js';
export { startCoordinator } from './coordinator.js';
export type { DeadLetterJob } from './dead-letter.js';
export type {
  CoordinatorEventListener,
  CoordinatorEventMap,
  CoordinatorEventName,
  CoordinatorEventSource,
  ExpiredRecordAction,
  HandlerFailureAction,
  LeaseLostReason,
  LeaseReleasedReason,
  StartPosition,
} from './events.js';
export type { EnsureStreamConsumerOptions, StreamConsumer } from './fan-out.js';
export { ensureStreamConsumer, streamArnOf } from './fan-out.js';
export { DynamoDbLeaseManager } from './leases/dynamodb.js';
export type { DynamoDbLeaseManagerOptions, DynamoDbLeasesOptions } from './leases/dynamodb-options.js';
export { DYNAMODB_LEASE_DEFAULTS } from './leases/dynamodb-options.js';
export type { MemoryLeaseManagerOptions, MemoryLeaseStoreOptions } from './leases/memory.js';
export { MemoryLeaseManager, MemoryLeaseStore } from './leases/memory.js';
export type {
  LeaseGroupShard,
  LeaseGroupSnapshot,
  LeaseGroupState,
  ReadLeaseGroupOptions,
} from './leases/read-group.js';
export { READ_LEASE_GROUP_DEFAULTS, readLeaseGroup } from './leases/read-group.js';
export type { LeaseKeys } from './leases/redis.js';
export { RedisLeaseManager } from './leases/redis.js';
export type { RedisConnection, RedisLeaseManagerOptions } from './leases/redis-options.js';
export { REDIS_LEASE_DEFAULTS, redactRedisUrl } from './leases/redis-options.js';
export type {
  Checkpoint,
  HeldLease,
  HostInfo,
  Lease,
  LeaseCallOptions,
  LeaseFailure,
  LeaseManager,
  LeaseSeed,
} from './leases/types.js';
export { COORDINATOR_METRIC_NAMES, HANDLER_DURATION_BUCKETS_SECONDS } from './metrics.js';
export type {
  BatchAnswer,
  CheckpointOptions,
  CoordinatorOptions,
  DeadLetterOptions,
  FanOutOptions,
  HandlerErrorOptions,
  InitialPosition,
  LeasesOptions,
  MetricsOptions,
  MetricsRegistry,
  RecordBatch,
  RecordHandler,
  RemovedStream,
  RemoveStreamOptions,
  ResolvedCoordinatorOptions,
  ResolvedStreamSpec,
  StreamSpec,
  TracingOptions,
} from './options.js';
export { COORDINATOR_DEFAULTS, resolveCoordinatorOptions } from './options.js';
