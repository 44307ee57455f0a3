/**
 * The options of `startCoordinator()`: one defaults constant and one resolver that validates every
 * option, applies defaults (also inside partial nested objects), checks cross-field rules and freezes.
 * A mistake fails at start with a message that names the option and says what to change.
 */

import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import type {
  BackoffMs,
  Codec,
  CodecName,
  KinesisTransport,
  Logger,
  MetricsRegistry,
  PortableKinesisConfig,
  ShardRecord,
} from '@shardline/common';
import {
  isKinesisClient,
  portableClientConfig,
  resolveCodec,
  resolveKinesisTransport,
  resolveMetricsOptions,
  ShardlineOptionError,
  silentLogger,
  validateRetryOptions,
} from '@shardline/common';
import { MemoryLeaseStore } from './leases/memory.js';
import type { RedisConnection } from './leases/redis-options.js';

/** A batch of one shard's records, as handed to a handler or the async iterator. */
export interface RecordBatch<T = unknown> {
  shardId: string;
  records: ShardRecord<T>[];
  millisBehindLatest?: number;
  /** Checkpoints up to `upTo` (by default the batch's last record). */
  checkpoint(upTo?: ShardRecord<T>): Promise<void>;
}

/** A handler run on the coordinator thread; the shard's next batch waits until it settles. */
export type RecordHandler<T = unknown> = (batch: RecordBatch<T>) => Promise<void> | void;

/** Where a shard without checkpoint starts. Children of a reshard always start at TRIM_HORIZON. */
export type InitialPosition = 'TRIM_HORIZON' | 'LATEST' | { timestamp: Date };

export interface LeasesOptions {
  /**
   * Where leases and checkpoints live, shared by every host of the group. Omitted: in memory, one host.
   * @defaultValue undefined
   */
  redis?: RedisConnection;
  /**
   * Prefix of every Redis key: `<keyPrefix>:{<group>:<stream>}:...`.
   * @defaultValue 'shardline'
   */
  keyPrefix?: string;
  /**
   * In-memory leases only: a store shared by several coordinators in one process (tests, demos), each
   * a host of the group. Omitted: a store of this coordinator's own.
   * @defaultValue undefined
   */
  store?: MemoryLeaseStore;
}

export interface CheckpointOptions {
  /**
   * `'auto'`: processed positions are checkpointed at most every `intervalMs` per shard, and always on
   * stop, on lease handoff and at shard end. `'manual'`: only `batch.checkpoint()` writes (shard end too).
   * @defaultValue 'auto'
   */
  mode?: 'auto' | 'manual';
  /**
   * Auto mode: the longest a processed position waits to be checkpointed.
   * @defaultValue 5000
   */
  intervalMs?: number;
}

export interface HandlerErrorOptions {
  /**
   * Retries of a failing batch before its records are isolated (see `then`); may be `Infinity`.
   * @defaultValue Infinity
   */
  retries?: number;
  /**
   * Backoff between retries (full jitter).
   * @defaultValue { initial: 100, max: 30000 }
   */
  backoffMs?: Partial<BackoffMs>;
  /**
   * After the last retry, a batch of several records is isolated: its records are delivered again one
   * at a time, in order, one attempt each; those that succeed count as processed, and `then` applies to
   * each record that fails alone (a batch of one record gets `then` directly). `'stop-shard'` stops
   * reading the shard at the first such record (status `failing`, lease released, checkpoint just
   * before it); `'dead-letter'` sends the record to the `deadLetter` queue and moves on; `'skip'` moves
   * past it. Undecodable records get `then` at once, without retries.
   * @defaultValue 'stop-shard'
   */
  then?: 'stop-shard' | 'dead-letter' | 'skip';
}

export interface DeadLetterOptions {
  /**
   * BullMQ queue name (no `:`).
   * @defaultValue 'shardline-dlq'
   */
  queue?: string;
  /**
   * The queue's Redis.
   * @defaultValue `leases.redis`
   */
  connection?: RedisConnection;
}

export type { MetricsRegistry };

export interface MetricsOptions {
  /**
   * A prom-client Registry: Shardline registers its metrics there (see the README's Metrics section).
   * Several coordinators and producers may share one Registry: they share the metrics, told apart by
   * their `stream` and `group` labels.
   */
  registry: MetricsRegistry;
}

