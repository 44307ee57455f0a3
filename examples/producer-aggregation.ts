/**
 * Producer with KPL aggregation: `aggregate: true` packs many user records into each Kinesis record
 * (per destination shard, each keeping its own partition key), which is how a producer gets past the
 * 1,000 records/s per shard write limit. Shows `put()` receipts, `writable()` with `pipeline`, `flush()`
 * and `close()`, then reads everything back with a consumer, which unpacks the aggregates.
 *
 *   npm run build && npx tsx examples/producer-aggregation.ts
 *
 * It writes RECORDS records (default 2,000): a quarter with `put()`, the rest through `writable()`.
 * Exits 0 only when every record was read back. With no environment it starts its own local Kinesis:
 * see support.ts.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { startCoordinator } from '@shardline/coordinator';
import { Producer, type PutReceipt } from '@shardline/producer';
import { setUpExample } from './support.js';

interface Click {
  run: string;
  id: number;
  user: string;
  page: string;
}

const RECORDS = Number(process.env.RECORDS ?? 2_000);
const BY_PUT = Math.floor(RECORDS / 4);

const env = await setUpExample('producer-aggregation', { shards: 2, redis: false });
console.log(`producer-aggregation: ${env.description}`);

const producer = new Producer<Click>({
  streamName: env.streamName,
  kinesis: env.kinesis,
  aggregate: true,
  // A record waits at most 50 ms for others to share its aggregate and its PutRecords call.
  lingerMs: 50,
});
// One `put` event per PutRecords call: `entries` are Kinesis records (aggregates), `records` user records.
let kinesisRecords = 0;
producer.on('put', (e) => {
  kinesisRecords += e.entries;
});

const click = (id: number): Click => ({
  run: env.runId,
  id,
  user: `user-${id % 50}`,
  page: `/page/${id % 7}`,
});

// 1. put(): resolves with a receipt once Kinesis acknowledged the record.
const receipts: PutReceipt[] = await Promise.all(
  Array.from({ length: BY_PUT }, (_, id) => producer.put(click(id), { partitionKey: click(id).user })),
);
console.log(`producer-aggregation: put() receipt of record 0: ${JSON.stringify(receipts[0])}`);
const aggregatesByPut = new Set(receipts.map((r) => `${r.shardId}/${r.sequenceNumber}`)).size;
console.log(
  `producer-aggregation: ${receipts.length} receipts share ${aggregatesByPut} sequence numbers ` +
    '(one per aggregate; subSequenceNumber is the place in it)',
);

// 2. writable(): an object-mode Writable with backpressure (a write completes once the record is
// buffered, within maxBufferedRecords); chunks are { data, partitionKey?, explicitHashKey? }.
async function* clicks() {
  for (let id = BY_PUT; id < RECORDS; id++) yield { data: click(id), partitionKey: click(id).user };
}
await pipeline(Readable.from(clicks()), producer.writable());

// 3. flush() waits for everything accepted so far; close() flushes, then refuses new records.
await producer.flush();
await producer.close();
console.log(`producer-aggregation: produced ${RECORDS} records in ${kinesisRecords} Kinesis records`);

// Read them back: the consumer unpacks each aggregate into its user records.
const coordinator = await startCoordinator<Click>({
  streamName: env.streamName,
  group: 'producer-check',
  kinesis: env.kinesis,
  initialPosition: env.initialPosition,
  idleFetchIntervalMs: 200,
  // Stops the coordinator (and so the loop below) after a minute, or at Ctrl-C.
  signal: AbortSignal.any([AbortSignal.timeout(60_000), env.interrupted]),
});
const read = new Set<number>();
let withSubSequence = 0;
for await (const batch of coordinator) {
  for (const record of batch.records) {
    if (record.data.run !== env.runId) continue;
    read.add(record.data.id);
    if (record.subSequenceNumber !== undefined) withSubSequence++;
  }
  if (read.size === RECORDS) break;
}
await coordinator.stop();
await env.close();

const ok = read.size === RECORDS && receipts.length === BY_PUT && kinesisRecords < RECORDS;
const outcome = ok
  ? 'OK'
  : env.interrupted.aborted
    ? `stopped by ${String(env.interrupted.reason)}`
    : 'FAILED';
console.log(
  `producer-aggregation: ${outcome}: read back ${read.size} of ${RECORDS} records ` +
    `(${withSubSequence} unpacked from aggregates); ${receipts.length} receipts; ${RECORDS} records sent as ` +
    `${kinesisRecords} Kinesis records (${(RECORDS / Math.max(1, kinesisRecords)).toFixed(1)} per aggregate)`,
);
// 130: the shell's code for a run interrupted by Ctrl-C.
process.exitCode = ok ? 0 : env.interrupted.aborted ? 130 : 1;
