/**
 * The producer's events and status types, and the emitter behind `Producer.on()`: a listener that throws
 * is logged, never fatal to the data path; an unknown event name is refused.
 */
import { type Logger, type ShardlineError, TypedEvents } from '@shardline/common';

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

/** Why the shard map was (re)loaded. */
export type RefreshReason = ProducerEvents['shards.refreshed']['reason'];

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

/** Every event name, for validating names given by JavaScript callers. */
const PRODUCER_EVENT_NAMES: readonly ProducerEventName[] = Object.freeze([
  'put',
  'retry',
  'throttled',
  'error',
  'shards.refreshed',
]);

/** The emitter behind `Producer.on()`: the shared {@link TypedEvents} rules over {@link ProducerEvents}. */
export class ProducerEmitter extends TypedEvents<ProducerEvents> {
  constructor(logger: Logger) {
    super(PRODUCER_EVENT_NAMES, { logger, label: 'producer' });
  }
}
