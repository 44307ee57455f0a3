/**
 * ReaderRun: one reader task of a shard session and what belongs to it: its delivery lane (on this
 * thread, or in the worker for `handlerModule`) and its credit account. It routes the reader's
 * messages: batches to the lane and the account, figures to the shard's stats, events to the
 * coordinator's emitter, and what needs a decision (processed positions, a failed record, checkpoint
 * and dead-letter requests, shard-end children) to its session, which owns the lifecycle. A session
 * runs one at a time; after a worker crash it starts another.
 */

import type { ShardPosition, ShardRecord, WorkerMessage } from '@shardline/common';
import {
  assertNever,
  batchSize,
  deserializeError,
  type Logger,
  PROTOCOL_VERSION,
  type SerializedError,
  type ShardlineError,
  serializeError,
} from '@shardline/common';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import type { CreditAccount, CreditLedger } from './delivery/credit-ledger.js';
import type { Lane, LaneHooks } from './delivery/lane.js';
import type { CoordinatorEvents } from './events.js';
import type { CoordinatorMetrics } from './metrics.js';
import type { ModuleCoordinatorMessage, ModuleWorkerMessage } from './module-protocol.js';
import type { ReaderExit, ReaderHandle } from './supervisor.js';

/** Per-shard figures for `status()` and the metrics, kept by the coordinator across sessions. */
export interface ShardStats {
  /** Pool index of the thread running the shard's reader (the latest one). */
  thread?: number;
  recordsDelivered: number;
  /** Records not handed out for being older than `maxRecordAgeMs`. */
  recordsExpired: number;
  throttled: number;
  lastFetchAtMs?: number;
  millisBehindLatest?: number;
}

/** What a run needs decided by its session. */
export interface RunOwner {
  readonly shardId: string;
  /** Processed up to `position` (`records` handed to the user). */
  processed(position: ShardPosition): void;
  /** `batch.checkpoint()`. */
  checkpoint(position: ShardPosition): Promise<void>;
  /** `onHandlerError.then: 'stop-shard'` applied at `position`. */
  failed(error: ShardlineError, position: ShardPosition | undefined): void;
  /** Children a reader learnt at shard end. */
  noteChildren(childShardIds: readonly string[]): void;
}

/** What the coordinator provides to every run. */
export interface ReaderRunDeps<T> {
  events: CoordinatorEvents;
  logger: Logger;
  metrics: CoordinatorMetrics | undefined;
  /** The host's credit ledger, or one stream's view of it (its accounts keyed apart from other streams'). */
  ledger: Pick<CreditLedger, 'open'>;
  stats: ShardStats;
  /** Starts a reader task (the supervisor's pool). */
  startReader(
    options: ShardReaderTaskOptions,
    onMessage: (message: WorkerMessage | ModuleWorkerMessage) => void,
  ): ReaderHandle;
  /** The pool index of a thread, by threadId. */
  threadIndex(threadId: number): number | undefined;
  /** A lane on this thread; undefined for `handlerModule` (the lane runs in the worker). */
  lane: ((hooks: LaneHooks) => Lane<T>) | undefined;
  /** Sends records to the dead-letter queue (`handlerModule` requests). */
  deadLetter(records: ShardRecord<unknown>[], error: ShardlineError, attempts: number): Promise<void>;
}

export class ReaderRun<T = unknown> {
  readonly reader: ReaderHandle;
  readonly lane: Lane<T> | undefined;
  readonly account: CreditAccount;
  readonly #owner: RunOwner;
  readonly #d: ReaderRunDeps<T>;
  /** False once the session moved on (a newer run, or a lane closing): late batches are dropped. */
  #current = true;

