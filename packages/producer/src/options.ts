/**
 * Producer options: one defaults constant, one resolver that validates every option and freezes.
 */
import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import {
  type BackoffMs,
  type Codec,
  type CodecName,
  isKinesisClient,
  type Logger,
  type MetricsRegistry,
  resolveCodec,
  resolveMetricsOptions,
  ShardlineOptionError,
  silentLogger,
  validateRetryOptions,
} from '@shardline/common';
import { framingOf } from './records.js';

/** Per-shard write pacing, per second. An omitted or `Infinity` limit is not paced. */
export interface RateLimitPerShard {
  /** Kinesis records per second per shard (an aggregate or a framed pack counts as one). */
  records?: number;
  /** Bytes per second per shard, counting data + partition key as Kinesis does. */
  bytes?: number;
}

/** Retry of failed PutRecords entries. */
export interface ProducerRetryOptions {
  /**
   * Retries of an entry after its first attempt; a record whose entry fails once more rejects its
   * `put()`. `Infinity` retries retriable failures forever (non-retriable ones never are).
   * @defaultValue Infinity
   */
  retries?: number;
  /**
   * Full-jitter exponential backoff between attempts of an entry.
   * @defaultValue { initial: 100, max: 10_000 }
   */
  backoffMs?: BackoffMs;
}

/** OpenTelemetry tracing of a producer (needs the optional peer dependency `@opentelemetry/api`). */
export interface ProducerTracingOptions {
  /**
   * A `send <stream>` span (kind PRODUCER) per PutRecords call, linked to the contexts the records were
   * put in. Without `@opentelemetry/api` installed nothing happens; without a registered tracer
   * provider the API's spans are no-ops.
   * @defaultValue true
   */
  enabled?: boolean;
  /**
   * Carries the W3C traceparent of the context active at `put()` in each record, in a trace envelope
   * before the payload (61 bytes; Kinesis records have no headers), so that consumers can link to it
   * (`ShardRecord.traceContext`). Records put outside any span get no envelope. Readers older than this
   * version see the envelope as part of the payload: turn it on once every consumer is upgraded. Not
   * with a framed codec (jsonl, msgpack, json-array) unless `aggregate: true`: their packs join the
   * items' bytes.
   * @defaultValue false
   */
  propagate?: boolean;
}

/** Prometheus metrics of a producer. */
export interface ProducerMetricsOptions {
  /**
   * A prom-client Registry: the producer registers its metrics there (see the README's Metrics
   * section). Producers and coordinators may share one Registry (told apart by the `stream` label).
   */
  registry: MetricsRegistry;
}

