/**
 * `maxRecordAgeMs`: a record older than this (now minus its ApproximateArrivalTimestamp) when it would
 * be handed to the handler is not handed out: it goes to `onHandlerError.then` instead (Lambda's
 * MaximumRecordAgeInSeconds). It is checked before every handler call, retries and isolated records
 * included, so it also bounds how long a failing batch is retried.
 *
 * Arrival times are the service's clock and this host's `Date.now()` is compared with them: a skew
 * between the two shifts the age by as much (keep hosts NTP-synchronised; use a limit well above it).
 */

import type { ShardRecord } from '@shardline/common';
import { ErrorCodes, ShardlineError } from '@shardline/common';

/** A stretch of a batch's records, in order, all expired or all not. */
export interface AgeRun<T> {
  expired: boolean;
  records: ShardRecord<T>[];
}

/** Splits `records` into runs by age at `nowMs`; undefined when none is older than `maxAgeMs`. */
export function ageRuns<T>(
  records: ShardRecord<T>[],
  nowMs: number,
  maxAgeMs: number,
): AgeRun<T>[] | undefined {
  if (maxAgeMs === Number.POSITIVE_INFINITY) return undefined;
  const oldest = nowMs - maxAgeMs;
  const isExpired = (r: ShardRecord<T>) => r.approximateArrivalTimestamp.getTime() < oldest;
  if (!records.some(isExpired)) return undefined;
  const runs: AgeRun<T>[] = [];
  for (const record of records) {
    const expired = isExpired(record);
    const last = runs[runs.length - 1];
    if (last !== undefined && last.expired === expired) last.records.push(record);
    else runs.push({ expired, records: [record] });
  }
  return runs;
}

/** The error the expired records of a run get `then` with. */
export function expiredError(
  records: readonly ShardRecord<unknown>[],
  shardId: string,
  nowMs: number,
  maxAgeMs: number,
): ShardlineError {
  const first = records[0]!;
  const ageMs = nowMs - first.approximateArrivalTimestamp.getTime();
  const sub = first.subSequenceNumber === undefined ? '' : `:${first.subSequenceNumber}`;
  const more = records.length > 1 ? ` (and ${records.length - 1} after it)` : '';
  return new ShardlineError(
    ErrorCodes.RECORD_EXPIRED,
    `record ${first.sequenceNumber}${sub} of ${shardId}${more} is ${ageMs} ms old, over maxRecordAgeMs ${maxAgeMs}: not handed to the handler`,
    { details: { shardId, sequenceNumber: first.sequenceNumber, ageMs, maxRecordAgeMs: maxAgeMs } },
  );
}
