/**
 * The producer's events and status types, and the emitter behind `Producer.on()`: a listener that throws
 * is logged, never fatal to the data path.
 */
import { ErrorCodes, type Logger, ShardlineError } from '@shardline/common';

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

export class ProducerEmitter {
  readonly #listeners: { [K in ProducerEventName]?: Set<(event: ProducerEvents[K]) => void> } = {};
  readonly #logger: Logger;

  constructor(logger: Logger) {
    this.#logger = logger;
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<K extends ProducerEventName>(event: K, listener: (event: ProducerEvents[K]) => void): () => void {
    if (typeof listener !== 'function') {
      throw new ShardlineError(ErrorCodes.INVALID_OPTION, `listener for '${event}' must be a function`);
    }
    let set = this.#listeners[event] as Set<(e: ProducerEvents[K]) => void> | undefined;
    if (set === undefined) {
      set = new Set();
      (this.#listeners as Record<string, unknown>)[event] = set;
    }
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  }

  emit<K extends ProducerEventName>(event: K, payload: ProducerEvents[K]): void {
    const set = this.#listeners[event] as Set<(e: ProducerEvents[K]) => void> | undefined;
    if (set === undefined || set.size === 0) return;
    for (const listener of set) {
      try {
        listener(payload);
      } catch (error) {
        this.#logger.error({ err: error, event }, 'producer: event listener threw');
      }
    }
  }
}
