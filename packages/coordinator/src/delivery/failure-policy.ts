/**
 * `onHandlerError`: what happens when the handler fails on a batch, or a record cannot be decoded.
 *
 * - Handler errors are retried with backoff up to `retries`. A batch of several records that still
 *   fails is then isolated: its records are delivered again one at a time, in order, one attempt each,
 *   so `then` applies only to the records that fail alone and the others are processed (`'skip'` moves
 *   past a failing record, `'dead-letter'` sends it to the queue, `'stop-shard'` stops the shard with
 *   its checkpoint just before it). One attempt per record bounds the cost of isolating to one handler
 *   call per record, whatever `retries` is.
 * - Every handler call, retry and isolated record first passes the lane's gate: nothing is handed out
 *   past the local lease deadline or once the lane halted (the work is then abandoned: its records are
 *   delivered again by whoever reads the shard next, from the checkpoint).
 *
 * One policy per host (or per worker thread for `handlerModule`); it keeps no per-shard state.
 */

import type { BackoffMs, Logger, ShardPosition, ShardRecord } from '@shardline/common';
import { backoffDelay, ErrorCodes, ShardlineError, serializeError, sleep } from '@shardline/common';
import type { CoordinatorEvents } from '../events.js';
import type { RecordBatch, RecordHandler } from '../options.js';
import type { BuiltBatch } from './lane.js';

/**
 * - `processed`: the whole batch was handled; reported.
 * - `skipped` / `isolated`: passed over, or handled record by record; positions already reported.
 * - `abandoned`: a halt or the lease deadline ended the work; what was not reported is delivered again.
 * - `failed`: `'stop-shard'` applied.
 */
export type Outcome = 'processed' | 'skipped' | 'isolated' | 'abandoned' | 'failed';

export type ThenAction = 'stop-shard' | 'dead-letter' | 'skip';

export interface FailurePolicyOptions {
  onHandlerError: Readonly<{ retries: number; backoffMs: Readonly<BackoffMs>; then: string }>;
  events: CoordinatorEvents;
  logger: Logger;
  /** `then: 'dead-letter'`: sends records to the dead-letter queue. */
  deadLetter?: (
    shardId: string,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ) => Promise<void>;
}

/** What the policy needs of the lane it works for. */
export interface PolicyLane<T> {
  readonly shardId: string;
  /** Aborts when the lane halts. */
  readonly signal: AbortSignal;
  /** True once records may be handed out; false when the lane halted. */
  gate(): Promise<boolean>;
  makeBatch(records: ShardRecord<T>[], end: ShardPosition, millisBehindLatest?: number): BuiltBatch<T>;
  reportProcessed(records: number, end: ShardPosition, started: number, millisBehindLatest?: number): void;
  passedOver(position: ShardPosition): void;
  fail(error: ShardlineError, position: ShardPosition | undefined): void;
}