export interface ProducerOptions<T = unknown> {
  /** The stream, by name. Give `streamName` or `streamArn` (not both). */
  streamName?: string;
  /** The stream, by ARN (cross-account producers). */
  streamArn?: string;
  /**
   * A KinesisClient (used as is and never destroyed by the producer) or its config (the producer builds
   * an HTTP/1.1 keep-alive client with `createKinesisClient` and destroys it on `close()`).
   * @defaultValue {} (region and credentials from the environment)
   */
  kinesis?: KinesisClientConfig | KinesisClient;
  /**
   * How items become record payloads.
   * @defaultValue 'json'
   */
  codec?: CodecName | Codec<T>;
  /**
   * KPL-aggregate user records per destination shard (each sub-record keeps its own partition key), into
   * aggregates of at most 1 MiB; a record too large for one is sent plain. Refused on a stream whose
   * RecordDistributionStrategy is `AUTO` (every `put()` rejects `ERR_INVALID_OPTION`): KCL consumers drop
   * KPL aggregates there.
   * @defaultValue false
   */
  aggregate?: boolean;
  /**
   * Longest a record waits in the buffer for its batch to fill before it is sent anyway.
   * @defaultValue 100
   */
  lingerMs?: number;
  /**
   * Most records accepted but not yet settled (acknowledged or rejected); `put()` waits (FIFO) for room
   * beyond this. This bounds memory under a slow stream.
   * @defaultValue 10_000
   */
  maxBufferedRecords?: number;
  /**
   * Pacing per open shard so the producer does not provoke throttling: the Kinesis write limits by
   * default. Each producer paces on its own: several producers writing to one stream should divide
   * these. `false` disables pacing (for emulators, or when another layer paces).
   * @defaultValue { records: 1_000, bytes: 1_048_576 }
   */
  rateLimitPerShard?: RateLimitPerShard | false;
  /** @defaultValue { retries: Infinity, backoffMs: { initial: 100, max: 10_000 } } */
  retry?: ProducerRetryOptions;
  /**
   * Most PutRecords requests carrying entries of one shard in flight at once. `1` keeps per-partition-key
   * order across retries (see the README's ordering section for the throughput cost), except on an `AUTO`
   * stream, where Kinesis keeps no per-key order and `1` only limits concurrency; the default,
   * unlimited, lets a shard's records ride in every concurrent request.
   * @defaultValue Infinity
   */
  maxInFlightPerShard?: number;
  /**
   * Most PutRecords requests in flight at once, across all shards.
   * @defaultValue 8
   */
  maxInFlightRequests?: number;
  /**
   * How often the shard map is refreshed (ListShards) even when nothing suggests a change; 0 disables
   * the periodic refresh (refreshes on a misrouted record or a hash-key gap still happen).
   * @defaultValue 60_000
   */
  shardRefreshIntervalMs?: number;
  /** @defaultValue silentLogger */
  logger?: Logger;
  /**
   * Prometheus metrics: `{ registry: new Registry() }` with prom-client's Registry.
   * @defaultValue undefined (no metrics)
   */
  metrics?: ProducerMetricsOptions;
  /** @defaultValue { enabled: true, propagate: false } */
  tracing?: ProducerTracingOptions;
  /**
   * Aborting stops the producer at once: pending records and waiting `put()` calls reject with
   * `ERR_ABORTED`, requests in flight are cancelled (their records may still have been written).
   */
  signal?: AbortSignal;
}

/** Defaults of {@link ProducerOptions}. */
export const PRODUCER_DEFAULTS = Object.freeze({
  codec: 'json' as CodecName,
  aggregate: false,
  lingerMs: 100,
  maxBufferedRecords: 10_000,
  rateLimitPerShard: Object.freeze({ records: 1_000, bytes: 1_048_576 }),
  retry: Object.freeze({
    retries: Number.POSITIVE_INFINITY,
    backoffMs: Object.freeze({ initial: 100, max: 10_000 }),
  }),
  maxInFlightPerShard: Number.POSITIVE_INFINITY,
  maxInFlightRequests: 8,
  shardRefreshIntervalMs: 60_000,
  tracing: Object.freeze({ enabled: true, propagate: false }),
});

/** {@link ProducerOptions} after validation and defaults. */
export interface ResolvedProducerOptions<T = unknown> {
  readonly streamName: string | undefined;
  readonly streamArn: string | undefined;
  readonly kinesis: KinesisClientConfig | KinesisClient;
  readonly codec: Codec<T>;
  readonly aggregate: boolean;
  readonly lingerMs: number;
  readonly maxBufferedRecords: number;
  /** `Infinity` for a limit that is not paced. */
  readonly rateLimitPerShard: Readonly<{ records: number; bytes: number }>;
  readonly retry: Readonly<{ retries: number; backoffMs: Readonly<BackoffMs> }>;
  readonly maxInFlightPerShard: number;
  readonly maxInFlightRequests: number;
  readonly shardRefreshIntervalMs: number;
  readonly logger: Logger;
  readonly metrics: Readonly<ProducerMetricsOptions> | undefined;
  readonly tracing: Readonly<{ enabled: boolean; propagate: boolean }>;
  readonly signal: AbortSignal | undefined;
}

const KNOWN = new Set([
  'streamName',
  'streamArn',
  'kinesis',
  'codec',
  'aggregate',
  'lingerMs',
  'maxBufferedRecords',
  'rateLimitPerShard',
  'retry',
  'maxInFlightPerShard',
  'maxInFlightRequests',
  'shardRefreshIntervalMs',
  'logger',
  'metrics',
  'tracing',
  'signal',
]);

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

function finiteAtLeast(value: unknown, min: number, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new ShardlineOptionError(option, `must be a finite number >= ${min} (got ${describe(value)})`);
  }
  return value;
}

