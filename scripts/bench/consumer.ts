/**
 * Consumer benchmark (issue 6). Run: `npx tsx scripts/bench/consumer.ts [--quick]` (after `npx tsc -b`).
 *
 * kinesalite runs in its own process (`inProcess: false`), so its CPU is not the consumer's event loop.
 * a. drain: 4 shards pre-filled, time for startCoordinator (handler mode; in-memory and Redis leases) to
 *    consume them all vs a hand-written raw GetRecords loop (one async loop per shard, same client settings).
 * b. pipeline ceiling: a tiny HTTP server (its own process) answers GetRecords with canned responses at
 *    once: the library's own records/s, and where its CPU goes, vs the raw loop against the same server.
 * c. latency: put-to-handler p50/p99 at 500 records/s, for two idle fetch intervals.
 * d. memory: peak RSS vs maxBufferedRecords with a slow handler (each setting in its own child process).
 * e. CPU-heavy: a CPU-bound function per record, run by handlerModule in 2 worker threads vs by a handler
 *    on the main thread.
 * Prints the figures and writes them as the "Consumer" section of BENCHMARKS.md.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '@shardline/common';
import { type Coordinator, type CoordinatorOptions, startCoordinator } from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis, useTestRedis } from '@shardline/testing';
import {
  childCpuSeconds,
  fillShards,
  fmt,
  machineLine,
  percentile,
  processCpuSeconds,
  rawGetRecordsLoop,
  sleep,
} from './lib-bench.js';
import { progress, QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const SELF = fileURLToPath(import.meta.url);
const SHARDS = 4;
const DRAIN_PER_SHARD = QUICK ? 2_500 : 25_000;
const DRAIN_ROUNDS = QUICK ? 1 : 2;
const CEILING_SHARDS = 16;
const CEILING_RECORDS_PER_RESPONSE = 10_000;
const CEILING_WINDOW_MS = QUICK ? 3_000 : 12_000;
const LATENCY_RATE = 500;
const LATENCY_WINDOW_MS = QUICK ? 3_000 : 15_000;
const LATENCY_IDLE_MS = [1_000, 200];
/** maxBufferedRecords per memory row; `undefined`: the defaults (100,000 records, maxBufferedBytes 64 MiB). */
const MEMORY_BUFFERS: ReadonlyArray<number | undefined> = [1_000, 10_000, 50_000, undefined];
/** 4 x 25,000 records of 1 KiB: about 98 MiB waiting, more than the default byte budget. */
const MEMORY_PER_SHARD = QUICK ? 2_000 : 25_000;
const MEMORY_RECORD_BYTES = 1_024;
const MEMORY_WINDOW_MS = QUICK ? 3_000 : 8_000;
/** The slow handler: this many milliseconds per 10 records (1,000 records/s per shard at most). */
const MEMORY_MS_PER_10 = 10;
const CPU_PER_SHARD = QUICK ? 300 : 3_000;
/** Iterations of the per-record CPU-bound function (about 0.5 ms on this machine). */
const CPU_ITERATIONS = 300_000;

const encoder = new TextEncoder();

/** Every child process started here, killed on any exit. */
const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => process.exit(130));
}

interface Item {
  i: number;
  t?: number;
  pad?: string;
}

function itemBytes(item: Item): Uint8Array {
  return encoder.encode(JSON.stringify(item));
}

/** Runs a coordinator until `done()` (checked every 5 ms) or `timeoutMs`; resolves with the elapsed ms. */
async function runUntil<T>(
  options: CoordinatorOptions<T>,
  done: () => boolean,
  timeoutMs: number,
  what: string,
  setup?: (coordinator: Coordinator<T>) => void,
): Promise<{ ms: number; coordinator: Coordinator<T> }> {
  const started = performance.now();
  const coordinator = await startCoordinator(options);
  setup?.(coordinator);
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) {
      await coordinator.stop();
      throw new Error(`${what}: not done after ${timeoutMs} ms`);
    }
    await sleep(5);
  }
  return { ms: performance.now() - started, coordinator };
}

// ---------------------------------------------------------------------------------------------- a. drain

interface DrainFigures {
  raw: number[];
  memory: number[];
  redis: number[];
  memorySteady: number[];
  /** Milliseconds from the start call to the first record handled: raw loop, library (in-memory leases). */
  rawFirstMs: number[];
  memoryFirstMs: number[];
  /** Records per batch (= per GetRecords call) on average. */
  batchSize: number;
  records: number;
}

