/**
 * A lease hash as the Redis lease scripts return it (HGETALL: field, value, field, value...) turned into
 * a {@link Lease}. Lenient on purpose where a field is advisory (a failure note, a malformed id list).
 */

import { SHARD_END } from '@shardline/common';
import type { RawLease } from './scripts.js';
import type { Checkpoint, Lease, LeaseFailure } from './types.js';

/** Undefined for an empty hash (no such lease). `nowMs`: the server clock when it was read. */
export function decodeLease(
  shardId: string,
  raw: RawLease,
  nowMs: number,
  leaseDurationMs: number,
): Lease | undefined {
  if (raw.length === 0) return undefined;
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) fields.set(raw[i]!, raw[i + 1]!);
  const owner = fields.get('owner');
  const expires = fields.get('expiresAtMs');
  const position = fields.get('checkpoint');
  const subSequence = fields.get('subSequenceNumber');
  let checkpoint: Checkpoint | undefined;
  if (position === SHARD_END) checkpoint = SHARD_END;
  else if (position !== undefined) {
    checkpoint =
      subSequence === undefined
        ? { sequenceNumber: position }
        : { sequenceNumber: position, subSequenceNumber: Number(subSequence) };
  }
  // A request past its deadline is dead: not shown, and the next request or acquire replaces it.
  const handoffAt = Number(fields.get('handoffAtMs'));
  const handoffTo =
    Number.isFinite(handoffAt) && handoffAt + leaseDurationMs > nowMs ? fields.get('handoffTo') : undefined;
  return {
    shardId,
    owner,
    counter: Number(fields.get('counter') ?? '0'),
    expiresAtMs: owner === undefined || expires === undefined ? undefined : Number(expires),
    checkpoint,
    parentShardIds: idList(fields.get('parents')),
    childShardIds: idList(fields.get('children')),
    handoffTo,
    readAtMs: nowMs,
    ...firstAcquiredOf(fields.get('firstAcquiredAtMs')),
    ...failureOf(fields.get('failure')),
  };
}

/**
 * When the live handoff request of a lease hash lapses (`handoffAtMs + leaseDurationMs`, server ms):
 * undefined when it has none or it lapsed by `nowMs`.
 */
export function handoffDeadlineOf(raw: RawLease, nowMs: number, leaseDurationMs: number): number | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (raw[i] !== 'handoffAtMs') continue;
    const deadline = Number(raw[i + 1]) + leaseDurationMs;
    return Number.isFinite(deadline) && deadline > nowMs ? deadline : undefined;
  }
  return undefined;
}

function firstAcquiredOf(ms: string | undefined): { firstAcquiredAtMs?: number } {
  const value = Number(ms);
  return ms !== undefined && Number.isFinite(value) ? { firstAcquiredAtMs: value } : {};
}

function failureOf(json: string | undefined): { failure?: LeaseFailure } {
  if (json === undefined) return {};
  try {
    const value = JSON.parse(json) as Partial<LeaseFailure> | null;
    if (
      typeof value?.hostId === 'string' &&
      typeof value.code === 'string' &&
      typeof value.message === 'string' &&
      typeof value.atMs === 'number' &&
      (value.reason === 'handler' || value.reason === 'reader' || value.reason === 'crashes')
    ) {
      return { failure: value as LeaseFailure };
    }
  } catch {
    // ignored
  }
  return {};
}

function idList(json: string | undefined): string[] {
  if (json === undefined) return [];
  try {
    const value: unknown = JSON.parse(json);
    // cjson encodes an empty array as {}.
    return Array.isArray(value) ? value.filter((id): id is string => typeof id === 'string') : [];
  } catch {
    return [];
  }
}
