/**
 * The coordinator's private messages with its own `handlerModule` worker entry (module-worker.ts),
 * carried on a reader's data port next to the shard-worker protocol (same port, so their order holds:
 * a batch's charge always arrives before its progress and its release). Both ends live in this package;
 * the shard-worker protocol in `@shardline/common` is unchanged. Versioned, discriminated by `type`, and
 * checked field by field on arrival like the reader protocol.
 */

import type { SerializedError, ShardPosition } from '@shardline/common';
import { PROTOCOL_VERSION } from '@shardline/common';
import type { HandlerFailureAction, StreamEventMap } from './events.js';

/** module worker -> coordinator: a batch reached the worker's lane (charged against the host budget). */
export interface ModuleBatchMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-batch';
  batchId: number;
  records: number;
  bytes: number;
}

/** module worker -> coordinator: the lane is done with the batch (its charge goes back to the budget). */
export interface ModuleDoneMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-done';
  batchId: number;
  records: number;
  bytes: number;
  /** Processed while the lane stayed open (false: dropped or abandoned). */
  completed: boolean;
}

/** module worker -> coordinator: processed up to `position`; `delivered` records handed to the handler. */
export interface ModuleProgressMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-progress';
  position: ShardPosition;
  delivered: number;
}

/** module worker -> coordinator: `onHandlerError.then: 'stop-shard'` applied at `position`. */
export interface ModuleFailedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-failed';
  error: SerializedError;
  /** The record it stopped at; absent when the batch could not be read at all. */
  position?: ShardPosition;
}

/** module worker -> coordinator: `batch.checkpoint()` in the handler; answered by a `module-result`. */
export interface ModuleCheckpointMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-checkpoint';
  id: number;
  position: ShardPosition;
}

/** A record to dead-letter, as it crosses threads (data structured-cloned). */
export interface ModuleDeadLetterRecord {
  data: unknown;
  partitionKey: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  explicitHashKey?: string;
  approximateArrivalTimestamp: Date;
}

/** module worker -> coordinator: records to dead-letter; answered by a `module-result`. */
export interface ModuleDeadLetterMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-dead-letter';
  id: number;
  records: ModuleDeadLetterRecord[];
  error: SerializedError;
  attempts: number;
}

/** module worker -> coordinator: a `batch.processed` event to emit on the coordinator. */
export interface ModuleBatchProcessedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-batch-processed';
  event: StreamEventMap['batch.processed'];
}

/** module worker -> coordinator: a `handler.failed` event to emit on the coordinator. */
export interface ModuleHandlerFailedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-handler-failed';
  error: SerializedError;
  attempt: number;
  action: HandlerFailureAction;
  records: number;
}

/** module worker -> coordinator: a `record.expired` event to emit on the coordinator. */
export interface ModuleRecordExpiredMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-record-expired';
  event: StreamEventMap['record.expired'];
}

export type ModuleWorkerMessage =
  | ModuleBatchMessage
  | ModuleDoneMessage
  | ModuleProgressMessage
  | ModuleFailedMessage
  | ModuleCheckpointMessage
  | ModuleDeadLetterMessage
  | ModuleBatchProcessedMessage
  | ModuleHandlerFailedMessage
  | ModuleRecordExpiredMessage;

/**
 * coordinator -> module worker: records may be handed out until this wall-clock time (the local lease
 * deadline); 0 once the lease is lost. Threads have their own monotonic clocks: epoch time crosses.
 */
export interface ModuleDeadlineMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-deadline';
  epochMs: number;
}

/** coordinator -> module worker: the answer to a checkpoint or dead-letter request, by its id. */
export interface ModuleResultMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-result';
  id: number;
  error?: SerializedError;
}

export type ModuleCoordinatorMessage = ModuleDeadlineMessage | ModuleResultMessage;

const ACTIONS: ReadonlySet<string> = new Set(['retry', 'isolate', 'stop-shard', 'dead-letter', 'skip']);

type Obj = Record<string, unknown>;

