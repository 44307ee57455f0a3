/**
 * ShardReader: the GetRecords loop of one shard. It runs inside a worker thread (see worker.ts) but is a
 * plain class, driven through a MessagePort, so tests run it in-process with `new MessageChannel()`.
 *
 * The protocol (what the coordinator sends and receives, in what order) is in this package's README.
 */
import type { MessagePort } from 'node:worker_threads';
import type {
  BatchMessage,
  CoordinatorMessage,
  LogLevel,
  SerializedError,
  WorkerMessage,
} from '@shardline/common';
import {
  assertNever,
  backoffDelay,
  classifyAwsError,
  sleep as defaultSleep,
  ErrorCodes,
  PROTOCOL_VERSION,
  packRecords,
  parseCoordinatorMessage,
  RateLimiter,
  ShardlineError,
  ShardlineOptionError,
  serializeError,
  transferListOf,
} from '@shardline/common';
import type { GetRecordsClient, GetRecordsResult } from './client.js';
import type { IteratorStart, ResolvedShardReaderOptions, ShardReaderOptions } from './options.js';
import { resolveShardReaderOptions } from './options.js';
import type { SkipThrough } from './records.js';
import { unpackResponse } from './records.js';

/** Time as the reader sees it; injectable so tests drive it with fake timers. */
export interface ReaderClock {
  /** Monotonic milliseconds (rate limiting). */
  now(): number;
  /** Epoch milliseconds (`lastFetchAtMs`). */
  epochMs(): number;
  /** Resolves after `ms`; rejects with `ERR_ABORTED` when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The default clock. Each call looks the globals up, so fake timers installed later still apply. */
export const systemClock: ReaderClock = Object.freeze({
  now: () => performance.now(),
  epochMs: () => Date.now(),
  sleep: (ms: number, signal?: AbortSignal) => defaultSleep(ms, signal),
});

/** Collaborators injected for tests. */
export interface ShardReaderDeps {
  /** @defaultValue {@link systemClock} */
  clock?: ReaderClock;
  /** Jitter source in [0, 1). @defaultValue Math.random */
  random?: () => number;
}

/**
 * - `new`: constructed, not started.
 * - `reading`: getting an iterator, calling GetRecords, or pacing between calls.
 * - `waiting-for-credit`: no record or byte credit left; waits for a `credit` message.
 * - `backing-off`: waiting after a throttle or a transient error.
 * - `ended`: the shard was read to its end (`shard-end` sent). Final.
 * - `failed`: a fatal error (`error` with `fatal: true` sent). Final.
 * - `stopping` / `stopped`: stop() was called (or a `stop` message came). `stopped` is final.
 */
export type ShardReaderState =
  | 'new'
  | 'reading'
  | 'waiting-for-credit'
  | 'backing-off'
  | 'ended'
  | 'failed'
  | 'stopping'
  | 'stopped';

/** A plain, structured-cloneable snapshot of a reader. */
export interface ShardReaderStatus {
  shardId: string;
  state: ShardReaderState;
  /** When the last GetRecords call returned (successfully), epoch milliseconds. */
  lastFetchAtMs: number | undefined;
  millisBehindLatest: number | undefined;
  /** Records handed out in batches (after KPL deaggregation and framing; skipped ones not counted). */
  recordsFetched: number;
  /** Batches sent; the last one has batchId `batchesSent - 1`. */
  batchesSent: number;
  /** Highest batchId acknowledged by the coordinator. */
  lastAckedBatchId: number | undefined;
  /** ProvisionedThroughputExceeded answers received. */
  throttled: number;
  /** Iterators re-acquired after ExpiredIteratorException. */
  iteratorRefreshes: number;
  /** Transient errors retried (5xx, network, timeouts). */
  transientErrors: number;
  /** Credit left (may be negative after a batch larger than the credit; see the README). */
  credit: { records: number; bytes: number };
}

/** How a reader finished; what {@link ShardReader.finished} resolves with. */
export interface ShardReaderOutcome {
  shardId: string;
  state: 'ended' | 'failed' | 'stopped';
  /** For `failed`: the fatal error (also sent as an `error` message). */
  error?: SerializedError;
  /** For `ended`: the children from ChildShards, if the service sent them (also in `shard-end`). */
  childShardIds?: string[];
}

/** How far before a LATEST start a re-acquired iterator starts (see #acquireIterator). */
const LATEST_SKEW_MARGIN_MS = 5_000;

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

type Failure = 'retry' | 'stop';

function isPort(port: unknown): port is MessagePort {
  const p = port as Partial<MessagePort> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.postMessage === 'function' &&
    typeof p.on === 'function' &&
    typeof p.off === 'function'
  );
}

