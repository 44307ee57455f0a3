export type { BatchRecord, PoisonRecord, SplitBatch } from './batch-records.js';
export { batchToRecords, splitBatch } from './batch-records.js';
export { DEFAULT_MAX_PAYLOAD_BYTES } from './codec-encoding.js';
export type { Codec, CodecName } from './codecs.js';
export { codecs, resolveCodec } from './codecs.js';
export type { ErrorCode, SerializedError, ShardlineErrorOptions } from './errors.js';
export {
  CodecError,
  classifyAwsError,
  deserializeError,
  ErrorCodes,
  KinesisError,
  KplError,
  NETWORK_ERROR_CODES,
  networkErrorCode,
  rootCause,
  ShardlineError,
  ShardlineOptionError,
  serializeError,
} from './errors.js';
export type { KinesisClientOptions, KinesisTransport } from './kinesis-client.js';
export {
  createKinesisClient,
  isKinesisClient,
  KINESIS_CLIENT_DEFAULTS,
  kinesisClientSettings,
  resolveKinesisTransport,
} from './kinesis-client.js';
export type { PortableCredentials, PortableKinesisConfig } from './kinesis-client-portable.js';
export { portableClientConfig } from './kinesis-client-portable.js';
export type { KinesisClientSettings } from './kinesis-client-settings.js';
export { isAggregated, KPL_MAGIC } from './kpl.js';
export type { AggregatedRecord, AggregateOptions, UserRecord } from './kpl-aggregate.js';
export { Aggregator, aggregate, KPL_DEFAULT_MAX_BYTES } from './kpl-aggregate.js';
export { deaggregate } from './kpl-deaggregate.js';
export type {
  ListAllShardsOptions,
  ListShardsPage,
  ListShardsPageContext,
  ListShardsPageOutput,
} from './list-shards.js';
export { isExpiredNextToken, LIST_SHARDS_DEFAULTS, listAllShards } from './list-shards.js';
export type { LogFn, Logger } from './logger.js';
export { childLogger, silentLogger } from './logger.js';
export {
  isCoordinatorMessage,
  isWorkerMessage,
  parseCoordinatorMessage,
  parseWorkerMessage,
} from './message-guards.js';
export type {
  AckMessage,
  BatchMessage,
  BytesBatchMessage,
  CoordinatorMessage,
  CoordinatorMessageType,
  CreditMessage,
  DecodedBatchMessage,
  DecodedRecordMessage,
  ErrorMessage,
  FetchedMessage,
  JsonBatchMessage,
  LogLevel,
  LogMessage,
  PackedRecordMeta,
  PoisonRecordMessage,
  RevokeMessage,
  ShardEndMessage,
  StartedMessage,
  StopMessage,
  ThrottledMessage,
  WorkerMessage,
  WorkerMessageType,
} from './messages.js';
export { assertNever, PROTOCOL_VERSION } from './messages.js';
export type {
  GaugeSample,
  GaugeSource,
  MetricLabels,
  MetricSpec,
  MetricsRegistry,
  MetricType,
  SourcedGauge,
} from './metrics.js';
export { addGaugeSource, collectGaugeSources, resolveMetricsOptions, sharedMetric } from './metrics.js';
export type { RecordToPack, UnpackedRecord } from './record-packing.js';
export { batchSize, packRecords, recordData, transferListOf, unpackRecords } from './record-packing.js';
export type { BackoffMs, RetryContext, RetryOptions } from './retry.js';
export {
  abortError,
  backoffDelay,
  isRetriable,
  retry,
  sleep,
  validateBackoff,
  validateRetryOptions,
} from './retry.js';
export type { ShardHashRange } from './routing.js';
export {
  MAX_HASH_KEY,
  MAX_PARTITION_KEY_LENGTH,
  parseExplicitHashKey,
  partitionKeyToHashKey,
  ShardRouter,
  validatePartitionKey,
} from './routing.js';
export type { RecordDistribution, StreamLimits, StreamLimitsSource } from './stream-limits.js';
export {
  CLASSIC_STREAM_LIMITS,
  describeRecordLimit,
  KINESIS_LIMITS,
  streamLimitsFromSummary,
} from './stream-limits.js';
export type { Clock, RateLimiterOptions, TokenBucketOptions } from './token-bucket.js';
export { RateLimiter, TokenBucket } from './token-bucket.js';
export type { ParsedTraceparent, UnwrappedTraceEnvelope } from './trace-envelope.js';
export {
  formatTraceparent,
  hasTraceEnvelopeMagic,
  parseTraceparent,
  TRACE_ENVELOPE_HEADER_BYTES,
  TRACE_ENVELOPE_MAGIC,
  TRACE_ENVELOPE_VERSION,
  traceEnvelopeBytes,
  unwrapTraceEnvelope,
  wrapTraceEnvelope,
} from './trace-envelope.js';
export type { TraceAttributes, TraceSpan, Tracing, TracingApiLoader } from './tracing.js';
export {
  defaultTracingApiLoader,
  distinctTraceContexts,
  loadTracing,
  MAX_SPAN_LINKS,
  TRACER_NAME,
} from './tracing.js';
export type { TypedEventListener, TypedEventsOptions } from './typed-events.js';
export { TypedEvents } from './typed-events.js';
export type { KinesisRecordInput, ShardPosition, ShardRecord } from './types.js';
export { SHARD_END } from './types.js';
