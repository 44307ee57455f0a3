// The handler module of examples/cpu-heavy.ts. `handlerModule` imports this file once in each worker
// thread of the coordinator's pool (at most `workerThreads`); its default export is the handler. It
// runs in the thread that fetched and decoded the batch, so CPU-heavy work stays off the main thread
// (lease renewal never waits on it).
//
// Plain JavaScript (.mjs): worker threads load it with Node's own loader, whatever the main thread
// runs on (tsx, ts-node...). Build TypeScript handler modules to .js first.
import { createHash } from 'node:crypto';
import { isMainThread, threadId } from 'node:worker_threads';

/** Hash rounds per record: the stand-in for real CPU-heavy work (parsing, scoring, compressing...). */
const ROUNDS = 1_000;

// Results go back to the example's main thread over a BroadcastChannel, which every thread of the
// process can open by name. A real handler would write them to a database or another stream instead.
const results = new BroadcastChannel('shardline-example-cpu-heavy');
results.unref();

/**
 * @param {import('@shardline/coordinator').RecordBatch<{ run: string; id: number; text: string }>} batch
 */
export default async function scoreDocuments(batch) {
  const scored = [];
  for (const record of batch.records) {
    let digest = createHash('sha256').update(record.data.text).digest();
    for (let i = 1; i < ROUNDS; i++) digest = createHash('sha256').update(digest).digest();
    scored.push({ run: record.data.run, id: record.data.id, score: digest.readUInt16BE(0) });
  }
  results.postMessage({ threadId, isMainThread, shardId: batch.shardId, scored });
}
