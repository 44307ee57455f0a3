/**
 * Where a shard's reader starts, each time its session starts one: right after the position processing
 * reached (a restart after a worker crash) or the checkpoint; else, for a root of the group's shard
 * graph, the initial position; else (a child of shards the group read) TRIM_HORIZON, after its parents.
 * A LATEST start that is restarted before anything was processed resumes from the time of the first
 * start (less a margin for the skew between this host's clock and Kinesis' arrival times): LATEST again
 * would skip what arrived in between. Likewise across hosts: a lease acquired before (by any host) and
 * still without checkpoint is read from its first acquisition's time (less the margin), since its
 * earlier owner may have died or let it go before checkpointing what it read at LATEST; only the very
 * first owner starts at LATEST.
 */

import type { ShardPosition } from '@shardline/common';
import type { StartPosition } from './events.js';
import type { InitialPosition } from './options.js';

/** Where a reader starts: after (or at, with a sub-sequence) a checkpoint, or at an initial position. */
export type ReaderStart = { checkpoint: ShardPosition } | { initialPosition: InitialPosition };

export const READER_START_DEFAULTS = Object.freeze({
  /** How far before a first LATEST start a restarted reader (or the next owner) resumes. */
  latestSkewMarginMs: 5_000,
});

/** The start positions of one session's readers. */
export class ReaderStarts {
  readonly #isRoot: boolean;
  readonly #initial: InitialPosition;
  /** Epoch ms of the first LATEST start: this session's, or the lease's first acquisition. */
  #latestStartMs: number | undefined;

  /**
   * @param earlierStartMs for a lease some host acquired before this acquisition (counter above 1):
   *   when it was first acquired (epoch ms), so a LATEST start without checkpoint reads from then.
   */
  constructor(isRoot: boolean, initialPosition: InitialPosition, earlierStartMs?: number) {
    this.#isRoot = isRoot;
    this.#initial = initialPosition;
    this.#latestStartMs = earlierStartMs;
  }

  /** The next start, `resumeFrom` being where processing (or the checkpoint) got to. */
  next(resumeFrom: ShardPosition | undefined): ReaderStart {
    if (resumeFrom !== undefined) return { checkpoint: resumeFrom };
    if (!this.#isRoot) return { initialPosition: 'TRIM_HORIZON' };
    if (this.#initial !== 'LATEST') return { initialPosition: this.#initial };
    if (this.#latestStartMs === undefined) {
      this.#latestStartMs = Date.now();
      return { initialPosition: 'LATEST' };
    }
    return {
      initialPosition: {
        timestamp: new Date(this.#latestStartMs - READER_START_DEFAULTS.latestSkewMarginMs),
      },
    };
  }
}

/** The `shard.started` event of a start. */
export function startedEvent(
  shardId: string,
  start: ReaderStart,
): { shardId: string; position: StartPosition; sequenceNumber?: string; subSequenceNumber?: number } {
  if (!('checkpoint' in start)) {
    return {
      shardId,
      position: typeof start.initialPosition === 'string' ? start.initialPosition : 'AT_TIMESTAMP',
    };
  }
  const { sequenceNumber, subSequenceNumber } = start.checkpoint;
  return subSequenceNumber === undefined
    ? { shardId, position: 'AFTER_SEQUENCE_NUMBER', sequenceNumber }
    : { shardId, position: 'AT_SEQUENCE_NUMBER', sequenceNumber, subSequenceNumber };
}