function typeOf(x: unknown): string | undefined {
  const m = x as { v?: unknown; type?: unknown } | null;
  if (typeof m !== 'object' || m === null || m.v !== PROTOCOL_VERSION || typeof m.type !== 'string') {
    return undefined;
  }
  return m.type;
}

function isPosition(x: unknown): x is ShardPosition {
  const p = x as { sequenceNumber?: unknown; subSequenceNumber?: unknown } | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.sequenceNumber === 'string' &&
    (p.subSequenceNumber === undefined ||
      (Number.isInteger(p.subSequenceNumber) && (p.subSequenceNumber as number) >= 0))
  );
}

const count = (x: unknown) => Number.isInteger(x) && (x as number) >= 0;
const isError = (x: unknown) =>
  typeof x === 'object' &&
  x !== null &&
  typeof (x as Obj).code === 'string' &&
  typeof (x as Obj).message === 'string';

function isDeadLetterRecord(x: unknown): boolean {
  const r = x as Obj | null;
  return (
    typeof r === 'object' &&
    r !== null &&
    typeof r.partitionKey === 'string' &&
    typeof r.sequenceNumber === 'string' &&
    r.approximateArrivalTimestamp instanceof Date
  );
}

const THEN_ACTIONS: ReadonlySet<string> = new Set(['stop-shard', 'dead-letter', 'skip']);

function isRecordExpired(x: unknown): boolean {
  const e = x as Obj | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.shardId === 'string' &&
    count(e.records) &&
    typeof e.sequenceNumber === 'string' &&
    (e.subSequenceNumber === undefined || count(e.subSequenceNumber)) &&
    typeof e.ageMs === 'number' &&
    typeof e.action === 'string' &&
    THEN_ACTIONS.has(e.action)
  );
}

function isBatchProcessed(x: unknown): boolean {
  const e = x as Obj | null;
  return (
    typeof e === 'object' &&
    e !== null &&
    typeof e.shardId === 'string' &&
    count(e.records) &&
    typeof e.durationMs === 'number'
  );
}

/** Whether `x` is a well-formed message of this private protocol from the worker side. */
export function isModuleWorkerMessage(x: unknown): x is ModuleWorkerMessage {
  const type = typeOf(x) as ModuleWorkerMessage['type'] | undefined;
  if (type === undefined) return false;
  const m = x as Obj;
  switch (type) {
    case 'module-batch':
      return count(m.batchId) && count(m.records) && count(m.bytes);
    case 'module-done':
      return count(m.batchId) && count(m.records) && count(m.bytes) && typeof m.completed === 'boolean';
    case 'module-progress':
      return isPosition(m.position) && count(m.delivered);
    case 'module-failed':
      return isError(m.error) && (m.position === undefined || isPosition(m.position));
    case 'module-checkpoint':
      return count(m.id) && isPosition(m.position);
    case 'module-dead-letter':
      return (
        count(m.id) &&
        Array.isArray(m.records) &&
        m.records.every(isDeadLetterRecord) &&
        isError(m.error) &&
        count(m.attempts)
      );
    case 'module-batch-processed':
      return isBatchProcessed(m.event);
    case 'module-record-expired':
      return isRecordExpired(m.event);
    case 'module-handler-failed':
      return (
        isError(m.error) &&
        count(m.attempt) &&
        typeof m.action === 'string' &&
        ACTIONS.has(m.action) &&
        count(m.records)
      );
    default:
      return false;
  }
}

/** Whether `x` is a well-formed message of this private protocol from the coordinator side. */
export function isModuleCoordinatorMessage(x: unknown): x is ModuleCoordinatorMessage {
  const type = typeOf(x) as ModuleCoordinatorMessage['type'] | undefined;
  if (type === undefined) return false;
  const m = x as Obj;
  switch (type) {
    case 'module-deadline':
      return typeof m.epochMs === 'number' && !Number.isNaN(m.epochMs);
    case 'module-result':
      return count(m.id) && (m.error === undefined || isError(m.error));
    default:
      return false;
  }
}
