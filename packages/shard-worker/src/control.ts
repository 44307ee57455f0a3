/**
 * The coordinator's side of a reader's control port: a comlink proxy of {@link ShardReaderControl}.
 */
import type { MessagePort } from 'node:worker_threads';
import type { Remote } from 'comlink';
import { wrap } from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { ShardReaderControl } from './worker.js';

/**
 * Wraps the coordinator's end of a reader task's `controlPort` channel. Every call returns a promise:
 * `await control.status()`, `await control.stop('lease lost')`. When done, call
 * `control[releaseProxy]()` (from comlink) and close the port.
 */
export function connectShardReaderControl(port: MessagePort): Remote<ShardReaderControl> {
  return wrap<ShardReaderControl>(nodeEndpoint(port));
}
