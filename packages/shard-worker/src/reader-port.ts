/**
 * ReaderPort: the part of a shard reader that {@link ShardReader} (GetRecords) and {@link FanOutReader}
 * (SubscribeToShard) share: the reader's end of the coordinator port (credit, revoke, ack and stop in;
 * batch, fetched, error, log and shard-end out), the credit it reads under, and its lifecycle (start,
 * stop, finished). Each reader composes one and keeps only how it gets records. Not exported from the
 * package: both readers keep their own public surface.
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
  ErrorCodes,
  PROTOCOL_VERSION,
  packRecords,
  parseCoordinatorMessage,
  ShardlineError,
  serializeError,
  transferListOf,
} from '@shardline/common';
import type { IteratorStart, ResolvedShardReaderOptions } from './options.js';
import { jsonBatchFields, type unpackResponse } from './records.js';
import type { ReaderClock, ShardReaderOutcome, ShardReaderState, ShardReaderStatus } from './shard-reader.js';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Whether `port` can serve as a data port; each reader checks it first, before its client and options. */
export function isPort(port: unknown): port is MessagePort {
  const p = port as Partial<MessagePort> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.postMessage === 'function' &&
    typeof p.on === 'function' &&
    typeof p.off === 'function'
  );
}

/** Where the two readers differ in what they share. */
export interface ReaderPortSettings {
  /** Names the reader in the reason it aborts with on stop (`shard reader`, `fan-out reader`). */
  name: string;
  /** Fields every log message carries after `shardId`. */
  logFields: Record<string, unknown>;
  /**
   * Whether a message that cannot be posted also aborts {@link ReaderPort.signal}. Each reader keeps what
   * it did before they shared this class: the fan-out reader aborts (its subscription and any shard-end
   * probe end at once); the GetRecords reader lets its current call or idle pause run out and leaves the
   * loop at its next check.
   */
  abortOnPostFailure: boolean;
}

/** The counters a reader keeps itself; {@link ReaderPort.status} adds them to the snapshot. */
export interface ReaderCounters {
  throttled: number;
  iteratorRefreshes: number;
  transientErrors: number;
}

/**
 * The reader's end of one shard's data port. It listens to the port from construction (credit may come
 * before start) until the reader finishes, and decides when records may be read (credit) and when the
 * reader is done (outcome). The reader's loop checks {@link running} after every await.
 */
export class ReaderPort {
  readonly shardId: string;
  /** What the reader is doing; the loop sets `reading` / `backing-off`, this class the rest. */
  state: ShardReaderState = 'new';
  readonly #options: ResolvedShardReaderOptions;
  readonly #settings: ReaderPortSettings;
  readonly #port: MessagePort;
  readonly #clock: ReaderClock;
  readonly #abort = new AbortController();
  readonly #finished: Promise<ShardReaderOutcome>;
  #resolveFinished!: (outcome: ShardReaderOutcome) => void;

  #stopRequested = false;
  #detached = false;
  #loop: Promise<void> | undefined;
  #outcome: ShardReaderOutcome | undefined;

  #credit = { records: 0, bytes: 0 };
  #creditWaiter: (() => void) | undefined;

  #batchId = 0;
  #lastAckedBatchId: number | undefined;
  #lastFetchAtMs: number | undefined;
  #millisBehindLatest: number | undefined;
  #recordsFetched = 0;