/** Options of `startCoordinator()`. Exactly one of `streamName` and `streamArn`. */
export interface CoordinatorOptions<T = unknown> {
  /** The stream, by name. */
  streamName?: string;
  /** The stream, by ARN. */
  streamArn?: string;
  /** Consumer group: leases and checkpoints are namespaced by it. */
  group: string;
  /**
   * A KinesisClientConfig (region, endpoint, credentials...) or a KinesisClient built by
   * `createKinesisClient()`. Worker threads build their own client from its plain settings.
   * @defaultValue {} (the SDK's default region and credential chains)
   */
  kinesis?: KinesisClientConfig | KinesisClient;
  /** @defaultValue in-memory leases, one host */
  leases?: LeasesOptions;
  /**
   * This host's id in the group; unique per host.
   * @defaultValue `${os.hostname()}:${process.pid}:${random hex}`
   */
  hostId?: string;
  /**
   * Most shards this host reads at once.
   * @defaultValue Infinity
   */
  maxShardConsumers?: number;
  /**
   * Worker threads reading shards (several shards per thread).
   * @defaultValue min(os.availableParallelism(), 4)
   */
  workerThreads?: number;
  /**
   * Where a shard without checkpoint starts.
   * @defaultValue 'TRIM_HORIZON'
   */
  initialPosition?: InitialPosition;
  /**
   * Decodes record payloads. With `handlerModule`, a built-in name (a Codec object cannot reach the
   * worker threads).
   * @defaultValue 'json'
   */
  codec?: CodecName | Codec<T>;
  /**
   * GetRecords `Limit`, 1 to 10,000.
   * @defaultValue 10000
   */
  maxRecordsPerFetch?: number;
  /**
   * GetRecords calls per second per shard, above 0 and at most 5 (the service limit, shared by every
   * consumer group of the stream).
   * @defaultValue 5
   */
  fetchRatePerShard?: number;
  /**
   * Spacing of GetRecords calls while a shard returns nothing.
   * @defaultValue 1000
   */
  idleFetchIntervalMs?: number;
  /**
   * An idle shard polls less often: after 3 empty answers in a row its pause doubles at each one, up to
   * this (the first record then waits up to this long); an answer with records, or a shard behind, brings
   * it back to full speed at once. Equal to `idleFetchIntervalMs`: no backoff.
   * @defaultValue 5000
   */
  idleFetchMaxIntervalMs?: number;
  /**
   * Records fetched but not yet processed, per host: with `maxBufferedBytes`, bounds memory whatever the
   * handler's speed (each reader may overdraw it by one GetRecords response). It is shared by the readers
   * and fetched again as it is processed, so it also caps a host that catches up at about
   * `5 calls/s x maxBufferedRecords` records/s.
   * @defaultValue 100000
   */
  maxBufferedRecords?: number;
  /**
   * Record data bytes (as fetched, before decoding) not yet processed, per host: the memory bound for
   * large records. Decoded records take more memory than their bytes (JSON objects about 2 to 4 times
   * for small records).
   * @defaultValue 67108864 (64 MiB)
   */
  maxBufferedBytes?: number;
  /** @defaultValue { mode: 'auto', intervalMs: 5000 } */
  checkpoint?: CheckpointOptions;
  /**
   * How long a lease lasts without renewal: after a crash, how soon another host takes the shards.
   * @defaultValue 10000
   */
  leaseDurationMs?: number;
  /**
   * Lease renewal period; below `leaseDurationMs / 2` so one missed renewal never costs a lease.
   * @defaultValue floor(leaseDurationMs / 3)
   */
  leaseRenewIntervalMs?: number;
  /**
   * Period of ListShards (also run at start and at once when a shard ends).
   * @defaultValue 60000
   */
  shardSyncIntervalMs?: number;
  /**
   * How long a shard must have been gone from the stream (aged out of retention: absent from every
   * complete ListShards since) before its lease is deleted, once no lease of the group needs it (a
   * child without checkpoint needs its parents'). Keeps the lease store from growing with every reshard.
   * @defaultValue 300000
   */
  leaseCleanupDelayMs?: number;
  /** Delivery by handler on the coordinator thread. Exclusive with `handlerModule`. */
  handler?: RecordHandler<T>;
  /**
   * Delivery by a module (path or file URL; a relative path resolves against the working directory)
   * whose default export is the handler, run inside the worker threads. Exclusive with `handler`.
   * Neither: iterate the coordinator (`for await`).
   */
  handlerModule?: string | URL;
  /** @defaultValue { retries: Infinity, backoffMs: { initial: 100, max: 30000 }, then: 'stop-shard' } */
  onHandlerError?: HandlerErrorOptions;
  /** Required by `onHandlerError.then: 'dead-letter'`, and only used by it. */
  deadLetter?: DeadLetterOptions;
  /**
   * pino-compatible logger.
   * @defaultValue silent
   */
  logger?: Logger;
  /** Prometheus metrics, when given. */
  metrics?: MetricsOptions;
  /** Aborting stops the coordinator gracefully. */
  signal?: AbortSignal;
  /**
   * Read with enhanced fan-out (SubscribeToShard) as this registered stream consumer instead of
   * polling with GetRecords. The consumer is registered if absent and never deregistered automatically
   * (`shardline fanout deregister`).
   * @defaultValue undefined (polling)
   */
  fanOut?: FanOutOptions;
}

/** Enhanced fan-out: see {@link CoordinatorOptions.fanOut}. */
export interface FanOutOptions {
  /** The stream consumer's name, 1 to 128 of [a-zA-Z0-9_.-]; one per application (consumer group). */
  consumerName: string;
  /**
   * HTTP version of the subscriptions: AWS needs HTTP/2 for SubscribeToShard; the local emulators
   * speak it only over HTTP/1.1. `'auto'`: HTTP/1.1 for an `http://` endpoint, HTTP/2 otherwise.
   * @defaultValue 'auto'
   */
  transport?: KinesisTransport;
  /**
   * How long the reader keeps one subscription before renewing it (AWS ends it after 5 minutes).
   * @defaultValue 270_000
   */
  subscriptionRenewMs?: number;
  /**
   * Longest wait for a newly registered consumer to become ACTIVE.
   * @defaultValue 60_000
   */
  registrationTimeoutMs?: number;
}

