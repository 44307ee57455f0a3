/**
 * The Producer: encodes, routes, paces, batches, aggregates and retries records for PutRecords.
 *
 * Data path, per record: `put()` validates and encodes (a bad record rejects its own promise and touches
 * nothing else) -> the record waits for room if `maxBufferedRecords` are unsettled (FIFO) -> it is routed
 * to its predicted shard's queue (MD5 of the partition key, or the explicit hash key, against the open
 * shards from ListShards) -> a request is built when a shard's oldest record has lingered `lingerMs`, a
 * full request is ready, puts are waiting for room, or a flush is pending -> each shard gives what its
 * token buckets allow (as plain entries, KPL aggregates, or framed packs) -> PutRecords -> each record
 * settles with its receipt, or goes back to the head of its shard queue with backoff when its entry
 * failed, or rejects when out of retries / on a non-retriable error.
 *
 * The predicted shard is only used for grouping and pacing (Kinesis routes by hash key itself), so a stale
 * shard map never loses or misplaces a record; it only mis-paces until the map is refreshed.
 */
// Time comes from the global `performance` (not an import from node:perf_hooks) so that fake timers
// installed by tests drive lingering, pacing and backoff here as they do in the token buckets.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import {
  type KinesisClient,
  type KinesisClientConfig,
  ListShardsCommand,
  type ListShardsCommandInput,
  PutRecordsCommand,
  type PutRecordsCommandInput,
  type PutRecordsCommandOutput,
  type PutRecordsRequestEntry,
  type Shard,
} from '@aws-sdk/client-kinesis';
import {
  Aggregator,
  abortError,
  backoffDelay,
  type Codec,
  classifyAwsError,
  codecs,
  createKinesisClient,
  ErrorCodes,
  isKinesisClient,
  isRetriable,
  KinesisError,
  type Logger,
  parseExplicitHashKey,
  partitionKeyToHashKey,
  RateLimiter,
  retry,
  ShardlineError,
  ShardlineOptionError,
  ShardRouter,
  validatePartitionKey,
} from '@shardline/common';
import { Deque } from './deque.js';
import { ProducerMetrics } from './metrics.js';
import { type ProducerOptions, type ResolvedProducerOptions, resolveProducerOptions } from './options.js';

/** PutRecords limits. */
export const PUT_RECORDS_MAX_ENTRIES = 500;
export const PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024;
/** Largest Kinesis record, counting data + partition key. */
export const MAX_RECORD_BYTES = 1_048_576;
/**
 * Upper bound of what KPL framing adds around one user record (magic, MD5, protobuf tags and lengths,
 * the key table entry): used to refuse at `put()` a record that could never be aggregated.
 */
const AGGREGATE_OVERHEAD_BYTES = 64;
/** Least time between two refreshes caused by misrouted records, so a burst of them costs one ListShards. */
const MISROUTE_REFRESH_MIN_MS = 1_000;
/**
 * Share of each shard bucket the producer leaves unspent. Kinesis (and the FaultProxy) meter calls when they
 * arrive, the producer when it sends them: calls reaching the service closer together than they left would
 * spend tokens the service has not refilled yet. 5% of a second's budget absorbs 50 ms of such jitter; the
 * long-run rate is unchanged (only the burst after a quiet period is 5% smaller).
 */
const PACING_RESERVE = 0.05;
/** A paced shard waits for this share of its buckets (or its whole queue) before it sends. */
const PACING_MIN_BATCH = 0.05;
/** Wait before retrying a shard map that could not be used (a gap or an overlap mid-resharding). */
const BAD_MAP_RETRY_MS = 250;

/** Where Kinesis put a record. */
export interface PutReceipt {
  shardId: string;
  sequenceNumber: string;
  /**
   * The record's index inside its Kinesis record, when that carries several user records: a KPL
   * aggregate (`aggregate: true`) or a framed pack (jsonl, msgpack, json-array codecs). Absent otherwise.
   */
  subSequenceNumber?: number;
}

/** Per-record options of {@link Producer.put}. */
export interface PutOptions {
  /**
   * 1 to 256 characters; picks the shard (MD5). Records with the same key keep their order only with
   * `maxInFlightPerShard: 1`.
   * @defaultValue a random UUID per record, which spreads records evenly over the shards
   */
  partitionKey?: string;
  /** Decimal 0..2^128-1: routes the record to the shard holding this hash key instead of the key's MD5. */
  explicitHashKey?: string;
}

/** What {@link Producer.writable} accepts: one object per record. */
export interface ProducerRecord<T = unknown> extends PutOptions {
  /** The item, encoded with the producer's codec. */
  data: T;
}

/** Events of a {@link Producer}. */
export interface ProducerEvents {
  /** A PutRecords call answered (some entries may have failed: see `failedEntries`). */
  put: {
    /** User records acknowledged by this call. */
    records: number;
    /** Kinesis records (entries) in the call. */
    entries: number;
    /** Bytes sent (data + partition keys). */
    bytes: number;
    /** Bytes of the user records acknowledged by this call (each: encoded data + partition key). */
    acknowledgedBytes: number;
    /** Entries that failed and were retried or rejected. */
    failedEntries: number;
    /** Entries per predicted shard id. */
    shards: Record<string, number>;
    durationMs: number;
  };
  /** Records go back to their shard queue after a failure. */
  retry: {
    shardId: string;
    /** User records to be sent again. */
    records: number;
    /** The highest attempt count among them (1 after the first failure). */
    attempt: number;
    delayMs: number;
    /** The AWS error code (entry ErrorCode or the whole call's error name). */
    errorCode: string;
  };
  /** Kinesis refused entries for throughput (ProvisionedThroughputExceeded, KMSThrottling) on a shard. */
  throttled: { shardId: string; entries: number; errorCode: string };
  /** Records were rejected (out of retries, or a non-retriable error), or a shard refresh failed. */
  error: { error: ShardlineError; records: number };
  /** The shard map was (re)loaded. */
  'shards.refreshed': {
    shardIds: string[];
    added: string[];
    removed: string[];
    reason: 'initial' | 'periodic' | 'misrouted' | 'gap';
  };
}

export type ProducerEventName = keyof ProducerEvents;

/** A snapshot of the producer's state. */
export interface ProducerStatus {
  /** Records accepted and not settled yet (never above `maxBufferedRecords`). */
  bufferedRecords: number;
  /** `put()` calls waiting for room. */
  waitingPuts: number;
  /** Accepted records not in flight (in shard queues or waiting for the shard map). */
  queuedRecords: number;
  inFlightRequests: number;
  /** Open shards in the current shard map (0 before it is loaded). */
  shards: number;
  closed: boolean;
}

enum RecordState {
  Waiting = 0,
  Accepted = 1,
  Settled = 2,
}

/**
 * One user record. Its fields double as a KPL `UserRecord` (partitionKey, explicitHashKey, data), so it
 * goes to the Aggregator without a copy.
 */
