export type { RecordDistribution, StreamLimits, StreamLimitsSource } from '@shardline/common';
export type { ProducerEventName, ProducerEvents, ProducerStatus } from './events.js';
export { PRODUCER_METRIC_NAMES, PUT_REQUEST_DURATION_BUCKETS_SECONDS } from './metrics.js';
export type {
  ProducerMetricsOptions,
  ProducerOptions,
  ProducerRetryOptions,
  ProducerTracingOptions,
  RateLimitPerShard,
  ResolvedProducerOptions,
} from './options.js';
export { PRODUCER_DEFAULTS, resolveProducerOptions } from './options.js';
export { Producer } from './producer.js';
export type { ProducerRecord, PutOptions, PutReceipt } from './records.js';
export {
  AGGREGATE_MAX_BYTES,
  MAX_RECORD_BYTES,
  PUT_RECORDS_MAX_BYTES,
  PUT_RECORDS_MAX_ENTRIES,
} from './records.js';
