/**
 * Basic consumer: `startCoordinator()` with a handler, automatic checkpoints, and a graceful stop on
 * Ctrl-C (SIGINT) or SIGTERM.
 *
 *   npm run build && npx tsx examples/basic-consumer.ts
 *
 * It writes RECORDS orders (default 1,000) over 8 partition keys, consumes them, and stops once every
 * order was consumed (or at Ctrl-C). Exits 0 only when every order arrived, each key's in order.
 * With no environment it starts its own local Kinesis: see support.ts.
 */
import { startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { setUpExample } from './support.js';

interface Order {
  run: string;
  customer: string;
  /** Position of the order among its customer's orders. */
  seq: number;
  amountCents: number;
}

const RECORDS = Number(process.env.RECORDS ?? 1_000);
const CUSTOMERS = 8;

// Ctrl-C or SIGTERM aborts this signal: the coordinator stops fetching, finishes the batches in flight,
// writes final checkpoints and releases its leases, so the next run resumes exactly where this one ended.
const shutdown = new AbortController();
let interruptedBy: string | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    interruptedBy = signal;
    console.log(`basic-consumer: ${signal}: stopping gracefully`);
    shutdown.abort();
  });
}

const env = await setUpExample('basic-consumer', { shards: 2, redis: true });
console.log(`basic-consumer: ${env.description}`);

let consumed = 0;
let duplicates = 0;
let outOfOrder = 0;
const lastSeq = new Map<string, number>();
const perShard = new Map<string, number>();
let allConsumed: () => void = () => {};
const finished = new Promise<void>((resolve) => {
  allConsumed = resolve;
});
shutdown.signal.addEventListener('abort', () => allConsumed());

const coordinator = await startCoordinator<Order>({
  streamName: env.streamName,
  group: 'billing',
  kinesis: env.kinesis,
  // Leases and checkpoints in Redis; omit `leases` for in-memory leases on a single host.
  leases: { redis: env.redisUrl, keyPrefix: env.keyPrefix },
  initialPosition: env.initialPosition,
  // Processed positions are written at most every second per shard (default 5 s), and always on stop.
  checkpoint: { mode: 'auto', intervalMs: 1_000 },
  // Poll an idle shard every 200 ms instead of every second, so the example finishes sooner.
  idleFetchIntervalMs: 200,
  signal: shutdown.signal,
  // One batch per shard at a time, in order; the shard's next batch waits until this resolves.
  handler: async (batch) => {
    for (const record of batch.records) {
      const order = record.data;
      if (order.run !== env.runId) continue; // another run's record (on a shared STREAM_NAME)
      const last = lastSeq.get(order.customer) ?? -1;
      if (order.seq <= last)
        duplicates++; // at-least-once: a redelivery
      else {
        if (order.seq !== last + 1) outOfOrder++;
        lastSeq.set(order.customer, order.seq);
        consumed++;
      }
      perShard.set(batch.shardId, (perShard.get(batch.shardId) ?? 0) + 1);
    }
    if (consumed === RECORDS) allConsumed();
  },
});

let checkpoints = 0;
coordinator.on('checkpoint', () => {
  checkpoints++;
});
coordinator.on('error', ({ error, shardId }) =>
  console.error(`basic-consumer: ${shardId ?? ''} ${error.message}`),
);

// Something to consume: orders of CUSTOMERS customers, each customer's in sequence.
const producer = new Producer<Order>({ streamName: env.streamName, kinesis: env.kinesis });
const puts: Promise<unknown>[] = [];
for (let i = 0; i < RECORDS; i++) {
  const customer = `customer-${i % CUSTOMERS}`;
  const order = { run: env.runId, customer, seq: Math.floor(i / CUSTOMERS), amountCents: 100 + i };
  puts.push(producer.put(order, { partitionKey: customer }));
}
await Promise.all(puts);
await producer.close();
console.log(`basic-consumer: produced ${RECORDS} orders; consuming...`);

await finished;
await coordinator.stop(); // idempotent: also what the signal triggers
await env.close();

const shards = [...perShard].map(([shardId, n]) => `${shardId}: ${n}`).join(', ') || 'none';
const ok = consumed === RECORDS && outOfOrder === 0;
const outcome = ok ? 'OK' : interruptedBy !== undefined ? `stopped by ${interruptedBy}` : 'FAILED';
console.log(
  `basic-consumer: ${outcome}: consumed ${consumed} of ${RECORDS} records (${duplicates} duplicates, ` +
    `${outOfOrder} out of order), ${checkpoints} checkpoints written; per shard: ${shards}`,
);
// 130: the shell's code for a run interrupted by Ctrl-C.
process.exitCode = ok ? 0 : interruptedBy !== undefined ? 130 : 1;
