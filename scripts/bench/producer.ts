/**
 * Producer benchmark (issue 5). Run: `npx tsx scripts/bench/producer.ts` (after `npx tsc -b`).
 *
 * kinesalite runs in its own process, so its CPU is not this thread's. 100-byte records, 4 shards.
 * 1. Raw PutRecords loop (batches of 500, 4 in flight) vs the Producer (4 requests in flight): records/s.
 * 2. The Producer with aggregate: true: user records/s.
 * 3. Peak RSS while records are put faster than the stream takes them (the producer's buffer full).
 *
 * Pacing is off (`rateLimitPerShard: false`): kinesalite enforces no limits and the raw loop does not pace,
 * so the comparison measures the producer's own overhead. Prints the figures and writes them as the
 * "Producer" section of BENCHMARKS.md.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import {
  type KinesisClient,
  ListShardsCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry,
} from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '@shardline/common';
import { Producer, type PutReceipt } from '@shardline/producer';
import { startLocalKinesis } from '@shardline/testing';
import { QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const RECORD_BYTES = 100;
const SHARDS = 4;
// --quick: small sizes, to check the script works.
const RAW_RECORDS = Number(process.env.BENCH_RAW_RECORDS ?? (QUICK ? 10_000 : 100_000));
const AGG_RECORDS = Number(process.env.BENCH_AGG_RECORDS ?? (QUICK ? 50_000 : 1_000_000));
const RSS_RECORDS = Number(process.env.BENCH_RSS_RECORDS ?? (QUICK ? 50_000 : 1_000_000));
const RSS_BUDGET_S = 120;
/** The aggregated run's maxBufferedRecords (the default; deeper buffers measured no faster on kinesalite). */
const AGG_BUFFER = Number(process.env.BENCH_AGG_BUFFER ?? 10_000);
const CPU_RECORDS = QUICK ? 50_000 : 500_000;
const RSS_WINDOW = 50_000;

const payload = randomBytes(RECORD_BYTES);
const keys = Array.from({ length: 4096 }, (_, i) => `key-${i}`);

async function rawLoop(client: KinesisClient, stream: string, n: number): Promise<number> {
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const count = Math.min(500, n - next);
      const from = next;
      next += count;
      const records: PutRecordsRequestEntry[] = new Array(count);
      for (let i = 0; i < count; i++) records[i] = { Data: payload, PartitionKey: keys[(from + i) & 4095]! };
      let pending = records;
      // Retry failed entries as any real loop must (kinesalite never fails them).
      while (pending.length > 0) {
        const out = await client.send(new PutRecordsCommand({ StreamName: stream, Records: pending }));
        pending = pending.filter((_, i) => out.Records?.[i]?.ErrorCode !== undefined);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return n / ((performance.now() - started) / 1_000);
}

/** Puts n records as fast as put() accepts them; awaits only the record maxBuffered places back. */
async function drive(producer: Producer<Uint8Array>, n: number, window: number): Promise<number> {
  const started = performance.now();
  const ring = new Array<Promise<PutReceipt> | undefined>(window);
  for (let i = 0; i < n; i++) {
    const slot = i % window;
    const earlier = ring[slot];
    if (earlier !== undefined) await earlier;
    ring[slot] = producer.put(payload, { partitionKey: keys[i & 4095]! });
  }
  await Promise.all(ring);
  await producer.flush();
  return n / ((performance.now() - started) / 1_000);
}

function makeProducer(
  config: object,
  stream: string,
  aggregate: boolean,
  maxBufferedRecords = 10_000,
): Producer<Uint8Array> {
  return new Producer<Uint8Array>({
    streamName: stream,
    kinesis: createKinesisClient(config),
    codec: 'raw',
    aggregate,
    rateLimitPerShard: false,
    maxInFlightRequests: 4,
    maxBufferedRecords,
  });
}

/** MiB/s kinesalite accepts in PutRecords of 16 records of 256 KiB, 4 calls in flight. */
async function kinesaliteIntake(client: KinesisClient, stream: string): Promise<number> {
  const data = randomBytes(256 * 1024);
  const records = Array.from({ length: 16 }, (_, i) => ({ Data: data, PartitionKey: `intake-${i}` }));
  await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
  const calls = 32;
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next++ < calls) await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  return (calls * 4) / ((performance.now() - started) / 1_000);
}