async function drain(kinesis: LocalKinesis): Promise<DrainFigures> {
  const stream = 'bench-consumer-drain';
  const created = await kinesis.createStream(stream, { shards: SHARDS });
  const client = kinesis.client();
  progress(`drain: filling ${SHARDS} x ${fmt(DRAIN_PER_SHARD)} records`);
  await fillShards(client, stream, created.shards, DRAIN_PER_SHARD, (_, i) =>
    itemBytes({ i, pad: 'x'.repeat(60) }),
  );
  const total = SHARDS * DRAIN_PER_SHARD;
  const shardIds = created.shards.map((s) => s.ShardId!);
  const redis = await useTestRedis('bench-consumer');
  const figures: DrainFigures = {
    raw: [],
    memory: [],
    redis: [],
    memorySteady: [],
    rawFirstMs: [],
    memoryFirstMs: [],
    batchSize: 0,
    records: total,
  };
  let run = 0;
  try {
    const rawRun = async () => {
      // A fresh client per run, built like the library's (createKinesisClient: HTTP/1.1 keep-alive).
      const rawClient = createKinesisClient(kinesis.clientConfig);
      let count = 0;
      let doneAt = 0;
      let firstAt = 0;
      const started = performance.now();
      await rawGetRecordsLoop(
        rawClient,
        stream,
        shardIds,
        (_, records) => {
          if (firstAt === 0 && records.length > 0) firstAt = performance.now();
          count += records.length;
          // Timed at the last record, not when every loop has woken from its idle wait.
          if (count >= total && doneAt === 0) doneAt = performance.now();
        },
        () => count >= total,
      );
      rawClient.destroy();
      return { rate: total / ((doneAt - started) / 1_000), firstMs: firstAt - started };
    };
    const libraryRun = async (leases: 'memory' | 'redis', maxBufferedRecords?: number) => {
      let count = 0;
      let batches = 0;
      let first = 0;
      let last = 0;
      const started = performance.now();
      const { ms, coordinator } = await runUntil<Item>(
        {
          streamName: stream,
          group: `drain-${leases}-${run++}`,
          kinesis: kinesis.clientConfig,
          ...(leases === 'redis' ? { leases: { redis: redis.url, keyPrefix: redis.keyPrefix } } : {}),
          ...(maxBufferedRecords === undefined ? {} : { maxBufferedRecords }),
          handler: (batch) => {
            if (first === 0) first = performance.now();
            count += batch.records.length;
            batches++;
            last = performance.now();
          },
        },
        () => count >= total,
        120_000,
        `drain with ${leases} leases`,
      );
      await coordinator.stop();
      return {
        rate: total / (ms / 1_000),
        steady: total / ((last - first) / 1_000),
        firstMs: first - started,
        batchSize: count / batches,
      };
    };
    // Warm-up (JIT, sockets, kinesalite's caches), not counted.
    await rawRun();
    await libraryRun('memory');
    for (let round = 0; round < DRAIN_ROUNDS; round++) {
      const r = await rawRun();
      figures.raw.push(r.rate);
      figures.rawFirstMs.push(r.firstMs);
      const m = await libraryRun('memory');
      figures.memory.push(m.rate);
      figures.memorySteady.push(m.steady);
      figures.memoryFirstMs.push(m.firstMs);
      figures.batchSize = m.batchSize;
      figures.redis.push((await libraryRun('redis')).rate);
      progress(
        `drain round ${round + 1}: raw ${fmt(figures.raw.at(-1)!)}/s, memory leases ${fmt(m.rate)}/s, ` +
          `Redis leases ${fmt(figures.redis.at(-1)!)}/s`,
      );
    }
  } finally {
    client.destroy();
    await redis.cleanup();
  }
  return figures;
}

// ------------------------------------------------------------------------------------ b. pipeline ceiling

/**
 * The canned Kinesis: ListShards, DescribeStreamSummary, GetShardIterator, and GetRecords answered at
 * once with the same records (fresh sequence numbers each time, so the consumer sees a stream moving on).
 */
