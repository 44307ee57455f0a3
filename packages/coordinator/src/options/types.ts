/**
 * The public option types of `startCoordinator()` and the resolved shape the coordinator reads. Their
 * TSDoc is the API reference of every option (with its `@defaultValue`).
 */

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
import type { BatchAnswer } from '../delivery/handler-answer.js';
import type { DynamoDbLeasesOptions } from '../leases/dynamodb-options.js';
import type { MemoryLeaseStore } from '../leases/memory.js';
import type { RedisConnection } from '../leases/redis-options.js';

/** A batch of one shard's records, as handed to a handler or the async iterator. */
export interface RecordBatch<T = unknown> {
  /** The stream the shard belongs to (with one stream, always that one). */
  streamName: string;
  shardId: string;
  records: ShardRecord<T>[];
  millisBehindLatest?: number;
  /**
   * Checkpoints up to `upTo` (by default the batch's last record). With `parallelism` above 1, a batch
   * is one key group's: this marks its records up to `upTo` processed and writes the shard's highest
   * position below which every record is processed (nothing when an earlier record of another group is
   * still under way).
   */
  checkpoint(upTo?: ShardRecord<T>): Promise<void>;
}

/**
 * A handler run on the coordinator thread; the shard's next batch waits until it settles. It may resolve
 * to a partial-batch answer ({@link BatchAnswer}): the first record of the batch that failed. The records
 * before it count as processed; it and the rest are retried under `onHandlerError`.
 */
export type RecordHandler<T = unknown> = (
  batch: RecordBatch<T>,
  // biome-ignore lint/suspicious/noConfusingVoidType: an async handler that returns nothing is Promise<void>
) => Promise<void | BatchAnswer<T>> | void | BatchAnswer<T>;

/** Where a shard without checkpoint starts. Children of a reshard always start at TRIM_HORIZON. */
export type InitialPosition = 'TRIM_HORIZON' | 'LATEST' | { timestamp: Date };

export type { BatchAnswer };

