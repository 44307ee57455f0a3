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
 * - A partial-batch answer (handler-answer.ts): the records before the one reported failed are
 *   processed at once; the call counts as a failed attempt of the rest, which alone is retried (then
 *   isolated), as if the handler had thrown on a batch of those records.
 * - `maxRecordAgeMs` (record-age.ts): before each handler call, records past the age get `then` instead
 *   of the call (a run of them at a time, in order), the others are delivered as their own runs.
 *
 * One policy per host (or per worker thread for `handlerModule`); it keeps no per-shard state.
 */

import type { BackoffMs, Logger, ShardPosition, ShardRecord, TraceSpan } from '@shardline/common';
import { backoffDelay, ErrorCodes, ShardlineError, serializeError, sleep } from '@shardline/common';
import type { CoordinatorEvents, StreamEventMap } from '../events.js';
import type { RecordBatch, RecordHandler } from '../options.js';
import { failedIndex, reportedFailure } from './handler-answer.js';
import type { BuiltBatch } from './lane.js';
import { type AgeRun, ageRuns, expiredError } from './record-age.js';
import type { ProcessTracing } from './tracing.js';

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
  /**
   * Records older than this when they would be handed to the handler get `then` instead.
   * @defaultValue Infinity (no limit)
   */
  maxRecordAgeMs?: number;
  /** Counts expired records (status); the `handlerModule` worker relays its events instead. */
  expired?: (shardId: string, records: number) => void;
  /** `then: 'dead-letter'`: sends records to the dead-letter queue. */
  deadLetter?: (
    shardId: string,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ) => Promise<void>;
  /** A `process` span around each handler call, when set. */
  tracing?: ProcessTracing;
}

