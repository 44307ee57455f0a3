/**
 * The coordinator's side of a reader's control port: a comlink proxy of {@link ShardReaderControl}.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Remote } from 'comlink';
import { expose, releaseProxy, wrap } from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { ShardReaderOutcome, ShardReaderStatus } from './shard-reader.js';
import type { ShardReaderControl } from './worker.js';

/** What answers a control port: {@link ShardReaderControl}, each call possibly asynchronous. */
export interface ShardReaderControlHandlers {
  start(): void | Promise<void>;
  stop(reason?: string): Promise<ShardReaderOutcome>;
  status(): ShardReaderStatus | Promise<ShardReaderStatus>;
}

/** The reader's side of a control port: answers the calls of {@link connectShardReaderControl}. */
export function exposeShardReaderControl(handlers: ShardReaderControlHandlers, port: MessagePort): void {
  expose(handlers, nodeEndpoint(port));
}

/**
 * Wraps the coordinator's end of a reader task's `controlPort` channel. Every call returns a promise:
 * `await control.status()`, `await control.stop('lease lost')`. When done, call
 * `control[releaseProxy]()` (from comlink) and close the port.
 */
export function connectShardReaderControl(port: MessagePort): Remote<ShardReaderControl> {
  return wrap<ShardReaderControl>(nodeEndpoint(port));
}

/**
 * {@link connectShardReaderControl} with its release: `close()` releases the proxy without waiting for an
 * answer (the reader's end may be gone already) and closes the port. A call whose answer never comes
 * (the task ended first) stays pending; callers that only need the outcome await the task instead.
 */
export function openShardReaderControl(port: MessagePort): {
  control: Remote<ShardReaderControl>;
  close(): void;
} {
  const control = connectShardReaderControl(port);
  return {
    control,
    close() {
      try {
        control[releaseProxy]();
      } catch {
        // Released already: nothing to do.
      }
      port.close();
    },
  };
}