/** {@link CoordinatorOptions} after validation and defaults; frozen. */
export interface ResolvedCoordinatorOptions<T = unknown> {
  readonly streamName: string | undefined;
  readonly streamArn: string | undefined;
  /** The stream's name (taken from the ARN when given by ARN): for status(), logs and lease keys. */
  readonly stream: string;
  readonly group: string;
  /** As given (not frozen): a config or a client, for `createKinesisClient()`. */
  readonly kinesis: KinesisClientConfig | KinesisClient;
  /** The plain settings worker threads build their client from. */
  readonly workerKinesisConfig: PortableKinesisConfig;
  readonly leases: Readonly<{
    redis: RedisConnection | undefined;
    keyPrefix: string;
    store: MemoryLeaseStore | undefined;
  }>;
  readonly hostId: string;
  readonly maxShardConsumers: number;
  readonly workerThreads: number;
  readonly initialPosition: 'TRIM_HORIZON' | 'LATEST' | Readonly<{ timestamp: Date }>;
  readonly codec: Codec<T>;
  /** The built-in codec's name; undefined for a custom Codec (which cannot cross threads). */
  readonly codecName: CodecName | undefined;
  readonly maxRecordsPerFetch: number;
  readonly fetchRatePerShard: number;
  readonly idleFetchIntervalMs: number;
  readonly idleFetchMaxIntervalMs: number;
  readonly maxBufferedRecords: number;
  readonly maxBufferedBytes: number;
  readonly checkpoint: Readonly<{ mode: 'auto' | 'manual'; intervalMs: number }>;
  readonly leaseDurationMs: number;
  readonly leaseRenewIntervalMs: number;
  readonly shardSyncIntervalMs: number;
  readonly leaseCleanupDelayMs: number;
  /** Which delivery mode the options select. */
  readonly delivery: 'iterator' | 'handler' | 'handler-module';
  readonly handler: RecordHandler<T> | undefined;
  /** `handlerModule` as a `file:` (or `data:`) URL string, ready for `import()` in a worker. */
  readonly handlerModule: string | undefined;
  readonly onHandlerError: Readonly<{
    retries: number;
    backoffMs: Readonly<BackoffMs>;
    then: 'stop-shard' | 'dead-letter' | 'skip';
  }>;
  readonly deadLetter: Readonly<{ queue: string; connection: RedisConnection }> | undefined;
  readonly logger: Logger;
  readonly metrics: MetricsOptions | undefined;
  readonly signal: AbortSignal | undefined;
  readonly fanOut:
    | Readonly<{
        consumerName: string;
        transport: KinesisTransport;
        subscriptionRenewMs: number;
        registrationTimeoutMs: number;
      }>
    | undefined;
}

/** The defaults of {@link CoordinatorOptions}. */
export const COORDINATOR_DEFAULTS = Object.freeze({
  keyPrefix: 'shardline',
  maxShardConsumers: Number.POSITIVE_INFINITY,
  /** workerThreads defaults to min(os.availableParallelism(), maxWorkerThreads). */
  maxWorkerThreads: 4,
  initialPosition: 'TRIM_HORIZON' as const,
  codec: 'json' as const,
  maxRecordsPerFetch: 10_000,
  fetchRatePerShard: 5,
  idleFetchIntervalMs: 1_000,
  idleFetchMaxIntervalMs: 5_000,
  maxBufferedRecords: 100_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  checkpoint: Object.freeze({ mode: 'auto' as const, intervalMs: 5_000 }),
  leaseDurationMs: 10_000,
  shardSyncIntervalMs: 60_000,
  leaseCleanupDelayMs: 300_000,
  onHandlerError: Object.freeze({
    retries: Number.POSITIVE_INFINITY,
    backoffMs: Object.freeze({ initial: 100, max: 30_000 }),
    // biome-ignore lint/suspicious/noThenProperty: the API's option name; a string, so never a thenable
    then: 'stop-shard' as const,
  }),
  deadLetterQueue: 'shardline-dlq',
  fanOut: Object.freeze({
    transport: 'auto' as KinesisTransport,
    subscriptionRenewMs: 270_000,
    registrationTimeoutMs: 60_000,
  }),
});

/** Service limits and bounds the options are checked against. */
const LIMITS = Object.freeze({
  maxRecordsPerFetch: 10_000,
  fetchRatePerShard: 5,
  minLeaseDurationMs: 1_000,
  /** A day: the Redis lease manager's bound too. */
  maxLeaseDurationMs: 86_400_000,
  minLeaseRenewIntervalMs: 100,
  minShardSyncIntervalMs: 1_000,
  /** A shard iterator expires 5 minutes after it was issued: an idle wait that long always loses it. */
  iteratorLifetimeMs: 300_000,
  maxIdLength: 256,
});