/**
 * Reads one shard and posts its records to the coordinator over `port`, under credit-based flow
 * control. See the package README for the message contract.
 *
 * ```ts
 * const reader = new ShardReader(port, kinesisGetRecordsClient(client), { streamName, shardId });
 * reader.start();
 * const outcome = await reader.finished;   // ended | failed | stopped
 * ```
 */
export class ShardReader {
  readonly shardId: string;
  readonly options: ResolvedShardReaderOptions;
  readonly #port: MessagePort;
  readonly #client: GetRecordsClient;
  readonly #clock: ReaderClock;
  readonly #random: () => number;
  readonly #limiter: RateLimiter;
  readonly #abort = new AbortController();
  readonly #finished: Promise<ShardReaderOutcome>;
  #resolveFinished!: (outcome: ShardReaderOutcome) => void;

  #state: ShardReaderState = 'new';
  #stopRequested = false;
  #detached = false;
  #loop: Promise<void> | undefined;
  #outcome: ShardReaderOutcome | undefined;

  #credit = { records: 0, bytes: 0 };
  #creditWaiter: (() => void) | undefined;

  #iterator: string | undefined;
  /** Where a new iterator starts: the start position until records were handed out, then after the last. */
  #resume: IteratorStart;
  #skip: SkipThrough | undefined;
  /** Expired iterators in a row without a successful GetRecords between them. */
  #expiredInARow = 0;
  #throttleAttempt = 0;
  #errorAttempt = 0;

  #batchId = 0;
  #lastAckedBatchId: number | undefined;
  #lastFetchAtMs: number | undefined;
  #millisBehindLatest: number | undefined;
  #recordsFetched = 0;
  #throttled = 0;
  #iteratorRefreshes = 0;
  #transientErrors = 0;

