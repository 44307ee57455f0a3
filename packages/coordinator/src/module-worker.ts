/**
 * The piscina task entry for `handlerModule` delivery: one shard reader (shard-worker's task) and the
 * user's handler in the same worker thread, so a batch is processed where it was fetched and decoded
 * and never crosses threads.
 *
 * The reader talks to an in-thread port; its batches go to a {@link Lane} here, the same class and
 * {@link FailurePolicy} the coordinator thread uses (in-order, retries, isolation, poison records). The
 * coordinator keeps the one credit ledger and the checkpoints: it hears when a batch reached the lane
 * and when the lane is done with it, processed positions, events, and `batch.checkpoint()` and
 * dead-letter requests it answers (module-protocol.ts). Everything else the reader says (fetched,
 * throttled, errors, logs, shard end) and the coordinator's credit pass through unchanged on the same
 * port, so their order holds. The lane hands records out only before the lease deadline the coordinator
 * sends; a stop halts it (queued batches dropped, the one in hand finishes) before the reader stops.
 */

import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import type { BackoffMs, CodecName, Logger, LogLevel, ShardRecord } from '@shardline/common';
import {
  batchSize,
  deserializeError,
  PROTOCOL_VERSION,
  parseWorkerMessage,
  resolveCodec,
  ShardlineOptionError,
  serializeError,
} from '@shardline/common';
import type { ShardReaderOutcome, ShardReaderTask } from '@shardline/shard-worker';
import { exposeShardReaderControl, openShardReaderControl } from '@shardline/shard-worker';
import shardReaderTask from '@shardline/shard-worker/worker';
import { FailurePolicy } from './delivery/failure-policy.js';
import { Lane } from './delivery/lane.js';
import { processTracing } from './delivery/tracing.js';
import { CoordinatorEvents } from './events.js';
import type {
  ModuleCoordinatorMessage,
  ModuleDeadLetterRecord,
  ModuleWorkerMessage,
} from './module-protocol.js';
import { isModuleCoordinatorMessage } from './module-protocol.js';
import type { RecordHandler } from './options.js';

/** What every task of a `handlerModule` pool carries besides the reader's own options. */
export interface ModuleTaskSettings {
  /** `file:` or `data:` URL of the module; its default export is the handler. */
  url: string;
  onHandlerError: Readonly<{ retries: number; backoffMs: Readonly<BackoffMs>; then: string }>;
  /** `maxRecordAgeMs` (Infinity: no limit). */
  maxRecordAgeMs: number;
  /** `parallelism`: concurrent key groups of a batch. */
  parallelism: number;
  /**
   * `tracing.enabled`: `process` spans around the handler calls in this thread (real ones once the
   * thread has a tracer provider: OpenTelemetry's global state is per thread).
   */
  tracing?: { group: string; links: boolean };
}

export interface ModuleReaderTask extends ShardReaderTask {
  module: ModuleTaskSettings;
}

/** Handlers by module URL: a module is imported once per thread. */
const handlers = new Map<string, Promise<RecordHandler>>();

function loadHandler(url: string): Promise<RecordHandler> {
  let loading = handlers.get(url);
  if (loading === undefined) {
    loading = import(url).then((mod: { default?: unknown }) => {
      if (typeof mod.default !== 'function') {
        throw new ShardlineOptionError(
          'handlerModule',
          `must have a default export that is the handler function (batch) => Promise<void> | void (${url} exports ${typeof mod.default})`,
        );
      }
      return mod.default as RecordHandler;
    });
    handlers.set(url, loading);
    // A module that failed to load may be fixed on disk: the next task tries again.
    loading.catch(() => handlers.delete(url));
  }
  return loading;
}

/** `orders` of `arn:aws:kinesis:eu-west-1:123456789012:stream/orders`. */
function streamNameOf(arn: string): string {
  return arn.slice(arn.lastIndexOf('/') + 1);
}

