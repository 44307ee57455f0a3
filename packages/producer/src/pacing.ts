/**
 * Per-shard pacing with the shard's token buckets (records/s, bytes/s): what a shard may spend now, the
 * least it waits for before it sends, and when that will be.
 */
import { AGGREGATE_OVERHEAD_BYTES, type PendingRecord, type ShardState } from './records.js';

/**
 * Share of each shard bucket the producer leaves unspent. Kinesis (and the FaultProxy) meter calls when they
 * arrive, the producer when it sends them: calls reaching the service closer together than they left would
 * spend tokens the service has not refilled yet. 5% of a second's budget absorbs 50 ms of such jitter; the
 * long-run rate is unchanged (only the burst after a quiet period is 5% smaller).
 */
export const PACING_RESERVE = 0.05;
/** A paced shard waits for this share of its buckets (or its whole queue) before it sends. */
export const PACING_MIN_BATCH = 0.05;

/** Record and byte tokens a shard may spend now. */
export interface Budget {
  records: number;
  bytes: number;
  /** The byte bucket is full, which lets one entry larger than the usable budget go (it then leaves a debt). */
  bytesFull: boolean;
}

const UNPACED: Budget = Object.freeze({
  records: Number.POSITIVE_INFINITY,
  bytes: Number.POSITIVE_INFINITY,
  bytesFull: true,
});

/** How records are packed, which decides what one token buys. */
export interface Packing {
  aggregate: boolean;
  /** Several records per Kinesis record: KPL aggregates or framed packs. */
  packs: boolean;
}

/** What the shard's buckets hold minus the reserve. */
export function budgetOf(shard: ShardState): Budget {
  const limiter = shard.limiter;
  if (limiter === undefined) return UNPACED;
  const r = limiter.records;
  const b = limiter.bytes;
  let bytesFull = true;
  let bytes = Number.POSITIVE_INFINITY;
  if (b !== undefined) {
    const available = b.available();
    bytesFull = available >= b.capacity;
    bytes = available - b.capacity * PACING_RESERVE;
  }
  return {
    records:
      r === undefined ? Number.POSITIVE_INFINITY : Math.floor(r.available() - r.capacity * PACING_RESERVE),
    bytes,
    bytesFull,
  };
}

/**
 * The least a paced shard waits for before it sends: a share of its buckets (or all it has queued, if
 * less), so a shard at its limit sends a call every few tens of milliseconds, not one per token.
 */
export function paceNeed(
  shard: ShardState,
  head: PendingRecord,
  packing: Packing,
): { records: number; bytes: number } {
  const limiter = shard.limiter!;
  const r = limiter.records;
  const b = limiter.bytes;
  const records =
    r === undefined || packing.packs
      ? 1
      : Math.max(1, Math.min(shard.queue.length, Math.ceil(r.capacity * PACING_MIN_BATCH)));
  let bytes = 0;
  if (b !== undefined) {
    const headBytes = packing.aggregate ? head.bytes + head.keyBytes + AGGREGATE_OVERHEAD_BYTES : head.bytes;
    const batch = Math.min(shard.queuedBytes, Math.ceil(b.capacity * PACING_MIN_BATCH));
    bytes = Math.min(b.capacity, Math.max(headBytes, batch));
  }
  return { records, bytes };
}

/** Whether a shard's budget covers what it waits for. */
export function paceReady(shard: ShardState, budget: Budget, packing: Packing): boolean {
  if (shard.limiter === undefined) return true;
  const need = paceNeed(shard, shard.queue.peek()!, packing);
  return budget.records >= need.records && (budget.bytesFull || budget.bytes >= need.bytes);
}

/** Milliseconds until a paced shard's buckets hold what it waits for, plus the reserve; undefined when unpaced. */
export function paceDelayMs(shard: ShardState, head: PendingRecord, packing: Packing): number | undefined {
  const limiter = shard.limiter;
  if (limiter === undefined) return undefined;
  const need = paceNeed(shard, head, packing);
  const reserveRecords = (limiter.records?.capacity ?? 0) * PACING_RESERVE;
  const reserveBytes = (limiter.bytes?.capacity ?? 0) * PACING_RESERVE;
  return limiter.delayMs(need.records + reserveRecords, need.bytes + reserveBytes);
}