const TOP_LEVEL_KEYS = [
  'streamName',
  'streamArn',
  'group',
  'kinesis',
  'leases',
  'hostId',
  'maxShardConsumers',
  'workerThreads',
  'initialPosition',
  'codec',
  'maxRecordsPerFetch',
  'fetchRatePerShard',
  'idleFetchIntervalMs',
  'idleFetchMaxIntervalMs',
  'maxBufferedRecords',
  'maxBufferedBytes',
  'checkpoint',
  'leaseDurationMs',
  'leaseRenewIntervalMs',
  'shardSyncIntervalMs',
  'leaseCleanupDelayMs',
  'handler',
  'handlerModule',
  'onHandlerError',
  'deadLetter',
  'logger',
  'metrics',
  'signal',
  'fanOut',
] as const;

/** Kinesis stream names: 1 to 128 of [a-zA-Z0-9_.-]. */
const STREAM_NAME = /^[a-zA-Z0-9_.-]{1,128}$/;
const STREAM_ARN = /^arn:[a-z0-9-]+:kinesis:[a-z0-9-]*:[0-9]*:stream\/([a-zA-Z0-9_.-]{1,128})$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

function show(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  return String(value);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** Unknown keys are typos far more often than not: a default would silently apply instead. */
function rejectUnknownKeys(object: Record<string, unknown>, known: readonly string[], prefix: string): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    const lower = key.toLowerCase();
    const guess = known.find(
      (k) =>
        k.toLowerCase().startsWith(lower) ||
        lower.startsWith(k.toLowerCase()) ||
        editDistance(k, key) <= (key.length >= 5 ? 3 : 2),
    );
    throw new ShardlineOptionError(
      `${prefix}${key}`,
      `is not an option${guess === undefined ? '' : ` (did you mean '${prefix}${guess}'?)`}; known: ${known.join(', ')}`,
    );
  }
}

function objectOption(value: unknown, option: string, example: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isObject(value))
    throw new ShardlineOptionError(option, `must be an object like ${example} (got ${show(value)})`);
  return value;
}

function identifier(value: unknown, option: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(option, `must be a non-empty string: ${what} (got ${show(value)})`);
  }
  if (value.length > LIMITS.maxIdLength) {
    throw new ShardlineOptionError(
      option,
      `must be at most ${LIMITS.maxIdLength} characters (got ${value.length})`,
    );
  }
  if (CONTROL.test(value)) throw new ShardlineOptionError(option, 'must not contain control characters');
  return value;
}

/** Redis Cluster hash tags are delimited by braces: one inside a key part would move the tag. */
function noBraces(value: string, option: string): string {
  if (value.includes('{') || value.includes('}')) {
    throw new ShardlineOptionError(
      option,
      `must not contain '{' or '}' (they delimit Redis Cluster hash tags)`,
    );
  }
  return value;
}

function integer(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  max = Number.POSITIVE_INFINITY,
  allowInfinity = false,
): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v)) {
    throw new ShardlineOptionError(option, `must be a number (got ${show(v)})`);
  }
  if (v === Number.POSITIVE_INFINITY && allowInfinity) return v;
  if (!Number.isInteger(v)) {
    throw new ShardlineOptionError(
      option,
      `must be an integer${allowInfinity ? ' or Infinity' : ''} (got ${v})`,
    );
  }
  if (v < min) throw new ShardlineOptionError(option, `must be >= ${min} (got ${v})`);
  if (v > max) throw new ShardlineOptionError(option, `must be <= ${max} (got ${v})`);
  return v;
}

function milliseconds(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  belowMax?: number,
): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ShardlineOptionError(option, `must be a finite number of milliseconds (got ${show(v)})`);
  }
  if (v < min) throw new ShardlineOptionError(option, `must be >= ${min} (got ${v})`);
  if (belowMax !== undefined && v >= belowMax) {
    throw new ShardlineOptionError(option, `must be < ${belowMax} (got ${v})`);
  }
  return v;
}