/** Runs one shard reader and the handler module on its batches; resolves with the reader's outcome. */
export default async function moduleReaderTask(task: ModuleReaderTask): Promise<ShardReaderOutcome> {
  const { port, controlPort, options, module } = task;
  const shardId = options.shardId;
  const post = (message: ModuleWorkerMessage) => port.postMessage(message);
  const log = (level: LogLevel, fields: Record<string, unknown>, message: string) =>
    port.postMessage({ v: PROTOCOL_VERSION, type: 'log', level, message, fields: { ...fields, shardId } });

  let handler: RecordHandler;
  try {
    handler = await loadHandler(module.url);
  } catch (error) {
    const serialized = serializeError(error);
    port.postMessage({ v: PROTOCOL_VERSION, type: 'error', shardId, error: serialized, fatal: true });
    port.close();
    controlPort.close();
    return { shardId, state: 'failed', error: serialized };
  }

  const at = (level: LogLevel) =>
    ((a: unknown, b?: unknown) =>
      typeof a === 'string'
        ? log(level, {}, a)
        : log(level, toFields(a), typeof b === 'string' ? b : '')) as Logger['debug'];
  const logger: Logger = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
  const events = new CoordinatorEvents(logger);
  events.on('handler.failed', (e) =>
    post({
      v: PROTOCOL_VERSION,
      type: 'module-handler-failed',
      error: serializeError(e.error),
      attempt: e.attempt,
      action: e.action,
      records: e.records,
    }),
  );
  events.on('record.expired', (event) =>
    post({ v: PROTOCOL_VERSION, type: 'module-record-expired', event: { ...event } }),
  );
  events.on('batch.processed', (event) =>
    post({ v: PROTOCOL_VERSION, type: 'module-batch-processed', event: { ...event } }),
  );

  let nextRequestId = 0;
  const pending = new Map<number, { resolve(): void; reject(error: unknown): void }>();
  /** Asks the coordinator and waits for its answer. */
  const request = (make: (id: number) => ModuleWorkerMessage) =>
    new Promise<void>((resolve, reject) => {
      const id = nextRequestId++;
      pending.set(id, { resolve, reject });
      post(make(id));
    });

  // The reader's side of the in-thread channel.
  const inner = new MessageChannel();
  const lane = new Lane({
    shardId,
    streamName: options.streamName ?? options.streamArn?.slice(options.streamArn.lastIndexOf('/') + 1) ?? '',
    codec: resolveCodec((options.codec ?? 'json') as CodecName, 'codec'),
    sink: { mode: 'handler', handler },
    parallelism: module.parallelism,
    policy: new FailurePolicy({
      onHandlerError: module.onHandlerError,
      maxRecordAgeMs: module.maxRecordAgeMs,
      events,
      logger,
      tracing:
        module.tracing === undefined
          ? undefined
          : processTracing({
              // The task's own stream: one pool of threads may read several streams.
              stream: options.streamName ?? streamNameOf(options.streamArn ?? ''),
              group: module.tracing.group,
              tracing: { enabled: true, links: module.tracing.links },
            }),
      deadLetter: (_shardId, records, error, attempts) =>
        request((id) => ({
          v: PROTOCOL_VERSION,
          type: 'module-dead-letter',
          id,
          records: records.map(deadLetterRecord),
          error: serializeError(error),
          attempts,
        })),
    }),
    hooks: {
      processed: (position, delivered) =>
        post({ v: PROTOCOL_VERSION, type: 'module-progress', position: { ...position }, delivered }),
      checkpoint: (position) =>
        request((id) => ({ v: PROTOCOL_VERSION, type: 'module-checkpoint', id, position: { ...position } })),
      finished: (batch, completed) => {
        post({
          v: PROTOCOL_VERSION,
          type: 'module-done',
          batchId: batch.batchId,
          records: batchSize(batch),
          bytes: batch.bytes,
          completed,
        });
        if (completed) inner.port1.postMessage({ v: PROTOCOL_VERSION, type: 'ack', batchId: batch.batchId });
      },
      failed: (error, position) =>
        post({
          v: PROTOCOL_VERSION,
          type: 'module-failed',
          error: serializeError(error),
          ...(position === undefined ? {} : { position: { ...position } }),
        }),
    },
    events,
    logger,
  });
  // Nothing is handed out before the coordinator sent the lease deadline.
  lane.pause();
  let deadlineTimer: NodeJS.Timeout | undefined;
  const onDeadline = (epochMs: number) => {
    clearTimeout(deadlineTimer);
    const left = epochMs - Date.now();
    if (left <= 0) {
      lane.pause();
      return;
    }
    lane.resume();
    deadlineTimer = setTimeout(() => lane.pause(), left);
  };

  const fromReader = (raw: unknown) => {
    let message: ReturnType<typeof parseWorkerMessage>;
    try {
      message = parseWorkerMessage(raw);
    } catch {
      port.postMessage(raw); // the coordinator reports it
      return;
    }
    if (message.type === 'batch') {
      const { batchId, bytes } = message;
      post({ v: PROTOCOL_VERSION, type: 'module-batch', batchId, records: batchSize(message), bytes });
      lane.push(message);
      return;
    }
    port.postMessage(raw);
  };
  inner.port1.on('message', fromReader);
  const onCoordinatorMessage = (message: ModuleCoordinatorMessage) => {
    if (message.type === 'module-deadline') {
      onDeadline(message.epochMs);
      return;
    }
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (message.error === undefined) waiting?.resolve();
    else waiting?.reject(deserializeError(message.error));
  };
  const fromCoordinator = (raw: unknown) => {
    if (isModuleCoordinatorMessage(raw)) {
      onCoordinatorMessage(raw);
      return;
    }
    // A stop also ends processing: queued batches are dropped, the one in hand finishes.
    if ((raw as { type?: unknown } | null)?.type === 'stop') lane.halt();
    inner.port1.postMessage(raw);
  };
  port.on('message', fromCoordinator);
  // The coordinator's control calls reach the reader through here: a stop halts the lane first.
  const innerControl = new MessageChannel();
  const reader = openShardReaderControl(innerControl.port1);
  exposeShardReaderControl(
    {
      start: () => reader.control.start(),
      stop: (reason) => {
        lane.halt();
        return reader.control.stop(reason);
      },
      status: () => reader.control.status(),
    },
    controlPort,
  );

  let outcome: ShardReaderOutcome;
  try {
    outcome = await shardReaderTask({ port: inner.port2, controlPort: innerControl.port2, options });
  } finally {
    reader.close();
    for (let m = receiveMessageOnPort(inner.port1); m !== undefined; m = receiveMessageOnPort(inner.port1)) {
      fromReader(m.message);
    }
  }
  // Every batch of an ended shard is processed before the outcome reaches the coordinator; after a
  // stop or a failure, the batch in hand finishes and the rest is read again by the next reader.
  if (outcome.state === 'ended') await lane.drained();
  await lane.close();
  clearTimeout(deadlineTimer);
  // Answers still awaited cannot arrive any more.
  for (const waiting of pending.values()) waiting.reject(new Error('the reader stopped'));
  inner.port1.close();
  port.off('message', fromCoordinator);
  // Let the last posts (and the answer to a stop call) leave before the ports close.
  await new Promise<void>((resolve) => setImmediate(resolve));
  port.close();
  controlPort.close();
  return outcome;
}

function deadLetterRecord(record: ShardRecord<unknown>): ModuleDeadLetterRecord {
  const out: ModuleDeadLetterRecord = {
    data: record.data,
    partitionKey: record.partitionKey,
    sequenceNumber: record.sequenceNumber,
    approximateArrivalTimestamp: record.approximateArrivalTimestamp,
  };
  if (record.subSequenceNumber !== undefined) out.subSequenceNumber = record.subSequenceNumber;
  if (record.explicitHashKey !== undefined) out.explicitHashKey = record.explicitHashKey;
  return out;
}

function toFields(fields: unknown): Record<string, unknown> {
  if (typeof fields !== 'object' || fields === null) return { value: String(fields) };
  try {
    // Logged fields cross threads: keep only what survives a structured clone.
    return JSON.parse(JSON.stringify(fields)) as Record<string, unknown>;
  } catch {
    return {};
  }
}
