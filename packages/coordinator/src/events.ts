/**
 * The coordinator's typed events: `coordinator.on(name, listener)` returns an unsubscribe function.
 *
 * Listeners are the user's code running on the coordinator thread, in the middle of lease and shard
 * bookkeeping: one that throws (or returns a promise that rejects) is logged and skipped, never allowed
 * to break the coordinator or the other listeners (the rules of `TypedEvents` in @shardline/common).
 */

import type { Logger } from '@shardline/common';
import { ErrorCodes, ShardlineError, TypedEvents } from '@shardline/common';

/** Why this host no longer holds a lease it was reading. */
export type LeaseLostReason =
  /** Renewal failed long enough that the lease may have expired (e.g. Redis unreachable). */
  | 'renew-failed'
  /** The store refused renewal or checkpoint: another host holds the lease now (fenced). */
  | 'fenced'
  /** The lease expired before it could be renewed. */
  | 'expired';

/** Why this host gave a lease back. */
export type LeaseReleasedReason =
  /** `stop()` or the AbortSignal. */
  | 'stop'
  /** Another host asked for it (rebalancing). */
  | 'handoff'
  /** The shard was read to its end. */
  | 'shard-end'
  /** Over `maxShardConsumers`. */
  | 'over-capacity'
  /** The shard stopped after handler failures (`onHandlerError.then: 'stop-shard'`). */
  | 'failed';

/** Where a reader started in its shard. */
export type StartPosition =
  | 'TRIM_HORIZON'
  | 'LATEST'
  | 'AT_TIMESTAMP'
  | 'AFTER_SEQUENCE_NUMBER'
  | 'AT_SEQUENCE_NUMBER';

/**
 * What happens after a handler failure: `'retry'` the batch; `'isolate'`: its retries are spent, so its
 * records are delivered again one at a time (the records that then fail alone get `onHandlerError.then`:
 * `'stop-shard'`, `'dead-letter'` or `'skip'`).
 */
export type HandlerFailureAction = 'retry' | 'isolate' | 'stop-shard' | 'dead-letter' | 'skip';

/** What happened to records older than `maxRecordAgeMs`: `onHandlerError.then`. */
export type ExpiredRecordAction = 'stop-shard' | 'dead-letter' | 'skip';

/**
 * Event name -> payload as one stream's runtime emits it (internal): the coordinator adds
 * `streamName` before its listeners see it ({@link CoordinatorEventMap}).
 */
export interface StreamEventMap {
  /** This host took a shard's lease. */
  'lease.acquired': { shardId: string; counter: number; checkpoint?: string };
  /** This host lost a lease without releasing it; its reader stops at once. */
  'lease.lost': { shardId: string; counter: number; reason: LeaseLostReason };
  /** This host released a lease (checkpoint written first). */
  'lease.released': { shardId: string; counter: number; reason: LeaseReleasedReason };
  /** A reader started on a shard. */
  'shard.started': {
    shardId: string;
    position: StartPosition;
    sequenceNumber?: string;
    subSequenceNumber?: number;
    thread?: number;
  };
  /** A shard was read to its end and checkpointed SHARD_END. */
  'shard.ended': { shardId: string; childShardIds: string[] };
  /** A batch was processed (handler resolved, or the iterator asked for the next batch). */
  'batch.processed': {
    shardId: string;
    records: number;
    durationMs: number;
    lastSequenceNumber?: string;
    lastSubSequenceNumber?: number;
    millisBehindLatest?: number;
  };
  /** A checkpoint was written. `sequenceNumber` is `'SHARD_END'` at shard end. */
  checkpoint: { shardId: string; sequenceNumber: string; subSequenceNumber?: number; counter: number };
  /** GetRecords was throttled on a shard; the reader backs off for `delayMs`. */
  throttled: { shardId: string; delayMs: number };
  /** The handler (or decoding) failed for a batch; `action` says what happens next. */
  'handler.failed': {
    shardId: string;
    error: ShardlineError;
    attempt: number;
    action: HandlerFailureAction;
    records: number;
  };
  /**
   * Records older than `maxRecordAgeMs` were not handed to the handler: `onHandlerError.then` applied
   * to them (`action`). `sequenceNumber`: the first of them; `ageMs`: its age then.
   */
  'record.expired': {
    shardId: string;
    records: number;
    sequenceNumber: string;
    subSequenceNumber?: number;
    ageMs: number;
    action: ExpiredRecordAction;
  };
  /** A worker thread crashed (`thread`: its pool index, -1 if unknown); its shards resume from their checkpoints on a new thread. */
  'worker.crashed': { thread: number; error: ShardlineError; shardIds: string[]; respawned: boolean };
  /** An error the coordinator survived (a failed ListShards, a reader's fatal error...). */
  error: { error: ShardlineError; shardId?: string };
  /** Something needs the operator's attention but nothing failed (e.g. not enough capacity). */
  warning: { code: string; message: string; details?: Record<string, unknown> };
}

