/**
 * A lease item of a KCL 2.x/3.x single-stream lease table and Shardline's reading of it: pure mapping,
 * no I/O. The format is written down in docs/dynamodb-lease-table.md; the attribute names are those of
 * KCL's `DynamoDBLeaseSerializer`.
 *
 * Checkpoints: KCL keeps an `ExtendedSequenceNumber` as `checkpoint` (a sequence number or one of the
 * sentinels TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END) and `checkpointSubSequenceNumber`. (S, k)
 * means: the user record k of the record S was processed (k = 0 for a plain record), resume at S and
 * skip sub-sequences <= k. That is Shardline's `{ sequenceNumber: S, subSequenceNumber: k }` exactly
 * (a plain record at S counts as sub-sequence 0 and is skipped). Shardline's `{ sequenceNumber: S }`
 * (the whole record S processed) is written as (S, 0) with `shardlineWholeRecord = S`, so Shardline
 * reads it back as written and a KCL reader sees (S, 0): for an aggregate, it replays its later user
 * records rather than skipping any. The initial-position sentinels read as "no checkpoint" (the shard
 * starts at the coordinator's `initialPosition`, children of a read parent at TRIM_HORIZON); leases
 * Shardline creates are written with TRIM_HORIZON, which a KCL reader taking over reads from the start.
 */
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { SHARD_END } from '@shardline/common';
import type { Checkpoint, LeaseFailure } from './types.js';

/** KCL's attribute names (DynamoDBLeaseSerializer). */
export const KCL = Object.freeze({
  leaseKey: 'leaseKey',
  /** Multi-stream leases: the stream identifier `account:streamName:creationEpoch`. */
  streamName: 'streamName',
  /** Multi-stream leases: the shard id (the lease key being `<streamName>:<shardId>`). */
  shardId: 'shardId',
  leaseOwner: 'leaseOwner',
  leaseCounter: 'leaseCounter',
  checkpoint: 'checkpoint',
  checkpointSubSequenceNumber: 'checkpointSubSequenceNumber',
  pendingCheckpoint: 'pendingCheckpoint',
  pendingCheckpointSubSequenceNumber: 'pendingCheckpointSubSequenceNumber',
  pendingCheckpointState: 'pendingCheckpointState',
  ownerSwitchesSinceCheckpoint: 'ownerSwitchesSinceCheckpoint',
  parentShardId: 'parentShardId',
  childShardIds: 'childShardIds',
  startingHashKey: 'startingHashKey',
  endingHashKey: 'endingHashKey',
  checkpointOwner: 'checkpointOwner',
  entityType: 'entityType',
});

/** Shardline's own attributes on lease items (a KCL reader ignores attributes it does not know). */
export const SHARDLINE = Object.freeze({
  /** Shardline acquisitions so far: the fencing token (`Lease.counter`) of the current holder. */
  acquisitions: 'shardlineAcquisitions',
  handoffTo: 'shardlineHandoffTo',
  /** Unique per handoff request: each host times the request from when it first saw this id. */
  handoffId: 'shardlineHandoffId',
  /**
   * Epoch ms (the acquiring host's clock) of the lease's first acquisition, set once: where the next
   * owner of a LATEST shard without checkpoint reads from (`Lease.firstAcquiredAtMs`).
   */
  firstAcquiredAt: 'shardlineFirstAcquiredAtMs',
  /** JSON of the LeaseFailure noted at the last release. */
  failure: 'shardlineFailure',
  /** The sequence number whose whole record the checkpoint covers (see the module notes). */
  wholeRecord: 'shardlineWholeRecord',
});

export const ENTITY_TYPE_LEASE = 'LEASE';
export const TRIM_HORIZON = 'TRIM_HORIZON';
/** KCL's sentinels that mean "nothing processed yet, start here". */
const INITIAL_SENTINELS = new Set(['TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP']);

export type Item = Record<string, AttributeValue>;

/** A lease item as Shardline reads it. */
export interface ItemLease {
  shardId: string;
  /** `leaseOwner`; while a KCL 3.x graceful handoff is in progress, `checkpointOwner` (still reading). */
  owner: string | undefined;
  /** KCL's `leaseCounter`: every write of the holder increments it; observers time expiry by it. */
  leaseCounter: number;
  /** Shardline's fencing token (`shardlineAcquisitions`, 0 when absent). */
  acquisitions: number;
  checkpoint: Checkpoint | undefined;
  parentShardIds: string[];
  childShardIds: string[];
  handoffTo: string | undefined;
  handoffId: string | undefined;
  failure: LeaseFailure | undefined;
  firstAcquiredAtMs: number | undefined;
}

function str(item: Item, name: string): string | undefined {
  const v = item[name];
  return v !== undefined && 'S' in v && typeof v.S === 'string' ? v.S : undefined;
}