/** The aggregated producer against a client that answers every PutRecords at once: its CPU ceiling. */
async function aggregateCpuCeiling(): Promise<number> {
  const shards = Array.from({ length: SHARDS }, (_, i) => {
    const step = (1n << 128n) / BigInt(SHARDS);
    const end = i === SHARDS - 1 ? (1n << 128n) - 1n : step * BigInt(i + 1) - 1n;
    return {
      ShardId: `shardId-${i}`,
      HashKeyRange: { StartingHashKey: String(step * BigInt(i)), EndingHashKey: String(end) },
      SequenceNumberRange: { StartingSequenceNumber: '0' },
    };
  });
  const stub = {
    config: { serviceId: 'Kinesis' },
    destroy() {},
    async send(command: unknown) {
      if (command instanceof ListShardsCommand) return { Shards: shards };
      const entries = (command as PutRecordsCommand).input.Records ?? [];
      return { Records: entries.map(() => ({ ShardId: 'shardId-0', SequenceNumber: '1' })) };
    },
  };
  const producer = new Producer<Uint8Array>({
    streamName: 'stub',
    kinesis: stub as unknown as KinesisClient,
    codec: 'raw',
    aggregate: true,
    rateLimitPerShard: false,
    shardRefreshIntervalMs: 0,
  });
  await drive(producer, 20_000, 10_000);
  const rate = await drive(producer, CPU_RECORDS, 10_000);
  await producer.close();
  return rate;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

async function main(): Promise<void> {
  const kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
  try {
    const stream = 'bench-producer';
    await kinesis.createStream(stream, { shards: SHARDS });
    const raw = kinesis.client();

    // Warm up both paths (JIT, sockets), then alternate runs and keep each side's best.
    await rawLoop(raw, stream, 5_000);
    const warm = makeProducer(kinesis.clientConfig, stream, false);
    await drive(warm, 5_000, 10_000);
    const rawRates: number[] = [];
    const producerRates: number[] = [];
    for (let round = 0; round < 2; round++) {
      rawRates.push(await rawLoop(raw, stream, RAW_RECORDS));
      producerRates.push(await drive(warm, RAW_RECORDS, 10_000));
    }
    await warm.close();
    const rawBest = Math.max(...rawRates);
    const producerBest = Math.max(...producerRates);
    console.log(`raw PutRecords loop: ${rawRates.map(fmt).join(', ')} records/s`);
    console.log(`producer:            ${producerRates.map(fmt).join(', ')} records/s`);
    console.log(`ratio (best/best):   ${(producerBest / rawBest).toFixed(2)}`);

    const aggStream = 'bench-producer-agg';
    await kinesis.createStream(aggStream, { shards: SHARDS });
    const agg = makeProducer(kinesis.clientConfig, aggStream, true, AGG_BUFFER);
    let aggBytes = 0;
    let aggUserRecords = 0;
    agg.on('put', (e) => {
      aggBytes += e.bytes;
      aggUserRecords += e.records;
    });
    await drive(agg, 20_000, AGG_BUFFER);
    const aggRate = await drive(agg, AGG_RECORDS, AGG_BUFFER);
    await agg.close();
    const bytesPerUserRecord = aggBytes / aggUserRecords;
    console.log(
      `aggregated:          ${fmt(aggRate)} user records/s (${(aggRate / producerBest).toFixed(1)}x), ` +
        `${bytesPerUserRecord.toFixed(1)} bytes on the wire per user record`,
    );

    // What bounds the aggregated figure: kinesalite's byte intake, and the producer's own CPU cost.
    await kinesis.createStream('bench-producer-intake', { shards: SHARDS });
    const intakeMBps = await kinesaliteIntake(raw, 'bench-producer-intake');
    const intakeCeiling = (intakeMBps * 1024 * 1024) / bytesPerUserRecord;
    const cpuRate = await aggregateCpuCeiling();
    console.log(
      `kinesalite intake:   ${intakeMBps.toFixed(1)} MiB/s of 256 KiB records = ${fmt(intakeCeiling)} user records/s at ` +
        `${bytesPerUserRecord.toFixed(1)} bytes each`,
    );
    console.log(`aggregated, no I/O:  ${fmt(cpuRate)} user records/s (stub client answering at once)`);

    // RSS: the feeder outpaces the stream (kinesalite takes ~producerBest records/s), so put() waits on
    // the full buffer; RSS must stay flat however many records go through.
    const rssStream = 'bench-producer-rss';
    await kinesis.createStream(rssStream, { shards: SHARDS });
    const rssRecords = Math.min(RSS_RECORDS, Math.floor(producerBest * RSS_BUDGET_S * 0.9));
    const rssProducer = makeProducer(kinesis.clientConfig, rssStream, false);
    let peakBuffered = 0;
    let acknowledged = 0;
    const checkpoints: Array<{ records: number; rss: number }> = [];
    let nextCheckpoint = rssRecords / 10;
    rssProducer.on('put', (e) => {
      peakBuffered = Math.max(peakBuffered, rssProducer.bufferedRecords);
      acknowledged += e.records;
      if (acknowledged >= nextCheckpoint) {
        checkpoints.push({ records: acknowledged, rss: process.memoryUsage().rss });
        nextCheckpoint += rssRecords / 10;
      }
    });
    const rssStart = process.memoryUsage().rss;
    let rssPeak = rssStart;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
    }, 50);
    // A window far larger than the buffer: put() calls pile up waiting for room, as an eager feeder's would.
    const rssRate = await drive(rssProducer, rssRecords, RSS_WINDOW);
    clearInterval(sampler);
    await rssProducer.close();
    const mb = (b: number) => (b / 1024 / 1024).toFixed(0);
    const trail = checkpoints.map((c) => `${mb(c.rss)}`).join(' ');
    console.log(
      `RSS: ${fmt(rssRecords)} records at ${fmt(rssRate)}/s; RSS ${mb(rssStart)} MiB at start, peak ${mb(rssPeak)} MiB; ` +
        `at each 10% of records: ${trail} MiB; peak buffered ${fmt(peakBuffered)} (maxBufferedRecords 10,000)`,
    );

    const section = [
      '## Producer',
      '',
      `Command: \`npx tsx scripts/bench/producer.ts${QUICK ? ' --quick' : ''}\`; run ${new Date().toISOString()}; machine: ${os.cpus().length} cores, ` +
        `${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}. kinesalite in its own process, ` +
        `${SHARDS} shards, ${RECORD_BYTES}-byte records, 4,096 distinct partition keys, pacing off (kinesalite has ` +
        'no limits; the raw loop does not pace). The machine is shared with other work: figures vary by about 20% ' +
        'between runs.',
      '',
      '| measure | result | goal |',
      '| --- | --- | --- |',
      `| raw PutRecords loop (500/batch, 4 in flight), ${fmt(RAW_RECORDS)} records, 2 runs | ${rawRates.map(fmt).join(' / ')} records/s | |`,
      `| Producer (maxInFlightRequests 4, other options default), ${fmt(RAW_RECORDS)} records, 2 runs | ${producerRates.map(fmt).join(' / ')} records/s | |`,
      `| ratio Producer / raw (best runs) | ${(producerBest / rawBest).toFixed(2)} | >= 0.9 |`,
      `| Producer, aggregate: true, ${fmt(AGG_RECORDS)} user records | ${fmt(aggRate)} user records/s (${(aggRate / producerBest).toFixed(1)}x) | >= 10x |`,
      `| kinesalite's byte intake (PutRecords of 16 x 256 KiB) | ${intakeMBps.toFixed(1)} MiB/s = ${fmt(intakeCeiling)} user records/s at ${bytesPerUserRecord.toFixed(1)} wire bytes each | (ceiling) |`,
      `| Producer, aggregate: true, stub client answering at once (no I/O), ${fmt(CPU_RECORDS)} user records | ${fmt(cpuRate)} user records/s | (ceiling) |`,
      `| RSS while ${fmt(rssRecords)} records are put faster than the stream takes them (${fmt(RSS_WINDOW)} put() calls outstanding) | start ${mb(rssStart)} MiB, peak ${mb(rssPeak)} MiB; at each 10%: ${trail} MiB (${fmt(rssRate)} records/s; peak buffered ${fmt(peakBuffered)}) | flat |`,
      '',
      `Aggregated throughput here is bounded by kinesalite's byte intake (the "intake" row, converted to user records ` +
        'at the measured wire bytes per user record: ' +
        `${(intakeCeiling / producerBest).toFixed(1)}x the plain rate in this run), not by the producer (the "no I/O" row). ` +
        'On Kinesis, where a shard takes 1 MiB/s and 1,000 records/s, aggregation lifts a shard from 1,000 to about ' +
        `${fmt((1024 * 1024) / bytesPerUserRecord)} user records/s.`,
      '',
    ].join('\n');
    writeBenchmarkSection('Producer', section);
  } finally {
    await kinesis.stop();
  }
}

await main();
