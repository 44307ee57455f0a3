/**
 * Consumer-bound benchmark. Run: `npx tsx scripts/bench/consumer-bound.ts [--quick]` (after `npx tsc -b`).
 *
 * Against memory-kinesis.mjs (its own process): shards pre-filled in memory and answered at once, so the
 * consumer, not the emulator, bounds throughput.
 * a. drain: 4 shards x 250,000 records of 100 bytes, startCoordinator with its defaults (handler on the
 *    main thread, json codec, in-memory leases; the handler reads every record's data) against a
 *    hand-written single-threaded SDK loop, twice: paced at 5 calls/s per shard only, and also at Kinesis'
 *    2 MiB/s per shard read limit (which the library keeps). Alternating rounds, medians. Records/s,
 *    whole-process CPU per record, the main thread's busy time per record.
 *    The same on 16 shards x 62,500, where Kinesis' limit (about 336,000 records/s) is above one thread.
 * b. idle: 200 empty shards, defaults: CPU per shard per second.
 * c. Redis load of an idle host holding 16 and 200 shards (a private redis-server, counted with MONITOR):
 *    round trips (client commands, a script call one) and commands incl. those run inside scripts.
 * Prints the figures and writes them as the "Consumer-bound" section of BENCHMARKS.md.
 */
import { createKinesisClient } from '@shardline/common';
import { type Coordinator, type CoordinatorOptions, startCoordinator } from '@shardline/coordinator';
import { startRedisServer } from '@shardline/testing';
import { Redis } from 'ioredis';
import {
  childCpuSeconds,
  fmt,
  machineLine,
  median,
  processCpuSeconds,
  rawGetRecordsLoop,
  sleep,
  startMemoryKinesis,
} from './lib-bench.js';
import { progress, QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const SHARDS = 4;
const PER_SHARD = QUICK ? 25_000 : 250_000;
/**
 * The wide drain: enough shards that Kinesis' 2 MiB/s per shard (about 336,000 records/s of 100 bytes
 * on 16) is above what one thread can read, so the consumers, not the limit, bound it.
 */
const WIDE_SHARDS = 16;
const WIDE_PER_SHARD = QUICK ? 6_250 : 62_500;
const RECORD_BYTES = 100;
const ROUNDS = QUICK ? 1 : 3;
const IDLE_SHARDS = QUICK ? 20 : 200;
/** At least two renewal periods (3.3 s by default), so every timer of an idle host fires in it. */
const IDLE_WINDOW_MS = QUICK ? 7_000 : 15_000;
/**
 * Idle: measured once every shard's idle backoff is at its ceiling. With the defaults (idleFetchIntervalMs
 * 1,000, doubling after the third empty answer, idleFetchMaxIntervalMs 5,000) the pauses are
 * 1 + 1 + 1 + 2 + 4 = 9 s before the first 5 s one, and the shards start a few seconds apart.
 */
const SETTLE_MS = 15_000;
const KINESIS_READ_BYTES_PER_S = 2 * 1024 * 1024;

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => process.exit(130));
}

interface Run {
  recordsPerS: number;
  cpuUsPerRecord: number;
  /** Main-thread busy time per record (event-loop utilisation's active time). */
  mainUsPerRecord: number;
}

interface Item {
  i: number;
}

async function measure(
  run: (done: () => void, count: (n: number) => void) => Promise<() => Promise<void>>,
  total: number,
): Promise<Run> {
  let count = 0;
  let first = 0;
  let last = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  // CPU from the first records on, as the rate: start-up (threads, modules, leases) is not per record.
  let cpu = process.cpuUsage();
  let elu = performance.eventLoopUtilization();
  const stop = await run(resolveDone, (n) => {
    if (first === 0) {
      first = performance.now();
      cpu = process.cpuUsage();
      elu = performance.eventLoopUtilization();
    }
    count += n;
    last = performance.now();
    if (count >= total) resolveDone();
  });
  await done;
  const used = process.cpuUsage(cpu);
  const active = performance.eventLoopUtilization(elu).active;
  await stop();
  return {
    // From the first records to the last: start-up (pool, leases, iterators) is the same for any size.
    recordsPerS: total / ((last - first) / 1_000),
    cpuUsPerRecord: (used.user + used.system) / total,
    mainUsPerRecord: (active * 1_000) / total,
  };
}