/**
 * Event name -> payload of every event the coordinator emits. Every payload names its stream
 * (`streamName`; with one stream, always that one); `error` and `warning` may concern the whole host
 * (e.g. the worker pool's shutdown), then without `streamName`.
 */
export type CoordinatorEventMap = {
  [K in keyof StreamEventMap]: K extends 'error' | 'warning'
    ? StreamEventMap[K] & { streamName?: string }
    : StreamEventMap[K] & { streamName: string };
};

export type CoordinatorEventName = keyof CoordinatorEventMap;
export type CoordinatorEventListener<E extends CoordinatorEventName> = (
  payload: CoordinatorEventMap[E],
) => unknown;

/** Every event name, for validating names given by JavaScript callers. */
export const COORDINATOR_EVENT_NAMES: readonly (keyof StreamEventMap)[] = Object.freeze([
  'lease.acquired',
  'lease.lost',
  'lease.released',
  'shard.started',
  'shard.ended',
  'batch.processed',
  'checkpoint',
  'throttled',
  'handler.failed',
  'record.expired',
  'worker.crashed',
  'error',
  'warning',
]);

/** The subscription side, as `startCoordinator()`'s result exposes it. */
export interface CoordinatorEventSource {
  on<E extends CoordinatorEventName>(event: E, listener: CoordinatorEventListener<E>): () => void;
  once<E extends CoordinatorEventName>(event: E, listener: CoordinatorEventListener<E>): () => void;
}

/**
 * One stream's emitter (internal): the shared {@link TypedEvents} rules over {@link StreamEventMap}
 * (an `error` event with no listener is not thrown: the coordinator logs errors itself). Given a
 * `forward` host emitter and a `streamName`, every event is also emitted there with `streamName` added.
 */
export class CoordinatorEvents extends TypedEvents<StreamEventMap> {
  readonly #forward: HostEvents | undefined;
  readonly #streamName: string | undefined;

  constructor(logger: Logger, forward?: { to: HostEvents; streamName: string }) {
    super(COORDINATOR_EVENT_NAMES, { logger });
    this.#forward = forward?.to;
    this.#streamName = forward?.streamName;
  }

  override emit<E extends keyof StreamEventMap & string>(event: E, payload: StreamEventMap[E]): void {
    super.emit(event, payload);
    const to = this.#forward;
    if (to !== undefined && to.listenerCount(event) > 0) {
      to.emit(event, { ...payload, streamName: this.#streamName } as CoordinatorEventMap[E]);
    }
  }
}

/** The coordinator's public emitter: every stream's events, each naming its stream. */
export class HostEvents extends TypedEvents<CoordinatorEventMap> implements CoordinatorEventSource {
  constructor(logger: Logger) {
    super(COORDINATOR_EVENT_NAMES, { logger });
  }
}

/** `error` as the coordinator reports it (its `error` event, its log): a ShardlineError, else ERR_INTERNAL saying what failed. */
export function reportedError(error: unknown, message: string): ShardlineError {
  if (error instanceof ShardlineError) return error;
  return new ShardlineError(
    ErrorCodes.INTERNAL,
    `${message}: ${String((error as Error)?.message ?? error)}`,
    {
      cause: error,
    },
  );
}