/** What the policy needs of the lane it works for. */
export interface PolicyLane<T> {
  readonly shardId: string;
  /** The shard's stream (batches name it). */
  readonly streamName?: string;
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
  run<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    records: ShardRecord<T>[],
    end: ShardPosition,
    millisBehindLatest: number | undefined,
  ): Promise<Outcome> {
    return this.#run(lane, handler, records, end, millisBehindLatest, 0);
  }

  /** {@link run} from attempt `first` (a run split off by age keeps the attempts it had). */
  async #run<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    records: ShardRecord<T>[],
    end: ShardPosition,
    millisBehindLatest: number | undefined,
    first: number,
  ): Promise<Outcome> {
    const { retries, backoffMs } = this.#o.onHandlerError;
    let pending = records;
    let started = performance.now();
    for (let attempt = first; ; attempt++) {
      if (!(await lane.gate())) return 'abandoned';
      const runs = ageRuns(pending, Date.now(), this.#maxAgeMs);
      if (runs !== undefined) return this.#runByAge(lane, handler, runs, end, millisBehindLatest, attempt);
      const { batch } = lane.makeBatch(pending, end, millisBehindLatest);
      const { error, done } = await this.#attempt(lane, handler, batch);
      if (error === undefined) {
        lane.reportProcessed(pending.length, end, started, millisBehindLatest);
        return 'processed';
      }
      if (done > 0) {
        // A partial answer: the records before the failed one are processed, the rest is retried.
        lane.reportProcessed(done, positionOf(pending[done - 1]!), started, millisBehindLatest);
        pending = pending.slice(done);
        started = performance.now();
      }
      const base = { shardId: lane.shardId, error, attempt: attempt + 1, records: pending.length };
      // A halt may be what made the handler fail: the batch is delivered again after a restart.
      if (lane.signal.aborted) return 'abandoned';
      if (attempt < retries) {
        this.#o.events.emit('handler.failed', { ...base, action: 'retry' });
        if (!(await this.#sleep(lane, backoffDelay(attempt, backoffMs as BackoffMs)))) return 'abandoned';
        continue;
      }
      if (pending.length === 1) return this.applyThen(lane, pending, end, error, attempt + 1);
      this.#o.logger.warn(
        { shardId: lane.shardId, err: serializeError(error), records: pending.length },
        'handler failed: delivering the batch one record at a time',
      );
      this.#o.events.emit('handler.failed', { ...base, action: 'isolate' });
      return this.#isolate(lane, handler, pending, end, millisBehindLatest, attempt + 2);
    }
  }

  /**
   * A batch some records of which are past `maxRecordAgeMs`: each run, in order, gets `then` (expired)
   * or the handler (the others, with the attempts they had). `'isolated'` once every run passed.
   */
  async #runByAge<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    runs: AgeRun<T>[],
    end: ShardPosition,
    millisBehindLatest: number | undefined,
    attempt: number,
  ): Promise<Outcome> {
    for (const [n, run] of runs.entries()) {
      if (!(await lane.gate())) return 'abandoned';
      const runEnd = n === runs.length - 1 ? end : positionOf(run.records[run.records.length - 1]!);
      const outcome = run.expired
        ? await this.#expire(lane, run.records, runEnd, attempt)
        : await this.#run(lane, handler, run.records, runEnd, millisBehindLatest, attempt);
      if (outcome === 'abandoned' || outcome === 'failed') return outcome;
    }
    return 'isolated';
  }

  #expire<T>(
    lane: PolicyLane<T>,
    records: ShardRecord<T>[],
    position: ShardPosition,
    attempts: number,
  ): Promise<Outcome> {
    const error = expiredError(records, lane.shardId, Date.now(), this.#maxAgeMs);
    return this.applyThen(lane, records, position, error, attempts, 'expired');
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
    what: 'handler' | 'poison' | 'expired' = 'handler',
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
      what === 'poison' ? 'poison record' : what === 'expired' ? 'records expired' : 'handler failed',
    );
    if (what === 'expired') this.#emitExpired(lane.shardId, records, error, action);
    else {
      this.#o.events.emit('handler.failed', {
        shardId: lane.shardId,
        error,
        attempt: attempts,
        action,
        records: records.length,
      });
    }
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

  #emitExpired(
    shardId: string,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    action: ThenAction,
  ): void {
    const first = records[0]!;
    const payload: StreamEventMap['record.expired'] = {
      shardId,
      records: records.length,
      sequenceNumber: first.sequenceNumber,
      ageMs: (error.details?.ageMs as number | undefined) ?? 0,
      action,
    };
    if (first.subSequenceNumber !== undefined) payload.subSequenceNumber = first.subSequenceNumber;
    this.#o.expired?.(shardId, records.length);
    this.#o.events.emit('record.expired', payload);
  }

  get #maxAgeMs(): number {
    return this.#o.maxRecordAgeMs ?? Number.POSITIVE_INFINITY;
  }

  /**
   * One handler call: the error it threw, or the failure it reported (a partial answer), with `done`
   * records before it processed.
   */
  async #attempt<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    batch: RecordBatch<T>,
  ): Promise<{ error?: ShardlineError; done: number }> {
    const span = this.#o.tracing?.start(lane.shardId, batch.records);
    const result = await this.#call(lane, handler, batch, span);
    if (span !== undefined) {
      if (result.error !== undefined) span.fail(result.error);
      span.end();
    }
    return result;
  }

  async #call<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    batch: RecordBatch<T>,
    span: TraceSpan | undefined,
  ): Promise<{ error?: ShardlineError; done: number }> {
    let answer: unknown;
    try {
      answer = await (span === undefined ? handler(batch) : span.run(() => handler(batch)));
    } catch (thrown) {
      return { error: toHandlerError(thrown, lane.shardId), done: 0 };
    }
    try {
      const at = failedIndex(answer, batch.records, lane.shardId);
      if (at === undefined) return { done: 0 };
      return { error: reportedFailure(batch.records[at]!, lane.shardId), done: at };
    } catch (invalid) {
      return { error: toHandlerError(invalid, lane.shardId), done: 0 };
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
   * `then` applies only to the records that fail alone (`attempts`: what each has had by then), or
   * are past `maxRecordAgeMs` by their turn.
   */
  async #isolate<T>(
    lane: PolicyLane<T>,
    handler: RecordHandler<T>,
    records: ShardRecord<T>[],
    end: ShardPosition,
    millisBehindLatest: number | undefined,
    attempts: number,
  ): Promise<Outcome> {
    for (const [n, record] of records.entries()) {
      if (!(await lane.gate())) return 'abandoned';
      // The last record reports the batch's end, as the whole batch would have.
      const position = n === records.length - 1 ? end : positionOf(record);
      if (ageRuns([record], Date.now(), this.#maxAgeMs) !== undefined) {
        const outcome = await this.#expire(lane, [record], position, attempts - 1);
        if (outcome !== 'skipped') return outcome;
        continue;
      }
      const started = performance.now();
      const single = lane.makeBatch([record], position, millisBehindLatest).batch;
      const { error } = await this.#attempt(lane, handler, single);
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
