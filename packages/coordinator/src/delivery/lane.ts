/**
 * One shard's delivery lane: its batches queue in arrival order and the next one is handed out only
 * after the previous was processed (handler settled, or the iterator asked for the next batch).
 *
 * - The lane's gate: records are handed out (a handler call, a retry, an isolated record, an iterator
 *   offer, a dead-letter send) only while the lane is open. Its shard session pauses it the moment the
 *   local lease deadline passes and resumes it after a good renew; it halts it for good when the lease
 *   is lost or given back: queued batches are dropped (read again by whoever reads the shard next), the
 *   batch in hand is abandoned at its next step, and retry sleeps end at once (the lane's own signal).
 * - Poison records (undecodable payloads, malformed KPL aggregates) split a batch: the good records
 *   before them are delivered, then `onHandlerError.then` applies to the poison record alone (without
 *   retries: decoding is deterministic, a retry fails the same way).
 * - Handler errors, retries and isolation are the {@link FailurePolicy}'s; the iterator is the
 *   {@link BatchIterator}'s; `parallelism` (concurrent key groups of one batch) is key-groups.ts'. The lane knows nothing of credit: it tells its hooks when a batch is
 *   finished with, and the session gives its room back to the credit ledger.
 *
 * The same class runs on the coordinator thread (handler and iterator modes) and inside a worker
 * thread for `handlerModule`, with hooks that post to the coordinator.
 */

import type { BatchMessage, Codec, Logger, ShardPosition, ShardRecord } from '@shardline/common';
import { deserializeError, serializeError, splitBatch } from '@shardline/common';
import { comparePositions } from '../checkpointer.js';
import type { CoordinatorEvents } from '../events.js';
import type { RecordHandler } from '../options.js';
import type { BatchIterator } from './batch-iterator.js';
import { type FailurePolicy, type Outcome, positionOf, toHandlerError } from './failure-policy.js';
import { runByKey } from './key-groups.js';
import { type BuiltBatch, buildBatch } from './user-batch.js';

/** What a lane tells its owner. */
export interface LaneHooks {
  /** Processed up to `position`; `records` handed to the user (0 for records passed over). */
  processed(position: ShardPosition, records: number): void;
  /** Writes a checkpoint now (`batch.checkpoint()`). */
  checkpoint(position: ShardPosition): Promise<void>;
  /**
   * The lane is done with `batch` (processed, passed over, failed, abandoned or dropped): its room can
   * be given back. `completed`: processed while the lane stayed open (the reader may be acked).
   */
  finished(batch: BatchMessage, completed: boolean): void;
  /** `onHandlerError.then: 'stop-shard'` applied at `position` (the lane has halted). */
  failed(error: ShardlineErrorLike, position: ShardPosition | undefined): void;
}

type ShardlineErrorLike = ReturnType<typeof toHandlerError>;

/** How the lane hands batches to the user. */
export type LaneSink<T> =
  | { mode: 'handler'; handler: RecordHandler<T> }
  | { mode: 'iterator'; iterator: BatchIterator<T> };

export interface LaneOptions<T> {
  shardId: string;
  /** The shard's stream: every batch names it. @defaultValue '' */
  streamName?: string;
  /** Decodes `'bytes'` batches (the reader's codec, or a custom Codec on this thread). */
  codec: Codec<T>;
  sink: LaneSink<T>;
  policy: FailurePolicy;
  hooks: LaneHooks;
  events: CoordinatorEvents;
  logger: Logger;
  /**
   * Handler mode: concurrent handler calls on one batch, by partition-key group (key-groups.ts).
   * @defaultValue 1
   */
  parallelism?: number;
}

export type { BuiltBatch } from './user-batch.js';

/** Whether the shard moves on after a run. */
const passed = (outcome: Outcome) =>
  outcome === 'processed' || outcome === 'skipped' || outcome === 'isolated';

export class Lane<T = unknown> {
  readonly shardId: string;
  readonly streamName: string;
  readonly #o: LaneOptions<T>;
  readonly #queue: BatchMessage[] = [];
  readonly #abort = new AbortController();
  #busy = false;
  #paused = false;
  #halted = false;
  /** `fail()` was called: a second failure (another key group) is not reported again. */
  #failed = false;
  #gateWaiters: Array<(open: boolean) => void> = [];
  #idleWaiters: Array<() => void> = [];
  #delivered = 0;