const CANNED_SERVER = `
const http = require('node:http');
const { shards: shardCount, records: perResponse } = JSON.parse(process.env.CANNED);
const step = (1n << 128n) / BigInt(shardCount);
const shards = Array.from({ length: shardCount }, (_, n) => ({
  ShardId: 'shardId-' + String(n).padStart(12, '0'),
  HashKeyRange: { StartingHashKey: String(step * BigInt(n)), EndingHashKey: String(n === shardCount - 1 ? (1n << 128n) - 1n : step * BigInt(n + 1) - 1n) },
  SequenceNumberRange: { StartingSequenceNumber: '1' },
}));
// Each record is cut around its sequence number's per-response prefix, so answering is string joins.
const head = '{"MillisBehindLatest":60000,"NextShardIterator":"it","Records":[';
const before = [];
const after = [];
for (let i = 0; i < perResponse; i++) {
  const data = Buffer.from(JSON.stringify({ i })).toString('base64');
  before.push((i === 0 ? '' : ',') + '{"ApproximateArrivalTimestamp":1.7E9,"Data":"' + data + '","PartitionKey":"k-' + (i % 97) + '","SequenceNumber":"');
  after.push(String(i).padStart(8, '0') + '"}');
}
let responses = 0;
http.createServer((req, res) => {
  const target = String(req.headers['x-amz-target'] || '').split('.')[1];
  let input = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { input += c; });
  req.on('end', () => {
    let body;
    if (target === 'GetRecords') {
      // Limit is honoured as Kinesis does: the reader asks for no more than its credit.
      const limit = Math.min(perResponse, JSON.parse(input).Limit || 10000);
      const prefix = String(1e9 + ++responses);
      body = head;
      for (let i = 0; i < limit; i++) body += before[i] + prefix + after[i];
      body += ']}';
    } else if (target === 'GetShardIterator') body = '{"ShardIterator":"it"}';
    else if (target === 'ListShards') body = JSON.stringify({ Shards: shards });
    else if (target === 'DescribeStreamSummary') body = JSON.stringify({ StreamDescriptionSummary: { StreamName: 'canned', StreamARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/canned', StreamStatus: 'ACTIVE', OpenShardCount: shardCount, RetentionPeriodHours: 24, StreamCreationTimestamp: 1.7e9, EnhancedMonitoring: [], EncryptionType: 'NONE', ConsumerCount: 0 } });
    else { res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' }); res.end(JSON.stringify({ __type: 'InvalidArgumentException', message: 'canned server: ' + target })); return; }
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}).listen(0, '127.0.0.1', function () { process.stdout.write(JSON.stringify({ port: this.address().port }) + '\\n'); });
`;

interface Window {
  recordsPerS: number;
  /** Cores of this process (all threads) busy on average. */
  cores: number;
  /** Share of the main thread's time it was busy (event-loop utilisation). */
  mainElu: number;
  serverCores: number;
  cpuUsPerRecord: number;
}

interface CeilingFigures {
  library: Window;
  raw: Window;
  threads: number;
}