export function toHandlerError(error: unknown, shardId: string): ShardlineError {
  if (error instanceof ShardlineError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ShardlineError(ErrorCodes.HANDLER, `the handler failed on a batch of ${shardId}: ${message}`, {
    cause: error,
    details: { shardId },
  });
}

export function positionOf(record: ShardRecord<unknown>): ShardPosition {
  return record.subSequenceNumber === undefined
    ? { sequenceNumber: record.sequenceNumber }
    : { sequenceNumber: record.sequenceNumber, subSequenceNumber: record.subSequenceNumber };
}

export class FailurePolicy {
  readonly #o: FailurePolicyOptions;
  readonly action: ThenAction;

  constructor(options: FailurePolicyOptions) {
    this.#o = options;
    const then = options.onHandlerError.then;
    this.action = then === 'skip' || then === 'dead-letter' ? then : 'stop-shard';
  }

  /** Runs the handler on `records` (retries, then isolation, then `then`). */
  async run<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    records: ShardRecord<T>[],
    end: ShardPosition,
    millisBehindLatest: number | undefined,
  ): Promise<Outcome> {
    const { retries, backoffMs } = this.#o.onHandlerError;
    const { batch } = lane.makeBatch(records, end, millisBehindLatest);
    const started = performance.now();
    for (let attempt = 0; ; attempt++) {
      if (!(await lane.gate())) return 'abandoned';
      const error = await this.#attempt(lane, handler, batch);
      if (error === undefined) {
        lane.reportProcessed(records.length, end, started, millisBehindLatest);
        return 'processed';
      }
      const base = { shardId: lane.shardId, error, attempt: attempt + 1, records: records.length };
      // A halt may be what made the handler fail: the batch is delivered again after a restart.
      if (lane.signal.aborted) return 'abandoned';
      if (attempt < retries) {
        this.#o.events.emit('handler.failed', { ...base, action: 'retry' });
        if (!(await this.#sleep(lane, backoffDelay(attempt, backoffMs as BackoffMs)))) return 'abandoned';
        continue;
      }
      if (records.length === 1) return this.applyThen(lane, records, end, error, attempt + 1);
      this.#o.logger.warn(
        { shardId: lane.shardId, err: serializeError(error), records: records.length },
        'handler failed: delivering the batch one record at a time',
      );
      this.#o.events.emit('handler.failed', { ...base, action: 'isolate' });
      return this.#isolate(lane, handler, batch, end, attempt + 2);
    }
  }

  /**
   * `then` for records that failed for good (after their retries, or undecodable): `'skipped'` when the
   * shard moves on past `position`.
   */
  async applyThen<T>(
    lane: PolicyLane<T>,
    records: ShardRecord<unknown>[],
    position: ShardPosition,
    error: ShardlineError,
    attempts: number,
    what: 'handler' | 'poison' = 'handler',
  ): Promise<Outcome> {
    const action = this.action;
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
      what === 'poison' ? 'poison record' : 'handler failed',
    );
    this.#o.events.emit('handler.failed', {
      shardId: lane.shardId,
      error,
      attempt: attempts,
      action,
      records: records.length,
    });
    if (action === 'stop-shard') {
      lane.fail(error, positionOf(first));
      return 'failed';
    }
    if (action === 'dead-letter' && !(await this.#sendDeadLetter(lane, records, error, attempts))) {
      return 'abandoned';
    }
    lane.passedOver(position);
    return 'skipped';
  }

  /** One handler call; the error it threw, if any. */
  async #attempt<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    batch: RecordBatch<T>,
  ): Promise<ShardlineError | undefined> {
    try {
      await handler(batch);
      return undefined;
    } catch (thrown) {
      return toHandlerError(thrown, lane.shardId);
    }
  }

  /** False when the lane halted during the sleep. */
  async #sleep<T>(lane: PolicyLane<T>, ms: number): Promise<boolean> {
    try {
      await sleep(ms, lane.signal);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Delivers the records of a batch that kept failing one at a time, in order, one attempt each:
   * `then` applies only to the records that fail alone (`attempts`: what each has had by then).
   */
  async #isolate<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    batch: RecordBatch<T>,
    end: ShardPosition,
    attempts: number,
  ): Promise<Outcome> {
    const { records, millisBehindLatest } = batch;
    for (const [n, record] of records.entries()) {
      if (!(await lane.gate())) return 'abandoned';
      // The last record reports the batch's end, as the whole batch would have.
      const position = n === records.length - 1 ? end : positionOf(record);
      const started = performance.now();
      const single = lane.makeBatch([record], position, millisBehindLatest).batch;
      const error = await this.#attempt(lane, handler, single);
      if (error === undefined) {
        lane.reportProcessed(1, position, started, millisBehindLatest);
        continue;
      }
      if (lane.signal.aborted) return 'abandoned';
      if (!(await lane.gate())) return 'abandoned';
      const outcome = await this.applyThen(lane, [record], position, error, attempts);
      if (outcome !== 'skipped') return outcome;
    }
    return 'isolated';
  }

  /**
   * Dead-letters `records`, retrying with the handler backoff while the queue cannot be written (the
   * shard waits: moving on without the records would lose them). False when the lane halted first.
   */
  async #sendDeadLetter<T>(
    lane: PolicyLane<T>,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ): Promise<boolean> {
    const send = this.#o.deadLetter;
    if (send === undefined) throw new ShardlineError(ErrorCodes.INTERNAL, 'dead-letter queue missing');
    for (let n = 0; ; n++) {
      if (!(await lane.gate())) return false;
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
        if (!(await this.#sleep(lane, backoffDelay(n, this.#o.onHandlerError.backoffMs as BackoffMs)))) {
          return false;
        }
      }
    }
  }
}