  constructor(options: LaneOptions<T>) {
    this.#o = options;
    this.shardId = options.shardId;
    this.streamName = options.streamName ?? '';
  }

  /** Aborts when the lane halts: retry and dead-letter sleeps end at once. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  get halted(): boolean {
    return this.#halted;
  }

  /** Records handed to the user by this lane. */
  get delivered(): number {
    return this.#delivered;
  }

  /** Whether records may be handed out right now. */
  deliverable(): boolean {
    return !this.#halted && !this.#paused;
  }

  /** Resolves true once records may be handed out, false when the lane halted first. */
  gate(): Promise<boolean> {
    if (this.#halted) return Promise.resolve(false);
    if (!this.#paused) return Promise.resolve(true);
    return new Promise((resolve) => this.#gateWaiters.push(resolve));
  }

  /** A batch from the reader, in order. Dropped at once when the lane has halted. */
  push(batch: BatchMessage): void {
    if (this.#halted) {
      this.#o.hooks.finished(batch, false);
      return;
    }
    this.#queue.push(batch);
    this.#pump();
  }

  /** Nothing is handed out until {@link resume} (the local lease deadline passed). */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused || this.#halted) return;
    this.#paused = false;
    this.#openGate(true);
    if (this.#o.sink.mode === 'iterator') this.#o.sink.iterator.wake();
    this.#pump();
  }

  /**
   * For good: queued batches are dropped, the batch in hand is abandoned at its next step (what it
   * processed so far counts), sleeps end, an offer to the iterator not taken yet is withdrawn.
   */
  halt(): void {
    if (this.#halted) return;
    this.#halted = true;
    this.#abort.abort();
    for (const batch of this.#queue.splice(0)) this.#o.hooks.finished(batch, false);
    this.#openGate(false);
    if (this.#o.sink.mode === 'iterator') this.#o.sink.iterator.withdraw(this);
    this.#notifyIdle();
  }

  /**
   * Resolves once every batch received so far was processed (true), or once the lane halted and the
   * batch in hand, if any, was let go (false). Waits while the lane is paused.
   */
  async drained(): Promise<boolean> {
    await this.#idle();
    return !this.#halted;
  }

  /** {@link halt}, then resolves once the batch in hand, if any, was processed or abandoned. */
  async close(): Promise<void> {
    this.halt();
    await this.#idle();
  }

  #idle(): Promise<void> {
    if (!this.#busy && (this.#halted || this.#queue.length === 0)) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #notifyIdle(): void {
    if (this.#busy || (!this.#halted && this.#queue.length > 0)) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }

  #openGate(open: boolean): void {
    for (const resolve of this.#gateWaiters.splice(0)) resolve(open);
  }

  #pump(): void {
    if (this.#busy || this.#halted) return;
    const batch = this.#queue[0];
    if (batch === undefined) {
      this.#notifyIdle();
      return;
    }
    if (this.#paused) return;
    this.#queue.shift();
    this.#busy = true;
    void this.#process(batch)
      .catch((error: unknown) => {
        // #process handles user errors: this is a batch that breaks the wire format, or a bug. The shard
        // stops here rather than move past records it never handed out (nor wedge silently).
        const e = toHandlerError(error, this.shardId);
        this.#o.logger.error({ shardId: this.shardId, err: serializeError(e) }, 'delivery failed');
        this.#o.events.emit('error', { error: e, shardId: this.shardId });
        this.fail(e, undefined);
      })
      .finally(() => {
        this.#busy = false;
        this.#o.hooks.finished(batch, !this.#halted);
        if (this.#halted) this.#notifyIdle();
        else this.#pump();
      });
  }

  async #process(message: BatchMessage): Promise<void> {
    const { records, poison } = splitBatch<T>(message, this.#o.codec);
    const end: ShardPosition =
      message.lastSubSequenceNumber === undefined
        ? { sequenceNumber: message.lastSequenceNumber }
        : { sequenceNumber: message.lastSequenceNumber, subSequenceNumber: message.lastSubSequenceNumber };
    // The usual case: no poison record, the whole batch is one run (no per-record work here).
    let from = 0;
    for (const p of poison) {
      if (p.before > from) {
        const outcome = await this.#deliver(
          records.slice(from, p.before),
          undefined,
          message.millisBehindLatest,
        );
        if (!passed(outcome)) return;
        from = p.before;
      }
      if (!(await this.gate())) return;
      const error = deserializeError(p.error);
      const outcome = await this.#o.policy.applyThen(
        this,
        [p.record],
        positionOf(p.record),
        error,
        1,
        'poison',
      );
      if (outcome !== 'skipped') return;
    }
    if (from < records.length) {
      await this.#deliver(from === 0 ? records : records.slice(from), end, message.millisBehindLatest);
    }
  }

  /**
   * Hands out one run of the batch's records. `end`: where the run's processing reaches, the batch's
   * end for its last run (past its last record when sub-records were skipped), else the run's last
   * record.
   */
  async #deliver(
    records: ShardRecord<T>[],
    batchEnd: ShardPosition | undefined,
    millisBehindLatest: number | undefined,
  ): Promise<Outcome> {
    const last = positionOf(records[records.length - 1]!);
    const end = batchEnd !== undefined && comparePositions(batchEnd, last) > 0 ? batchEnd : last;
    const { sink, policy } = this.#o;
    if (sink.mode === 'handler') {
      const parallelism = this.#o.parallelism ?? 1;
      if (parallelism > 1) {
        return runByKey(this, policy, sink.handler, records, end, millisBehindLatest, parallelism);
      }
      return policy.run(this, sink.handler, records, end, millisBehindLatest);
    }
    if (!(await this.gate())) return 'abandoned';
    const started = performance.now();
    const built = this.makeBatch(records, end, millisBehindLatest);
    if (!(await sink.iterator.offer(this, built))) {
      // Withdrawn (the lane halted) or the iterator ended (a stop): nothing can be handed out any more.
      this.halt();
      return 'abandoned';
    }
    this.reportProcessed(records.length, end, started, millisBehindLatest);
    return 'processed';
  }

  // ---- for the failure policy and the iterator -----------------------------------------------------

  /** Marks `position` processed with nothing handed out (a record passed over). */
  passedOver(position: ShardPosition): void {
    this.#o.hooks.processed(position, 0);
  }

  /** `onHandlerError.then: 'stop-shard'`: halts the lane and tells the session. */
  fail(error: ShardlineErrorLike, position: ShardPosition | undefined): void {
    this.halt();
    if (this.#failed) return;
    this.#failed = true;
    this.#o.hooks.failed(error, position);
  }

  /** `records` were handled, up to `end`. */
  reportProcessed(
    records: number,
    end: ShardPosition,
    started: number,
    millisBehindLatest: number | undefined,
  ): void {
    this.#delivered += records;
    this.#o.hooks.processed(end, records);
    this.#emitProcessed(records, end, started, millisBehindLatest);
  }

  /**
   * Key groups: `records` of a group were handled, up to `end` of that group (the shard's processed
   * position moves separately, by {@link advance}).
   */
  reportHandled(
    records: number,
    end: ShardPosition,
    started: number,
    millisBehindLatest: number | undefined,
  ): void {
    this.#delivered += records;
    this.#emitProcessed(records, end, started, millisBehindLatest);
  }

  /** Key groups: everything up to `position` is processed (`records` handed out since the last move). */
  advance(position: ShardPosition, records: number): void {
    this.#o.hooks.processed(position, records);
  }

  /** Writes a checkpoint at `position` now (`batch.checkpoint()`). */
  writeCheckpoint(position: ShardPosition): Promise<void> {
    return this.#o.hooks.checkpoint(position);
  }

  #emitProcessed(
    records: number,
    end: ShardPosition,
    started: number,
    millisBehindLatest: number | undefined,
  ): void {
    const payload: {
      shardId: string;
      records: number;
      durationMs: number;
      lastSequenceNumber?: string;
      lastSubSequenceNumber?: number;
      millisBehindLatest?: number;
    } = {
      shardId: this.shardId,
      records,
      durationMs: performance.now() - started,
      lastSequenceNumber: end.sequenceNumber,
    };
    if (end.subSequenceNumber !== undefined) payload.lastSubSequenceNumber = end.subSequenceNumber;
    if (millisBehindLatest !== undefined) payload.millisBehindLatest = millisBehindLatest;
    this.#o.events.emit('batch.processed', payload);
  }

  /** The user's view of `records`; its `checkpoint(upTo?)` writes through the hooks. */
  makeBatch(records: ShardRecord<T>[], end: ShardPosition, millisBehindLatest?: number): BuiltBatch<T> {
    return buildBatch(
      this.shardId,
      records,
      end,
      millisBehindLatest,
      (position) => this.#o.hooks.checkpoint(position),
      this.streamName,
    );
  }
}