function integerAtLeast(value: unknown, min: number, option: string, allowInfinity: boolean): number {
  const ok =
    typeof value === 'number' &&
    value >= min &&
    (Number.isInteger(value) || (allowInfinity && value === Number.POSITIVE_INFINITY));
  if (!ok) {
    throw new ShardlineOptionError(
      option,
      `must be an integer >= ${min}${allowInfinity ? ' or Infinity' : ''} (got ${describe(value)})`,
    );
  }
  return value as number;
}

function rate(value: unknown, option: string): number {
  if (value === undefined) return Number.POSITIVE_INFINITY;
  if (typeof value !== 'number' || Number.isNaN(value) || value <= 0) {
    throw new ShardlineOptionError(option, `must be a number > 0 or Infinity (got ${describe(value)})`);
  }
  return value;
}

function nonEmptyString(value: unknown, option: string): string {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ShardlineOptionError(option, `must be a non-empty string (got ${describe(value)})`);
  }
  return value;
}

/** Validates `options`, applies {@link PRODUCER_DEFAULTS} and freezes the result. */
export function resolveProducerOptions<T = unknown>(options: ProducerOptions<T>): ResolvedProducerOptions<T> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new ShardlineOptionError(
      'options',
      `must be an object like { streamName } (got ${describe(options)})`,
    );
  }
  for (const key of Object.keys(options)) {
    if (!KNOWN.has(key)) {
      throw new ShardlineOptionError(key, `is not a producer option (known: ${[...KNOWN].join(', ')})`);
    }
  }
  const streamName =
    options.streamName === undefined ? undefined : nonEmptyString(options.streamName, 'streamName');
  const streamArn =
    options.streamArn === undefined ? undefined : nonEmptyString(options.streamArn, 'streamArn');
  if (streamName === undefined && streamArn === undefined) {
    throw new ShardlineOptionError('streamName', 'is required (or give streamArn)');
  }
  if (streamName !== undefined && streamArn !== undefined) {
    throw new ShardlineOptionError('streamArn', 'must not be given together with streamName (give one)');
  }
  const kinesis = options.kinesis ?? {};
  if (
    !isKinesisClient(kinesis) &&
    (typeof kinesis !== 'object' || kinesis === null || Array.isArray(kinesis))
  ) {
    throw new ShardlineOptionError(
      'kinesis',
      `must be a KinesisClient or a KinesisClientConfig object (got ${describe(kinesis)})`,
    );
  }
  const codec = resolveCodec(options.codec ?? PRODUCER_DEFAULTS.codec) as Codec<T>;
  const aggregate = options.aggregate ?? PRODUCER_DEFAULTS.aggregate;
  if (typeof aggregate !== 'boolean') {
    throw new ShardlineOptionError('aggregate', `must be a boolean (got ${describe(aggregate)})`);
  }
  const lingerMs = finiteAtLeast(options.lingerMs ?? PRODUCER_DEFAULTS.lingerMs, 0, 'lingerMs');
  const maxBufferedRecords = integerAtLeast(
    options.maxBufferedRecords ?? PRODUCER_DEFAULTS.maxBufferedRecords,
    1,
    'maxBufferedRecords',
    false,
  );

  let rateLimitPerShard: { records: number; bytes: number };
  const limits = options.rateLimitPerShard;
  if (limits === false) {
    rateLimitPerShard = { records: Number.POSITIVE_INFINITY, bytes: Number.POSITIVE_INFINITY };
  } else if (limits === undefined) {
    rateLimitPerShard = { ...PRODUCER_DEFAULTS.rateLimitPerShard };
  } else {
    if (typeof limits !== 'object' || limits === null || Array.isArray(limits)) {
      throw new ShardlineOptionError(
        'rateLimitPerShard',
        `must be false or an object like { records: 1000, bytes: 1048576 } (got ${describe(limits)})`,
      );
    }
    for (const key of Object.keys(limits)) {
      if (key !== 'records' && key !== 'bytes') {
        throw new ShardlineOptionError(`rateLimitPerShard.${key}`, 'is not a limit (use records, bytes)');
      }
    }
    rateLimitPerShard = {
      records: rate(limits.records, 'rateLimitPerShard.records'),
      bytes: rate(limits.bytes, 'rateLimitPerShard.bytes'),
    };
  }

  const retryInput = options.retry ?? {};
  if (typeof retryInput !== 'object' || retryInput === null || Array.isArray(retryInput)) {
    throw new ShardlineOptionError(
      'retry',
      `must be an object like { retries, backoffMs } (got ${describe(retryInput)})`,
    );
  }
  for (const key of Object.keys(retryInput)) {
    if (key !== 'retries' && key !== 'backoffMs') {
      throw new ShardlineOptionError(
        `retry.${key}`,
        'is not a producer retry option (use retries, backoffMs)',
      );
    }
  }
  const retry = {
    retries: retryInput.retries ?? PRODUCER_DEFAULTS.retry.retries,
    backoffMs: Object.freeze({ ...(retryInput.backoffMs ?? PRODUCER_DEFAULTS.retry.backoffMs) }),
  };
  validateRetryOptions(retry, 'retry');

  const maxInFlightPerShard = integerAtLeast(
    options.maxInFlightPerShard ?? PRODUCER_DEFAULTS.maxInFlightPerShard,
    1,
    'maxInFlightPerShard',
    true,
  );
  const maxInFlightRequests = integerAtLeast(
    options.maxInFlightRequests ?? PRODUCER_DEFAULTS.maxInFlightRequests,
    1,
    'maxInFlightRequests',
    false,
  );
  const shardRefreshIntervalMs = finiteAtLeast(
    options.shardRefreshIntervalMs ?? PRODUCER_DEFAULTS.shardRefreshIntervalMs,
    0,
    'shardRefreshIntervalMs',
  );
  const logger = options.logger ?? silentLogger;
  if (
    typeof logger !== 'object' ||
    logger === null ||
    typeof logger.debug !== 'function' ||
    typeof logger.info !== 'function' ||
    typeof logger.warn !== 'function' ||
    typeof logger.error !== 'function'
  ) {
    throw new ShardlineOptionError('logger', 'must be a pino-compatible logger with debug/info/warn/error');
  }
  const tracing = resolveTracing(options.tracing, codec, aggregate);
  const signal = options.signal;
  if (
    signal !== undefined &&
    (typeof signal !== 'object' ||
      signal === null ||
      typeof (signal as { aborted?: unknown }).aborted !== 'boolean' ||
      typeof (signal as { addEventListener?: unknown }).addEventListener !== 'function')
  ) {
    throw new ShardlineOptionError('signal', 'must be an AbortSignal');
  }
  return Object.freeze({
    streamName,
    streamArn,
    kinesis,
    codec,
    aggregate,
    lingerMs,
    maxBufferedRecords,
    rateLimitPerShard: Object.freeze(rateLimitPerShard),
    retry: Object.freeze(retry),
    maxInFlightPerShard,
    maxInFlightRequests,
    shardRefreshIntervalMs,
    logger,
    metrics: resolveMetricsOptions(options.metrics),
    tracing,
    signal,
  });
}

