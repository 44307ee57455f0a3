/**
 * ShardReader: the GetRecords loop of one shard. It runs inside a worker thread (see worker.ts) but is a
 * plain class, driven through a MessagePort, so tests run it in-process with `new MessageChannel()`.
 *
 * The protocol (what the coordinator sends and receives, in what order) is in this package's README.
 */
import type { MessagePort } from 'node:worker_threads';
import type { SerializedError } from '@shardline/common';
import {
  backoffDelay,
  classifyAwsError,
  sleep as defaultSleep,
  ErrorCodes,
  PROTOCOL_VERSION,
  RateLimiter,
  type ShardlineError,
  ShardlineOptionError,
} from '@shardline/common';
import type { GetRecordsClient, GetRecordsResult } from './client.js';
import { firstFailureError, iteratorInput } from './first-fetch.js';
import { parseGetRecordsBody } from './get-records-body.js';
import type { IteratorStart, ResolvedShardReaderOptions, ShardReaderOptions } from './options.js';
import { resolveShardReaderOptions } from './options.js';
import { describeStart, isPort, ReaderPort } from './reader-port.js';
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

type Failure = 'retry' | 'stop';

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
  /** The coordinator port, credit and lifecycle (shared with FanOutReader). */
  readonly #link: ReaderPort;
  readonly #client: GetRecordsClient;
  readonly #clock: ReaderClock;
  readonly #random: () => number;
  readonly #limiter: RateLimiter;

  #iterator: string | undefined;
  /** Where a new iterator starts: the start position until records were handed out, then after the last. */
  #resume: IteratorStart;
  #skip: SkipThrough | undefined;
  /** Expired iterators in a row without a successful GetRecords between them. */
  #expiredInARow = 0;
  #throttleAttempt = 0;
  /** Empty answers in a row from a shard that is not behind: its idle pause grows with them. */
  #emptyInARow = 0;
  #errorAttempt = 0;

  #throttled = 0;
  #iteratorRefreshes = 0;
  #transientErrors = 0;

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
    this.#link = new ReaderPort(port, this.options, this.#clock, {
      name: 'shard reader',
      logFields: {},
      abortOnPostFailure: false,
    });
  }

  /** Resolves once the reader has finished (shard end, fatal error, or stop). Never rejects. */
  get finished(): Promise<ShardReaderOutcome> {
    return this.#link.finished;
  }

  get state(): ShardReaderState {
    return this.#link.state;
  }

  /** Starts reading. Idempotent; does nothing once stopped. */
  start(): void {
    this.#link.start('reader started', { start: describeStart(this.options.start) }, () => this.#run());
  }

  /**
   * Stops reading: an in-flight GetRecords is aborted (its records are not handed out, so nothing is
   * lost: they are read again from the checkpoint), and no message follows. Idempotent; resolves when
   * the loop has exited. A deliberate stop is never reported as an error.
   */
  stop(reason = 'stop'): Promise<ShardReaderOutcome> {
    return this.#link.stop(reason);
  }

  status(): ShardReaderStatus {
    return this.#link.status({
      throttled: this.#throttled,
      iteratorRefreshes: this.#iteratorRefreshes,
      transientErrors: this.#transientErrors,
    });
  }

  // --- loop ----------------------------------------------------------------------------------------

  /** The GetRecords loop; {@link ReaderPort.start} runs it and finishes the reader when it returns. */
  async #run(): Promise<void> {
    const link = this.#link;
    if ((await this.#takeFirst()) === 'stop') return;
    while (link.running()) {
      if (this.#iterator === undefined) {
        link.state = 'reading';
        if ((await this.#acquireIterator()) === 'stop') break;
        continue;
      }
      if (!(await link.waitForCredit())) break;
      link.state = 'reading';
      await this.#limiter.take(0, 0, 1, link.signal, (ms, signal) => this.#clock.sleep(ms, signal));
      if (!link.running()) break;
      const limit = Math.max(1, Math.min(this.options.maxRecordsPerFetch, link.credit.records));
      let response: GetRecordsResult;
      try {
        response = await this.#client.getRecords(
          { ShardIterator: this.#iterator, Limit: limit },
          { abortSignal: link.signal },
        );
      } catch (error) {
        if (!link.running()) break;
        if ((await this.#onFailure(error, 'GetRecords')) === 'stop') break;
        continue;
      }
      if (!link.running()) break;
      if ((await this.#onRecords(response)) === 'stop') break;
    }
  }

  async #acquireIterator(): Promise<Failure | 'ok'> {
    const start = this.#resume;
    const requestedAtMs = this.#clock.epochMs();
    try {
      const out = await this.#client.getShardIterator(iteratorInput(this.options, start), {
        abortSignal: this.#link.signal,
      });
      if (!this.#link.running()) return 'stop';
      if (typeof out.ShardIterator !== 'string' || out.ShardIterator.length === 0) {
        // Kinesis answers no iterator for a shard that is closed and fully read.
        this.#link.log('info', 'GetShardIterator returned no iterator: the shard has ended');
        this.#link.endShard(undefined);
        return 'stop';
      }
      this.#iterator = out.ShardIterator;
      this.#afterLatest(start, requestedAtMs);
      this.#link.log('debug', 'shard iterator acquired', { start: describeStart(start) });
      return 'ok';
    } catch (error) {
      if (!this.#link.running()) return 'stop';
      return this.#onFailure(error, 'GetShardIterator');
    }
  }

  /**
   * Should an iterator got at LATEST expire before any record was handed out, LATEST again would skip
   * what arrived meanwhile: resume from when it was asked for instead, less a margin for the skew
   * between this host's clock and Kinesis' arrival timestamps (at-least-once: better a few records
   * from just before the start than a gap).
   */
  #afterLatest(start: IteratorStart, requestedAtMs: number): void {
    if (start.type !== 'LATEST') return;
    this.#resume = { type: 'AT_TIMESTAMP', timestamp: new Date(requestedAtMs - LATEST_SKEW_MARGIN_MS) };
  }

  /**
   * The first answer, fetched by the coordinator's thread while this one started (see first-fetch.ts):
   * taken as this reader's first calls (paced and counted as its own). A failed call is handled as the
   * reader's own failure would be; a body that does not parse is dropped, and the reader starts as
   * usual, with its own GetShardIterator.
   */
  async #takeFirst(): Promise<Failure | 'ok' | 'none'> {
    const first = this.options.first;
    if (first === undefined) return 'none';
    const { body, failed } = first;
    const response =
      body === undefined
        ? undefined
        : parseGetRecordsBody(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    if (response === undefined && failed === undefined) return 'none';
    const link = this.#link;
    link.state = 'reading';
    if (failed === undefined || failed.operation === 'GetRecords') {
      // A GetRecords call was made, after an iterator was got, at requestedAtMs: the reader's own next
      // call keeps the spacing from then (5 calls/s: 200 ms), not from now. The first answer of a
      // large backlog takes longer than that to come, so the next call goes at once.
      const spacingMs = 1_000 / this.options.fetchRatePerShard;
      const waitMs = first.requestedAtMs + spacingMs - this.#clock.epochMs();
      if (waitMs > 0) await this.#clock.sleep(Math.min(waitMs, spacingMs), link.signal);
      if (!link.running()) return 'stop';
      this.#afterLatest(this.options.start, first.requestedAtMs);
    }
    if (failed !== undefined) return this.#onFailure(firstFailureError(failed), failed.operation);
    link.log('debug', 'first GetRecords answer taken from the coordinator', {
      start: describeStart(this.options.start),
    });
    return this.#onRecords(response!);
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
    this.#link.fetched(records.length, unpacked.bytes, response.MillisBehindLatest, expiredIterators);

    if (unpacked.lastKinesisSequenceNumber !== undefined) {
      // The first records after an AT_SEQUENCE_NUMBER start were skipped as far as the checkpoint says.
      this.#skip = undefined;
      this.#link.sendBatch(unpacked);
      this.#resume = { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: unpacked.lastKinesisSequenceNumber };
    }

    const next = response.NextShardIterator;
    if (typeof next !== 'string' || next.length === 0) {
      const children = (response.ChildShards ?? [])
        .map((c) => c.ShardId)
        .filter((id): id is string => typeof id === 'string');
      this.#link.endShard(children.length > 0 ? children : undefined);
      return 'stop';
    }
    this.#iterator = next;
    if (records.length === 0 && (this.#link.millisBehindLatest ?? 0) === 0) {
      this.#emptyInARow++;
      await this.#clock.sleep(this.#idlePause(), this.#link.signal);
    } else this.#emptyInARow = 0;
    return this.#link.running() ? 'ok' : 'stop';
  }

  /**
   * The pause after an empty answer: `idleFetchIntervalMs` for the first three in a row, then doubling
   * up to `idleFetchMaxIntervalMs`. An idle shard costs an empty GetRecords call (about a millisecond
   * and a half of CPU in the SDK) per pause: 200 idle shards polled each second took a third of a core.
   */
  #idlePause(): number {
    const { idleFetchIntervalMs: base, idleFetchMaxIntervalMs: max } = this.options;
    const doublings = Math.max(0, this.#emptyInARow - 3);
    return Math.min(max, base * 2 ** Math.min(doublings, 30));
  }

  /** Decides what an error means for the loop; backs off where needed. */
  async #onFailure(error: unknown, operation: string): Promise<Failure | 'ok'> {
    const classified = classifyAwsError(error, operation);
    const code = classified.code;
    if (code === ErrorCodes.EXPIRED_ITERATOR) {
      this.#iterator = undefined;
      this.#iteratorRefreshes++;
      this.#expiredInARow++;
      this.#link.log('info', 'shard iterator expired: re-acquiring it after the last record handed out', {
        start: describeStart(this.#resume),
      });
      // A fresh iterator that is expired at once (a skewed clock) must not become a hot loop.
      if (this.#expiredInARow > 1) await this.#backoff(classified, false);
      return this.#link.running() ? 'ok' : 'stop';
    }
    if (code === ErrorCodes.THROTTLED) {
      this.#throttled++;
      const delayMs = backoffDelay(this.#throttleAttempt++, this.options.throttleBackoffMs, this.#random);
      this.#link.post({ v: PROTOCOL_VERSION, type: 'throttled', shardId: this.shardId, delayMs, count: 1 });
      this.#link.state = 'backing-off';
      await this.#clock.sleep(delayMs, this.#link.signal);
      return this.#link.running() ? 'ok' : 'stop';
    }
    if (code === ErrorCodes.ABORTED && !this.#link.running()) return 'stop';
    if (classified.retriable || code === ErrorCodes.ABORTED) {
      this.#transientErrors++;
      await this.#backoff(classified, true);
      return this.#link.running() ? 'ok' : 'stop';
    }
    this.#link.fail(classified, operation);
    return 'stop';
  }

  async #backoff(error: ShardlineError, report: boolean): Promise<void> {
    const delayMs = backoffDelay(this.#errorAttempt++, this.options.errorBackoffMs, this.#random);
    if (report) {
      this.#link.retrying(error);
      this.#link.log('warn', `${error.message}: retrying in ${Math.round(delayMs)} ms`, { code: error.code });
    }
    this.#link.state = 'backing-off';
    await this.#clock.sleep(delayMs, this.#link.signal);
  }
}
