/**
 * The handler's partial-batch answer (Lambda's ReportBatchItemFailures for a Shardline handler): what a
 * handler resolves to tells which record of its batch failed first. The records before it are processed
 * (checkpointable); it and the records after it failed, and are retried as the rest of the batch.
 *
 * Two shapes, so that a Lambda handler ports as it is:
 * - `{ failedAt: record }`: a record of the batch (the object handed out, or its
 *   `{ sequenceNumber, subSequenceNumber? }`); `failedAt: undefined` (or `null`) means none failed.
 * - `{ batchItemFailures: [{ itemIdentifier: sequenceNumber }, ...] }`: Lambda's answer; the earliest
 *   record named counts (Lambda checkpoints before the lowest sequence number, and so does this).
 *   An empty or null list means none failed; an item without a non-empty string `itemIdentifier` fails
 *   the whole batch, as in Lambda.
 *
 * Anything else (`undefined`, a value without those keys) means the whole batch was processed, as
 * before. An answer naming no record of the batch fails the whole batch (`ERR_HANDLER`): the handler
 * must not be trusted to have processed it.
 */

import type { ShardPosition, ShardRecord } from '@shardline/common';
import { ErrorCodes, ShardlineError } from '@shardline/common';

/** What a handler may resolve to instead of nothing: the first record of its batch that failed. */
export type BatchAnswer<T = unknown> =
  | { failedAt: ShardRecord<T> | ShardPosition | null | undefined }
  | { batchItemFailures: ReadonlyArray<{ itemIdentifier: string }> | null | undefined };

/** The index in `records` of the first failed record, or undefined when the answer reports none. */
export function failedIndex(
  answer: unknown,
  records: readonly ShardRecord<unknown>[],
  shardId: string,
): number | undefined {
  if (typeof answer !== 'object' || answer === null) return undefined;
  if ('failedAt' in answer) return failedAtIndex(answer.failedAt, records, shardId);
  if ('batchItemFailures' in answer) return lambdaIndex(answer.batchItemFailures, records, shardId);
  return undefined;
}

function invalid(shardId: string, what: string): ShardlineError {
  return new ShardlineError(
    ErrorCodes.HANDLER,
    `the handler's answer for a batch of ${shardId} ${what}: the whole batch counts as failed`,
    { details: { shardId } },
  );
}

function failedAtIndex(
  failedAt: unknown,
  records: readonly ShardRecord<unknown>[],
  shardId: string,
): number | undefined {
  if (failedAt === undefined || failedAt === null) return undefined;
  const byIdentity = records.indexOf(failedAt as ShardRecord<unknown>);
  if (byIdentity !== -1) return byIdentity;
  const p = failedAt as Partial<ShardPosition>;
  if (typeof p !== 'object' || typeof p.sequenceNumber !== 'string') {
    throw invalid(
      shardId,
      'has a failedAt that is neither a record nor { sequenceNumber, subSequenceNumber? }',
    );
  }
  const at = records.findIndex(
    (r) =>
      r.sequenceNumber === p.sequenceNumber &&
      (p.subSequenceNumber === undefined || r.subSequenceNumber === p.subSequenceNumber),
  );
  if (at === -1) {
    const sub = p.subSequenceNumber === undefined ? '' : `:${p.subSequenceNumber}`;
    throw invalid(shardId, `names failedAt ${p.sequenceNumber}${sub}, which is no record of the batch`);
  }
  return at;
}

function lambdaIndex(
  failures: unknown,
  records: readonly ShardRecord<unknown>[],
  shardId: string,
): number | undefined {
  if (failures === undefined || failures === null) return undefined;
  if (!Array.isArray(failures)) throw invalid(shardId, 'has a batchItemFailures that is not an array');
  if (failures.length === 0) return undefined;
  const named = new Set<string>();
  for (const item of failures as Array<{ itemIdentifier?: unknown } | null>) {
    const id = item?.itemIdentifier;
    if (typeof id !== 'string' || id.length === 0) {
      throw invalid(shardId, 'has a batchItemFailures item without a non-empty itemIdentifier');
    }
    named.add(id);
  }
  const at = records.findIndex((r) => named.has(r.sequenceNumber));
  if (at === -1) {
    throw invalid(shardId, `names itemIdentifier ${[...named][0]}, which is no record of the batch`);
  }
  return at;
}

/** The error a record reported failed (by the answer) carries through retries and `then`. */
export function reportedFailure(record: ShardRecord<unknown>, shardId: string): ShardlineError {
  const sub = record.subSequenceNumber === undefined ? '' : `:${record.subSequenceNumber}`;
  return new ShardlineError(
    ErrorCodes.HANDLER,
    `the handler reported record ${record.sequenceNumber}${sub} of ${shardId} failed`,
    {
      details: {
        shardId,
        sequenceNumber: record.sequenceNumber,
        ...(record.subSequenceNumber === undefined ? {} : { subSequenceNumber: record.subSequenceNumber }),
      },
    },
  );
}
