/**
 * Delivery: from reader batches to the user, one shard at a time in order.
 *
 * - Each shard has a lane: batches queue in arrival order and the next one is delivered only after the
 *   previous was processed (handler settled successfully, or the iterator asked for the next batch).
 * - Flow control: the host budget (`maxBufferedRecords`) is granted to the readers as record credit
 *   (see #rebalance) and given back as batches are processed; so records fetched and not processed
 *   stay within the budget plus one response per reader, whatever the handler's speed.
 * - Poison records (undecodable payloads, malformed KPL aggregates) split a batch: the good records
 *   before them are delivered, then `onHandlerError.then` applies to the poison record alone
 *   (without retries: decoding is deterministic, a retry fails the same way).
 * - Handler errors are retried with backoff up to `onHandlerError.retries`. A batch of several records
 *   that still fails is then isolated: its records are delivered again one at a time, in order, one
 *   attempt each, so `then` applies only to the records that fail alone and the others are processed
 *   (`'skip'` moves past a failing record, `'dead-letter'` sends it to the queue, `'stop-shard'` stops
 *   the shard with its checkpoint just before it). One attempt per record bounds the cost of isolating
 *   to one handler call per record, whatever `retries` is.
 */

import type {
  BackoffMs,
  BatchMessage,
  Codec,
  CoordinatorMessage,
  Logger,
  ShardPosition,
  ShardRecord,
} from '@shardline/common';
import {
  backoffDelay,
  batchToRecords,
  deserializeError,
  ErrorCodes,
  PROTOCOL_VERSION,
  ShardlineError,
  ShardlineOptionError,
  serializeError,
  sleep,
} from '@shardline/common';
import { comparePositions } from './checkpointer.js';
import type { CoordinatorEvents } from './events.js';
import type { RecordBatch, RecordHandler } from './options.js';

export const DELIVERY_DEFAULTS = Object.freeze({
  /** Byte credit each reader is kept topped up to (a GetRecords response is at most 10 MiB). */
  bytesPerReader: 16 * 1024 * 1024,
});

/** What the coordinator provides for each shard it reads. */
export interface LaneHooks {
  /** Sends credit / ack to the shard's reader. */
  send(message: CoordinatorMessage): void;
  /** Processed up to `position`; `records` handed to the user (0 for a skipped one). */
  processed(position: ShardPosition, records: number): void;
  /** Writes a checkpoint now (`batch.checkpoint()`). */
  checkpoint(position: ShardPosition): Promise<void>;
  /** A whole batch (`bytes` as fetched) was processed and acked to the reader (for metrics). */
  done?(bytes: number): void;
  /** `onHandlerError.then: 'stop-shard'` applied: stop reading the shard. */
  failed(error: ShardlineError): void;
  /** Whether records of this shard may be handed out now (false past the local lease deadline). */
  canDeliver(): boolean;
}

export interface DeliveryOptions<T> {
  mode: 'iterator' | 'handler';
  handler: RecordHandler<T> | undefined;
  codec: Codec<T>;
  maxBufferedRecords: number;
  onHandlerError: Readonly<{ retries: number; backoffMs: Readonly<BackoffMs>; then: string }>;
  events: CoordinatorEvents;
  logger: Logger;
  /** @defaultValue DELIVERY_DEFAULTS.bytesPerReader */
  bytesPerReader?: number;
  /** `onHandlerError.then: 'dead-letter'`: sends records to the dead-letter queue. */
  deadLetter?: (
    shardId: string,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ) => Promise<void>;
}

interface Lane {
  shardId: string;
  hooks: LaneHooks;
  queue: BatchMessage[];
  busy: boolean;
  /** No new batches are delivered (closing, failed). */
  halted: boolean;
  /** Record credit the reader holds: granted - received (negative by at most one response). */
  credit: number;
  bytesCredit: number;
  /** Records received and not yet processed or dropped. */
  buffered: number;
  bufferedBytes: number;
  delivered: number;
  idle: Array<() => void>;
}

interface ReadyBatch<T> {
  lane: Lane;
  batch: RecordBatch<T>;
  settle(processed: boolean): void;
}

