export { PRODUCER_METRIC_NAMES, PUT_REQUEST_DURATION_BUCKETS_SECONDS } from './metrics.js';
export type {
  ProducerMetricsOptions,
  ProducerOptions,
  ProducerRetryOptions,
  RateLimitPerShard,
  ResolvedProducerOptions,
} from './options.js';
export { PRODUCER_DEFAULTS, resolveProducerOptions } from './options.js';
export type {
  ProducerEventName,
  ProducerEvents,
  ProducerRecord,
  ProducerStatus,
  PutOptions,
  PutReceipt,
} from './producer.js';
export { MAX_RECORD_BYTES, Producer, PUT_RECORDS_MAX_BYTES, PUT_RECORDS_MAX_ENTRIES } from './producer.js';