export interface LeasesOptions {
  /**
   * Where leases and checkpoints live, shared by every host of the group. Omitted: in memory, one host.
   * @defaultValue undefined
   */
  redis?: RedisConnection;
  /**
   * Leases in DynamoDB, in a KCL-compatible lease table (see the coordinator README and
   * docs/dynamodb-lease-table.md): `{ tableName, region?, endpoint?, credentials?, client?, createTable? }`.
   * Exclusive with `redis` and `store`.
   * @defaultValue undefined
   */
  dynamodb?: DynamoDbLeasesOptions;
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
   * past it. Undecodable records get `then` at once, without retries, and so do records past
   * `maxRecordAgeMs` (a skipped or dead-lettered one counts as processed).
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

/**
 * One stream of a multi-stream coordinator (`streams`, `coordinator.addStream()`): exactly one of
 * `streamName` and `streamArn`; `initialPosition` and `fanOut` override the top-level ones.
 */
export interface StreamSpec {
  /** The stream, by name. */
  streamName?: string;
  /** The stream, by ARN. */
  streamArn?: string;
  /** @defaultValue the top-level `initialPosition` */
  initialPosition?: InitialPosition;
  /** @defaultValue the top-level `fanOut` */
  fanOut?: FanOutOptions;
}

/** `coordinator.removeStream(name, options)`. */
export interface RemoveStreamOptions {
  /**
   * `'release'`: release this host's leases of the stream, keeping the checkpoints (another host, or a
   * later `addStream()`, resumes from them). `'delete'`: then delete every lease (and so checkpoint)
   * of the stream no other host holds.
   * @defaultValue 'release'
   */
  leases?: 'release' | 'delete';
}

/** What `coordinator.removeStream()` resolves with. */
export interface RemovedStream {
  streamName: string;
  /** Leases this host released (each after a final checkpoint). */
  released: number;
  /** Lease items deleted (`leases: 'delete'`). */
  deleted: number;
  /** Leases of the stream another host holds (left alone, also by `'delete'`). */
  heldElsewhere: number;
}

/** OpenTelemetry tracing (needs the optional peer dependency `@opentelemetry/api`). */
export interface TracingOptions {
  /**
   * A `process <stream>` span (kind CONSUMER) around each handler call (`handler`, or `handlerModule`
   * in a worker thread that registers a tracer provider itself), per the OpenTelemetry messaging
   * conventions; the handler runs in its context. Without `@opentelemetry/api` installed nothing
   * happens; without a registered tracer provider the API's spans are no-ops.
   * @defaultValue true
   */
  enabled?: boolean;
  /**
   * Links each `process` span to the producer contexts its records carry (`ShardRecord.traceContext`,
   * from producers with `tracing.propagate`), distinct ones, at most 128.
   * @defaultValue true
   */
  links?: boolean;
}

/**
 * Options of `startCoordinator()`. Exactly one of `streamName`, `streamArn` and `streams`.
 */
export interface CoordinatorOptions<T = unknown> {
  /** The stream, by name. */
  streamName?: string;
  /** The stream, by ARN. */
  streamArn?: string;
  /**
   * Several streams in one coordinator, sharing its worker pool, buffer budget (`maxBufferedRecords`,
   * `maxBufferedBytes`), `maxShardConsumers` (the host's total) and host id; leases and checkpoints are
   * kept per stream (see the coordinator README, "Several streams"). May be empty: streams are added
   * with `coordinator.addStream()`. Exclusive with `streamName` and `streamArn`.
   * @defaultValue undefined (one stream: `streamName` or `streamArn`)
   */
  streams?: StreamSpec[];
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
   * Worker threads reading shards (several shards per thread). Set, that many start with the
   * coordinator. Unset, up to min(os.availableParallelism(), 4) start as this host takes shards: one
   * with the first, another whenever each running one reads 4 (a thread costs about 0.2 s of CPU to
   * start and some 10-20 MiB; one keeps 4 shards at Kinesis' 2 MiB/s read limit). With `handlerModule`,
   * every thread starts with the coordinator (the handlers run on them).
   * @defaultValue min(os.availableParallelism(), 4), started on demand
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
  /**
   * `handler` / `handlerModule`: a record older than this (now minus its `approximateArrivalTimestamp`)
   * when it would be handed to the handler, first call, retry or isolated record alike, is not: it gets
   * `onHandlerError.then` (skipped, dead-lettered with `ERR_RECORD_EXPIRED`, or the shard stops before
   * it), emits `record.expired` and is counted (`status().shards[].recordsExpired`,
   * `shardline_records_expired_total`). A skipped or dead-lettered expired record counts as processed
   * (checkpointed). Lambda's MaximumRecordAgeInSeconds. At least 1; `Infinity`: no limit.
   * @defaultValue Infinity
   */
  maxRecordAgeMs?: number;
  /**
   * `handler` / `handlerModule`: up to this many concurrent handler calls per shard, for handlers for
   * which per-partition-key order is enough (Lambda's ParallelizationFactor, within one shard). Each
   * batch is split into key groups by a hash of the partition key (a key always falls in the same
   * group, records keep their order in it); the groups run concurrently, each under `onHandlerError`
   * on its own; the shard's next batch starts once every group of this one finished. The shard's
   * processed position (the checkpoint) only advances to the highest position below which every record
   * is processed. 1 to 100.
   * @defaultValue 1
   */
  parallelism?: number;
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
  /** @defaultValue { enabled: true, links: true } */
  tracing?: TracingOptions;
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

/** One stream after validation and defaults; frozen. */
export interface ResolvedStreamSpec {
  readonly streamName: string | undefined;
  readonly streamArn: string | undefined;
  /** The stream's name (taken from the ARN when given by ARN). */
  readonly stream: string;
  readonly initialPosition: ResolvedCoordinatorOptions['initialPosition'];
  readonly fanOut: ResolvedCoordinatorOptions['fanOut'];
}

/** {@link CoordinatorOptions} after validation and defaults; frozen. */
export interface ResolvedCoordinatorOptions<T = unknown> {
  readonly streamName: string | undefined;
  readonly streamArn: string | undefined;
  /**
   * The stream's name (taken from the ARN when given by ARN): for status(), logs and lease keys. With
   * `streams`: the names given, joined by ','; each stream's runtime gets options with its own.
   */
  readonly stream: string;
  /** Every stream at start: the one stream, or the `streams` entries. */
  readonly streams: readonly ResolvedStreamSpec[];
  /** `streams` was given: leases are kept per stream (DynamoDB: KCL's multi-stream lease keys). */
  readonly multiStream: boolean;
  readonly group: string;
  /** As given (not frozen): a config or a client, for `createKinesisClient()`. */
  readonly kinesis: KinesisClientConfig | KinesisClient;
  /** The plain settings worker threads build their client from. */
  readonly workerKinesisConfig: PortableKinesisConfig;
  readonly leases: Readonly<{
    redis: RedisConnection | undefined;
    /** `streamId`: one stream's runtime options in multi-stream mode (KCL's multi-stream lease keys). */
    dynamodb: Readonly<DynamoDbLeasesOptions & { streamId?: string }> | undefined;
    keyPrefix: string;
    store: MemoryLeaseStore | undefined;
  }>;
  readonly hostId: string;
  readonly maxShardConsumers: number;
  readonly workerThreads: number;
  /** 'all' when `workerThreads` was given or with a `handlerModule`; else 'on-demand'. */
  readonly workerThreadsStart: 'all' | 'on-demand';
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
  readonly maxRecordAgeMs: number;
  readonly parallelism: number;
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
  readonly tracing: Readonly<{ enabled: boolean; links: boolean }>;
}
