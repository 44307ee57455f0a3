/**
 * Argument checks shared by the lease stores (memory and Redis): a bad shard id, counter or checkpoint
 * is refused with a ShardlineOptionError naming it, before the store is touched.
 */

import { SHARD_END, ShardlineOptionError } from '@shardline/common';
import type { Checkpoint, LeaseSeed } from './types.js';

const MAX_SHARD_ID_LENGTH = 256;
const MAX_SEQUENCE_LENGTH = 256;

export function validShardId(option: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_SHARD_ID_LENGTH) {
    throw new ShardlineOptionError(
      option,
      `must be a shard id: a non-empty string of at most ${MAX_SHARD_ID_LENGTH} characters (got ${JSON.stringify(value)})`,
    );
  }
  return value;
}

export function validIds(option: string, value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new ShardlineOptionError(option, `must be an array of shard ids (got ${JSON.stringify(value)})`);
  }
  return value.map((id, i) => validShardId(`${option}[${i}]`, id));
}

export function validCounter(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ShardlineOptionError(
      'counter',
      `must be an integer >= 0, the lease counter from acquire (got ${String(value)})`,
    );
  }
  return value;
}

/** A checkpoint checked and copied: 'SHARD_END', or a sequence number (digits) and a sub-sequence. */
export function validCheckpoint(checkpoint: unknown): Checkpoint {
  if (checkpoint === SHARD_END) return SHARD_END;
  const c = checkpoint as { sequenceNumber?: unknown; subSequenceNumber?: unknown } | null;
  if (typeof c !== 'object' || c === null) {
    throw new ShardlineOptionError(
      'checkpoint',
      `must be 'SHARD_END' or { sequenceNumber, subSequenceNumber? } (got ${JSON.stringify(checkpoint)})`,
    );
  }
  if (
    typeof c.sequenceNumber !== 'string' ||
    !/^\d+$/.test(c.sequenceNumber) ||
    c.sequenceNumber.length > MAX_SEQUENCE_LENGTH
  ) {
    throw new ShardlineOptionError(
      'checkpoint.sequenceNumber',
      `must be a Kinesis sequence number (a string of digits) (got ${JSON.stringify(c.sequenceNumber)})`,
    );
  }
  if (c.subSequenceNumber === undefined) return { sequenceNumber: c.sequenceNumber };
  if (
    typeof c.subSequenceNumber !== 'number' ||
    !Number.isSafeInteger(c.subSequenceNumber) ||
    c.subSequenceNumber < 0
  ) {
    throw new ShardlineOptionError(
      'checkpoint.subSequenceNumber',
      `must be a non-negative integer when set (got ${String(c.subSequenceNumber)})`,
    );
  }
  return { sequenceNumber: c.sequenceNumber, subSequenceNumber: c.subSequenceNumber };
}

/** Seeds checked and copied (duplicate ids within one list kept): a bad one throws naming `seeds[i]...`. */
export function validSeeds(seeds: unknown): Array<Required<LeaseSeed>> {
  if (!Array.isArray(seeds)) {
    throw new ShardlineOptionError(
      'seeds',
      `must be an array of { shardId, parentShardIds } (got ${typeof seeds})`,
    );
  }
  return seeds.map((seed: LeaseSeed | null, i) => {
    if (typeof seed !== 'object' || seed === null) {
      throw new ShardlineOptionError(
        `seeds[${i}]`,
        'must be an object { shardId, parentShardIds, childShardIds? }',
      );
    }
    return {
      shardId: validShardId(`seeds[${i}].shardId`, seed.shardId),
      parentShardIds: validIds(`seeds[${i}].parentShardIds`, seed.parentShardIds),
      childShardIds:
        seed.childShardIds === undefined ? [] : validIds(`seeds[${i}].childShardIds`, seed.childShardIds),
    };
  });
}