function resolveTracing(
  value: unknown,
  codec: Codec<unknown>,
  aggregate: boolean,
): ResolvedProducerOptions['tracing'] {
  if (value === undefined) return PRODUCER_DEFAULTS.tracing;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ShardlineOptionError(
      'tracing',
      `must be an object like { enabled: true, propagate: false } (got ${describe(value)})`,
    );
  }
  const input = value as Record<string, unknown>;
  for (const key of Object.keys(input)) {
    if (key !== 'enabled' && key !== 'propagate') {
      throw new ShardlineOptionError(`tracing.${key}`, 'is not a tracing option (use enabled, propagate)');
    }
  }
  const enabled = input.enabled ?? PRODUCER_DEFAULTS.tracing.enabled;
  if (typeof enabled !== 'boolean') {
    throw new ShardlineOptionError('tracing.enabled', `must be a boolean (got ${describe(enabled)})`);
  }
  const propagate = input.propagate ?? PRODUCER_DEFAULTS.tracing.propagate;
  if (typeof propagate !== 'boolean') {
    throw new ShardlineOptionError('tracing.propagate', `must be a boolean (got ${describe(propagate)})`);
  }
  if (propagate && !aggregate && framingOf(codec) !== undefined) {
    throw new ShardlineOptionError(
      'tracing.propagate',
      `cannot be used with the framed codec '${codec.name}' without aggregate: true (its packs join the items' bytes, so a record's envelope would break them); set aggregate: true or use the 'json' codec`,
    );
  }
  return Object.freeze({ enabled, propagate });
}