  readonly #onMessage = (data: unknown): void => this.#receive(data);
  readonly #onClose = (): void => {
    void this.stop('port closed');
  };

  /** The caller has checked `port` with {@link isPort}. */
  constructor(
    port: MessagePort,
    options: ResolvedShardReaderOptions,
    clock: ReaderClock,
    settings: ReaderPortSettings,
  ) {
    this.shardId = options.shardId;
    this.#options = options;
    this.#settings = settings;
    this.#port = port;
    this.#clock = clock;
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

  /** Aborts on stop (and, see {@link ReaderPortSettings.abortOnPostFailure}, on a failed post). */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Credit left (may be negative after a batch larger than the credit). */
  get credit(): Readonly<{ records: number; bytes: number }> {
    return this.#credit;
  }

  get millisBehindLatest(): number | undefined {
    return this.#millisBehindLatest;
  }

  /** Runs `loop` once; idempotent; does nothing once stopped. */
  start(message: string, fields: Record<string, unknown>, loop: () => Promise<void>): void {
    if (this.state !== 'new' || this.#stopRequested) return;
    this.state = 'reading';
    this.log('debug', message, fields);
    this.#loop = this.#run(loop);
  }

  /** Idempotent; resolves when the loop has exited. A deliberate stop is never reported as an error. */
  stop(reason: string): Promise<ShardReaderOutcome> {
    if (!this.#stopRequested) {
      this.#stopRequested = true;
      if (!this.#isFinal()) this.state = 'stopping';
      this.#abort.abort(new ShardlineError(ErrorCodes.ABORTED, `${this.#settings.name} stopped: ${reason}`));
      this.#wakeCreditWaiter();
      if (this.#loop === undefined) this.#finish({ shardId: this.shardId, state: 'stopped' });
    }
    return this.#finished;
  }

  status(counters: ReaderCounters): ShardReaderStatus {
    return {
      shardId: this.shardId,
      state: this.state,
      lastFetchAtMs: this.#lastFetchAtMs,
      millisBehindLatest: this.#millisBehindLatest,
      recordsFetched: this.#recordsFetched,
      batchesSent: this.#batchId,
      lastAckedBatchId: this.#lastAckedBatchId,
      throttled: counters.throttled,
      iteratorRefreshes: counters.iteratorRefreshes,
      transientErrors: counters.transientErrors,
      credit: { ...this.#credit },
    };
  }

  /** False once stop was asked for or the reader has an outcome: the loop leaves at its next check. */
  running(): boolean {
    return !this.#stopRequested && this.#outcome === undefined;
  }

  #isFinal(): boolean {
    return this.state === 'ended' || this.state === 'failed' || this.state === 'stopped';
  }

  async #run(loop: () => Promise<void>): Promise<void> {
    try {
      await loop();
    } catch (error) {
      // Only an abort on stop is expected here (sleeps and rate-limit waits reject with ERR_ABORTED).
      if (this.running()) this.fail(error, 'unexpected');
    } finally {
      this.#finish(this.#outcome ?? { shardId: this.shardId, state: 'stopped' });
    }
  }

  // --- credit --------------------------------------------------------------------------------------

  /**
   * Waits until there is record and byte credit. `until` (a fan-out subscription ending) also ends the
   * wait, so the caller can act on it. Resolves with {@link running}.
   */
  async waitForCredit(until?: AbortSignal): Promise<boolean> {
    while (
      this.running() &&
      until?.aborted !== true &&
      (this.#credit.records <= 0 || this.#credit.bytes <= 0)
    ) {
      this.state = 'waiting-for-credit';
      await new Promise<void>((resolve) => {
        this.#creditWaiter = resolve;
        until?.addEventListener('abort', () => resolve(), { once: true });
      });
      this.#creditWaiter = undefined;
    }
    return this.running();
  }

  #wakeCreditWaiter(): void {
    const wake = this.#creditWaiter;
    this.#creditWaiter = undefined;
    wake?.();
  }

  // --- messages out --------------------------------------------------------------------------------

  /** Reports one GetRecords answer or fan-out event (`fetched`); remembers when and how far behind. */
  fetched(
    records: number,
    bytes: number,
    millisBehindLatest: number | undefined,
    expiredIterators = 0,
  ): void {
    this.#lastFetchAtMs = this.#clock.epochMs();
    this.#millisBehindLatest =
      typeof millisBehindLatest === 'number' && millisBehindLatest >= 0 ? millisBehindLatest : undefined;
    this.post({
      v: PROTOCOL_VERSION,
      type: 'fetched',
      shardId: this.shardId,
      lastFetchAtMs: this.#lastFetchAtMs,
      ...(this.#millisBehindLatest === undefined ? {} : { millisBehindLatest: this.#millisBehindLatest }),
      records,
      bytes,
      ...(expiredIterators > 0 ? { expiredIterators } : {}),
    });
  }

  /** Hands the records out as one batch, if any are left after skipping, and takes them off the credit. */
  sendBatch(unpacked: ReturnType<typeof unpackResponse>): void {
    const { count, last } = unpacked;
    if (count === 0 || last === undefined) return;
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
    const encoding = this.#options.encoding;
    if (encoding === 'bytes') {
      const packed = packRecords(unpacked.packed);
      message = { ...base, encoding: 'bytes', records: packed.records, buffer: packed.buffer };
    } else if (encoding === 'json') {
      message = { ...base, encoding: 'json', ...jsonBatchFields(unpacked) };
    } else {
      message = { ...base, encoding: 'decoded', records: unpacked.decoded };
    }
    this.post(message);
    this.#batchId++;
    this.#recordsFetched += count;
    this.#credit.records -= count;
    this.#credit.bytes -= unpacked.bytes;
  }

  /** Reports an error the reader retries (the caller logs when, and backs off). */
  retrying(error: ShardlineError): void {
    this.post({
      v: PROTOCOL_VERSION,
      type: 'error',
      shardId: this.shardId,
      error: serializeError(error),
      fatal: false,
    });
  }

  /** Reports a fatal error; the reader has failed and its loop leaves at the next check. */
  fail(error: unknown, operation: string): void {
    const serialized = serializeError(error);
    this.log('error', `fatal error in ${operation}: the reader stops`, { code: serialized.code });
    this.post({ v: PROTOCOL_VERSION, type: 'error', shardId: this.shardId, error: serialized, fatal: true });
    this.#outcome = { shardId: this.shardId, state: 'failed', error: serialized };
    this.state = 'failed';
  }

  /** Reports that the shard was read to its end; final. */
  endShard(childShardIds: string[] | undefined): void {
    this.post({ v: PROTOCOL_VERSION, type: 'shard-end', shardId: this.shardId, childShardIds });
    this.#outcome = { shardId: this.shardId, state: 'ended' };
    if (childShardIds !== undefined) this.#outcome.childShardIds = childShardIds;
    this.state = 'ended';
    this.log('info', 'shard ended', { childShardIds });
  }

  log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
    if (LEVEL_RANK[level] < LEVEL_RANK[this.#options.logLevel]) return;
    this.post({
      v: PROTOCOL_VERSION,
      type: 'log',
      level,
      message,
      fields: { shardId: this.shardId, ...this.#settings.logFields, ...fields },
    });
  }

  post(message: WorkerMessage): void {
    if (this.#detached) return;
    try {
      this.#port.postMessage(message, transferListOf(message));
    } catch (error) {
      // A closed port, or (in theory: the built-in codecs give cloneable values) a value that cannot be
      // cloned. Either way the reader cannot go on; tell the coordinator if the port still works.
      if (message.type === 'log' || this.#outcome !== undefined || this.#stopRequested) return;
      const serialized: SerializedError = serializeError(
        new ShardlineError(ErrorCodes.PROTOCOL, `cannot post a '${message.type}' message`, { cause: error }),
      );
      this.#outcome = { shardId: this.shardId, state: 'failed', error: serialized };
      this.state = 'failed';
      if (this.#settings.abortOnPostFailure) this.#abort.abort(serialized);
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

  // --- lifecycle and messages in -------------------------------------------------------------------

  #finish(outcome: ShardReaderOutcome): void {
    if (outcome.state === 'stopped') this.state = 'stopped';
    this.#detach();
    this.#resolveFinished(outcome);
  }

  #detach(): void {
    if (this.#detached) return;
    this.#detached = true;
    this.#port.off('message', this.#onMessage);
    this.#port.off('close', this.#onClose);
  }

  #receive(data: unknown): void {
    let message: CoordinatorMessage;
    try {
      message = parseCoordinatorMessage(data);
    } catch (error) {
      this.log('error', `ignored a bad message from the coordinator: ${(error as Error).message}`);
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
        this.#credit.bytes -= message.bytes ?? 0;
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
}

export function describeStart(start: IteratorStart): string {
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
