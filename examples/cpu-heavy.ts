/**
 * CPU-heavy processing with `handlerModule`: the handler lives in its own module
 * (cpu-heavy-handler.mjs), which every worker thread of the coordinator imports; each batch is
 * processed in the worker thread that fetched and decoded it, never on the main thread, which stays
 * free for leases and checkpoints. The summary shows which threads did the work.
 *
 *   npm run build && npx tsx examples/cpu-heavy.ts
 *
 * It writes RECORDS documents (default 1,000), scores each one in the worker threads (1,000 rounds of
 * SHA-256 as a stand-in for real work), and exits 0 only when every document was scored off the main
 * thread. With no environment it starts its own local Kinesis: see support.ts.
 */
import { startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { setUpExample, waitUntil } from './support.js';

interface Document {
  run: string;
  id: number;
  text: string;
}

interface ScoredBatch {
  threadId: number;
  isMainThread: boolean;
  shardId: string;
  scored: Array<{ run: string; id: number; score: number }>;
}

const RECORDS = Number(process.env.RECORDS ?? 1_000);
const WORKER_THREADS = 2;

const env = await setUpExample('cpu-heavy', { shards: 4, redis: true });
console.log(`cpu-heavy: ${env.description}`);

// The handler module reports its results here (see cpu-heavy-handler.mjs).
const scored = new Set<number>();
const perThread = new Map<number, number>();
let onMainThread = 0;
let duplicates = 0;
const results = new BroadcastChannel('shardline-example-cpu-heavy');
results.onmessage = (event) => {
  const batch = (event as MessageEvent).data as ScoredBatch;
  if (batch.isMainThread) onMainThread++;
  for (const { run, id } of batch.scored) {
    if (run !== env.runId) continue;
    if (scored.has(id)) duplicates++;
    scored.add(id);
    perThread.set(batch.threadId, (perThread.get(batch.threadId) ?? 0) + 1);
  }
};

const coordinator = await startCoordinator({
  streamName: env.streamName,
  group: 'scoring',
  kinesis: env.kinesis,
  leases: { redis: env.redisUrl, keyPrefix: env.keyPrefix },
  initialPosition: env.initialPosition,
  // A path (resolved against the working directory) or a URL; this one is relative to this file.
  handlerModule: new URL('./cpu-heavy-handler.mjs', import.meta.url),
  workerThreads: WORKER_THREADS,
  // Each batch costs CPU time in proportion to its size: smaller batches keep the shards' turns short.
  maxRecordsPerFetch: 100,
  idleFetchIntervalMs: 200,
});
let batches = 0;
coordinator.on('batch.processed', () => {
  batches++;
});
coordinator.on('error', ({ error, shardId }) =>
  console.error(`cpu-heavy: ${shardId ?? ''} ${error.message}`),
);

const producer = new Producer<Document>({ streamName: env.streamName, kinesis: env.kinesis });
const puts: Promise<unknown>[] = [];
for (let id = 0; id < RECORDS; id++) {
  puts.push(producer.put({ run: env.runId, id, text: `document ${id} of run ${env.runId}` }));
}
await Promise.all(puts);
await producer.close();
const startedAt = performance.now();
console.log(`cpu-heavy: produced ${RECORDS} documents; scoring them in ${WORKER_THREADS} worker threads...`);

let ok = false;
try {
  // Ctrl-C (env.interrupted) ends the wait; the coordinator stops and everything is deleted all the same.
  await waitUntil(
    `all ${RECORDS} documents to be scored`,
    () => scored.size === RECORDS,
    120_000,
    env.interrupted,
  );
  ok = onMainThread === 0;
} catch (error) {
  if (!env.interrupted.aborted) throw error;
} finally {
  await coordinator.stop();
  results.close();
  await env.close();
}

const threads = [...perThread].map(([thread, n]) => `thread ${thread}: ${n}`).join(', ');
const outcome = ok
  ? 'OK'
  : env.interrupted.aborted
    ? `stopped by ${String(env.interrupted.reason)}`
    : 'FAILED';
console.log(
  `cpu-heavy: ${outcome}: scored ${scored.size} of ${RECORDS} records in ${batches} batches ` +
    `(${duplicates} duplicates, ${onMainThread} batches on the main thread) in ` +
    `${((performance.now() - startedAt) / 1000).toFixed(1)} s; ${threads}`,
);
// 130: the shell's code for a run interrupted by Ctrl-C.
process.exitCode = ok ? 0 : env.interrupted.aborted ? 130 : 1;