/**
 * - `processed`: the whole batch was handled; the caller reports it.
 * - `skipped` / `isolated`: passed over, or handled record by record; positions are already reported.
 * - `abandoned`: a stop or close ended the work; what was not reported is delivered again later.
 * - `failed`: `'stop-shard'` applied.
 */
type Outcome = 'processed' | 'skipped' | 'isolated' | 'abandoned' | 'failed';

function toHandlerError(error: unknown, shardId: string): ShardlineError {
  if (error instanceof ShardlineError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ShardlineError(ErrorCodes.HANDLER, `the handler failed on a batch of ${shardId}: ${message}`, {
    cause: error,
    details: { shardId },
  });
}

function positionOf(record: ShardRecord<unknown>): ShardPosition {
  return record.subSequenceNumber === undefined
    ? { sequenceNumber: record.sequenceNumber }
    : { sequenceNumber: record.sequenceNumber, subSequenceNumber: record.subSequenceNumber };
}

/** Per-shard in-order delivery with host-wide credit; see the module notes. */
export class Delivery<T = unknown> implements AsyncIterator<RecordBatch<T>> {
  readonly #o: DeliveryOptions<T>;
  readonly #lanes = new Map<string, Lane>();
  readonly #bytesPerReader: number;
  readonly #abort = new AbortController();
  #stopping = false;
  // Iterator mode.
  #ready: ReadyBatch<T>[] = [];
  #held: ReadyBatch<T> | undefined;
  #waiters: Array<(result: IteratorResult<RecordBatch<T>>) => void> = [];
  #ended = false;
  /** Readers the host expects to run (the allocation target): credit granted is never revoked, so
   * the fair share must leave room for readers not started yet. */
  #expectedLanes = 1;
  #rotation = 0;

  constructor(options: DeliveryOptions<T>) {
    this.#o = options;
    this.#bytesPerReader = options.bytesPerReader ?? DELIVERY_DEFAULTS.bytesPerReader;
  }

  /** Records received from readers and not yet processed, across shards. */
  get bufferedRecords(): number {
    let n = 0;
    for (const lane of this.#lanes.values()) n += lane.buffered;
    return n;
  }

  delivered(shardId: string): number {
    return this.#lanes.get(shardId)?.delivered ?? 0;
  }

  /** Opens a shard's lane and grants its reader a share of the budget. */
  open(shardId: string, hooks: LaneHooks): void {
    if (this.#lanes.has(shardId)) throw new ShardlineError(ErrorCodes.INTERNAL, `lane ${shardId} is open`);
    this.#lanes.set(shardId, {
      shardId,
      hooks,
      queue: [],
      busy: false,
      halted: false,
      credit: 0,
      bytesCredit: 0,
      buffered: 0,
      bufferedBytes: 0,
      delivered: 0,
      idle: [],
    });
    this.#rebalance();
  }

  /** How many readers the host expects to run at once (the allocation target). */
  expectLanes(count: number): void {
    this.#expectedLanes = Math.max(1, count);
  }

  /** A batch from the shard's reader. */
  push(shardId: string, batch: BatchMessage): void {
    const lane = this.#lanes.get(shardId);
    if (lane === undefined) return;
    lane.credit -= batch.records.length;
    lane.bytesCredit -= batch.bytes;
    if (lane.halted) {
      // A reader being stopped may still send what it fetched: not delivered, read again later.
      this.#rebalance();
      return;
    }
    lane.buffered += batch.records.length;
    lane.bufferedBytes += batch.bytes;
    lane.queue.push(batch);
    this.#pump(lane);
  }

  /**
   * `handlerModule` delivery: a batch reached the worker that processes it. Charged as if it had
   * arrived here (credit and buffered records), so the host budget holds in that mode too.
   */
  charge(shardId: string, records: number, bytes: number): void {
    const lane = this.#lanes.get(shardId);
    if (lane === undefined) return;
    lane.credit -= records;
    lane.bytesCredit -= bytes;
    lane.buffered += records;
    lane.bufferedBytes += bytes;
  }

  /** `handlerModule` delivery: a charged batch is finished in its worker; its charge is granted again. */
  settle(shardId: string, records: number, bytes: number): void {
    const lane = this.#lanes.get(shardId);
    if (lane === undefined) return;
    lane.buffered -= records;
    lane.bufferedBytes -= bytes;
    if (!lane.halted) this.#rebalance();
  }

  /** Delivers again where the lease deadline held a lane back (after a good renew). */
  resume(shardId: string): void {
    const lane = this.#lanes.get(shardId);
    if (lane !== undefined) this.#pump(lane);
  }

  /** Resolves once every batch received so far for the shard was processed (used at shard end). */
  drained(shardId: string): Promise<void> {
    const lane = this.#lanes.get(shardId);
    if (lane === undefined || (!lane.busy && lane.queue.length === 0)) return Promise.resolve();
    return new Promise((resolve) => lane.idle.push(resolve));
  }

  /**
   * Stops delivering the shard: queued batches are dropped (read again from the checkpoint by whoever
   * reads the shard next), and the returned promise resolves once the batch in flight, if any, was
   * processed or abandoned. The lane is then removed and its credit freed.
   */
  async close(shardId: string): Promise<void> {
    const lane = this.#lanes.get(shardId);
    if (lane === undefined) return;
    this.#halt(lane);
    if (lane.busy) await new Promise<void>((resolve) => lane.idle.push(resolve));
    this.#lanes.delete(shardId);
    this.#rebalance();
  }

  /** Graceful stop: no retries wait any longer, the iterator ends; in-flight batches still finish. */
  stopping(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#abort.abort();
    for (const lane of this.#lanes.values()) this.#halt(lane);
    this.#endIterator();
  }

  /** Whether a batch is being processed or held by the iterator. */
  get busy(): boolean {
    for (const lane of this.#lanes.values()) if (lane.busy) return true;
    return false;
  }

  // ---- iterator mode -------------------------------------------------------------------------------

  /** Asking for the next batch marks the previous one processed. */
  next(): Promise<IteratorResult<RecordBatch<T>>> {
    this.#releaseHeld();
    const item = this.#ready.shift();
    if (item !== undefined) {
      this.#held = item;
      return Promise.resolve({ value: item.batch, done: false });
    }
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Leaving the loop (`break`, or an exception in its body) counts the batch in hand as processed: its
   * records were handed over. With `checkpoint.mode: 'manual'` nothing is checkpointed that the loop
   * did not checkpoint itself.
   */
  return(): Promise<IteratorResult<RecordBatch<T>>> {
    this.#releaseHeld();
    return Promise.resolve({ value: undefined, done: true });
  }

  #releaseHeld(): void {
    const held = this.#held;
    this.#held = undefined;
    held?.settle(true);
  }

  #endIterator(): void {
    this.#ended = true;
    for (const item of this.#ready.splice(0)) item.settle(false);
    for (const waiter of this.#waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  #offer(lane: Lane, batch: RecordBatch<T>): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    return new Promise((settle) => {
      const item: ReadyBatch<T> = { lane, batch, settle };
      const waiter = this.#waiters.shift();
      if (waiter !== undefined) {
        this.#held = item;
        waiter({ value: batch, done: false });
      } else this.#ready.push(item);
    });
  }

  // ---- lanes ---------------------------------------------------------------------------------------

  #halt(lane: Lane): void {
    lane.halted = true;
    for (const batch of lane.queue.splice(0)) {
      lane.buffered -= batch.records.length;
      lane.bufferedBytes -= batch.bytes;
    }
    // Offered to the iterator but not taken yet: withdrawn.
    const keep: ReadyBatch<T>[] = [];
    for (const item of this.#ready) {
      if (item.lane === lane) item.settle(false);
      else keep.push(item);
    }
    this.#ready = keep;
    if (!lane.busy) this.#notifyIdle(lane);
  }

  #notifyIdle(lane: Lane): void {
    for (const resolve of lane.idle.splice(0)) resolve();
  }

  #pump(lane: Lane): void {
    if (lane.busy || lane.halted) return;
    const batch = lane.queue[0];
    if (batch === undefined) {
      this.#notifyIdle(lane);
      return;
    }
    if (!lane.hooks.canDeliver()) return;
    lane.queue.shift();
    lane.busy = true;
    void this.#process(lane, batch)
      .catch((error: unknown) => {
        // #process handles user errors; this is a bug guard so a lane never wedges silently.
        this.#o.logger.error({ shardId: lane.shardId, err: serializeError(error) }, 'delivery failed');
        this.#o.events.emit('error', {
          error: toHandlerError(error, lane.shardId),
          shardId: lane.shardId,
        });
      })
      .finally(() => {
        lane.busy = false;
        lane.buffered -= batch.records.length;
        lane.bufferedBytes -= batch.bytes;
        if (lane.halted) {
          this.#notifyIdle(lane);
          return;
        }
        lane.hooks.send({ v: PROTOCOL_VERSION, type: 'ack', batchId: batch.batchId });
        lane.hooks.done?.(batch.bytes);
        this.#rebalance();
        this.#pump(lane);
      });
  }

  async #process(lane: Lane, message: BatchMessage): Promise<void> {
    const entries = batchToRecords<T>(message, this.#o.codec);
    const end: ShardPosition =
      message.lastSubSequenceNumber === undefined
        ? { sequenceNumber: message.lastSequenceNumber }
        : { sequenceNumber: message.lastSequenceNumber, subSequenceNumber: message.lastSubSequenceNumber };
    let run: ShardRecord<T>[] = [];
    let first = true;
    const deliverRun = async (isLast: boolean): Promise<boolean> => {
      if (run.length === 0) return true;
      const records = run;
      run = [];
      let position = positionOf(records[records.length - 1]!);
      if (isLast && comparePositions(end, position) > 0) position = end;
      if (!first && (this.#stopping || lane.halted)) return false;
      first = false;
      const outcome = await this.#deliver(lane, records, position, message.millisBehindLatest);
      return outcome === 'processed' || outcome === 'skipped' || outcome === 'isolated';
    };
    for (const entry of entries) {
      if (entry.ok) {
        run.push(entry.record);
        continue;
      }
      if (!(await deliverRun(false))) return;
      if (!first && (this.#stopping || lane.halted)) return;
      first = false;
      const error = deserializeError(entry.error);
      const outcome = await this.#applyThen(
        lane,
        [entry.record],
        positionOf(entry.record),
        error,
        1,
        'poison record',
      );
      if (outcome !== 'skipped') return;
    }
    await deliverRun(true);
  }

  #fail(lane: Lane, error: ShardlineError): void {
    this.#halt(lane);
    lane.hooks.failed(error);
  }

  #makeBatch(lane: Lane, records: ShardRecord<T>[], end: ShardPosition, millisBehindLatest?: number) {
    const batch: RecordBatch<T> = {
      shardId: lane.shardId,
      records,
      checkpoint: (upTo?: ShardRecord<T>) => {
        if (upTo === undefined) return lane.hooks.checkpoint(end);
        const found = records.includes(upTo)
          ? upTo
          : records.find(
              (r) =>
                r.sequenceNumber === upTo?.sequenceNumber && r.subSequenceNumber === upTo?.subSequenceNumber,
            );
        if (found === undefined) {
          return Promise.reject(
            new ShardlineOptionError(
              'upTo',
              'must be a record of this batch (or omitted for the whole batch)',
            ),
          );
        }
        return lane.hooks.checkpoint(found === records[records.length - 1] ? end : positionOf(found));
      },
    };
    if (millisBehindLatest !== undefined) batch.millisBehindLatest = millisBehindLatest;
    return batch;
  }

  async #deliver(
    lane: Lane,
    records: ShardRecord<T>[],
    end: ShardPosition,
    millisBehindLatest: number | undefined,
  ): Promise<Outcome> {
    const batch = this.#makeBatch(lane, records, end, millisBehindLatest);
    const started = performance.now();
    if (this.#o.mode === 'iterator') {
      if (!(await this.#offer(lane, batch))) return 'abandoned';
    } else {
      const outcome = await this.#runHandler(lane, batch, end);
      if (outcome !== 'processed') return outcome;
    }
    this.#reportProcessed(lane, records.length, end, started, millisBehindLatest);
    return 'processed';
  }

  /** `records` were handled, up to `end`. */
  #reportProcessed(
    lane: Lane,
    records: number,
    end: ShardPosition,
    started: number,
    millisBehindLatest: number | undefined,
  ): void {
    lane.delivered += records;
    lane.hooks.processed(end, records);
    const payload: {
      shardId: string;
      records: number;
      durationMs: number;
      lastSequenceNumber?: string;
      lastSubSequenceNumber?: number;
      millisBehindLatest?: number;
    } = {
      shardId: lane.shardId,
      records,
      durationMs: performance.now() - started,
      lastSequenceNumber: end.sequenceNumber,
    };
    if (end.subSequenceNumber !== undefined) payload.lastSubSequenceNumber = end.subSequenceNumber;
    if (millisBehindLatest !== undefined) payload.millisBehindLatest = millisBehindLatest;
    this.#o.events.emit('batch.processed', payload);
  }

  /** One handler call; the error it threw, if any. */
  async #attempt(lane: Lane, batch: RecordBatch<T>): Promise<ShardlineError | undefined> {
    try {
      await this.#o.handler!(batch);
      return undefined;
    } catch (thrown) {
      return toHandlerError(thrown, lane.shardId);
    }
  }

  async #runHandler(lane: Lane, batch: RecordBatch<T>, end: ShardPosition): Promise<Outcome> {
    const { retries, backoffMs } = this.#o.onHandlerError;
    for (let attempt = 0; ; attempt++) {
      const error = await this.#attempt(lane, batch);
      if (error === undefined) return 'processed';
      const base = { shardId: lane.shardId, error, attempt: attempt + 1, records: batch.records.length };
      if (attempt < retries && !this.#stopping && !lane.halted) {
        this.#o.events.emit('handler.failed', { ...base, action: 'retry' });
        try {
          await sleep(backoffDelay(attempt, backoffMs as BackoffMs), this.#abort.signal);
        } catch {
          return 'abandoned';
        }
        if (lane.halted) return 'abandoned';
        continue;
      }
      // A stop may be what made the handler fail: the batch is delivered again after a restart.
      if (this.#stopping || lane.halted) return 'abandoned';
      if (batch.records.length === 1) return this.#applyThen(lane, batch.records, end, error, attempt + 1);
      this.#o.logger.warn(
        { shardId: lane.shardId, err: serializeError(error), records: batch.records.length },
        'handler failed: delivering the batch one record at a time',
      );
      this.#o.events.emit('handler.failed', { ...base, action: 'isolate' });
      return this.#isolate(lane, batch, end, attempt + 2);
    }
  }

  /**
   * Delivers the records of a batch that kept failing one at a time, in order, one attempt each:
   * `then` applies only to the records that fail alone (`attempts`: what each has had by then).
   */
  async #isolate(lane: Lane, batch: RecordBatch<T>, end: ShardPosition, attempts: number): Promise<Outcome> {
    const { records, millisBehindLatest } = batch;
    for (const [n, record] of records.entries()) {
      if (this.#stopping || lane.halted) return 'abandoned';
      // The last record reports the batch's end, as the whole batch would have.
      const position = n === records.length - 1 ? end : positionOf(record);
      const started = performance.now();
      const error = await this.#attempt(lane, this.#makeBatch(lane, [record], position, millisBehindLatest));
      if (error === undefined) {
        this.#reportProcessed(lane, 1, position, started, millisBehindLatest);
        continue;
      }
      if (this.#stopping || lane.halted) return 'abandoned';
      const outcome = await this.#applyThen(lane, [record], position, error, attempts);
      if (outcome !== 'skipped') return outcome;
    }
    return 'isolated';
  }

  /**
   * `onHandlerError.then` for records that failed for good (after their retries, or undecodable):
   * `'skipped'` when the shard moves on past `position`.
   */
  async #applyThen(
    lane: Lane,
    records: ShardRecord<unknown>[],
    position: ShardPosition,
    error: ShardlineError,
    attempts: number,
    what = 'handler failed',
  ): Promise<Outcome> {
    const action = this.#action();
    const first = records[0]!;
    this.#o.logger.warn(
      {
        shardId: lane.shardId,
        sequenceNumber: first.sequenceNumber,
        subSequenceNumber: first.subSequenceNumber,
        records: records.length,
        err: serializeError(error),
        action,
      },
      what,
    );
    this.#o.events.emit('handler.failed', {
      shardId: lane.shardId,
      error,
      attempt: attempts,
      action,
      records: records.length,
    });
    if (action === 'stop-shard') {
      this.#fail(lane, error);
      return 'failed';
    }
    if (action === 'dead-letter' && !(await this.#sendDeadLetter(lane, records, error, attempts))) {
      return 'abandoned';
    }
    lane.hooks.processed(position, 0);
    return 'skipped';
  }

  #action(): 'skip' | 'stop-shard' | 'dead-letter' {
    const then = this.#o.onHandlerError.then;
    return then === 'skip' || then === 'dead-letter' ? then : 'stop-shard';
  }

  /**
   * Dead-letters `records`, retrying with the handler backoff while the queue cannot be written (the
   * shard waits: moving on without the records would lose them). False when a stop ended the wait.
   */
  async #sendDeadLetter(
    lane: Lane,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ): Promise<boolean> {
    const send = this.#o.deadLetter;
    if (send === undefined) throw new ShardlineError(ErrorCodes.INTERNAL, 'dead-letter queue missing');
    for (let n = 0; ; n++) {
      try {
        await send(lane.shardId, records, error, attempts);
        return true;
      } catch (failure) {
        const e = toHandlerError(failure, lane.shardId);
        this.#o.logger.warn(
          { shardId: lane.shardId, err: serializeError(e) },
          'dead-lettering failed: retrying',
        );
        this.#o.events.emit('error', { error: e, shardId: lane.shardId });
        if (this.#stopping || lane.halted) return false;
        try {
          await sleep(backoffDelay(n, this.#o.onHandlerError.backoffMs as BackoffMs), this.#abort.signal);
        } catch {
          return false;
        }
        if (lane.halted) return false;
      }
    }
  }

  /**
   * Shares the host budget out as record credit. A reader may hold up to a fair share
   * (`budget / readers`, readers counting those expected to start) in credit plus records fetched and
   * not processed yet, so one GetRecords call can fill its whole share. When the fair share shrinks
   * (more readers), credit above it is revoked, so idle readers never keep room a new reader needs; a
   * fetch in flight may still overdraw a revoked credit by one response, the same bound as a KPL
   * aggregate's. Readers are served from a rotating start so none is always last.
   */
  #rebalance(): void {
    const budget = this.#o.maxBufferedRecords;
    const open = [...this.#lanes.values()].filter((l) => !l.halted);
    if (open.length === 0) return;
    const fair = Math.max(1, Math.floor(budget / Math.max(open.length, this.#expectedLanes)));
    for (const lane of open) {
      const over = Math.min(lane.credit, Math.max(0, lane.credit) + lane.buffered - fair);
      if (over <= 0) continue;
      lane.credit -= over;
      lane.hooks.send({ v: PROTOCOL_VERSION, type: 'revoke', records: over });
    }
    let free = budget;
    for (const lane of this.#lanes.values()) free -= Math.max(0, lane.credit) + lane.buffered;
    const start = this.#rotation++ % open.length;
    for (let n = 0; n < open.length; n++) {
      const lane = open[(start + n) % open.length]!;
      const holding = Math.max(0, lane.credit) + lane.buffered;
      // A top-up is sent when worth a call (fewer, fuller GetRecords calls), or when the reader is out
      // of credit.
      let want = fair - holding;
      if (lane.credit > 0 && want < fair / 2) want = 0;
      const records = Math.max(0, Math.min(want, free));
      // A response that overdrew the credit (KPL aggregates count once against Limit) is paid for once
      // it is processed: the debt is forgiven then, or a deep one would keep the reader from ever
      // fetching again.
      const debt = lane.buffered === 0 && records > 0 ? Math.max(0, -lane.credit) : 0;
      const bytesHolding = Math.max(0, lane.bytesCredit) + lane.bufferedBytes;
      let bytes = this.#bytesPerReader - bytesHolding;
      if (bytes <= 0 || (lane.bytesCredit > 0 && bytes < this.#bytesPerReader / 2)) bytes = 0;
      const bytesDebt = lane.bufferedBytes === 0 && bytes > 0 ? Math.max(0, -lane.bytesCredit) : 0;
      if (records === 0 && bytes === 0) continue;
      lane.credit += records + debt;
      lane.bytesCredit += bytes + bytesDebt;
      free -= records;
      lane.hooks.send({
        v: PROTOCOL_VERSION,
        type: 'credit',
        records: records + debt,
        bytes: bytes + bytesDebt,
      });
    }
  }
}