class PendingRecord {
  state = RecordState.Waiting;
  hashKey: bigint | undefined;
  attempts = 0;
  epoch = 0;
  enqueuedAt = 0;
  resolve!: (receipt: PutReceipt) => void;
  reject!: (error: unknown) => void;
  /** Set by writable(): called when the record is accepted after waiting for room. */
  onAccepted: (() => void) | undefined;

  constructor(
    readonly data: Uint8Array,
    readonly partitionKey: string,
    readonly explicitHashKey: string | undefined,
    readonly keyBytes: number,
    /** data + partition key, as Kinesis counts a record. */
    readonly bytes: number,
  ) {}
}

class ShardState {
  readonly queue = new Deque<PendingRecord>();
  queuedBytes = 0;
  inFlight = 0;
  /** No request for this shard before this time (backoff after failures). */
  notBefore = 0;
  open = true;
  /**
   * Ordered mode: a closed shard whose hash range overlaps this one still has a call in flight. Its
   * records may fail and come back to this queue's head, so nothing here may be sent before they do.
   */
  held = false;
  constructor(
    readonly id: string,
    /** Hash-key range, both ends inclusive. */
    readonly start: bigint,
    readonly end: bigint,
    readonly limiter: RateLimiter | undefined,
  ) {}
}

/** A PutRecords call being built or in flight. Parallel arrays, one slot per entry. */
interface PutRequest {
  wire: PutRecordsRequestEntry[];
  /** A plain entry's record, or the records of an aggregate / pack in sub-sequence order. */
  groups: Array<PendingRecord | PendingRecord[]>;
  entryShards: ShardState[];
  /** Distinct shards touched (each had its inFlight incremented). */
  shards: ShardState[];
  bytes: number;
  records: number;
  startedAt: number;
}

/** Records of one shard to send again after a failure, and the AWS error code that failed them. */
interface ShardRetry {
  records: PendingRecord[];
  errorCode: string;
}

interface FlushWaiter {
  epoch: number;
  resolve: () => void;
}

interface Budget {
  records: number;
  bytes: number;
  bytesFull: boolean;
}

const UNPACED: Budget = Object.freeze({
  records: Number.POSITIVE_INFINITY,
  bytes: Number.POSITIVE_INFINITY,
  bytesFull: true,
});

type Framing = 'concat' | 'json-array' | undefined;

function framingOf(codec: Codec): Framing {
  if (codec.name === codecs.jsonl.name || codec.name === codecs.msgpack.name) {
    return codec.framed ? 'concat' : undefined;
  }
  if (codec.name === codecs['json-array'].name) return codec.framed ? 'json-array' : undefined;
  // A custom framed codec's layout is unknown, so its items are sent one per record.
  return undefined;
}

function invalidRecord(
  field: string,
  message: string,
  details: Record<string, unknown> = {},
): ShardlineError {
  return new ShardlineError(ErrorCodes.INVALID_RECORD, `${field} ${message}`, {
    details: { field, ...details },
  });
}

const THROTTLE_CODES = new Set(['ProvisionedThroughputExceededException', 'KMSThrottlingException']);

/**
 * A Kinesis producer. See {@link ProducerOptions} and the package README for the guarantees.
 *
 * ```ts
 * const producer = new Producer({ streamName: 'orders', kinesis: { region: 'eu-west-1' } });
 * const { shardId, sequenceNumber } = await producer.put({ id: 42 }, { partitionKey: 'user-42' });
 * await producer.close();
 * ```
 */
export class Producer<T = unknown> {
  readonly options: ResolvedProducerOptions<T>;
  readonly #client: KinesisClient;
  readonly #ownClient: boolean;
  readonly #logger: Logger;
  readonly #framing: Framing;
  readonly #ordered: boolean;
  readonly #abort = new AbortController();
  readonly #metrics: ProducerMetrics | undefined;

  #router: ShardRouter | undefined;
  #shards = new Map<string, ShardState>();
  #shardList: ShardState[] = [];
  #rr = 0;
  readonly #unrouted = new Deque<PendingRecord>();
  /** Ordered mode: shards gone from the map with calls still in flight; they hold the shards they overlap. */
  #draining: ShardState[] = [];
  #refreshing: Promise<void> | undefined;
  #refreshAgain: ProducerEvents['shards.refreshed']['reason'] | undefined;
  #lastMisrouteRefresh = Number.NEGATIVE_INFINITY;
  #refreshTimer: NodeJS.Timeout | undefined;
  #badMapTimer: NodeJS.Timeout | undefined;

  readonly #waiting = new Deque<PendingRecord>();
  #buffered = 0;
  #queued = 0;
  #queuedBytes = 0;
  #inFlight = 0;
  readonly #requests = new Set<PutRequest>();

  #epoch = 0;
  readonly #epochCounts = new Map<number, number>();
  #flushWaiters: FlushWaiter[] = [];

  #pumpScheduled = false;
  readonly #pumpTask = () => this.#pump();
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeAt = Number.POSITIVE_INFINITY;

  #closed = false;
  #stopped = false;
  #closing: Promise<void> | undefined;
  readonly #listeners: { [K in ProducerEventName]?: Set<(event: ProducerEvents[K]) => void> } = {};
  readonly #onSignalAbort = () => this.#stop(abortError(this.options.signal!));

  /** @throws ShardlineOptionError naming the first invalid option. */
  constructor(options: ProducerOptions<T>) {
    this.options = resolveProducerOptions(options);
    const o = this.options;
    // First: a registry holding a clashing metric throws here, before the client is built.
    this.#metrics =
      o.metrics === undefined
        ? undefined
        : new ProducerMetrics({
            registry: o.metrics.registry,
            stream: o.streamName ?? (o.streamArn as string),
            on: (event, listener) => this.on(event, listener),
            bufferedRecords: () => this.#buffered,
          });
    this.#ownClient = !isKinesisClient(o.kinesis);
    // The producer retries failed entries itself, one by one with backoff and pacing; the SDK's own
    // retries beneath would resend whole batches and hide throttling from the pacing. A user who sets
    // maxAttempts (or passes a ready client) keeps their choice.
    this.#client = createKinesisClient(
      this.#ownClient && (o.kinesis as KinesisClientConfig).maxAttempts === undefined
        ? { ...(o.kinesis as KinesisClientConfig), maxAttempts: 1 }
        : o.kinesis,
    );
    this.#logger = o.logger;
    this.#framing = o.aggregate ? undefined : framingOf(o.codec as Codec);
    this.#ordered = o.maxInFlightPerShard === 1;
    if (o.signal !== undefined) {
      if (o.signal.aborted) this.#stop(abortError(o.signal));
      else o.signal.addEventListener('abort', this.#onSignalAbort, { once: true });
    }
  }

  // ---- public API ------------------------------------------------------------------------------------

