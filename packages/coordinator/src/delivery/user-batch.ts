/** The user's view of a run of records: a {@link RecordBatch} whose `checkpoint(upTo?)` writes through. */

import type { ShardPosition, ShardRecord } from '@shardline/common';
import { ShardlineOptionError } from '@shardline/common';
import type { RecordBatch } from '../options.js';
import { positionOf } from './failure-policy.js';

/** A batch built for the user, and whether `batch.checkpoint()` covered all of it. */
export interface BuiltBatch<T> {
  batch: RecordBatch<T>;
  checkpointedToEnd(): boolean;
}

/**
 * A batch for the user: its `checkpoint(upTo?)` calls `write` with `end` (no `upTo`, or the last record)
 * or the position of `upTo`, a record of the batch.
 */
export function buildBatch<T>(
  shardId: string,
  records: ShardRecord<T>[],
  end: ShardPosition,
  millisBehindLatest: number | undefined,
  write: (position: ShardPosition) => Promise<void>,
  streamName = '',
): BuiltBatch<T> {
  let toEnd = false;
  const checkpoint = (position: ShardPosition, whole: boolean): Promise<void> =>
    write(position).then(() => {
      if (whole) toEnd = true;
    });
  const batch: RecordBatch<T> = {
    streamName,
    shardId,
    records,
    checkpoint: (upTo?: ShardRecord<T>) => {
      if (upTo === undefined) return checkpoint(end, true);
      const found = records.includes(upTo)
        ? upTo
        : records.find(
            (r) =>
              r.sequenceNumber === upTo?.sequenceNumber && r.subSequenceNumber === upTo?.subSequenceNumber,
          );
      if (found === undefined) {
        return Promise.reject(
          new ShardlineOptionError('upTo', 'must be a record of this batch (or omitted for the whole batch)'),
        );
      }
      const last = found === records[records.length - 1];
      return checkpoint(last ? end : positionOf(found), last);
    },
  };
  if (millisBehindLatest !== undefined) batch.millisBehindLatest = millisBehindLatest;
  return { batch, checkpointedToEnd: () => toEnd };
}