async function ceiling(): Promise<CeilingFigures> {
  const server = spawn(process.execPath, ['-e', CANNED_SERVER], {
    env: {
      ...process.env,
      CANNED: JSON.stringify({ shards: CEILING_SHARDS, records: CEILING_RECORDS_PER_RESPONSE }),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(server);
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.once('exit', (code) => reject(new Error(`canned server exited (${code})`)));
      createInterface({ input: server.stdout! }).once('line', (line) =>
        resolve((JSON.parse(line) as { port: number }).port),
      );
    });
    const config = {
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    };
    const measure = async (count: () => number): Promise<Window> => {
      await sleep(2_000); // Past the start: pool, iterators, JIT.
      const from = count();
      const cpu = processCpuSeconds();
      const serverCpu = childCpuSeconds(server.pid);
      const elu = performance.eventLoopUtilization();
      const started = performance.now();
      await sleep(CEILING_WINDOW_MS);
      const seconds = (performance.now() - started) / 1_000;
      const records = count() - from;
      const usedCpu = processCpuSeconds() - cpu;
      return {
        recordsPerS: records / seconds,
        cores: usedCpu / seconds,
        mainElu: performance.eventLoopUtilization(elu).utilization,
        serverCores: (childCpuSeconds(server.pid) - serverCpu) / seconds,
        cpuUsPerRecord: (usedCpu / records) * 1e6,
      };
    };

    let libraryCount = 0;
    const coordinator = await startCoordinator<Item>({
      streamName: 'canned',
      group: 'ceiling',
      kinesis: config,
      workerThreads: 2,
      // The default budgets (100,000 records, 64 MiB) give each of the 8 readers credit for a full
      // 10,000-record GetRecords.
      handler: (batch) => {
        libraryCount += batch.records.length;
      },
    });
    let library: Window;
    try {
      library = await measure(() => libraryCount);
    } finally {
      await coordinator.stop();
    }
    progress(`ceiling: library ${fmt(library.recordsPerS)} records/s`);

    let rawCount = 0;
    let stopRaw = false;
    const rawClient = createKinesisClient(config);
    const shardIds = Array.from(
      { length: CEILING_SHARDS },
      (_, n) => `shardId-${String(n).padStart(12, '0')}`,
    );
    const loop = rawGetRecordsLoop(
      rawClient,
      'canned',
      shardIds,
      (_, records) => {
        rawCount += records.length;
      },
      () => stopRaw,
    );
    const raw = await measure(() => rawCount);
    stopRaw = true;
    await loop;
    rawClient.destroy();
    progress(`ceiling: raw loop ${fmt(raw.recordsPerS)} records/s`);
    return { library, raw, threads: 2 };
  } finally {
    server.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------- c. latency

interface LatencyFigures {
  idleFetchIntervalMs: number;
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

async function latency(kinesis: LocalKinesis, idleFetchIntervalMs: number): Promise<LatencyFigures> {
  const stream = `bench-consumer-latency-${idleFetchIntervalMs}`;
  await kinesis.createStream(stream, { shards: SHARDS });
  const client = kinesis.client();
  let measuring = false;
  const samples: number[] = [];
  const coordinator = await startCoordinator<Item>({
    streamName: stream,
    group: 'latency',
    kinesis: kinesis.clientConfig,
    initialPosition: 'LATEST',
    idleFetchIntervalMs,
    handler: (batch) => {
      if (!measuring) return;
      const now = Date.now();
      for (const r of batch.records) samples.push(now - r.data.t!);
    },
  });
  try {
    // Puts of 10 records every 20 ms (500 records/s), each stamped just before its PutRecords is sent.
    let running = true;
    let i = 0;
    const putter = (async () => {
      let next = performance.now();
      while (running) {
        const t = Date.now();
        const records = Array.from({ length: 10 }, () => ({
          Data: itemBytes({ i, t }),
          PartitionKey: `k-${i++ % 97}`,
        }));
        await client.send(new PutRecordsCommand({ StreamName: stream, Records: records }));
        next += (1_000 * 10) / LATENCY_RATE;
        await sleep(Math.max(0, next - performance.now()));
      }
    })();
    await sleep(3_000); // Leases taken, readers at LATEST.
    measuring = true;
    await sleep(LATENCY_WINDOW_MS);
    measuring = false;
    running = false;
    await putter;
  } finally {
    await coordinator.stop();
    client.destroy();
  }
  samples.sort((a, b) => a - b);
  const figures = {
    idleFetchIntervalMs,
    samples: samples.length,
    p50: percentile(samples, 50),
    p99: percentile(samples, 99),
    max: samples.at(-1) ?? Number.NaN,
  };
  progress(
    `latency (idle ${idleFetchIntervalMs} ms): p50 ${figures.p50} ms, p99 ${figures.p99} ms over ${fmt(samples.length)}`,
  );
  return figures;
}

// ----------------------------------------------------------------------------------------------- d. memory

interface MemoryChildConfig {
  kinesis: { endpoint: string; region: string; credentials: unknown };
  stream: string;
  /** Unset: the defaults. */
  maxBufferedRecords?: number;
}

interface MemoryFigures {
  maxBufferedRecords?: number;
  rssStartMiB: number;
  rssPeakMiB: number;
  heapPeakMiB: number;
  bufferedPeak: number;
  bufferedBytesPeak: number;
  handled: number;
}

/** In the child: a coordinator with a slow handler; samples RSS and buffered records; prints the figures. */
async function memoryChild(config: MemoryChildConfig): Promise<void> {
  const mib = (b: number) => b / 1024 / 1024;
  const rssStart = mib(process.memoryUsage().rss);
  let handled = 0;
  const coordinator = await startCoordinator<Item>({
    streamName: config.stream,
    group: 'memory',
    kinesis: config.kinesis as CoordinatorOptions['kinesis'],
    ...(config.maxBufferedRecords === undefined ? {} : { maxBufferedRecords: config.maxBufferedRecords }),
    handler: async (batch) => {
      await sleep((batch.records.length / 10) * MEMORY_MS_PER_10);
      handled += batch.records.length;
    },
  });
  let rssPeak = 0;
  let heapPeak = 0;
  let bufferedPeak = 0;
  let bufferedBytesPeak = 0;
  const sampler = setInterval(() => {
    const usage = process.memoryUsage();
    rssPeak = Math.max(rssPeak, mib(usage.rss));
    heapPeak = Math.max(heapPeak, mib(usage.heapUsed + usage.external + usage.arrayBuffers));
    const status = coordinator.status();
    bufferedPeak = Math.max(bufferedPeak, status.bufferedRecords);
    bufferedBytesPeak = Math.max(bufferedBytesPeak, status.bufferedBytes);
  }, 50);
  await sleep(MEMORY_WINDOW_MS);
  clearInterval(sampler);
  await coordinator.stop();
  const figures: MemoryFigures = {
    ...(config.maxBufferedRecords === undefined ? {} : { maxBufferedRecords: config.maxBufferedRecords }),
    rssStartMiB: rssStart,
    rssPeakMiB: rssPeak,
    heapPeakMiB: heapPeak,
    bufferedPeak,
    bufferedBytesPeak,
    handled,
  };
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}

function bufferSetting(maxBufferedRecords: number | undefined): string {
  return maxBufferedRecords === undefined
    ? 'defaults (maxBufferedRecords 100,000, maxBufferedBytes 64 MiB)'
    : `maxBufferedRecords ${fmt(maxBufferedRecords)}`;
}

async function memory(kinesis: LocalKinesis): Promise<MemoryFigures[]> {
  const stream = 'bench-consumer-memory';
  const created = await kinesis.createStream(stream, { shards: SHARDS });
  const client = kinesis.client();
  progress(`memory: filling ${SHARDS} x ${fmt(MEMORY_PER_SHARD)} records of ${MEMORY_RECORD_BYTES} bytes`);
  const pad = 'x'.repeat(MEMORY_RECORD_BYTES - 30);
  await fillShards(client, stream, created.shards, MEMORY_PER_SHARD, (_, i) => itemBytes({ i, pad }));
  client.destroy();
  const cfg = kinesis.clientConfig;
  const out: MemoryFigures[] = [];
  for (const maxBufferedRecords of MEMORY_BUFFERS) {
    const config: MemoryChildConfig = {
      kinesis: { endpoint: String(cfg.endpoint), region: String(cfg.region), credentials: cfg.credentials },
      stream,
      ...(maxBufferedRecords === undefined ? {} : { maxBufferedRecords }),
    };
    const child = spawn(process.execPath, [...process.execArgv, SELF, '--memory-child'], {
      env: { ...process.env, BENCH_MEMORY_CHILD: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.add(child);
    let result: MemoryFigures | undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (line.startsWith('{')) result = JSON.parse(line) as MemoryFigures;
    });
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    children.delete(child);
    if (code !== 0 || result === undefined)
      throw new Error(`memory child (${bufferSetting(maxBufferedRecords)}) failed: exit ${code}`);
    out.push(result);
    progress(
      `memory: ${bufferSetting(maxBufferedRecords)}: RSS ${result.rssStartMiB.toFixed(0)} -> peak ` +
        `${result.rssPeakMiB.toFixed(0)} MiB, buffered peak ${fmt(result.bufferedPeak)}`,
    );
  }
  return out;
}

// -------------------------------------------------------------------------------------------- e. CPU-heavy

/**
 * The CPU-bound per-record work: a multiplicative hash loop; returns a value so it cannot be skipped. Kept
 * within small-integer range (& 0x3fffffff): with `>>> 0` the values outgrow V8's small integers, and once
 * the function leaves optimized code every iteration allocates a heap number, which made it 4x slower on
 * the coordinator thread part-way through a run (measured) and the comparison meaningless.
 */
function cpuWork(seed: number, iterations: number): number {
  let h = seed | 0;
  for (let j = 0; j < iterations; j++) h = Math.imul(h ^ j, 16_777_619) & 0x3fff_ffff;
  return h;
}

/** The same work as a handler module for the worker threads (a data: URL of cpuWork's own source). */
function cpuHandlerModule(): URL {
  const source =
    `const cpuWork = ${cpuWork.toString()};\n` +
    `let sink = 0;\nexport default function handler(batch) {\n` +
    `  for (const r of batch.records) sink ^= cpuWork(r.data.i, ${CPU_ITERATIONS});\n}\n`;
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}

interface CpuFigures {
  records: number;
  mainThread: number;
  handlerModule: number;
  usPerRecord: number;
  /** CPU seconds per wall second of this process (every thread) in each mode. */
  mainCores: number;
  moduleCores: number;
}

async function cpuHeavy(kinesis: LocalKinesis): Promise<CpuFigures> {
  const stream = 'bench-consumer-cpu';
  const created = await kinesis.createStream(stream, { shards: SHARDS });
  const client = kinesis.client();
  await fillShards(client, stream, created.shards, CPU_PER_SHARD, (_, i) => itemBytes({ i }));
  client.destroy();
  const total = SHARDS * CPU_PER_SHARD;
  const t0 = performance.now();
  for (let n = 0; n < 200; n++) cpuWork(n, CPU_ITERATIONS);
  const usPerRecord = ((performance.now() - t0) / 200) * 1_000;

  let sink = 0;
  let count = 0;
  let cpu0 = processCpuSeconds();
  const main = await runUntil<Item>(
    {
      streamName: stream,
      group: 'cpu-main',
      kinesis: kinesis.clientConfig,
      workerThreads: 2,
      handler: (batch) => {
        for (const r of batch.records) sink = (sink + cpuWork(r.data.i, CPU_ITERATIONS)) % 1_000_003;
        count += batch.records.length;
      },
    },
    () => count >= total,
    300_000,
    'CPU-heavy handler',
  );
  const mainCores = (processCpuSeconds() - cpu0) / (main.ms / 1_000);
  await main.coordinator.stop();
  progress(`cpu: handler on the main thread ${fmt(total / (main.ms / 1_000))} records/s (checksum ${sink})`);

  let moduleCount = 0;
  cpu0 = processCpuSeconds();
  const threads = await runUntil<Item>(
    {
      streamName: stream,
      group: 'cpu-module',
      kinesis: kinesis.clientConfig,
      workerThreads: 2,
      handlerModule: cpuHandlerModule(),
    },
    () => moduleCount >= total,
    300_000,
    'CPU-heavy handlerModule',
    // Counted through the processed-batch events: the handler itself runs in the worker threads.
    (coordinator) => {
      coordinator.on('batch.processed', (e) => {
        moduleCount += e.records;
      });
    },
  );
  const moduleCores = (processCpuSeconds() - cpu0) / (threads.ms / 1_000);
  progress(`cpu: handlerModule in 2 worker threads ${fmt(total / (threads.ms / 1_000))} records/s`);
  await threads.coordinator.stop();
  return {
    records: total,
    mainThread: total / (main.ms / 1_000),
    handlerModule: total / (threads.ms / 1_000),
    usPerRecord,
    mainCores,
    moduleCores,
  };
}

// --------------------------------------------------------------------------------------------------- main

const best = (xs: readonly number[]) => Math.max(...xs);
const list = (xs: readonly number[]) => xs.map(fmt).join(' / ');
const pct = (x: number) => `${(x * 100).toFixed(0)}%`;

async function main(): Promise<void> {
  const startedAt = Date.now();
  const kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
  let d: DrainFigures;
  let c: CeilingFigures;
  const lat: LatencyFigures[] = [];
  let mem: MemoryFigures[];
  let cpu: CpuFigures;
  try {
    d = await drain(kinesis);
    c = await ceiling();
    for (const idle of LATENCY_IDLE_MS) lat.push(await latency(kinesis, idle));
    mem = await memory(kinesis);
    cpu = await cpuHeavy(kinesis);
  } finally {
    await kinesis.stop();
  }
  const rawBest = best(d.raw);
  const lines = [
    `drain ${fmt(d.records)} records: raw ${list(d.raw)}/s; memory leases ${list(d.memory)}/s ` +
      `(${(best(d.memory) / rawBest).toFixed(2)} of raw); Redis leases ${list(d.redis)}/s (${(best(d.redis) / rawBest).toFixed(2)} of raw)`,
    `ceiling: library ${fmt(c.library.recordsPerS)}/s (${c.library.cores.toFixed(2)} cores, main thread ${pct(c.library.mainElu)} busy, ` +
      `${c.library.cpuUsPerRecord.toFixed(1)} µs CPU/record; server ${c.library.serverCores.toFixed(2)} cores); raw loop ` +
      `${fmt(c.raw.recordsPerS)}/s (${c.raw.cores.toFixed(2)} cores, ${c.raw.cpuUsPerRecord.toFixed(1)} µs CPU/record)`,
    ...lat.map(
      (l) =>
        `latency idle ${l.idleFetchIntervalMs} ms: p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms (${fmt(l.samples)} records)`,
    ),
    ...mem.map(
      (m) =>
        `memory ${bufferSetting(m.maxBufferedRecords)}: RSS peak ${m.rssPeakMiB.toFixed(0)} MiB (start ${m.rssStartMiB.toFixed(0)}), buffered peak ${fmt(m.bufferedPeak)}`,
    ),
    `cpu-heavy: main-thread handler ${fmt(cpu.mainThread)}/s, handlerModule (2 threads) ${fmt(cpu.handlerModule)}/s, ratio ${(cpu.handlerModule / cpu.mainThread).toFixed(2)}`,
  ];
  for (const line of lines) console.log(line);

  const L = (l: LatencyFigures) =>
    `p50 ${fmt(l.p50)} ms / p99 ${fmt(l.p99)} ms / max ${fmt(l.max)} ms (${fmt(l.samples)} records)`;
  const section = [
    '## Consumer',
    '',
    `Command: \`npx tsx scripts/bench/consumer.ts${QUICK ? ' --quick' : ''}\`; run ${new Date().toISOString()} in ` +
      `${((Date.now() - startedAt) / 1_000).toFixed(0)} s; machine: ${machineLine()}. kinesalite in its own process; ` +
      `startCoordinator with its defaults (worker threads min(cores, 4), fetchRatePerShard 5, maxRecordsPerFetch 10,000, ` +
      'json codec) unless a row says otherwise. The raw loop is one async loop per shard: GetShardIterator TRIM_HORIZON, then ' +
      'GetRecords (Limit 10,000) at most 5 calls/s per shard, JSON-decoding every record, on a client from createKinesisClient ' +
      '(the settings the library uses). Rates are from the start call to the last record handled (so they include starting ' +
      `the worker threads and taking the leases), best of ${DRAIN_ROUNDS} alternating runs after a warm-up run of each.`,
    '',
    '| measure | result | baseline (same run) | ratio | goal |',
    '| --- | --- | --- | --- | --- |',
    `| drain ${SHARDS} shards x ${fmt(DRAIN_PER_SHARD)} records (~80-byte JSON), handler mode, in-memory leases | ${list(d.memory)} records/s (first to last record: ${list(d.memorySteady)}/s; first record after ${list(d.memoryFirstMs)} ms; ${fmt(d.batchSize)} records per batch, i.e. per GetRecords) | raw GetRecords loop ${list(d.raw)} records/s (first record after ${list(d.rawFirstMs)} ms) | ${(best(d.memory) / rawBest).toFixed(2)} | >= 0.95 |`,
    `| same, Redis leases | ${list(d.redis)} records/s | raw GetRecords loop | ${(best(d.redis) / rawBest).toFixed(2)} | >= 0.95 |`,
    `| pipeline ceiling: ${CEILING_SHARDS} shards of a canned server answering GetRecords at once with up to ${fmt(CEILING_RECORDS_PER_RESPONSE)} records (\`{"i":n}\`, ~10 bytes, so the 2 MiB/s per shard byte limit never binds; the 5 calls/s per shard limit caps it at ${fmt(CEILING_SHARDS * 5 * CEILING_RECORDS_PER_RESPONSE)} records/s), ${CEILING_WINDOW_MS / 1_000} s window, workerThreads ${c.threads}, other options default | ${fmt(c.library.recordsPerS)} records/s; process CPU ${c.library.cores.toFixed(2)} cores (${c.library.cpuUsPerRecord.toFixed(1)} µs per record), main thread ${pct(c.library.mainElu)} busy, so the worker threads (and GC, libuv) about ${Math.max(0, c.library.cores - c.library.mainElu).toFixed(2)} cores; server ${c.library.serverCores.toFixed(2)} cores | raw loop on one thread against the same server: ${fmt(c.raw.recordsPerS)} records/s, ${c.raw.cores.toFixed(2)} cores (${c.raw.cpuUsPerRecord.toFixed(1)} µs per record), main thread ${pct(c.raw.mainElu)} busy | ${(c.library.recordsPerS / c.raw.recordsPerS).toFixed(2)} | (ceiling) |`,
    ...lat.map(
      (l) =>
        `| put-to-handler latency at ${LATENCY_RATE} records/s (PutRecords of 10 every 20 ms, stamped just before sending; ${LATENCY_WINDOW_MS / 1_000} s), idleFetchIntervalMs ${fmt(l.idleFetchIntervalMs)} | ${L(l)} | | | |`,
    ),
    ...mem.map(
      (m) =>
        `| RSS with a slow handler (${MEMORY_MS_PER_10} ms per 10 records), ${SHARDS} x ${fmt(MEMORY_PER_SHARD)} records of ${fmt(MEMORY_RECORD_BYTES)} bytes waiting, ${bufferSetting(m.maxBufferedRecords)}, ${MEMORY_WINDOW_MS / 1_000} s | peak ${m.rssPeakMiB.toFixed(0)} MiB (heap + buffers peak ${m.heapPeakMiB.toFixed(0)} MiB); buffered peak ${fmt(m.bufferedPeak)} records, ${(m.bufferedBytesPeak / 1024 / 1024).toFixed(1)} MiB of data; ${fmt(m.handled)} handled | RSS after start-up ${m.rssStartMiB.toFixed(0)} MiB | | grows with the budgets, bounded |`,
    ),
    `| CPU-heavy handler (${cpu.usPerRecord.toFixed(0)} µs of pure-JS work per record), ${fmt(cpu.records)} records, handlerModule in the worker threads (workerThreads 2) | ${fmt(cpu.handlerModule)} records/s, ${cpu.moduleCores.toFixed(2)} cores busy | the same function in a handler on the main thread (workerThreads 2): ${fmt(cpu.mainThread)} records/s, ${cpu.mainCores.toFixed(2)} cores busy (one thread alone: ${fmt(1e6 / cpu.usPerRecord)} records/s) | ${(cpu.handlerModule / cpu.mainThread).toFixed(2)} | > 1 (up to the cores free) |`,
    '',
    `Drain: kinesalite answers slower than either consumer reads, so these rows are bound by the emulator (both sides wait on ` +
      `it; ${fmt(d.batchSize)} records per batch, i.e. per GetRecords, for the library); the Consumer-bound section measures the ` +
      'consumers against an endpoint that costs nothing. What the library adds to a drain is its start ("first record after"): ' +
      'it starts its worker threads (a thread, then loading the SDK and the reader: about 0.2-0.3 s each under plain node, ' +
      "about twice that here, where the threads inherit tsx's loader from the bench process), lists the shards and takes the " +
      "leases (tens of ms); meanwhile the coordinator's thread makes the first GetShardIterator and GetRecords of each shard (of up to 16) " +
      "(the raw loop's first calls too), so the threads' start is off the first call's path, but on this 2-core machine it " +
      'takes CPU from kinesalite while kinesalite serves those first calls. Each memory row runs in its own child process (a fresh heap). The latency rows include up to one idle fetch interval ' +
      'whenever a GetRecords comes back empty, and the 200 ms spacing of the 5 calls/s per shard. The ceiling row shows what ' +
      'the library costs per record when Kinesis costs nothing: the canned server runs in its own process; "cores" counts ' +
      'every thread of the consumer process (process.cpuUsage), the worker threads being the part the main thread does not account for. ' +
      'The machine has 2 cores, shared by kinesalite (or the canned server), the worker threads and the main thread.',
    '',
  ].join('\n');
  writeBenchmarkSection('Consumer', section);
}

const memoryChildConfig = process.env.BENCH_MEMORY_CHILD;
if (process.argv.includes('--memory-child') && memoryChildConfig !== undefined) {
  await memoryChild(JSON.parse(memoryChildConfig) as MemoryChildConfig);
  process.exit(0);
} else {
  await main();
}
