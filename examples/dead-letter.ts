/**
 * Dead-letter queue: records the handler keeps rejecting, and payloads that cannot be decoded, go to a
 * BullMQ queue instead of stopping the shard; a BullMQ Worker (here in the same process, usually a
 * separate service) reads the dead letters.
 *
 *   npm run build && npx tsx examples/dead-letter.ts
 *
 * It writes RECORDS orders (default 500), one in 50 invalid (a negative amount), plus one payload that
 * is not JSON. Exits 0 only when every valid order was processed and every bad record was read from the
 * dead-letter queue. With no environment it starts its own local Kinesis: see support.ts.
 */
import type { DeadLetterJob } from '@shardline/coordinator';
import { startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { type Job, Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { setUpExample, waitUntil } from './support.js';

interface Order {
  run: string;
  id: number;
  amountCents: number;
}

const RECORDS = Number(process.env.RECORDS ?? 500);
const isValid = (order: Order) => order.amountCents >= 0;

const env = await setUpExample('dead-letter', { shards: 2, redis: true });
console.log(`dead-letter: ${env.description}`);
// BullMQ queue names may not contain ':'. Unique per run here; a fixed name in production.
const QUEUE = `orders-dlq-${env.runId}`;

const processed = new Set<number>();
const coordinator = await startCoordinator<Order>({
  streamName: env.streamName,
  group: 'orders',
  kinesis: env.kinesis,
  leases: { redis: env.redisUrl, keyPrefix: env.keyPrefix },
  initialPosition: env.initialPosition,
  idleFetchIntervalMs: 200,
  // A failing batch is retried twice with backoff; then its records are tried one at a time, and each
  // record that still fails alone becomes a job of the dead-letter queue. The shard reads on.
  // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string (never a thenable)
  onHandlerError: { retries: 2, backoffMs: { initial: 50, max: 500 }, then: 'dead-letter' },
  // The queue's Redis defaults to leases.redis; pass `connection` to use another one.
  deadLetter: { queue: QUEUE },
  handler: async (batch) => {
    const orders = batch.records.map((r) => r.data).filter((order) => order.run === env.runId);
    // Validate the whole batch before writing any of it (e.g. one database transaction per batch).
    const invalid = orders.find((order) => !isValid(order));
    if (invalid !== undefined) throw new Error(`order ${invalid.id}: negative amount ${invalid.amountCents}`);
    for (const order of orders) processed.add(order.id);
  },
});
let isolations = 0;
coordinator.on('handler.failed', ({ action }) => {
  if (action === 'isolate') isolations++;
});

// The dead letters' reader: BullMQ needs `maxRetriesPerRequest: null` on its connection.
const workerConnection = new Redis(env.redisUrl, { maxRetriesPerRequest: null });
const deadLetters: DeadLetterJob[] = [];
const worker = new Worker<DeadLetterJob>(
  QUEUE,
  async (job: Job<DeadLetterJob>) => {
    const letter = job.data;
    deadLetters.push(letter);
    const what = letter.dataEncoding === 'json' ? JSON.stringify(letter.data) : `base64 ${letter.data}`;
    console.log(
      `  dead letter: ${letter.shardId} seq ${letter.sequenceNumber.slice(-6)}: ${letter.error.code} ` +
        `"${letter.error.message}" after ${letter.attempts} attempt(s): ${what}`,
    );
  },
  { connection: workerConnection },
);

// Orders, one in 50 invalid; and one payload that is not JSON (a poison record: it never reaches the
// handler and is dead-lettered at once, as raw bytes).
const producer = new Producer<Order>({ streamName: env.streamName, kinesis: env.kinesis });
const puts: Promise<unknown>[] = [];
let expectedInvalid = 0;
for (let id = 0; id < RECORDS; id++) {
  const order = { run: env.runId, id, amountCents: id % 50 === 49 ? -100 : 100 + id };
  if (!isValid(order)) expectedInvalid++;
  puts.push(producer.put(order, { partitionKey: `customer-${id % 16}` }));
}
const rawProducer = new Producer<Uint8Array>({
  streamName: env.streamName,
  kinesis: env.kinesis,
  codec: 'raw',
});
puts.push(
  rawProducer.put(new TextEncoder().encode(`{"run":"${env.runId}", not json`), {
    partitionKey: 'customer-0',
  }),
);
await Promise.all(puts);
await Promise.all([producer.close(), rawProducer.close()]);
const valid = RECORDS - expectedInvalid;
console.log(
  `dead-letter: produced ${valid} valid orders, ${expectedInvalid} invalid ones and 1 poison record`,
);

const fromThisRun = () =>
  deadLetters.filter((l) => l.dataEncoding === 'base64' || (l.data as Order).run === env.runId);
let ok = false;
try {
  await waitUntil(
    'every valid order to be processed and every bad record dead-lettered',
    () => processed.size === valid && fromThisRun().length === expectedInvalid + 1,
    60_000,
    // Ctrl-C ends the wait; the coordinator, the worker and the queue are stopped and deleted all the same.
    env.interrupted,
  );
  ok = true;
} catch (error) {
  if (!env.interrupted.aborted) throw error;
} finally {
  await coordinator.stop();
  await worker.close();
  // Dead-letter jobs stay in Redis until removed: this example deletes its queue.
  const queue = new Queue(QUEUE, { connection: workerConnection });
  await queue.obliterate({ force: true });
  await queue.close();
  await workerConnection.quit();
  await env.close();
}

const rejected = fromThisRun().filter((l) => l.dataEncoding === 'json').length;
const poison = fromThisRun().filter((l) => l.error.code === 'ERR_CODEC').length;
ok = ok && rejected === expectedInvalid && poison === 1;
const outcome = ok
  ? 'OK'
  : env.interrupted.aborted
    ? `stopped by ${String(env.interrupted.reason)}`
    : 'FAILED';
console.log(
  `dead-letter: ${outcome}: processed ${processed.size} of ${valid} valid orders; ` +
    `dead-lettered ${rejected + poison} of ${expectedInvalid + 1} bad records (${rejected} rejected by the handler, ` +
    `${poison} undecodable) after ${isolations} batch isolations; read back by a BullMQ Worker`,
);
// 130: the shell's code for a run interrupted by Ctrl-C.
process.exitCode = ok ? 0 : env.interrupted.aborted ? 130 : 1;