  readonly #onMessage = (data: unknown): void => this.#receive(data);
  readonly #onClose = (): void => {
    void this.stop('port closed');
  };

  /**
   * @param port - this shard's data port; the reader listens to it from construction (credit may come
   *   before start) until it finishes.
   * @param client - GetShardIterator and GetRecords ({@link kinesisGetRecordsClient} for the real one).
   * @throws ShardlineOptionError for invalid options, naming the option.
   */
  constructor(
    port: MessagePort,
    client: GetRecordsClient,
    options: ShardReaderOptions,
    deps: ShardReaderDeps = {},
  ) {
    if (!isPort(port)) throw new ShardlineOptionError('port', 'must be a MessagePort');
    if (
      typeof client !== 'object' ||
      client === null ||
      typeof client.getRecords !== 'function' ||
      typeof client.getShardIterator !== 'function'
    ) {
      throw new ShardlineOptionError('client', 'must have getShardIterator(input) and getRecords(input)');
    }
    this.options = resolveShardReaderOptions(options);
    this.shardId = this.options.shardId;
    this.#port = port;
    this.#client = client;
    this.#clock = deps.clock ?? systemClock;
    this.#random = deps.random ?? Math.random;
    this.#limiter = new RateLimiter({
      callsPerSec: this.options.fetchRatePerShard,
      // A burst of one: calls are evenly spaced, so no one-second window ever holds more than the rate.
      callsBurst: 1,
      bytesPerSec: this.options.fetchBytesPerSecPerShard,
      clock: () => this.#clock.now(),
    });
    this.#resume = this.options.start;
    const start = this.options.start;
    if (start.type === 'AT_SEQUENCE_NUMBER') {
      this.#skip = { sequenceNumber: start.sequenceNumber, subSequenceNumber: start.skipThroughSubSequence };
    }
    this.#finished = new Promise((resolve) => {
      this.#resolveFinished = resolve;
    });
    port.on('message', this.#onMessage);
    port.on('close', this.#onClose);
  }

  /** Resolves once the reader has finished (shard end, fatal error, or stop). Never rejects. */
  get finished(): Promise<ShardReaderOutcome> {
    return this.#finished;
  }

  get state(): ShardReaderState {
    return this.#state;
  }

  /** Starts reading. Idempotent; does nothing once stopped. */
  start(): void {
    if (this.#state !== 'new' || this.#stopRequested) return;
    this.#state = 'reading';
    this.#log('debug', 'reader started', { start: describeStart(this.options.start) });
    this.#loop = this.#run();
  }

  /**
   * Stops reading: an in-flight GetRecords is aborted (its records are not handed out, so nothing is
   * lost: they are read again from the checkpoint), and no message follows. Idempotent; resolves when
   * the loop has exited. A deliberate stop is never reported as an error.
   */
  stop(reason = 'stop'): Promise<ShardReaderOutcome> {
    if (!this.#stopRequested) {
      this.#stopRequested = true;
      if (!this.#isFinal()) this.#state = 'stopping';
      this.#abort.abort(new ShardlineError(ErrorCodes.ABORTED, `shard reader stopped: ${reason}`));
      this.#wakeCreditWaiter();
      if (this.#loop === undefined) this.#finish({ shardId: this.shardId, state: 'stopped' });
    }
    return this.#finished;
  }

  status(): ShardReaderStatus {
    return {
      shardId: this.shardId,
      state: this.#state,
      lastFetchAtMs: this.#lastFetchAtMs,
      millisBehindLatest: this.#millisBehindLatest,
      recordsFetched: this.#recordsFetched,
      batchesSent: this.#batchId,
      lastAckedBatchId: this.#lastAckedBatchId,
      throttled: this.#throttled,
      iteratorRefreshes: this.#iteratorRefreshes,
      transientErrors: this.#transientErrors,
      credit: { ...this.#credit },
    };
  }

  // --- loop ----------------------------------------------------------------------------------------

  #running(): boolean {
    return !this.#stopRequested && this.#outcome === undefined;
  }

  #isFinal(): boolean {
    return this.#state === 'ended' || this.#state === 'failed' || this.#state === 'stopped';
  }

  async #run(): Promise<void> {
    try {
      while (this.#running()) {
        if (this.#iterator === undefined) {
          this.#state = 'reading';
          if ((await this.#acquireIterator()) === 'stop') break;
          continue;
        }
        if (!(await this.#waitForCredit())) break;
        this.#state = 'reading';
        await this.#limiter.take(0, 0, 1, this.#abort.signal, (ms, signal) => this.#clock.sleep(ms, signal));
        if (!this.#running()) break;
        const limit = Math.max(1, Math.min(this.options.maxRecordsPerFetch, this.#credit.records));
        let response: GetRecordsResult;
        try {
          response = await this.#client.getRecords(
            { ShardIterator: this.#iterator, Limit: limit },
            { abortSignal: this.#abort.signal },
          );
        } catch (error) {
          if (!this.#running()) break;
          if ((await this.#onFailure(error, 'GetRecords')) === 'stop') break;
          continue;
        }
        if (!this.#running()) break;
        if ((await this.#onRecords(response)) === 'stop') break;
      }
    } catch (error) {
      // Only an abort on stop is expected here (sleeps and rate-limit waits reject with ERR_ABORTED).
      if (this.#running()) this.#fail(error, 'unexpected');
    } finally {
      if (this.#outcome === undefined) {
        this.#finish({ shardId: this.shardId, state: 'stopped' });
      } else {
        this.#finish(this.#outcome);
      }
    }
  }

  async #acquireIterator(): Promise<Failure | 'ok'> {
    const start = this.#resume;
    const input: Record<string, unknown> = { ShardId: this.shardId, ShardIteratorType: start.type };
    if (this.options.streamArn !== undefined) input.StreamARN = this.options.streamArn;
    else input.StreamName = this.options.streamName;
    if (start.type === 'AT_TIMESTAMP') input.Timestamp = start.timestamp;
    if (start.type === 'AFTER_SEQUENCE_NUMBER' || start.type === 'AT_SEQUENCE_NUMBER') {
      input.StartingSequenceNumber = start.sequenceNumber;
    }
    const requestedAtMs = this.#clock.epochMs();
    try {
      const out = await this.#client.getShardIterator(input as never, { abortSignal: this.#abort.signal });
      if (!this.#running()) return 'stop';
      if (typeof out.ShardIterator !== 'string' || out.ShardIterator.length === 0) {
        // Kinesis answers no iterator for a shard that is closed and fully read.
        this.#log('info', 'GetShardIterator returned no iterator: the shard has ended');
        this.#endShard(undefined);
        return 'stop';
      }
      this.#iterator = out.ShardIterator;
      if (start.type === 'LATEST') {
        // Should this iterator expire before any record was handed out, LATEST again would skip what
        // arrived meanwhile: resume from when it was asked for instead, less a margin for the skew
        // between this host's clock and Kinesis' arrival timestamps (at-least-once: better a few
        // records from just before the start than a gap).
        this.#resume = { type: 'AT_TIMESTAMP', timestamp: new Date(requestedAtMs - LATEST_SKEW_MARGIN_MS) };
      }
      this.#log('debug', 'shard iterator acquired', { start: describeStart(start) });
      return 'ok';
    } catch (error) {
      if (!this.#running()) return 'stop';
      return this.#onFailure(error, 'GetShardIterator');
    }
  }

  async #waitForCredit(): Promise<boolean> {
    while (this.#running() && (this.#credit.records <= 0 || this.#credit.bytes <= 0)) {
      this.#state = 'waiting-for-credit';
      await new Promise<void>((resolve) => {
        this.#creditWaiter = resolve;
      });
      this.#creditWaiter = undefined;
    }
    return this.#running();
  }

  #wakeCreditWaiter(): void {
    const wake = this.#creditWaiter;
    this.#creditWaiter = undefined;
    wake?.();
  }

  async #onRecords(response: GetRecordsResult): Promise<Failure | 'ok'> {
    this.#throttleAttempt = 0;
    this.#errorAttempt = 0;
    // Every expiry since the last good call is one in a row: reported with this call (for metrics).
    const expiredIterators = this.#expiredInARow;
    this.#expiredInARow = 0;
    const records = response.Records ?? [];
    const unpacked = unpackResponse(records, this.options.codec, this.options.encoding, this.#skip);
    this.#limiter.consume(0, unpacked.bytes);
    this.#lastFetchAtMs = this.#clock.epochMs();
    const behind = response.MillisBehindLatest;
    this.#millisBehindLatest = typeof behind === 'number' && behind >= 0 ? behind : undefined;
    this.#post({
      v: PROTOCOL_VERSION,
      type: 'fetched',
      shardId: this.shardId,
      lastFetchAtMs: this.#lastFetchAtMs,
      ...(this.#millisBehindLatest === undefined ? {} : { millisBehindLatest: this.#millisBehindLatest }),
      records: records.length,
      bytes: unpacked.bytes,
      ...(expiredIterators > 0 ? { expiredIterators } : {}),
    });

    if (unpacked.lastKinesisSequenceNumber !== undefined) {
      // The first records after an AT_SEQUENCE_NUMBER start were skipped as far as the checkpoint says.
      this.#skip = undefined;
      this.#sendBatch(unpacked);
      this.#resume = { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: unpacked.lastKinesisSequenceNumber };
    }

    const next = response.NextShardIterator;
    if (typeof next !== 'string' || next.length === 0) {
      const children = (response.ChildShards ?? [])
        .map((c) => c.ShardId)
        .filter((id): id is string => typeof id === 'string');
      this.#endShard(children.length > 0 ? children : undefined);
      return 'stop';
    }
    this.#iterator = next;
    if (records.length === 0 && (this.#millisBehindLatest ?? 0) === 0) {
      await this.#clock.sleep(this.options.idleFetchIntervalMs, this.#abort.signal);
    }
    return this.#running() ? 'ok' : 'stop';
  }

  #sendBatch(unpacked: ReturnType<typeof unpackResponse>): void {
    const count = this.options.encoding === 'bytes' ? unpacked.packed.length : unpacked.decoded.length;
    if (count === 0) return;
    const last =
      this.options.encoding === 'bytes' ? unpacked.packed[count - 1]! : unpacked.decoded[count - 1]!;
    const base = {
      v: PROTOCOL_VERSION,
      type: 'batch' as const,
      shardId: this.shardId,
      batchId: this.#batchId,
      lastSequenceNumber: last.sequenceNumber,
      bytes: unpacked.bytes,
      ...(this.#millisBehindLatest === undefined ? {} : { millisBehindLatest: this.#millisBehindLatest }),
      ...(last.subSequenceNumber === undefined ? {} : { lastSubSequenceNumber: last.subSequenceNumber }),
    };
    let message: BatchMessage;
    if (this.options.encoding === 'bytes') {
      const packed = packRecords(unpacked.packed);
      message = { ...base, encoding: 'bytes', records: packed.records, buffer: packed.buffer };
    } else {
      message = { ...base, encoding: 'decoded', records: unpacked.decoded };
    }
    this.#post(message);
    this.#batchId++;
    this.#recordsFetched += count;
    this.#credit.records -= count;
    this.#credit.bytes -= unpacked.bytes;
  }

  /** Decides what an error means for the loop; backs off where needed. */
  async #onFailure(error: unknown, operation: string): Promise<Failure | 'ok'> {
    const classified = classifyAwsError(error, operation);
    const code = classified.code;
    if (code === ErrorCodes.EXPIRED_ITERATOR) {
      this.#iterator = undefined;
      this.#iteratorRefreshes++;
      this.#expiredInARow++;
      this.#log('info', 'shard iterator expired: re-acquiring it after the last record handed out', {
        start: describeStart(this.#resume),
      });
      // A fresh iterator that is expired at once (a skewed clock) must not become a hot loop.
      if (this.#expiredInARow > 1) await this.#backoff(classified, false);
      return this.#running() ? 'ok' : 'stop';
    }
    if (code === ErrorCodes.THROTTLED) {
      this.#throttled++;
      const delayMs = backoffDelay(this.#throttleAttempt++, this.options.throttleBackoffMs, this.#random);
      this.#post({ v: PROTOCOL_VERSION, type: 'throttled', shardId: this.shardId, delayMs, count: 1 });
      this.#state = 'backing-off';
      await this.#clock.sleep(delayMs, this.#abort.signal);
      return this.#running() ? 'ok' : 'stop';
    }
    if (code === ErrorCodes.ABORTED && !this.#running()) return 'stop';
    if (classified.retriable || code === ErrorCodes.ABORTED) {
      this.#transientErrors++;
      await this.#backoff(classified, true);
      return this.#running() ? 'ok' : 'stop';
    }
    this.#fail(classified, operation);
    return 'stop';
  }

  async #backoff(error: ShardlineError, report: boolean): Promise<void> {
    const delayMs = backoffDelay(this.#errorAttempt++, this.options.errorBackoffMs, this.#random);
    if (report) {
      this.#post({
        v: PROTOCOL_VERSION,
        type: 'error',
        shardId: this.shardId,
        error: serializeError(error),
        fatal: false,
      });
      this.#log('warn', `${error.message}: retrying in ${Math.round(delayMs)} ms`, { code: error.code });
    }
    this.#state = 'backing-off';
    await this.#clock.sleep(delayMs, this.#abort.signal);
  }

  #fail(error: unknown, operation: string): void {
    const serialized = serializeError(error);
    this.#log('error', `fatal error in ${operation}: the reader stops`, { code: serialized.code });
    this.#post({ v: PROTOCOL_VERSION, type: 'error', shardId: this.shardId, error: serialized, fatal: true });
    this.#outcome = { shardId: this.shardId, state: 'failed', error: serialized };
    this.#state = 'failed';
  }

  #endShard(childShardIds: string[] | undefined): void {
    this.#post({ v: PROTOCOL_VERSION, type: 'shard-end', shardId: this.shardId, childShardIds });
    this.#outcome = { shardId: this.shardId, state: 'ended' };
    if (childShardIds !== undefined) this.#outcome.childShardIds = childShardIds;
    this.#state = 'ended';
    this.#log('info', 'shard ended', { childShardIds });
  }

  #finish(outcome: ShardReaderOutcome): void {
    if (outcome.state === 'stopped') this.#state = 'stopped';
    this.#detach();
    this.#resolveFinished(outcome);
  }

  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#port.off('message', this.#onMessage);
    this.#port.off('close', this.#onClose);
  }

  // --- port ----------------------------------------------------------------------------------------

  #receive(data: unknown): void {
    let message: CoordinatorMessage;
    try {
      message = parseCoordinatorMessage(data);
    } catch (error) {
      this.#log('error', `ignored a bad message from the coordinator: ${(error as Error).message}`);
      return;
    }
    switch (message.type) {
      case 'credit':
        this.#credit.records += message.records;
        this.#credit.bytes += message.bytes;
        if (this.#credit.records > 0 && this.#credit.bytes > 0) this.#wakeCreditWaiter();
        break;
      case 'revoke':
        // A fetch in flight may still bring up to its Limit: the credit then goes below zero.
        this.#credit.records -= message.records;
        break;
      case 'ack':
        if (this.#lastAckedBatchId === undefined || message.batchId > this.#lastAckedBatchId) {
          this.#lastAckedBatchId = message.batchId;
        }
        break;
      case 'stop':
        void this.stop(message.reason);
        break;
      default:
        assertNever(message);
    }
  }

  #post(message: WorkerMessage): void {
    if (this.#detached) return;
    try {
      this.#port.postMessage(message, transferListOf(message));
    } catch (error) {
      // A closed port, or (in theory: the built-in codecs give cloneable values) a value that cannot be
      // cloned. Either way the reader cannot go on; tell the coordinator if the port still works.
      if (message.type === 'log' || this.#outcome !== undefined || this.#stopRequested) return;
      const serialized = serializeError(
        new ShardlineError(ErrorCodes.PROTOCOL, `cannot post a '${message.type}' message`, { cause: error }),
      );
      this.#outcome = { shardId: this.shardId, state: 'failed', error: serialized };
      this.#state = 'failed';
      try {
        this.#port.postMessage({
          v: PROTOCOL_VERSION,
          type: 'error',
          shardId: this.shardId,
          error: serialized,
          fatal: true,
        } satisfies WorkerMessage);
      } catch {
        // The port is gone: the coordinator learns from the task's outcome.
      }
    }
  }

  #log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (LEVEL_RANK[level] < LEVEL_RANK[this.options.logLevel]) return;
    this.#post({
      v: PROTOCOL_VERSION,
      type: 'log',
      level,
      message,
      fields: { shardId: this.shardId, ...fields },
    });
  }
}

function describeStart(start: IteratorStart): string {
  switch (start.type) {
    case 'TRIM_HORIZON':
    case 'LATEST':
      return start.type;
    case 'AT_TIMESTAMP':
      return `AT_TIMESTAMP ${start.timestamp.toISOString()}`;
    case 'AFTER_SEQUENCE_NUMBER':
      return `AFTER_SEQUENCE_NUMBER ${start.sequenceNumber}`;
    case 'AT_SEQUENCE_NUMBER':
      return `AT_SEQUENCE_NUMBER ${start.sequenceNumber} (skipping sub-sequences <= ${start.skipThroughSubSequence})`;
    default:
      return assertNever(start);
  }
}