  /**
   * Sends one item. Resolves with its receipt once Kinesis acknowledged it; rejects with a
   * {@link ShardlineError}: `ERR_INVALID_RECORD` / `ERR_CODEC` for a record that can never be sent (at
   * once; nothing else is affected), `ERR_CLOSED` after `close()`, `ERR_ABORTED` on abort, or the
   * classified Kinesis error (e.g. `ERR_THROTTLED`, `ERR_NOT_FOUND`) when its entry is out of retries or
   * failed for good; `details.errorCode` then holds the AWS error code.
   *
   * When `maxBufferedRecords` records are unsettled, the returned promise first waits (FIFO) for room:
   * awaiting each `put()` in turn, or using {@link writable}, applies the backpressure.
   */
  put(data: T, options?: PutOptions): Promise<PutReceipt> {
    let record: PendingRecord;
    try {
      this.#checkOpen();
      record = this.#makeRecord(data, options);
    } catch (error) {
      return Promise.reject(error);
    }
    const promise = new Promise<PutReceipt>((resolve, reject) => {
      record.resolve = resolve;
      record.reject = reject;
    });
    this.#submit(record);
    return promise;
  }

  /**
   * An object-mode Writable: each chunk is a {@link ProducerRecord} `{ data, partitionKey?,
   * explicitHashKey? }` (an explicit shape, so an item that happens to have a `data` field is never
   * mistaken for a record). A write completes when the record is accepted into the buffer, so the
   * stream's backpressure follows `maxBufferedRecords` (plus the stream's own `highWaterMark`). `end()`
   * flushes: 'finish' fires once every written record is acknowledged. The first record that fails (bad
   * input, out of retries) destroys the stream with its error. Ending the stream does not close the
   * producer.
   */
  writable(options: { highWaterMark?: number } = {}): Writable {
    const highWaterMark = options?.highWaterMark ?? 16;
    if (!Number.isInteger(highWaterMark) || highWaterMark < 1) {
      throw new ShardlineOptionError(
        'highWaterMark',
        `must be an integer >= 1 (got ${String(options.highWaterMark)})`,
      );
    }
    const producer = this;
    let failure: unknown;
    const onError = (error: unknown): void => {
      if (failure === undefined) failure = error;
      stream.destroy(error as Error);
    };
    const stream = new Writable({
      objectMode: true,
      highWaterMark,
      write(chunk: unknown, _encoding, callback) {
        producer.#write(chunk, callback, onError);
      },
      final(callback) {
        producer.flush().then(
          () => callback(failure === undefined ? null : (failure as Error)),
          (error: unknown) => callback(error as Error),
        );
      },
    });
    return stream;
  }

