/**
 * The piscina task entry for `handlerModule` delivery: one shard reader (shard-worker's task) and the
 * user's handler in the same worker thread, so a batch is processed where it was fetched and decoded
 * and never crosses threads.
 *
 * The reader talks to an in-thread port; batches go to a local {@link Delivery} (the same in-order,
 * retry, isolation and poison-record rules as on the coordinator thread), and the coordinator hears
 * only what it needs: what to charge to and give back to the host budget, processed positions (it
 * writes the checkpoints), events, and `batch.checkpoint()` requests it answers. Everything else the
 * reader says (fetched, throttled, errors, logs, shard end) is passed through unchanged, on the same
 * port, so the order holds. Records are handed to the handler only before the lease deadline the
 * coordinator sends.
 */

import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import type { BackoffMs, CodecName, Logger, LogLevel, ShardPosition } from '@shardline/common';
import {
  deserializeError,
  PROTOCOL_VERSION,
  parseWorkerMessage,
  resolveCodec,
  ShardlineOptionError,
  serializeError,
} from '@shardline/common';
import type { ShardReaderOutcome, ShardReaderTask } from '@shardline/shard-worker';
import shardReaderTask from '@shardline/shard-worker/worker';
import { Delivery } from './delivery.js';
import { CoordinatorEvents } from './events.js';
import type { ModuleCoordinatorMessage, ModuleWorkerMessage } from './module-protocol.js';
import { isModuleCoordinatorMessage } from './module-protocol.js';
import type { RecordHandler } from './options.js';

/** What every task of a `handlerModule` pool carries besides the reader's own options. */
export interface ModuleTaskSettings {
  /** `file:` or `data:` URL of the module; its default export is the handler. */
  url: string;
  onHandlerError: Readonly<{ retries: number; backoffMs: Readonly<BackoffMs>; then: string }>;
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

/** Runs one shard reader and the handler module on its batches; resolves with the reader's outcome. */
export default async function moduleReaderTask(task: ModuleReaderTask): Promise<ShardReaderOutcome> {
  const { port, controlPort, options, module } = task;
  const shardId = options.shardId;
  const post = (message: ModuleWorkerMessage | Record<string, unknown>) => port.postMessage(message);
  const log = (level: LogLevel, fields: Record<string, unknown>, message: string) =>
    post({ v: PROTOCOL_VERSION, type: 'log', level, message, fields: { ...fields, shardId } });

  let handler: RecordHandler;
  try {
    handler = await loadHandler(module.url);
  } catch (error) {
    const serialized = serializeError(error);
    post({ v: PROTOCOL_VERSION, type: 'error', shardId, error: serialized, fatal: true });
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
  events.on('handler.failed', (payload) =>
    post({
      v: PROTOCOL_VERSION,
      type: 'module-event',
      event: 'handler.failed',
      payload: { ...payload, error: serializeError(payload.error) },
    }),
  );
  events.on('batch.processed', (payload) =>
    post({ v: PROTOCOL_VERSION, type: 'module-event', event: 'batch.processed', payload: { ...payload } }),
  );

  let deadline = 0;
  let nextRequestId = 0;
  const pending = new Map<number, { resolve(): void; reject(error: unknown): void }>();
  /** Asks the coordinator (checkpoint, dead-letter) and waits for its answer. */
  const request = (message: Record<string, unknown>) =>
    new Promise<void>((resolve, reject) => {
      const id = nextRequestId++;
      pending.set(id, { resolve, reject });
      post({ v: PROTOCOL_VERSION, ...message, id });
    });
  const charges = new Map<number, { records: number; bytes: number }>();
  const codec = resolveCodec((options.codec ?? 'json') as CodecName, 'codec');
  const delivery = new Delivery({
    mode: 'handler',
    handler,
    codec,
    // Credit is the coordinator's business (host budget): this delivery's own grants are dropped.
    maxBufferedRecords: Number.MAX_SAFE_INTEGER,
    onHandlerError: module.onHandlerError,
    events,
    logger,
    deadLetter: (_shardId, records, error, attempts) =>
      request({ type: 'module-dead-letter', records, error: serializeError(error), attempts }),
  });
  delivery.open(shardId, {
    send: (message) => {
      if (message.type !== 'ack') return;
      const charge = charges.get(message.batchId);
      charges.delete(message.batchId);
      if (charge !== undefined) {
        post({ v: PROTOCOL_VERSION, type: 'module-done', batchId: message.batchId, ...charge });
      }
    },
    processed: (position: ShardPosition, delivered: number) =>
      post({ v: PROTOCOL_VERSION, type: 'module-progress', position: { ...position }, delivered }),
    checkpoint: (position: ShardPosition) =>
      request({ type: 'module-checkpoint', position: { ...position } }),
    failed: (error) => post({ v: PROTOCOL_VERSION, type: 'module-failed', error: serializeError(error) }),
    canDeliver: () => Date.now() < deadline,
  });

  // The reader's side of the in-thread channel.
  const inner = new MessageChannel();
  const fromReader = (raw: unknown) => {
    let message: ReturnType<typeof parseWorkerMessage>;
    try {
      message = parseWorkerMessage(raw);
    } catch {
      post(raw as Record<string, unknown>); // the coordinator reports it
      return;
    }
    if (message.type === 'batch') {
      charges.set(message.batchId, { records: message.records.length, bytes: message.bytes });
      post({
        v: PROTOCOL_VERSION,
        type: 'module-batch',
        batchId: message.batchId,
        records: message.records.length,
        bytes: message.bytes,
      });
      delivery.push(shardId, message);
      return;
    }
    post(raw as Record<string, unknown>);
  };
  inner.port1.on('message', fromReader);
  const fromCoordinator = (raw: unknown) => {
    if (isModuleCoordinatorMessage(raw)) {
      onCoordinatorMessage(raw);
      return;
    }
    const type = (raw as { type?: unknown } | null)?.type;
    // A stop also ends processing: queued batches are dropped, the one in flight finishes.
    if (type === 'stop') delivery.stopping();
    inner.port1.postMessage(raw);
  };
  const onCoordinatorMessage = (message: ModuleCoordinatorMessage) => {
    if (message.type === 'module-deadline') {
      deadline = message.epochMs;
      delivery.resume(shardId);
      return;
    }
    const waiting = pending.get(message.id);
    pending.delete(message.id);
    if (message.error === undefined) waiting?.resolve();
    else waiting?.reject(deserializeError(message.error));
  };
  port.on('message', fromCoordinator);

  let outcome: ShardReaderOutcome;
  try {
    outcome = await shardReaderTask({ port: inner.port2, controlPort, options });
  } finally {
    for (let m = receiveMessageOnPort(inner.port1); m !== undefined; m = receiveMessageOnPort(inner.port1)) {
      fromReader(m.message);
    }
  }
  // Every batch of an ended shard is processed before the outcome reaches the coordinator; after a
  // stop or a failure, the batch in flight finishes and the rest is read again by the next reader.
  if (outcome.state === 'ended') await delivery.drained(shardId);
  else delivery.stopping();
  await delivery.close(shardId);
  // Answers still awaited cannot arrive any more.
  for (const waiting of pending.values()) waiting.reject(new Error('the reader stopped'));
  inner.port1.close();
  port.off('message', fromCoordinator);
  // Let the last posts leave before the port closes.
  await new Promise<void>((resolve) => setImmediate(resolve));
  port.close();
  return outcome;
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