async function drain(
  shards: number,
  perShard: number,
): Promise<{ raw: Run[]; rawLimited: Run[]; library: Run[] }> {
  const kinesis = await startMemoryKinesis(shards, perShard, RECORD_BYTES);
  const total = shards * perShard;
  const out = { raw: [] as Run[], rawLimited: [] as Run[], library: [] as Run[] };
  let group = 0;
  const raw = (bytesPerS: number) =>
    measure(async (_, count) => {
      const client = createKinesisClient(kinesis.config);
      let stop = false;
      let sink = 0;
      const loop = rawGetRecordsLoop(
        client,
        'memory',
        kinesis.shardIds,
        (_shard, records) => {
          for (const r of records) sink += (r as Item).i;
          count(records.length);
        },
        () => stop,
        bytesPerS,
      );
      return async () => {
        stop = true;
        await loop;
        client.destroy();
        if (sink < 0) throw new Error('unreachable');
      };
    }, total);
  const library = () =>
    measure(async (_, count) => {
      let sink = 0;
      const coordinator = await startCoordinator<Item>({
        streamName: 'memory',
        group: `drain-${group++}`,
        kinesis: kinesis.config,
        handler: (batch) => {
          for (const r of batch.records) sink += r.data.i;
          count(batch.records.length);
        },
      });
      return async () => {
        await coordinator.stop();
        if (sink < 0) throw new Error('unreachable');
      };
    }, total);
  try {
    // Warm-up (JIT, sockets), not counted.
    await raw(Number.POSITIVE_INFINITY);
    await library();
    for (let round = 0; round < ROUNDS; round++) {
      out.raw.push(await raw(Number.POSITIVE_INFINITY));
      out.library.push(await library());
      out.rawLimited.push(await raw(KINESIS_READ_BYTES_PER_S));
      progress(
        `drain ${shards} shards, round ${round + 1}: raw ${fmt(out.raw.at(-1)!.recordsPerS)}/s, library ${fmt(out.library.at(-1)!.recordsPerS)}/s, ` +
          `raw at 2 MiB/s per shard ${fmt(out.rawLimited.at(-1)!.recordsPerS)}/s`,
      );
    }
  } finally {
    kinesis.stop();
  }
  return out;
}

async function runIdle(
  options: Partial<CoordinatorOptions<unknown>>,
  shards: number,
  during: () => Promise<void>,
): Promise<{ cores: number; mainElu: number; kinesisCores: number }> {
  const kinesis = await startMemoryKinesis(shards, 0, RECORD_BYTES);
  let coordinator: Coordinator | undefined;
  try {
    coordinator = await startCoordinator({
      streamName: 'memory',
      group: 'idle',
      kinesis: kinesis.config,
      ...options,
    });
    const c = coordinator;
    const deadline = Date.now() + 60_000;
    while (c.status().shards.filter((s) => s.lastFetchAt !== undefined).length < shards) {
      if (Date.now() > deadline) throw new Error('idle: not every shard read within 60 s');
      await sleep(50);
    }
    await sleep(SETTLE_MS);
    const cpu = processCpuSeconds();
    const kCpu = childCpuSeconds(kinesis.pid);
    const elu = performance.eventLoopUtilization();
    const started = performance.now();
    await during();
    const seconds = (performance.now() - started) / 1_000;
    return {
      cores: (processCpuSeconds() - cpu) / seconds,
      mainElu: performance.eventLoopUtilization(elu).utilization,
      kinesisCores: (childCpuSeconds(kinesis.pid) - kCpu) / seconds,
    };
  } finally {
    await coordinator?.stop();
    kinesis.stop();
  }
}