function redisConnection(value: unknown, option: string): RedisConnection {
  // Objects are ioredis options or instances: the lease manager and BullMQ judge them.
  if (typeof value === 'string') {
    let protocol: string;
    try {
      protocol = new URL(value).protocol;
    } catch {
      // Never echo the value: a Redis URL may carry a password.
      throw new ShardlineOptionError(
        option,
        'must be a valid redis:// or rediss:// URL (it does not parse as a URL)',
      );
    }
    if (protocol !== 'redis:' && protocol !== 'rediss:') {
      throw new ShardlineOptionError(
        option,
        `must be a redis:// or rediss:// URL, ioredis options or an ioredis instance (got a ${protocol} URL)`,
      );
    }
    return value;
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as RedisConnection;
  throw new ShardlineOptionError(
    option,
    `must be a redis:// or rediss:// URL, ioredis options or an ioredis Redis/Cluster instance (got ${show(value)})`,
  );
}

function resolveStream(o: Record<string, unknown>): {
  streamName?: string;
  streamArn?: string;
  stream: string;
} {
  const { streamName, streamArn } = o;
  if (streamName !== undefined && streamArn !== undefined) {
    throw new ShardlineOptionError('streamName', 'and streamArn are exclusive: pass exactly one of them');
  }
  if (streamName === undefined && streamArn === undefined) {
    throw new ShardlineOptionError('streamName', 'or streamArn is required: pass exactly one of them');
  }
  if (streamName !== undefined) {
    if (typeof streamName !== 'string' || !STREAM_NAME.test(streamName)) {
      throw new ShardlineOptionError(
        'streamName',
        `must be a Kinesis stream name: 1 to 128 of a-z, A-Z, 0-9, '_', '.', '-' (got ${show(streamName)})`,
      );
    }
    return { streamName, stream: streamName };
  }
  const match = typeof streamArn === 'string' ? STREAM_ARN.exec(streamArn) : null;
  if (match === null) {
    throw new ShardlineOptionError(
      'streamArn',
      `must be a Kinesis stream ARN like 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders' (got ${show(streamArn)})`,
    );
  }
  return { streamArn: streamArn as string, stream: match[1]! };
}

function resolveKinesis(value: unknown): {
  kinesis: KinesisClientConfig | KinesisClient;
  workerKinesisConfig: PortableKinesisConfig;
} {
  const kinesis = value ?? {};
  if (!isKinesisClient(kinesis) && !isObject(kinesis)) {
    throw new ShardlineOptionError(
      'kinesis',
      `must be a KinesisClientConfig object (e.g. { region: 'eu-west-1' }) or a KinesisClient (got ${show(kinesis)})`,
    );
  }
  const typed = kinesis as KinesisClientConfig | KinesisClient;
  // Checked now, not when the first worker starts: a setting that cannot cross threads is a config error.
  return { kinesis: typed, workerKinesisConfig: Object.freeze(portableClientConfig(typed)) };
}

function resolveLeases(value: unknown): ResolvedCoordinatorOptions['leases'] {
  const leases = objectOption(value, 'leases', "{ redis: 'redis://127.0.0.1:6379', keyPrefix: 'shardline' }");
  rejectUnknownKeys(leases, ['redis', 'keyPrefix', 'store'], 'leases.');
  const redis = leases.redis === undefined ? undefined : redisConnection(leases.redis, 'leases.redis');
  const keyPrefix = noBraces(
    identifier(
      leases.keyPrefix ?? COORDINATOR_DEFAULTS.keyPrefix,
      'leases.keyPrefix',
      'the Redis key prefix',
    ),
    'leases.keyPrefix',
  );
  let store: MemoryLeaseStore | undefined;
  if (leases.store !== undefined) {
    if (!(leases.store instanceof MemoryLeaseStore)) {
      throw new ShardlineOptionError(
        'leases.store',
        `must be a MemoryLeaseStore (got ${show(leases.store)})`,
      );
    }
    if (redis !== undefined) {
      throw new ShardlineOptionError(
        'leases.store',
        'cannot be combined with leases.redis: a MemoryLeaseStore is for in-memory leases; remove one of them',
      );
    }
    store = leases.store;
  }
  return Object.freeze({ redis, keyPrefix, store });
}

function resolveInitialPosition(value: unknown): ResolvedCoordinatorOptions['initialPosition'] {
  const v = value ?? COORDINATOR_DEFAULTS.initialPosition;
  if (v === 'TRIM_HORIZON' || v === 'LATEST') return v;
  if (isObject(v)) {
    rejectUnknownKeys(v, ['timestamp'], 'initialPosition.');
    const timestamp = v.timestamp;
    if (timestamp instanceof Date && !Number.isNaN(timestamp.getTime())) {
      return Object.freeze({ timestamp: new Date(timestamp.getTime()) });
    }
    throw new ShardlineOptionError(
      'initialPosition.timestamp',
      `must be a valid Date (got ${show(timestamp)})`,
    );
  }
  throw new ShardlineOptionError(
    'initialPosition',
    `must be 'TRIM_HORIZON', 'LATEST' or { timestamp: Date } (got ${show(v)})`,
  );
}

function resolveCheckpoint(value: unknown): ResolvedCoordinatorOptions['checkpoint'] {
  const checkpoint = objectOption(value, 'checkpoint', "{ mode: 'auto', intervalMs: 5000 }");
  rejectUnknownKeys(checkpoint, ['mode', 'intervalMs'], 'checkpoint.');
  const mode = checkpoint.mode ?? COORDINATOR_DEFAULTS.checkpoint.mode;
  if (mode !== 'auto' && mode !== 'manual') {
    throw new ShardlineOptionError('checkpoint.mode', `must be 'auto' or 'manual' (got ${show(mode)})`);
  }
  const intervalMs = milliseconds(
    checkpoint.intervalMs,
    'checkpoint.intervalMs',
    COORDINATOR_DEFAULTS.checkpoint.intervalMs,
    0,
  );
  return Object.freeze({ mode, intervalMs });
}

function resolveHandlerModule(value: unknown): string {
  // Two letters at least before ':' so a Windows drive (C:\) stays a path.
  if (value instanceof URL || (typeof value === 'string' && /^[a-z][a-z0-9+.-]+:/i.test(value))) {
    const url = new URL(String(value));
    if (url.protocol === 'data:') return url.href;
    if (url.protocol !== 'file:') {
      throw new ShardlineOptionError(
        'handlerModule',
        `must be a file path or a file: URL (got a ${url.protocol} URL)`,
      );
    }
    checkModuleFile(url);
    return url.href;
  }
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(
      'handlerModule',
      `must be a file path or a file: URL (got ${show(value)})`,
    );
  }
  const url = pathToFileURL(path.resolve(value));
  checkModuleFile(url, value);
  return url.href;
}