function num(item: Item, name: string): number | undefined {
  const v = item[name];
  if (v === undefined || !('N' in v) || typeof v.N !== 'string') return undefined;
  const n = Number(v.N);
  return Number.isSafeInteger(n) ? n : undefined;
}

function strings(item: Item, name: string): string[] {
  const v = item[name];
  if (v === undefined) return [];
  return 'SS' in v && Array.isArray(v.SS) ? [...v.SS].sort() : [];
}

/** KCL's checkpoint attributes as a Shardline Checkpoint (see the module notes). */
export function checkpointFromItem(item: Item): Checkpoint | undefined {
  const sequence = str(item, KCL.checkpoint);
  if (sequence === undefined || sequence === '' || INITIAL_SENTINELS.has(sequence)) return undefined;
  if (sequence === SHARD_END) return SHARD_END;
  if (!/^\d+$/.test(sequence)) return undefined;
  const sub = num(item, KCL.checkpointSubSequenceNumber) ?? 0;
  if (sub === 0 && str(item, SHARDLINE.wholeRecord) === sequence) return { sequenceNumber: sequence };
  return { sequenceNumber: sequence, subSequenceNumber: sub };
}

/** The attribute values a checkpoint is written as: checkpoint, sub-sequence, whole-record marker. */
export function checkpointToAttributes(checkpoint: Checkpoint | undefined): {
  checkpoint: string;
  subSequenceNumber: number;
  wholeRecord: string | undefined;
} {
  if (checkpoint === undefined)
    return { checkpoint: TRIM_HORIZON, subSequenceNumber: 0, wholeRecord: undefined };
  if (checkpoint === SHARD_END)
    return { checkpoint: SHARD_END, subSequenceNumber: 0, wholeRecord: undefined };
  return checkpoint.subSequenceNumber === undefined
    ? { checkpoint: checkpoint.sequenceNumber, subSequenceNumber: 0, wholeRecord: checkpoint.sequenceNumber }
    : {
        checkpoint: checkpoint.sequenceNumber,
        subSequenceNumber: checkpoint.subSequenceNumber,
        wholeRecord: undefined,
      };
}

function failureFromItem(item: Item): LeaseFailure | undefined {
  const text = str(item, SHARDLINE.failure);
  if (text === undefined) return undefined;
  try {
    const f = JSON.parse(text) as LeaseFailure;
    return typeof f === 'object' && f !== null && typeof f.hostId === 'string' ? f : undefined;
  } catch {
    return undefined;
  }
}

/** Whether an item is a lease: KCL 3.x marks other entities with `entityType`; older items have none. */
export function isLeaseItem(item: Item): boolean {
  const type = str(item, KCL.entityType);
  return str(item, KCL.leaseKey) !== undefined && (type === undefined || type === ENTITY_TYPE_LEASE);
}

/** Reads a lease item; undefined for an item that is not a lease. */
export function leaseFromItem(item: Item): ItemLease | undefined {
  if (!isLeaseItem(item)) return undefined;
  return {
    shardId: str(item, KCL.leaseKey)!,
    owner: str(item, KCL.checkpointOwner) ?? str(item, KCL.leaseOwner),
    leaseCounter: num(item, KCL.leaseCounter) ?? 0,
    acquisitions: num(item, SHARDLINE.acquisitions) ?? 0,
    checkpoint: checkpointFromItem(item),
    parentShardIds: strings(item, KCL.parentShardId),
    childShardIds: strings(item, KCL.childShardIds),
    handoffTo: str(item, SHARDLINE.handoffTo),
    handoffId: str(item, SHARDLINE.handoffId),
    failure: failureFromItem(item),
    firstAcquiredAtMs: num(item, SHARDLINE.firstAcquiredAt),
  };
}

/** A new free lease item, as KCL creates one (counter 0, no owner, checkpoint TRIM_HORIZON). */
export function newLeaseItem(
  shardId: string,
  parentShardIds: readonly string[],
  childShardIds: readonly string[],
): Item {
  const item: Item = {
    [KCL.leaseKey]: { S: shardId },
    [KCL.leaseCounter]: { N: '0' },
    [KCL.checkpoint]: { S: TRIM_HORIZON },
    [KCL.checkpointSubSequenceNumber]: { N: '0' },
    [KCL.ownerSwitchesSinceCheckpoint]: { N: '0' },
    [KCL.entityType]: { S: ENTITY_TYPE_LEASE },
  };
  if (parentShardIds.length > 0) item[KCL.parentShardId] = { SS: [...new Set(parentShardIds)] };
  if (childShardIds.length > 0) item[KCL.childShardIds] = { SS: [...new Set(childShardIds)] };
  return item;
}