/** An idle host's Redis load, per second: round trips and commands. */
interface RedisLoad {
  /** Commands sent by clients (a script call counts one): round trips, as pipelining is not used. */
  roundTripsPerS: number;
  /** Every command run, those inside scripts included (as Redis's CPU sees them). */
  commandsPerS: number;
  /** The most frequent commands, script-internal ones included. */
  top: string;
}

/**
 * The Redis load of an idle host holding `shards` leases (only this host on a private redis-server),
 * counted with MONITOR, which shows every command with its source: a client address, or `lua` for
 * one run inside a script. (INFO commandstats and total_commands_processed count both kinds as one.)
 */
async function redisLoad(shards: number): Promise<RedisLoad> {
  const server = await startRedisServer();
  const admin = new Redis(server.url);
  try {
    let load: RedisLoad = { roundTripsPerS: 0, commandsPerS: 0, top: '' };
    await runIdle({ leases: { redis: server.url } }, shards, async () => {
      const monitor = await admin.monitor();
      let topLevel = 0;
      const byName = new Map<string, number>();
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        const name = (args[0] ?? '').toLowerCase();
        if (source !== 'lua') topLevel++;
        byName.set(name, (byName.get(name) ?? 0) + 1);
      });
      const started = performance.now();
      await sleep(IDLE_WINDOW_MS);
      const seconds = (performance.now() - started) / 1_000;
      monitor.disconnect();
      const rates = [...byName].map(([name, n]) => [name, n / seconds] as const).sort((a, b) => b[1] - a[1]);
      load = {
        roundTripsPerS: topLevel / seconds,
        commandsPerS: rates.reduce((sum, [, r]) => sum + r, 0),
        top: rates
          .slice(0, 5)
          .map(([name, r]) => `${name} ${r.toFixed(1)}`)
          .join(', '),
      };
    });
    return load;
  } finally {
    admin.disconnect();
    await server.stop();
  }
}

const pick = (runs: Run[], key: keyof Run) => median(runs.map((r) => r[key]));