function checkModuleFile(url: URL, given?: string): void {
  let isFile = false;
  try {
    isFile = statSync(url).isFile();
  } catch {
    isFile = false;
  }
  if (!isFile) {
    const relative = given !== undefined && !path.isAbsolute(given);
    throw new ShardlineOptionError(
      'handlerModule',
      `names no file (${url.pathname})${relative ? `: relative paths resolve against the working directory ${process.cwd()}` : ''}`,
    );
  }
}

function resolveOnHandlerError(value: unknown): ResolvedCoordinatorOptions['onHandlerError'] {
  const given = objectOption(value, 'onHandlerError', "{ retries: 5, then: 'skip' }");
  rejectUnknownKeys(given, ['retries', 'backoffMs', 'then'], 'onHandlerError.');
  const defaults = COORDINATOR_DEFAULTS.onHandlerError;
  const backoffGiven = objectOption(
    given.backoffMs,
    'onHandlerError.backoffMs',
    '{ initial: 100, max: 30000 }',
  );
  rejectUnknownKeys(backoffGiven, ['initial', 'max', 'multiplier'], 'onHandlerError.backoffMs.');
  const backoffMs: BackoffMs = { initial: defaults.backoffMs.initial, max: defaults.backoffMs.max };
  for (const key of ['initial', 'max', 'multiplier'] as const) {
    if (backoffGiven[key] !== undefined) backoffMs[key] = backoffGiven[key] as number;
  }
  const retry = { retries: given.retries ?? defaults.retries, backoffMs };
  validateRetryOptions(retry, 'onHandlerError');
  const then = given.then ?? defaults.then;
  if (then !== 'stop-shard' && then !== 'dead-letter' && then !== 'skip') {
    throw new ShardlineOptionError(
      'onHandlerError.then',
      `must be 'stop-shard', 'dead-letter' or 'skip' (got ${show(then)})`,
    );
  }
  return Object.freeze({ retries: retry.retries, backoffMs: Object.freeze(backoffMs), then });
}

function resolveDeadLetter(
  value: unknown,
  then: ResolvedCoordinatorOptions['onHandlerError']['then'],
  leasesRedis: RedisConnection | undefined,
): ResolvedCoordinatorOptions['deadLetter'] {
  if (value === undefined) {
    if (then === 'dead-letter') {
      throw new ShardlineOptionError(
        'deadLetter',
        "is required by onHandlerError.then: 'dead-letter': pass { queue: 'shardline-dlq', connection? }",
      );
    }
    return undefined;
  }
  const given = objectOption(value, 'deadLetter', "{ queue: 'shardline-dlq', connection: 'redis://...' }");
  rejectUnknownKeys(given, ['queue', 'connection'], 'deadLetter.');
  if (then !== 'dead-letter') {
    throw new ShardlineOptionError(
      'deadLetter',
      `is set but onHandlerError.then is '${then}', so nothing would reach it: set onHandlerError.then to 'dead-letter', or remove deadLetter`,
    );
  }
  const queue = identifier(
    given.queue ?? COORDINATOR_DEFAULTS.deadLetterQueue,
    'deadLetter.queue',
    'a BullMQ queue name',
  );
  if (queue.includes(':')) {
    throw new ShardlineOptionError(
      'deadLetter.queue',
      `must not contain ':' (BullMQ rejects it; got ${show(queue)})`,
    );
  }
  let connection: RedisConnection;
  if (given.connection !== undefined) connection = redisConnection(given.connection, 'deadLetter.connection');
  else if (leasesRedis !== undefined) connection = leasesRedis;
  else {
    throw new ShardlineOptionError(
      'deadLetter.connection',
      'is required when leases.redis is not set: BullMQ needs a Redis (a URL, ioredis options or an instance)',
    );
  }
  return Object.freeze({ queue, connection });
}

function resolveLogger(value: unknown): Logger {
  if (value === undefined) return silentLogger;
  const l = value as Partial<Record<keyof Logger, unknown>> | null;
  if (!isObject(l) || (['debug', 'info', 'warn', 'error'] as const).some((k) => typeof l[k] !== 'function')) {
    throw new ShardlineOptionError(
      'logger',
      'must be a pino-compatible logger with debug, info, warn and error methods',
    );
  }
  return value as Logger;
}

function resolveSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const s = value as { aborted?: unknown; addEventListener?: unknown } | null;
  if (!isObject(s) || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') {
    throw new ShardlineOptionError('signal', `must be an AbortSignal (got ${show(value)})`);
  }
  return value as AbortSignal;
}

function defaultHostId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Validates `input`, applies {@link COORDINATOR_DEFAULTS} (also to partial nested objects such as
 * `checkpoint: { mode: 'manual' }`), checks the cross-field rules and freezes the result. User objects
 * passed through (the Kinesis config or client, Redis instances, logger, handler) are not frozen.
 *
 * @throws ShardlineOptionError (`ERR_INVALID_OPTION`) naming the option and saying what to change.
 */
export function resolveCoordinatorOptions<T = unknown>(
  input: CoordinatorOptions<T>,
): ResolvedCoordinatorOptions<T> {
  if (!isObject(input)) {
    throw new ShardlineOptionError(
      'options',
      `must be an object like { streamName, group } (got ${show(input)})`,
    );
  }
  const o = input as unknown as Record<string, unknown>;
  rejectUnknownKeys(o, TOP_LEVEL_KEYS, '');

  const stream = resolveStream(o);
  const group = identifier(o.group, 'group', 'the consumer group name');
  noBraces(group, 'group');
  const { kinesis, workerKinesisConfig } = resolveKinesis(o.kinesis);
  const leases = resolveLeases(o.leases);
  const hostId = identifier(o.hostId ?? defaultHostId(), 'hostId', "this host's unique id in the group");

  const maxShardConsumers = integer(
    o.maxShardConsumers,
    'maxShardConsumers',
    COORDINATOR_DEFAULTS.maxShardConsumers,
    1,
    Number.POSITIVE_INFINITY,
    true,
  );
  const workerThreads = integer(
    o.workerThreads,
    'workerThreads',
    Math.min(os.availableParallelism(), COORDINATOR_DEFAULTS.maxWorkerThreads),
    1,
  );
  const initialPosition = resolveInitialPosition(o.initialPosition);
  const codec = resolveCodec(
    (o.codec ?? COORDINATOR_DEFAULTS.codec) as CodecName | Codec,
    'codec',
  ) as Codec<T>;
  const codecName =
    typeof o.codec === 'string' || o.codec === undefined ? (codec.name as CodecName) : undefined;

  const maxRecordsPerFetch = integer(
    o.maxRecordsPerFetch,
    'maxRecordsPerFetch',
    COORDINATOR_DEFAULTS.maxRecordsPerFetch,
    1,
    LIMITS.maxRecordsPerFetch,
  );
  const fetchRatePerShard = o.fetchRatePerShard ?? COORDINATOR_DEFAULTS.fetchRatePerShard;
  if (
    typeof fetchRatePerShard !== 'number' ||
    !Number.isFinite(fetchRatePerShard) ||
    fetchRatePerShard <= 0 ||
    fetchRatePerShard > LIMITS.fetchRatePerShard
  ) {
    throw new ShardlineOptionError(
      'fetchRatePerShard',
      `must be a number above 0 and at most ${LIMITS.fetchRatePerShard} (GetRecords calls per second per shard, the service limit; got ${show(fetchRatePerShard)})`,
    );
  }
  const idleFetchIntervalMs = milliseconds(
    o.idleFetchIntervalMs,
    'idleFetchIntervalMs',
    COORDINATOR_DEFAULTS.idleFetchIntervalMs,
    0,
    LIMITS.iteratorLifetimeMs,
  );
  const idleFetchMaxIntervalMs = milliseconds(
    o.idleFetchMaxIntervalMs,
    'idleFetchMaxIntervalMs',
    Math.max(COORDINATOR_DEFAULTS.idleFetchMaxIntervalMs, idleFetchIntervalMs),
    idleFetchIntervalMs,
    LIMITS.iteratorLifetimeMs,
  );
  const maxBufferedRecords = integer(
    o.maxBufferedRecords,
    'maxBufferedRecords',
    COORDINATOR_DEFAULTS.maxBufferedRecords,
    1,
  );
  const maxBufferedBytes = integer(
    o.maxBufferedBytes,
    'maxBufferedBytes',
    COORDINATOR_DEFAULTS.maxBufferedBytes,
    1,
  );
  const checkpoint = resolveCheckpoint(o.checkpoint);

  const leaseDurationMs = integer(
    o.leaseDurationMs,
    'leaseDurationMs',
    COORDINATOR_DEFAULTS.leaseDurationMs,
    LIMITS.minLeaseDurationMs,
    LIMITS.maxLeaseDurationMs,
  );
  const leaseRenewIntervalMs = integer(
    o.leaseRenewIntervalMs,
    'leaseRenewIntervalMs',
    Math.floor(leaseDurationMs / 3),
    LIMITS.minLeaseRenewIntervalMs,
  );
  if (leaseRenewIntervalMs >= leaseDurationMs / 2) {
    throw new ShardlineOptionError(
      'leaseRenewIntervalMs',
      `must be < leaseDurationMs / 2 (got ${leaseRenewIntervalMs} with leaseDurationMs ${leaseDurationMs}): a lease must survive one missed renewal; lower it or raise leaseDurationMs`,
    );
  }
  const shardSyncIntervalMs = milliseconds(
    o.shardSyncIntervalMs,
    'shardSyncIntervalMs',
    COORDINATOR_DEFAULTS.shardSyncIntervalMs,
    LIMITS.minShardSyncIntervalMs,
  );
  const leaseCleanupDelayMs = milliseconds(
    o.leaseCleanupDelayMs,
    'leaseCleanupDelayMs',
    COORDINATOR_DEFAULTS.leaseCleanupDelayMs,
    0,
  );

  if (o.handler !== undefined && typeof o.handler !== 'function') {
    throw new ShardlineOptionError(
      'handler',
      `must be a function (batch) => Promise<void> | void (got ${show(o.handler)})`,
    );
  }
  if (o.handler !== undefined && o.handlerModule !== undefined) {
    throw new ShardlineOptionError(
      'handler',
      'and handlerModule are exclusive: pass handler (runs on the coordinator thread), handlerModule (runs in the worker threads), or neither to iterate the coordinator',
    );
  }
  const handlerModule = o.handlerModule === undefined ? undefined : resolveHandlerModule(o.handlerModule);
  if (handlerModule !== undefined && codecName === undefined) {
    throw new ShardlineOptionError(
      'codec',
      "must be a built-in codec name with handlerModule: a Codec object cannot cross to the worker threads (use codec: 'raw' and decode in the module)",
    );
  }
  const delivery =
    o.handler !== undefined ? 'handler' : handlerModule !== undefined ? 'handler-module' : 'iterator';

  const onHandlerError = resolveOnHandlerError(o.onHandlerError);
  const deadLetter = resolveDeadLetter(o.deadLetter, onHandlerError.then, leases.redis);

  return Object.freeze({
    streamName: stream.streamName,
    streamArn: stream.streamArn,
    stream: stream.stream,
    group,
    kinesis,
    workerKinesisConfig,
    leases,
    hostId,
    maxShardConsumers,
    workerThreads,
    initialPosition,
    codec,
    codecName,
    maxRecordsPerFetch,
    fetchRatePerShard,
    idleFetchIntervalMs,
    idleFetchMaxIntervalMs,
    maxBufferedRecords,
    maxBufferedBytes,
    checkpoint,
    leaseDurationMs,
    leaseRenewIntervalMs,
    shardSyncIntervalMs,
    leaseCleanupDelayMs,
    delivery,
    handler: o.handler as RecordHandler<T> | undefined,
    handlerModule,
    onHandlerError,
    deadLetter,
    logger: resolveLogger(o.logger),
    metrics: resolveMetricsOptions(o.metrics),
    signal: resolveSignal(o.signal),
    fanOut: resolveFanOut(o.fanOut),
  });
}