  /**
   * Resolves when every record accepted before the call (including `put()` calls still waiting for room)
   * is settled, acknowledged or rejected. Lingering is skipped meanwhile; pacing and backoff still apply.
   * Never rejects: each record's outcome is on its own promise.
   */
  flush(): Promise<void> {
    const epoch = this.#epoch++;
    if (this.#settledThrough(epoch)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#flushWaiters.push({ epoch, resolve });
      this.#schedulePump();
    });
  }

  /**
   * Refuses new records (`put()` rejects `ERR_CLOSED`), flushes, stops the timers and any shard-map
   * refresh, and destroys the Kinesis client when the producer built it. Idempotent: every call returns the same promise. To give
   * up on pending records instead, abort the `signal`.
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#closing = this.flush().then(() => {
        this.#stopped = true;
        this.#clearTimers();
        // Nothing is in flight but a shard-map refresh, which may be retrying a failing ListShards (forever
        // by default): end it, or it would keep calling, and keep the process alive, after close().
        this.#abort.abort(new ShardlineError(ErrorCodes.CLOSED, 'producer is closed'));
        this.options.signal?.removeEventListener('abort', this.#onSignalAbort);
        this.#metrics?.close();
        if (this.#ownClient) this.#client.destroy();
      });
    }
    return this.#closing;
  }

  /** Subscribes to an event; returns the unsubscribe function. A listener that throws is logged. */
  on<K extends ProducerEventName>(event: K, listener: (event: ProducerEvents[K]) => void): () => void {
    if (typeof listener !== 'function') {
      throw new ShardlineError(ErrorCodes.INVALID_OPTION, `listener for '${event}' must be a function`);
    }
    let set = this.#listeners[event] as Set<(e: ProducerEvents[K]) => void> | undefined;
    if (set === undefined) {
      set = new Set();
      (this.#listeners as Record<string, unknown>)[event] = set;
    }
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  /** Records accepted and not settled yet (at most `maxBufferedRecords`). */
  get bufferedRecords(): number {
    return this.#buffered;
  }

  status(): ProducerStatus {
    return {
      bufferedRecords: this.#buffered,
      waitingPuts: this.#waiting.length,
      queuedRecords: this.#queued,
      inFlightRequests: this.#inFlight,
      shards: this.#shardList.length,
      closed: this.#closed,
    };
  }

  // ---- intake ----------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#stopped && this.options.signal?.aborted) throw abortError(this.options.signal);
    if (this.#closed) throw new ShardlineError(ErrorCodes.CLOSED, 'producer is closed: put() after close()');
  }

  #makeRecord(data: T, options: PutOptions | undefined): PendingRecord {
    let explicitHashKey: string | undefined;
    let hashKey: bigint | undefined;
    if (options !== undefined && options !== null) {
      if (typeof options !== 'object') {
        throw invalidRecord(
          'options',
          `must be an object { partitionKey?, explicitHashKey? } (got ${typeof options})`,
        );
      }
      if (options.explicitHashKey !== undefined) {
        hashKey = parseExplicitHashKey(options.explicitHashKey);
        explicitHashKey = options.explicitHashKey;
      }
    }
    const key = options?.partitionKey;
    // randomUUID draws from a cached entropy pool: cheap per record, and its MD5 spreads uniformly.
    const partitionKey = key === undefined ? randomUUID() : validatePartitionKey(key);
    const payload = this.options.codec.encodeItem(data);
    const keyBytes = key === undefined ? partitionKey.length : Buffer.byteLength(partitionKey, 'utf8');
    const bytes = payload.length + keyBytes;
    if (this.options.aggregate) {
      const alone = bytes + keyBytes + (explicitHashKey?.length ?? 0) + AGGREGATE_OVERHEAD_BYTES;
      if (alone > MAX_RECORD_BYTES) {
        throw invalidRecord(
          'data',
          `is too large to aggregate: ${payload.length} bytes of data + ${keyBytes} bytes of partition key + ` +
            `KPL framing exceed the ${MAX_RECORD_BYTES}-byte Kinesis record limit`,
          { bytes: alone, maxBytes: MAX_RECORD_BYTES },
        );
      }
    } else if (bytes > MAX_RECORD_BYTES) {
      throw invalidRecord(
        'data',
        `is too large: ${payload.length} bytes of data + ${keyBytes} bytes of partition key = ${bytes}, over the ` +
          `${MAX_RECORD_BYTES}-byte Kinesis record limit`,
        { bytes, maxBytes: MAX_RECORD_BYTES },
      );
    }
    const record = new PendingRecord(payload, partitionKey, explicitHashKey, keyBytes, bytes);
    record.hashKey = hashKey;
    return record;
  }

  #write(chunk: unknown, callback: (error?: Error | null) => void, onError: (error: unknown) => void): void {
    let record: PendingRecord;
    try {
      this.#checkOpen();
      if (chunk === null || typeof chunk !== 'object' || !('data' in chunk)) {
        throw invalidRecord('chunk', 'must be an object { data, partitionKey?, explicitHashKey? }');
      }
      const c = chunk as ProducerRecord<T>;
      record = this.#makeRecord(c.data, c);
    } catch (error) {
      callback(error as Error);
      return;
    }
    const promise = new Promise<PutReceipt>((resolve, reject) => {
      record.resolve = resolve;
      record.reject = reject;
    });
    promise.then(undefined, onError);
    if (this.#submit(record)) callback();
    else record.onAccepted = callback;
  }

  /** Counts the record for flush() and admits it, or queues it for room. Returns true if admitted. */
  #submit(record: PendingRecord): boolean {
    record.epoch = this.#epoch;
    this.#epochCounts.set(record.epoch, (this.#epochCounts.get(record.epoch) ?? 0) + 1);
    if (this.#waiting.length > 0 || this.#buffered >= this.options.maxBufferedRecords) {
      this.#waiting.push(record);
      this.#schedulePump();
      return false;
    }
    this.#admit(record);
    return true;
  }

  #admit(record: PendingRecord): void {
    record.state = RecordState.Accepted;
    this.#buffered++;
    record.enqueuedAt = performance.now();
    this.#queued++;
    this.#queuedBytes += record.bytes;
    this.#route(record, false);
    this.#schedulePump();
    const accepted = record.onAccepted;
    if (accepted !== undefined) {
      record.onAccepted = undefined;
      accepted();
    }
  }

  // ---- settling --------------------------------------------------------------------------------------

  #settle(record: PendingRecord, receipt: PutReceipt | undefined, error?: unknown): void {
    if (record.state === RecordState.Settled) return;
    if (record.state === RecordState.Accepted) this.#buffered--;
    record.state = RecordState.Settled;
    const left = (this.#epochCounts.get(record.epoch) ?? 1) - 1;
    if (left === 0) this.#epochCounts.delete(record.epoch);
    else this.#epochCounts.set(record.epoch, left);
    if (receipt !== undefined) record.resolve(receipt);
    else record.reject(error);
    while (this.#waiting.length > 0 && this.#buffered < this.options.maxBufferedRecords && !this.#stopped) {
      this.#admit(this.#waiting.shift()!);
    }
    if (left === 0 && this.#flushWaiters.length > 0) this.#releaseFlushWaiters();
  }

  /** Whether every record of epochs <= `epoch` is settled. Map keys are epochs in increasing order. */
  #settledThrough(epoch: number): boolean {
    for (const key of this.#epochCounts.keys()) return key > epoch;
    return true;
  }

  #releaseFlushWaiters(): void {
    const still: FlushWaiter[] = [];
    for (const waiter of this.#flushWaiters) {
      if (this.#settledThrough(waiter.epoch)) waiter.resolve();
      else still.push(waiter);
    }
    this.#flushWaiters = still;
  }

  #rejectMany(records: Iterable<PendingRecord>, error: ShardlineError): number {
    let n = 0;
    for (const record of records) {
      if (record.state === RecordState.Settled) continue;
      n++;
      this.#settle(record, undefined, error);
    }
    return n;
  }

  // ---- routing ---------------------------------------------------------------------------------------

  /** Puts an accepted record in its shard queue (tail, or head for a retry), or in #unrouted. */
  #route(record: PendingRecord, front: boolean): void {
    const router = this.#router;
    if (router === undefined) {
      this.#unroute(record, front);
      this.#ensureShardMap();
      return;
    }
    let shard: ShardState | undefined;
    if (this.#shardList.length === 1) {
      shard = this.#shardList[0];
    } else {
      try {
        record.hashKey ??= partitionKeyToHashKey(record.partitionKey);
        shard = this.#shards.get(router.shardForHashKey(record.hashKey));
      } catch (error) {
        // A gap in the shard map (mid-resharding): wait for a refresh.
        this.#logger.debug({ err: error }, 'producer: no open shard for a record; refreshing the shard map');
        this.#unroute(record, front);
        this.#scheduleBadMapRefresh('gap');
        return;
      }
    }
    if (shard === undefined) {
      this.#unroute(record, front);
      this.#scheduleBadMapRefresh('gap');
      return;
    }
    if (front) shard.queue.unshift(record);
    else shard.queue.push(record);
    shard.queuedBytes += record.bytes;
  }

  /**
   * Keeps a record until a shard map can place it. A retry goes to the head (its key-mates that arrived
   * meanwhile are behind it); #requeue hands retries over last first, so they keep their order.
   */
  #unroute(record: PendingRecord, front: boolean): void {
    if (front) this.#unrouted.unshift(record);
    else this.#unrouted.push(record);
  }

  #ensureShardMap(): void {
    if (this.#router === undefined && this.#refreshing === undefined && !this.#stopped) {
      void this.#refresh('initial');
    }
  }

  #scheduleBadMapRefresh(reason: 'gap'): void {
    if (this.#badMapTimer !== undefined || this.#stopped) return;
    this.#badMapTimer = setTimeout(() => {
      this.#badMapTimer = undefined;
      void this.#refresh(reason);
    }, BAD_MAP_RETRY_MS);
  }

  #refresh(reason: ProducerEvents['shards.refreshed']['reason']): Promise<void> {
    if (this.#refreshing !== undefined) {
      this.#refreshAgain ??= reason;
      return this.#refreshing;
    }
    this.#refreshing = this.#loadShardMap(reason).finally(() => {
      this.#refreshing = undefined;
      let again = this.#refreshAgain;
      this.#refreshAgain = undefined;
      // Records admitted while a failed first load was rejecting the others still need a shard map.
      if (again === undefined && this.#router === undefined && this.#unrouted.length > 0) again = 'initial';
      if (again !== undefined && !this.#stopped) void this.#refresh(again);
    });
    return this.#refreshing;
  }

  async #loadShardMap(reason: ProducerEvents['shards.refreshed']['reason']): Promise<void> {
    let open: Shard[];
    try {
      open = await retry(() => this.#listOpenShards(), {
        retries: this.options.retry.retries,
        backoffMs: this.options.retry.backoffMs,
        signal: this.#abort.signal,
        shouldRetry: isRetriable,
        onRetry: (error, attempt, delayMs) =>
          this.#logger.warn({ err: error, attempt, delayMs }, 'producer: ListShards failed; retrying'),
      });
    } catch (error) {
      if (this.#stopped) return;
      const failure = this.#describeCallError(error, 'ListShards');
      if (this.#router === undefined) {
        // Nothing can be sent without a shard map: the waiting records fail now, not after endless retries.
        const unrouted = this.#drainUnrouted();
        for (const record of unrouted) {
          this.#queued--;
          this.#queuedBytes -= record.bytes;
        }
        const rejected = this.#rejectMany(unrouted, failure);
        this.#emit('error', { error: failure, records: rejected });
      } else {
        this.#logger.warn({ err: failure }, 'producer: shard map refresh failed; keeping the current one');
        this.#emit('error', { error: failure, records: 0 });
      }
      return;
    }
    if (this.#stopped) return;
    let router: ShardRouter;
    try {
      router = new ShardRouter(
        open.map((s) => ({
          shardId: s.ShardId!,
          startingHashKey: s.HashKeyRange!.StartingHashKey!,
          endingHashKey: s.HashKeyRange!.EndingHashKey!,
        })),
      );
    } catch (error) {
      // Mid-resharding a listing can show overlapping or no open shards: look again shortly.
      this.#logger.debug({ err: error }, 'producer: unusable shard map; retrying');
      this.#scheduleBadMapRefresh('gap');
      return;
    }
    this.#applyShardMap(router, open, reason);
  }

  async #listOpenShards(): Promise<Shard[]> {
    const open: Shard[] = [];
    let nextToken: string | undefined;
    do {
      const input: ListShardsCommandInput =
        nextToken !== undefined
          ? { NextToken: nextToken }
          : this.options.streamArn !== undefined
            ? { StreamARN: this.options.streamArn }
            : { StreamName: this.options.streamName };
      const out = await this.#client.send(new ListShardsCommand(input), { abortSignal: this.#abort.signal });
      for (const shard of out.Shards ?? []) {
        // kinesalite ignores ShardFilter, so closed shards are filtered here for both engines.
        if (shard.SequenceNumberRange?.EndingSequenceNumber === undefined) open.push(shard);
      }
      nextToken = out.NextToken;
    } while (nextToken !== undefined);
    return open;
  }

  #applyShardMap(
    router: ShardRouter,
    open: Shard[],
    reason: ProducerEvents['shards.refreshed']['reason'],
  ): void {
    const limits = this.options.rateLimitPerShard;
    const paced = Number.isFinite(limits.records) || Number.isFinite(limits.bytes);
    const next = new Map<string, ShardState>();
    const added: string[] = [];
    for (const shard of open) {
      const id = shard.ShardId!;
      let state = this.#shards.get(id);
      if (state === undefined) {
        added.push(id);
        state = new ShardState(
          id,
          BigInt(shard.HashKeyRange!.StartingHashKey!),
          BigInt(shard.HashKeyRange!.EndingHashKey!),
          paced ? new RateLimiter({ recordsPerSec: limits.records, bytesPerSec: limits.bytes }) : undefined,
        );
      }
      next.set(id, state);
    }
    const removed: ShardState[] = [];
    for (const [id, state] of this.#shards) if (!next.has(id)) removed.push(state);
    this.#router = router;
    this.#shards = next;
    this.#shardList = router.shardIds.map((id) => next.get(id)!);
    this.#rr = 0;
    // Records queued for closed shards, then those that had no shard: in order, to their new shards.
    for (const state of removed) {
      state.open = false;
      state.queuedBytes = 0;
      for (const record of state.queue.drain()) this.#route(record, false);
      // Ordered mode: a closed shard's call in flight may still fail, and its records then go to the head
      // of the shards that took over its range. Until it is answered those shards send nothing, or a
      // later record of a key could reach Kinesis before an earlier one that is retried.
      if (this.#ordered && state.inFlight > 0) this.#draining.push(state);
    }
    this.#updateHolds();
    for (const record of this.#drainUnrouted()) this.#route(record, false);
    if (this.#refreshTimer === undefined && this.options.shardRefreshIntervalMs > 0 && !this.#stopped) {
      this.#refreshTimer = setInterval(
        () => void this.#refresh('periodic'),
        this.options.shardRefreshIntervalMs,
      );
      this.#refreshTimer.unref();
    }
    this.#logger.debug({ reason, shards: this.#shardList.length }, 'producer: shard map loaded');
    this.#emit('shards.refreshed', {
      shardIds: router.shardIds,
      added,
      removed: removed.map((s) => s.id),
      reason,
    });
    this.#schedulePump();
  }

  #drainUnrouted(): PendingRecord[] {
    return this.#unrouted.drain();
  }

  /** Marks the open shards overlapping a closed shard that still has a call in flight (ordered mode). */
  #updateHolds(): void {
    const draining = this.#draining;
    for (const shard of this.#shardList) {
      shard.held = draining.some((d) => d.start <= shard.end && shard.start <= d.end);
    }
  }

  // ---- sending ---------------------------------------------------------------------------------------

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#stopped) return;
    this.#pumpScheduled = true;
    queueMicrotask(this.#pumpTask);
  }

  #pump(): void {
    this.#pumpScheduled = false;
    if (this.#stopped || this.#router === undefined) return;
    const now = performance.now();
    while (this.#inFlight < this.options.maxInFlightRequests) {
      if (!this.#forced() && !this.#anyDue(now)) break;
      const request = this.#build(now);
      if (request === undefined) break;
      this.#send(request);
    }
    this.#armWake(now);
  }

  /**
   * Reasons not to linger: a flush, a full buffer (no more records can join the batch, so waiting only
   * delays them), or enough queued for a full request.
   */
  #forced(): boolean {
    if (this.#flushWaiters.length > 0 || this.#buffered >= this.options.maxBufferedRecords) return true;
    if (this.#queuedBytes >= PUT_RECORDS_MAX_BYTES) return true;
    return !this.options.aggregate && this.#framing === undefined && this.#queued >= PUT_RECORDS_MAX_ENTRIES;
  }

  #anyDue(now: number): boolean {
    const deadline = now - this.options.lingerMs;
    for (const shard of this.#shardList) {
      const head = shard.queue.peek();
      if (head !== undefined && head.enqueuedAt <= deadline) return true;
      // A shard with a full aggregate's worth waiting need not linger either.
      if (shard.queuedBytes >= MAX_RECORD_BYTES) return true;
    }
    return false;
  }

  #build(now: number): PutRequest | undefined {
    const request: PutRequest = {
      wire: [],
      groups: [],
      entryShards: [],
      shards: [],
      bytes: 0,
      records: 0,
      startedAt: now,
    };
    const list = this.#shardList;
    const n = list.length;
    const maxPerShard = this.options.maxInFlightPerShard;
    for (let k = 0; k < n; k++) {
      if (request.wire.length >= PUT_RECORDS_MAX_ENTRIES || request.bytes >= PUT_RECORDS_MAX_BYTES) break;
      const shard = list[(this.#rr + k) % n]!;
      if (shard.queue.length === 0 || shard.inFlight >= maxPerShard || shard.notBefore > now) continue;
      if (shard.held) continue;
      const budget = this.#budget(shard);
      if (!this.#paceReady(shard, budget)) continue;
      const took = this.options.aggregate
        ? this.#takeAggregates(shard, request, budget)
        : this.#framing !== undefined
          ? this.#takePacks(shard, request, budget)
          : this.#takePlain(shard, request, budget);
      if (took > 0) {
        shard.inFlight++;
        request.shards.push(shard);
      }
    }
    this.#rr = n === 0 ? 0 : (this.#rr + 1) % n;
    return request.wire.length === 0 ? undefined : request;
  }

  /**
   * Record and byte tokens the shard may spend now: what its buckets hold minus the reserve. `bytesFull`:
   * the byte bucket is full, which lets one entry larger than the usable budget go (it then leaves a debt).
   */
  #budget(shard: ShardState): Budget {
    const limiter = shard.limiter;
    if (limiter === undefined) return UNPACED;
    const r = limiter.records;
    const b = limiter.bytes;
    let bytesFull = true;
    let bytes = Number.POSITIVE_INFINITY;
    if (b !== undefined) {
      const available = b.available();
      bytesFull = available >= b.capacity;
      bytes = available - b.capacity * PACING_RESERVE;
    }
    return {
      records:
        r === undefined ? Number.POSITIVE_INFINITY : Math.floor(r.available() - r.capacity * PACING_RESERVE),
      bytes,
      bytesFull,
    };
  }

  /**
   * The least a paced shard waits for before it sends: a share of its buckets (or all it has queued, if
   * less), so a shard at its limit sends a call every few tens of milliseconds, not one per token.
   */
  #paceNeed(shard: ShardState, head: PendingRecord): { records: number; bytes: number } {
    const limiter = shard.limiter!;
    const packs = this.options.aggregate || this.#framing !== undefined;
    const r = limiter.records;
    const b = limiter.bytes;
    const records =
      r === undefined || packs
        ? 1
        : Math.max(1, Math.min(shard.queue.length, Math.ceil(r.capacity * PACING_MIN_BATCH)));
    let bytes = 0;
    if (b !== undefined) {
      const headBytes = this.options.aggregate
        ? head.bytes + head.keyBytes + AGGREGATE_OVERHEAD_BYTES
        : head.bytes;
      const batch = Math.min(shard.queuedBytes, Math.ceil(b.capacity * PACING_MIN_BATCH));
      bytes = Math.min(b.capacity, Math.max(headBytes, batch));
    }
    return { records, bytes };
  }

  #paceReady(shard: ShardState, budget: Budget): boolean {
    if (shard.limiter === undefined) return true;
    const need = this.#paceNeed(shard, shard.queue.peek()!);
    return budget.records >= need.records && (budget.bytesFull || budget.bytes >= need.bytes);
  }

  #dequeue(shard: ShardState): PendingRecord {
    const record = shard.queue.shift()!;
    shard.queuedBytes -= record.bytes;
    this.#queued--;
    this.#queuedBytes -= record.bytes;
    return record;
  }

  #takePlain(shard: ShardState, request: PutRequest, budget: Budget): number {
    let recordTokens = budget.records;
    let byteTokens = budget.bytes;
    // One request must not carry two entries of one key in ordered mode: entry i can fail while a later
    // entry of the same key succeeds, and nothing can restore the order after that.
    const keys = this.#ordered ? new Set<string>() : undefined;
    let took = 0;
    let tookBytes = 0;
    while (request.wire.length < PUT_RECORDS_MAX_ENTRIES) {
      const record = shard.queue.peek();
      if (record === undefined) break;
      if (request.bytes + record.bytes > PUT_RECORDS_MAX_BYTES) break;
      if (keys?.has(record.partitionKey)) break;
      if (recordTokens < 1) break;
      // A record larger than the whole byte bucket goes alone once the bucket is full (then leaves debt).
      if (record.bytes > byteTokens && !(took === 0 && budget.bytesFull)) break;
      this.#dequeue(shard);
      keys?.add(record.partitionKey);
      recordTokens--;
      byteTokens -= record.bytes;
      request.wire.push({
        Data: record.data,
        PartitionKey: record.partitionKey,
        ExplicitHashKey: record.explicitHashKey,
      });
      request.groups.push(record);
      request.entryShards.push(shard);
      request.bytes += record.bytes;
      request.records++;
      took++;
      tookBytes += record.bytes;
    }
    if (took > 0) shard.limiter?.consume(took, tookBytes);
    return took;
  }

  /** Largest next entry for this shard given the request's room and the shard's byte tokens. */
  #entryRoom(request: PutRequest, byteTokens: number, bytesFull: boolean): number {
    const room = Math.min(MAX_RECORD_BYTES, PUT_RECORDS_MAX_BYTES - request.bytes);
    // With a full bucket, allow a full-size entry even if the bucket is smaller (it leaves a debt).
    return Math.floor(Math.min(room, bytesFull ? room : byteTokens));
  }

  #takeAggregates(shard: ShardState, request: PutRequest, budget: Budget): number {
    let recordTokens = budget.records;
    let byteTokens = budget.bytes;
    let entries = 0;
    let sent = 0;
    while (request.wire.length < PUT_RECORDS_MAX_ENTRIES && shard.queue.length > 0 && recordTokens >= 1) {
      // Ordered mode: one aggregate per shard per request (two could share keys; see #takePlain).
      if (this.#ordered && entries >= 1) break;
      const maxBytes = this.#entryRoom(request, byteTokens, budget.bytesFull && entries === 0);
      const head = shard.queue.peek()!;
      if (
        head.bytes + head.keyBytes + (head.explicitHashKey?.length ?? 0) + AGGREGATE_OVERHEAD_BYTES >
        maxBytes
      ) {
        break;
      }
      const aggregator = new Aggregator({ maxBytes });
      const members: PendingRecord[] = [];
      let finished: ReturnType<Aggregator['add']>;
      while (shard.queue.length > 0) {
        const record = shard.queue.peek()!;
        try {
          finished = aggregator.add(record);
        } catch {
          // Too large for what is left of this entry's room: it starts the next entry.
          break;
        }
        if (finished !== undefined) break;
        this.#dequeue(shard);
        members.push(record);
      }
      const aggregate = finished ?? aggregator.flush();
      if (aggregate === undefined || members.length === 0) break;
      const bytes = aggregate.data.length + members[0]!.keyBytes;
      request.wire.push({
        Data: aggregate.data,
        PartitionKey: aggregate.partitionKey,
        ExplicitHashKey: aggregate.explicitHashKey,
      });
      request.groups.push(members);
      request.entryShards.push(shard);
      request.bytes += bytes;
      request.records += members.length;
      recordTokens--;
      byteTokens -= bytes;
      entries++;
      sent += bytes;
    }
    if (entries > 0) shard.limiter?.consume(entries, sent);
    return entries;
  }

  /**
   * Framed codecs without aggregation: consecutive records of a shard share one Kinesis record, the
   * codec's own framing (jsonl lines, concatenated MessagePack values, one JSON array). The record's
   * partition key (and explicit hash key) is its first item's; consumers see one record and decode several
   * items, whose own keys are not carried (use `aggregate: true` when consumers need them).
   */
  #takePacks(shard: ShardState, request: PutRequest, budget: Budget): number {
    let recordTokens = budget.records;
    let byteTokens = budget.bytes;
    const array = this.#framing === 'json-array';
    let entries = 0;
    let sent = 0;
    while (request.wire.length < PUT_RECORDS_MAX_ENTRIES && shard.queue.length > 0 && recordTokens >= 1) {
      if (this.#ordered && entries >= 1) break;
      const maxBytes = this.#entryRoom(request, byteTokens, budget.bytesFull && entries === 0);
      const first = shard.queue.peek()!;
      if (first.bytes > maxBytes) break;
      // json-array: each item's payload is "[item]"; a pack is "[" + items joined by "," + "]".
      let size = array ? 2 : 0;
      let count = 0;
      while (count < shard.queue.length) {
        const record = shard.queue.at(count)!;
        const added = array ? record.data.length - 2 + (count > 0 ? 1 : 0) : record.data.length;
        if (count > 0 && size + added + first.keyBytes > maxBytes) break;
        size += added;
        count++;
      }
      const members = new Array<PendingRecord>(count);
      const data = new Uint8Array(size);
      let pos = 0;
      if (array) data[pos++] = 0x5b;
      for (let i = 0; i < count; i++) {
        const record = this.#dequeue(shard);
        members[i] = record;
        if (array) {
          if (i > 0) data[pos++] = 0x2c;
          data.set(record.data.subarray(1, record.data.length - 1), pos);
          pos += record.data.length - 2;
        } else {
          data.set(record.data, pos);
          pos += record.data.length;
        }
      }
      if (array) data[pos] = 0x5d;
      const bytes = size + first.keyBytes;
      request.wire.push({
        Data: data,
        PartitionKey: first.partitionKey,
        ExplicitHashKey: first.explicitHashKey,
      });
      request.groups.push(members);
      request.entryShards.push(shard);
      request.bytes += bytes;
      request.records += count;
      recordTokens--;
      byteTokens -= bytes;
      entries++;
      sent += bytes;
    }
    if (entries > 0) shard.limiter?.consume(entries, sent);
    return entries;
  }

  /** Arms one timer for the earliest moment something could be sent: linger end, backoff end, tokens. */
  #armWake(now: number): void {
    let at = Number.POSITIVE_INFINITY;
    if (this.#inFlight < this.options.maxInFlightRequests) {
      const forced = this.#forced();
      for (const shard of this.#shardList) {
        const head = shard.queue.peek();
        // A held shard is woken by the answer that releases it, not by a timer.
        if (head === undefined || shard.inFlight >= this.options.maxInFlightPerShard || shard.held) continue;
        let t = Math.max(shard.notBefore, forced ? now : head.enqueuedAt + this.options.lingerMs);
        const limiter = shard.limiter;
        if (limiter !== undefined) {
          const need = this.#paceNeed(shard, head);
          const reserveRecords = (limiter.records?.capacity ?? 0) * PACING_RESERVE;
          const reserveBytes = (limiter.bytes?.capacity ?? 0) * PACING_RESERVE;
          t = Math.max(t, now + limiter.delayMs(need.records + reserveRecords, need.bytes + reserveBytes));
        }
        if (t < at) at = t;
      }
    }
    if (at === Number.POSITIVE_INFINITY) {
      if (this.#wakeTimer !== undefined) {
        clearTimeout(this.#wakeTimer);
        this.#wakeTimer = undefined;
        this.#wakeAt = Number.POSITIVE_INFINITY;
      }
      return;
    }
    if (this.#wakeTimer !== undefined && this.#wakeAt <= at) return;
    if (this.#wakeTimer !== undefined) clearTimeout(this.#wakeTimer);
    this.#wakeAt = at;
    // At least 1 ms: rounding in the token arithmetic must not turn into a busy loop.
    this.#wakeTimer = setTimeout(
      () => {
        this.#wakeTimer = undefined;
        this.#wakeAt = Number.POSITIVE_INFINITY;
        this.#pump();
      },
      Math.max(1, Math.ceil(at - now)),
    );
  }

  #send(request: PutRequest): void {
    this.#metrics?.requestSent();
    this.#inFlight++;
    this.#requests.add(request);
    const input: PutRecordsCommandInput =
      this.options.streamArn !== undefined
        ? { StreamARN: this.options.streamArn, Records: request.wire }
        : { StreamName: this.options.streamName, Records: request.wire };
    this.#client.send(new PutRecordsCommand(input), { abortSignal: this.#abort.signal }).then(
      (output) => this.#onAnswer(request, output),
      (error: unknown) => this.#onCallError(request, error),
    );
  }

  #finishRequest(request: PutRequest): void {
    this.#inFlight--;
    this.#requests.delete(request);
    let drained = false;
    for (const shard of request.shards) {
      shard.inFlight--;
      if (!shard.open && shard.inFlight === 0 && this.#draining.includes(shard)) {
        this.#draining = this.#draining.filter((d) => d !== shard);
        drained = true;
      }
    }
    // The answer's failed records are re-queued right after this, before the next pump: they go to the
    // head of the shards this releases.
    if (drained) this.#updateHolds();
  }

  #onAnswer(request: PutRequest, output: PutRecordsCommandOutput): void {
    this.#finishRequest(request);
    if (this.#stopped) return;
    const results = output.Records ?? [];
    const retries = new Map<ShardState, ShardRetry>();
    const perShard: Record<string, number> = {};
    let acknowledged = 0;
    let acknowledgedBytes = 0;
    let failedEntries = 0;
    let misrouted = false;
    for (let i = 0; i < request.wire.length; i++) {
      const result = results[i];
      const group = request.groups[i]!;
      const shard = request.entryShards[i]!;
      perShard[shard.id] = (perShard[shard.id] ?? 0) + 1;
      if (result === undefined || result.ErrorCode !== undefined || result.SequenceNumber === undefined) {
        failedEntries++;
        const code = result?.ErrorCode ?? 'InternalFailure';
        const message = result?.ErrorMessage ?? (result === undefined ? 'no result for this entry' : '');
        this.#entryFailed(group, shard, code, message, undefined, retries);
        continue;
      }
      const shardId = result.ShardId ?? shard.id;
      if (shardId !== shard.id) misrouted = true;
      const sequenceNumber = result.SequenceNumber;
      if (Array.isArray(group)) {
        for (let j = 0; j < group.length; j++) {
          acknowledgedBytes += group[j]!.bytes;
          this.#settle(group[j]!, { shardId, sequenceNumber, subSequenceNumber: j });
        }
        acknowledged += group.length;
      } else {
        acknowledgedBytes += group.bytes;
        this.#settle(group, { shardId, sequenceNumber });
        acknowledged++;
      }
    }
    this.#emit('put', {
      records: acknowledged,
      entries: request.wire.length,
      bytes: request.bytes,
      acknowledgedBytes,
      failedEntries,
      shards: perShard,
      durationMs: performance.now() - request.startedAt,
    });
    this.#requeue(retries);
    if (misrouted && performance.now() - this.#lastMisrouteRefresh >= MISROUTE_REFRESH_MIN_MS) {
      this.#lastMisrouteRefresh = performance.now();
      void this.#refresh('misrouted');
    }
    this.#schedulePump();
  }

  #onCallError(request: PutRequest, error: unknown): void {
    this.#finishRequest(request);
    if (this.#stopped) return;
    const classified = this.#describeCallError(error, 'PutRecords');
    if (!classified.retriable) {
      const all: PendingRecord[] = [];
      for (const group of request.groups) {
        if (Array.isArray(group)) all.push(...group);
        else all.push(group);
      }
      const rejected = this.#rejectMany(all, classified);
      this.#logger.error(
        { err: classified, records: rejected },
        'producer: PutRecords failed; records rejected',
      );
      this.#emit('error', { error: classified, records: rejected });
    } else {
      const retries = new Map<ShardState, ShardRetry>();
      const code =
        classified instanceof KinesisError && classified.awsName ? classified.awsName : classified.code;
      for (let i = 0; i < request.groups.length; i++) {
        this.#entryFailed(
          request.groups[i]!,
          request.entryShards[i]!,
          code,
          classified.message,
          classified,
          retries,
        );
      }
      this.#requeue(retries);
    }
    this.#schedulePump();
  }

  /** A Kinesis error for a whole call, with a clear message for a missing stream. */
  #describeCallError(error: unknown, operation: string): ShardlineError {
    const classified = classifyAwsError(error, operation);
    if (classified.code === ErrorCodes.NOT_FOUND) {
      const stream = this.options.streamArn ?? this.options.streamName;
      return new KinesisError(ErrorCodes.NOT_FOUND, `stream '${stream}' not found (${classified.message})`, {
        retriable: false,
        cause: error,
        awsName: classified instanceof KinesisError ? classified.awsName : undefined,
        details: { stream, operation },
      });
    }
    return classified;
  }

  /** Counts an attempt on each record of a failed entry: rejects those out of retries, queues the rest. */
  #entryFailed(
    group: PendingRecord | PendingRecord[],
    shard: ShardState,
    errorCode: string,
    errorMessage: string,
    classified: ShardlineError | undefined,
    retries: Map<ShardState, ShardRetry>,
  ): void {
    const records = Array.isArray(group) ? group : [group];
    let retry = retries.get(shard);
    for (const record of records) {
      if (record.state === RecordState.Settled) continue;
      record.attempts++;
      const kind = classified ?? classifyAwsError({ name: errorCode, message: errorMessage }, 'PutRecords');
      if (record.attempts > this.options.retry.retries || !kind.retriable) {
        const error = new KinesisError(
          kind.code,
          `record not written after ${record.attempts} attempt(s): ${errorCode}${errorMessage ? `: ${errorMessage}` : ''}`,
          {
            retriable: kind.retriable,
            cause: classified,
            awsName: errorCode,
            details: { errorCode, errorMessage, shardId: shard.id, attempts: record.attempts },
          },
        );
        this.#settle(record, undefined, error);
        this.#emit('error', { error, records: 1 });
        continue;
      }
      if (retry === undefined) {
        retry = { records: [], errorCode };
        retries.set(shard, retry);
      }
      retry.records.push(record);
    }
    if (THROTTLE_CODES.has(errorCode)) {
      // Kinesis saw this shard as busier than our buckets did (another writer, or our buckets started
      // earlier than its window): spend what they hold, so the next call waits for fresh tokens.
      const limiter = shard.limiter;
      if (limiter !== undefined) {
        const records = limiter.records?.available() ?? 0;
        const bytes = limiter.bytes?.available() ?? 0;
        limiter.consume(Math.max(0, records), Math.max(0, bytes));
      }
      this.#emit('throttled', { shardId: shard.id, entries: 1, errorCode });
    }
  }

  /** Failed records back to the head of their shard queue, in their original order, after a backoff. */
  #requeue(retries: Map<ShardState, ShardRetry>): void {
    const now = performance.now();
    for (const [shard, { records, errorCode }] of retries) {
      let attempt = 0;
      for (const record of records) if (record.attempts > attempt) attempt = record.attempts;
      const delayMs = backoffDelay(attempt - 1, this.options.retry.backoffMs);
      for (let i = records.length - 1; i >= 0; i--) {
        const record = records[i]!;
        this.#queued++;
        this.#queuedBytes += record.bytes;
        if (shard.open) {
          shard.queue.unshift(record);
          shard.queuedBytes += record.bytes;
        } else {
          this.#route(record, true);
        }
      }
      if (shard.open) shard.notBefore = Math.max(shard.notBefore, now + delayMs);
      this.#emit('retry', {
        shardId: shard.id,
        records: records.length,
        attempt,
        delayMs,
        errorCode,
      });
    }
  }

  // ---- lifecycle -------------------------------------------------------------------------------------

  /** Abort: reject everything unsettled, cancel requests in flight, stop timers. */
  #stop(error: ShardlineError): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#closed = true;
    this.#clearTimers();
    this.#abort.abort(error);
    const pending: PendingRecord[] = [];
    for (const request of this.#requests) {
      for (const group of request.groups) {
        if (Array.isArray(group)) pending.push(...group);
        else pending.push(group);
      }
    }
    pending.push(...this.#unrouted.drain());
    for (const shard of this.#shardList) pending.push(...shard.queue.drain());
    pending.push(...this.#waiting.drain());
    this.#queued = 0;
    this.#queuedBytes = 0;
    this.#rejectMany(pending, error);
    this.#releaseFlushWaiters();
    this.#metrics?.close();
    if (this.#ownClient) this.#client.destroy();
  }

  #clearTimers(): void {
    if (this.#wakeTimer !== undefined) clearTimeout(this.#wakeTimer);
    if (this.#refreshTimer !== undefined) clearInterval(this.#refreshTimer);
    if (this.#badMapTimer !== undefined) clearTimeout(this.#badMapTimer);
    this.#wakeTimer = undefined;
    this.#refreshTimer = undefined;
    this.#badMapTimer = undefined;
  }

  #emit<K extends ProducerEventName>(event: K, payload: ProducerEvents[K]): void {
    const set = this.#listeners[event] as Set<(e: ProducerEvents[K]) => void> | undefined;
    if (set === undefined || set.size === 0) return;
    for (const listener of set) {
      try {
        listener(payload);
      } catch (error) {
        this.#logger.error({ err: error, event }, 'producer: event listener threw');
      }
    }
  }
}