async function main(): Promise<void> {
  const started = new Date();
  progress(`drain: ${SHARDS} x ${fmt(PER_SHARD)} records of ${RECORD_BYTES} bytes, ${ROUNDS} rounds`);
  const d = await drain(SHARDS, PER_SHARD);
  progress(
    `wide drain: ${WIDE_SHARDS} x ${fmt(WIDE_PER_SHARD)} records of ${RECORD_BYTES} bytes, ${ROUNDS} rounds`,
  );
  const w = await drain(WIDE_SHARDS, WIDE_PER_SHARD);
  progress(`idle: ${IDLE_SHARDS} empty shards for ${IDLE_WINDOW_MS / 1_000} s`);
  const idle = await runIdle({}, IDLE_SHARDS, () => sleep(IDLE_WINDOW_MS));
  const redis16 = await redisLoad(16);
  const redisMany = await redisLoad(IDLE_SHARDS);
  const lib = (k: keyof Run) => pick(d.library, k);
  const raw = (k: keyof Run) => pick(d.raw, k);
  const limited = (k: keyof Run) => pick(d.rawLimited, k);
  const wLib = (k: keyof Run) => pick(w.library, k);
  const wRaw = (k: keyof Run) => pick(w.raw, k);
  const wLimited = (k: keyof Run) => pick(w.rawLimited, k);
  const cap = (shards: number) => fmt((shards * KINESIS_READ_BYTES_PER_S) / (RECORD_BYTES + 2));
  const loads: [number, RedisLoad][] = [
    [16, redis16],
    [IDLE_SHARDS, redisMany],
  ];
  const idleMsPerShard = (idle.cores * 1_000) / IDLE_SHARDS;
  const rows = [
    `| drain, records/s (median of ${ROUNDS}) | ${fmt(lib('recordsPerS'))} | raw loop ${fmt(raw('recordsPerS'))}; raw loop at 2 MiB/s per shard ${fmt(limited('recordsPerS'))} | ${(lib('recordsPerS') / raw('recordsPerS')).toFixed(2)} / ${(lib('recordsPerS') / limited('recordsPerS')).toFixed(2)} | Kinesis' 2 MiB/s per shard: ${cap(SHARDS)} records/s at most |`,
    `| drain, ${WIDE_SHARDS} shards x ${fmt(WIDE_PER_SHARD)}, records/s (median of ${ROUNDS}) | ${fmt(wLib('recordsPerS'))} | raw loop ${fmt(wRaw('recordsPerS'))}; raw loop at 2 MiB/s per shard ${fmt(wLimited('recordsPerS'))} | ${(wLib('recordsPerS') / wRaw('recordsPerS')).toFixed(2)} / ${(wLib('recordsPerS') / wLimited('recordsPerS')).toFixed(2)} | >= 1.3 (Kinesis' limit: ${cap(WIDE_SHARDS)} records/s) |`,
    `| whole-process CPU per record, ${WIDE_SHARDS} shards | ${wLib('cpuUsPerRecord').toFixed(2)} µs | raw loop ${wRaw('cpuUsPerRecord').toFixed(2)} µs | ${(wLib('cpuUsPerRecord') / wRaw('cpuUsPerRecord')).toFixed(2)} | <= 1.2 |`,
    `| whole-process CPU per record | ${lib('cpuUsPerRecord').toFixed(2)} µs | raw loop ${raw('cpuUsPerRecord').toFixed(2)} µs | ${(lib('cpuUsPerRecord') / raw('cpuUsPerRecord')).toFixed(2)} | <= 1.2 |`,
    `| main-thread busy time per record (handler, json codec) | ${lib('mainUsPerRecord').toFixed(2)} µs | raw loop (one thread) ${raw('mainUsPerRecord').toFixed(2)} µs | ${(lib('mainUsPerRecord') / raw('mainUsPerRecord')).toFixed(2)} | <= 1 µs |`,
    `| idle CPU per shard (${IDLE_SHARDS} empty shards, defaults) | ${idleMsPerShard.toFixed(2)} ms/s | main thread ${(idle.mainElu * 100).toFixed(1)}% busy; the endpoint ${(idle.kinesisCores * 100).toFixed(1)}% of a core | | <= 0.3 ms/s |`,
    ...loads.map(
      ([held, load]) =>
        `| Redis round trips/s (client commands, a script call one), idle host holding ${held} shards | ${load.roundTripsPerS.toFixed(1)} | ` +
        `commands/s incl. those run inside scripts ${load.commandsPerS.toFixed(1)}: ${load.top} | | flat in the shards held |`,
    ),
  ];
  const section = [
    '## Consumer-bound',
    '',
    `\`npx tsx scripts/bench/consumer-bound.ts${QUICK ? ' --quick' : ''}\` (or \`npm run bench -- consumer-bound\`), ${started.toISOString().slice(0, 10)}, ${machineLine()}.`,
    '',
    'Against `scripts/bench/memory-kinesis.mjs`, a Kinesis in its own process that holds the shards in memory and answers at once, so the ' +
      'consumer bounds throughput. Drain: startCoordinator with its defaults (handler on the main thread reading every record, json ' +
      'codec, in-memory leases, 2 worker threads on this machine) against a hand-written single-threaded SDK loop (GetRecords Limit ' +
      "10,000, 5 calls/s per shard, JSON.parse per record), in alternating rounds; the loop also once more paced at Kinesis' 2 MiB/s per " +
      'shard read limit, which the library keeps (so on a stream of 100-byte records neither can go past about 84,000 records/s on 4 ' +
      `shards: the figure is bound by that limit, not by the library). The ${WIDE_SHARDS}-shard drain lifts that limit above what one ` +
      'thread reads, so there the consumers bound it. Records/s from the first records to the last.',
    '',
    '| figure | Shardline | baseline (same run) | ratio | goal / bound |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  console.log(section);
  writeBenchmarkSection('Consumer-bound', section);
  process.exit(0);
}

await main();