/** Stream consumer names: 1 to 128 of [a-zA-Z0-9_.-] (the RegisterStreamConsumer rule). */
const CONSUMER_NAME = /^[a-zA-Z0-9_.-]{1,128}$/;
const FAN_OUT_KEYS = ['consumerName', 'transport', 'subscriptionRenewMs', 'registrationTimeoutMs'];

function resolveFanOut(value: unknown): ResolvedCoordinatorOptions['fanOut'] {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ShardlineOptionError(
      'fanOut',
      `must be { consumerName, transport? } (got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value})`,
    );
  }
  const f = value as Record<string, unknown>;
  for (const key of Object.keys(f)) {
    if (!FAN_OUT_KEYS.includes(key)) {
      throw new ShardlineOptionError(`fanOut.${key}`, `is not an option (known: ${FAN_OUT_KEYS.join(', ')})`);
    }
  }
  const name = f.consumerName;
  if (typeof name !== 'string' || !CONSUMER_NAME.test(name)) {
    throw new ShardlineOptionError(
      'fanOut.consumerName',
      `must be 1 to 128 characters of a-z, A-Z, 0-9, '_', '.' and '-' (got ${typeof name === 'string' ? `'${name}'` : String(name)})`,
    );
  }
  const d = COORDINATOR_DEFAULTS.fanOut;
  const transport = f.transport ?? d.transport;
  resolveKinesisTransport(transport, undefined, 'fanOut.transport');
  const renew = f.subscriptionRenewMs ?? d.subscriptionRenewMs;
  if (typeof renew !== 'number' || !Number.isFinite(renew) || renew < 1_000 || renew > 300_000) {
    throw new ShardlineOptionError(
      'fanOut.subscriptionRenewMs',
      `must be a number from 1000 to 300000 (a subscription lasts 5 minutes; got ${String(renew)})`,
    );
  }
  const timeout = f.registrationTimeoutMs ?? d.registrationTimeoutMs;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) {
    throw new ShardlineOptionError(
      'fanOut.registrationTimeoutMs',
      `must be a number of milliseconds >= 0 (got ${String(timeout)})`,
    );
  }
  return Object.freeze({
    consumerName: name,
    transport: transport as KinesisTransport,
    subscriptionRenewMs: renew,
    registrationTimeoutMs: timeout,
  });
}