  constructor(owner: RunOwner, deps: ReaderRunDeps<T>, options: ShardReaderTaskOptions) {
    this.#owner = owner;
    this.#d = deps;
    this.reader = deps.startReader(options, (message) => this.#onMessage(message));
    const reader = this.reader;
    this.account = deps.ledger.open(owner.shardId, (message) => reader.send(message));
    this.lane = deps.lane?.(this.#laneHooks());
  }

  get exited(): Promise<ReaderExit> {
    return this.reader.exited;
  }

  /**
   * Whether records may be handed out now; for `handlerModule`, until when (epoch ms, 0 for not at all):
   * the lane in the worker pauses itself then.
   */
  deliverUntil(open: boolean, epochMs: number): void {
    if (this.lane !== undefined) {
      if (open) this.lane.resume();
      else this.lane.pause();
      return;
    }
    const message: ModuleCoordinatorMessage = {
      v: PROTOCOL_VERSION,
      type: 'module-deadline',
      epochMs: open ? epochMs : 0,
    };
    this.reader.send(message);
  }

  /**
   * Stops the reader and halts the lane: queued batches are dropped, the batch in hand finishes.
   * Resolves once it did (for `handlerModule`, once the worker, which finishes it, exited).
   */
  async wind(reason: string): Promise<void> {
    this.#current = false;
    this.lane?.halt();
    this.reader.stop(reason);
    if (this.lane !== undefined) await this.lane.close();
    else await this.reader.exited;
  }

  /** After the reader exited and the lane is done: gives the account's room back. */
  close(): void {
    this.#current = false;
    this.lane?.halt();
    this.account.close();
  }

  #laneHooks(): LaneHooks {
    const stats = this.#d.stats;
    return {
      processed: (position, records) => {
        stats.recordsDelivered += records;
        this.#owner.processed(position);
      },
      checkpoint: (position) => this.#owner.checkpoint(position),
      finished: (batch, completed) => {
        this.account.release(batchSize(batch), batch.bytes);
        if (!completed) return;
        this.reader.send({ v: PROTOCOL_VERSION, type: 'ack', batchId: batch.batchId });
        this.#d.metrics?.batchDone(batch.bytes);
      },
      failed: (error, position) => this.#owner.failed(error, position),
    };
  }

  #onMessage(message: WorkerMessage | ModuleWorkerMessage): void {
    const { stats } = this.#d;
    const shardId = this.#owner.shardId;
    this.#d.metrics?.onMessage(message);
    switch (message.type) {
      case 'started': {
        const thread = this.#d.threadIndex(message.threadId);
        if (thread !== undefined) stats.thread = thread;
        return;
      }
      case 'batch': {
        const lane = this.lane;
        const keep = lane !== undefined && !lane.halted && this.#current;
        this.account.received(batchSize(message), message.bytes, keep);
        // A reader being stopped may still send what it fetched: not delivered, read again later.
        if (keep) lane.push(message);
        return;
      }
      case 'fetched':
        stats.lastFetchAtMs = message.lastFetchAtMs;
        if (message.millisBehindLatest !== undefined) stats.millisBehindLatest = message.millisBehindLatest;
        return;
      case 'throttled':
        stats.throttled += message.count;
        this.#d.events.emit('throttled', { shardId, delayMs: message.delayMs });
        return;
      case 'error': {
        if (message.fatal) {
          this.#d.logger.error({ shardId, err: message.error }, 'shard reader failed');
          this.#d.events.emit('error', { error: deserializeError(message.error), shardId });
        } else {
          this.#d.logger.debug({ shardId, err: message.error }, 'shard reader retrying after an error');
        }
        return;
      }
      case 'log':
        this.#d.logger[message.level]({ ...message.fields, shardId }, message.message);
        return;
      case 'shard-end':
        if (message.childShardIds !== undefined) this.#owner.noteChildren(message.childShardIds);
        return;
      default:
        this.#onModuleMessage(message);
    }
  }

  /** `handlerModule`: the lane in the worker reports here. */
  #onModuleMessage(message: ModuleWorkerMessage): void {
    const shardId = this.#owner.shardId;
    switch (message.type) {
      case 'module-batch':
        this.account.received(message.records, message.bytes, true);
        return;
      case 'module-done':
        // The metrics count it from the message itself (metrics.onMessage).
        this.account.release(message.records, message.bytes);
        return;
      case 'module-progress':
        this.#d.stats.recordsDelivered += message.delivered;
        this.#owner.processed(message.position);
        return;
      case 'module-failed':
        this.#owner.failed(deserializeError(message.error), message.position);
        return;
      case 'module-checkpoint':
        this.#answer(message.id, this.#owner.checkpoint(message.position));
        return;
      case 'module-dead-letter': {
        const records = message.records as ShardRecord<unknown>[];
        this.#answer(
          message.id,
          this.#d.deadLetter(records, deserializeError(message.error), message.attempts),
        );
        return;
      }
      case 'module-batch-processed':
        this.#d.events.emit('batch.processed', message.event);
        return;
      case 'module-record-expired':
        this.#d.stats.recordsExpired += message.event.records;
        this.#d.events.emit('record.expired', message.event);
        return;
      case 'module-handler-failed':
        this.#d.events.emit('handler.failed', {
          shardId,
          error: deserializeError(message.error),
          attempt: message.attempt,
          action: message.action,
          records: message.records,
        });
        return;
      default:
        assertNever(message);
    }
  }

  /** Answers a request of a `handlerModule` worker once `work` settled. */
  #answer(id: number, work: Promise<void>): void {
    const answer = (error?: SerializedError) => {
      const result: ModuleCoordinatorMessage = { v: PROTOCOL_VERSION, type: 'module-result', id };
      if (error !== undefined) result.error = error;
      this.reader.send(result);
    };
    work.then(
      () => answer(),
      (error: unknown) => answer(serializeError(error)),
    );
  }
}
