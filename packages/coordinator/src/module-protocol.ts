/**
 * The coordinator's private messages with its own `handlerModule` worker entry (module-worker.ts),
 * carried on a reader's data port next to the shard-worker protocol (same port, so their order holds).
 * Both ends live in this package: the shard-worker protocol in `@shardline/common` is unchanged.
 */

import type { SerializedError, ShardPosition } from '@shardline/common';
import { PROTOCOL_VERSION } from '@shardline/common';

/** module worker -> coordinator: a batch reached the worker (charged against the host budget). */
export interface ModuleBatchMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-batch';
  batchId: number;
  records: number;
  bytes: number;
}

/** module worker -> coordinator: the batch is finished (its charge goes back to the budget). */
export interface ModuleDoneMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-done';
  batchId: number;
  records: number;
  bytes: number;
}

/** module worker -> coordinator: processed up to `position`; `delivered` records handed to the handler. */
export interface ModuleProgressMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-progress';
  position: ShardPosition;
  delivered: number;
}

/** module worker -> coordinator: `onHandlerError.then: 'stop-shard'` applied. */
export interface ModuleFailedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-failed';
  error: SerializedError;
}

/** module worker -> coordinator: `batch.checkpoint()` in the handler; answered by a checkpoint result. */
export interface ModuleCheckpointMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-checkpoint';
  id: number;
  position: ShardPosition;
}

/** module worker -> coordinator: records to dead-letter (`onHandlerError.then: 'dead-letter'`); answered by a result. */
export interface ModuleDeadLetterMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-dead-letter';
  id: number;
  /** ShardRecords (structured-cloned). */
  records: unknown[];
  error: SerializedError;
  attempts: number;
}

/** module worker -> coordinator: a delivery event to emit on the coordinator (errors serialized). */
export interface ModuleEventMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'module-event';
  event: 'handler.failed' | 'batch.processed';
  payload: Record<string, unknown>;
}

export type ModuleWorkerMessage =
  | ModuleBatchMessage
  | ModuleDoneMessage
  | ModuleProgressMessage
  | ModuleFailedMessage
  | ModuleCheckpointMessage
  | ModuleDeadLetterMessage
  | ModuleEventMessage;

/** coordinator -> module worker: records may be handed out until this wall-clock time (lease deadline). */
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

const WORKER_TYPES = new Set([
  'module-batch',
  'module-done',
  'module-progress',
  'module-failed',
  'module-checkpoint',
  'module-dead-letter',
  'module-event',
]);
const COORDINATOR_TYPES = new Set(['module-deadline', 'module-result']);

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

/** Whether `x` is a message of this private protocol from the worker side (checked field by field). */
export function isModuleWorkerMessage(x: unknown): x is ModuleWorkerMessage {
  const type = typeOf(x);
  if (type === undefined || !WORKER_TYPES.has(type)) return false;
  const m = x as Record<string, unknown>;
  switch (type) {
    case 'module-batch':
    case 'module-done':
      return count(m.batchId) && count(m.records) && count(m.bytes);
    case 'module-progress':
      return isPosition(m.position) && count(m.delivered);
    case 'module-failed':
      return typeof m.error === 'object' && m.error !== null;
    case 'module-checkpoint':
      return count(m.id) && isPosition(m.position);
    case 'module-dead-letter':
      return (
        count(m.id) &&
        Array.isArray(m.records) &&
        typeof m.error === 'object' &&
        m.error !== null &&
        count(m.attempts)
      );
    case 'module-event':
      return (
        (m.event === 'handler.failed' || m.event === 'batch.processed') &&
        typeof m.payload === 'object' &&
        m.payload !== null
      );
    default:
      return false;
  }
}

/** Whether `x` is a message of this private protocol from the coordinator side. */
export function isModuleCoordinatorMessage(x: unknown): x is ModuleCoordinatorMessage {
  const type = typeOf(x);
  if (type === undefined || !COORDINATOR_TYPES.has(type)) return false;
  const m = x as Record<string, unknown>;
  if (type === 'module-deadline') return typeof m.epochMs === 'number' && !Number.isNaN(m.epochMs);
  return count(m.id) && (m.error === undefined || (typeof m.error === 'object' && m.error !== null));
}
