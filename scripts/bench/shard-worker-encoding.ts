/**
 * Micro-benchmark: which batch encoding is cheaper end to end for the json codec ('bytes', 'decoded', 'json')?
 *
 * A worker thread turns GetRecords-shaped records into batch messages exactly as the ShardReader does
 * (unpackResponse + packRecords / decoded items) and posts them; the main thread (the coordinator's
 * place) turns each batch into ShardRecords with batchToRecords, decoding 'bytes' batches itself.
 * Reports records/s end to end and main-thread busy time (event-loop utilisation) per 10k records (the coordinator thread is
 * the one that is shared by every shard, so its cost matters most).
 *
 * Run: npx tsc -b && npx tsx scripts/bench/shard-worker-encoding.ts
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { batchToRecords, codecs, parseWorkerMessage } from '@shardline/common';
import { QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const COMMON = import.meta.resolve('@shardline/common');
// Internal to the package (the reader's own unpacking step); a benchmark may reach in.
const RECORDS = new URL('../../packages/shard-worker/dist/records.js', import.meta.url).href;

const RECORDS_PER_BATCH = 1_000;
// --quick: few batches, to check the script works.
const BATCHES = QUICK ? 20 : 300;

/** The worker: builds batch messages exactly as the ShardReader does, paced like a reader under credit. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
(async () => {
  const { codecs, PROTOCOL_VERSION, packRecords, transferListOf } = await import(${JSON.stringify(COMMON)});
  const { unpackResponse, jsonBatchFields } = await import(${JSON.stringify(RECORDS)});
  const { encoding, records: n, batches } = workerData;
  const encoder = new TextEncoder();
  const records = Array.from({ length: n }, (_, i) => ({
    Data: encoder.encode(JSON.stringify({ id: i, user: 'user-' + (i % 97), amount: i * 3.25, tags: ['a', 'b'], ok: true })),
    PartitionKey: 'user-' + (i % 97),
    SequenceNumber: '4962' + String(i).padStart(40, '0'),
    ApproximateArrivalTimestamp: new Date(),
  }));
  let batchId = 0, inFlight = 0, sent = 0;
  const sendOne = () => {
    const u = unpackResponse(records, codecs.json, encoding, undefined);
    const base = { v: PROTOCOL_VERSION, type: 'batch', shardId: 's', batchId: batchId++, lastSequenceNumber: '1', bytes: u.bytes };
    let message;
    if (encoding === 'bytes') {
      const p = packRecords(u.packed);
      message = { ...base, encoding: 'bytes', records: p.records, buffer: p.buffer };
    } else if (encoding === 'json') {
      message = { ...base, encoding: 'json', ...jsonBatchFields(u) };
    } else {
      message = { ...base, encoding: 'decoded', records: u.decoded };
    }
    parentPort.postMessage(message, transferListOf(message));
  };
  const pump = () => {
    while (inFlight < 4 && sent < batches) { sendOne(); inFlight++; sent++; }
  };
  parentPort.on('message', () => {
    inFlight--;
    pump();
    if (sent === batches && inFlight === 0) parentPort.close();
  });
  pump();
})();
`;

{
  const results: string[] = [];
  const rows: string[] = [];
  for (const round of [1, 2]) {
    for (const encoding of ['bytes', 'decoded', 'json'] as const) {
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: { encoding, records: RECORDS_PER_BATCH, batches: BATCHES },
      });
      let mainMs = 0;
      let received = 0;
      let sum = 0;
      const started = performance.now();
      const elu = performance.eventLoopUtilization();
      await new Promise<void>((resolve, reject) => {
        worker.on('error', reject);
        worker.on('message', (data) => {
          const t0 = performance.now();
          const batch = parseWorkerMessage(data);
          if (batch.type !== 'batch') throw new Error('expected a batch');
          const out = batchToRecords<{ id: number }>(batch, codecs.json);
          for (const r of out) if (r.ok) sum += r.record.data.id;
          mainMs += performance.now() - t0;
          received += out.length;
          worker.postMessage('ack');
          if (received === RECORDS_PER_BATCH * BATCHES) resolve();
        });
      });
      const totalMs = performance.now() - started;
      const busyMs = performance.eventLoopUtilization(elu).active;
      await worker.terminate();
      if (round === 2) {
        results.push(
          `${encoding.padEnd(8)} ${Math.round((received / totalMs) * 1000).toLocaleString('en')} records/s end to end; ` +
            `main thread busy ${((busyMs / received) * 10_000).toFixed(1)} ms per 10k records ` +
            `(${((mainMs / received) * 10_000).toFixed(1)} ms in the handler, the rest deserializing; checksum ${sum})`,
        );
        rows.push(
          `| ${encoding} | ${Math.round((received / totalMs) * 1000).toLocaleString('en-US')} records/s | ` +
            `${((busyMs / received) * 10_000).toFixed(1)} ms (${((mainMs / received) * 10_000).toFixed(1)} ms in batchToRecords + handler) |`,
        );
      }
    }
  }
  console.log(results.join('\n'));
  const cpus = os.cpus();
  writeBenchmarkSection(
    'Shard-worker batch encoding',
    [
      '## Shard-worker batch encoding',
      '',
      `Command: \`npx tsx scripts/bench/shard-worker-encoding.ts${QUICK ? ' --quick' : ''}\`; run ${new Date().toISOString()}; ` +
        `machine: ${cpus.length} cores, ${cpus[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}. A worker thread builds ` +
        `${BATCHES} batch messages of ${RECORDS_PER_BATCH.toLocaleString('en-US')} JSON records as the ShardReader does (4 in flight) ` +
        'and the main thread turns them into ShardRecords (batchToRecords): `bytes` sends the raw payloads (decoded on the ' +
        'main thread), `decoded` sends decoded values (structured clone), `json` (the default for the JSON codecs) sends the ' +
        'items as one JSON text and the metadata in columns, rebuilt with one JSON.parse. No I/O. Second of two rounds.',
      '',
      '| encoding | end to end | main thread busy per 10k records |',
      '| --- | --- | --- |',
      ...rows,
      '',
    ].join('\n'),
  );
}
