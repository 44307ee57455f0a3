/**
 * Scale benchmark (issue 6). Run: `npx tsx scripts/bench/scale.ts [--quick]` (after `npx tsc -b`).
 *
 * 200 shards on one host against kinesalite (its own process, shardLimit raised), startCoordinator with
 * in-memory leases and with Redis leases (a private redis-server, so `INFO commandstats` counts this host
 * only; stopped at the end, which removes every key):
 * 1. time from startCoordinator() to every shard leased and reading;
 * 2. idle: whole-process CPU seconds per wall second (process.cpuUsage counts every thread, the worker
 *    threads included), per shard, the main thread's share, kinesalite's and Redis' CPU, Redis commands/s,
 *    with the defaults (idle polling backs off from idleFetchIntervalMs 1,000 to idleFetchMaxIntervalMs
 *    5,000 after empty answers) and with the backoff disabled (both 1,000: one empty GetRecords per shard
 *    per second), to tell what the backoff saves;
 * 3. draining 200 x 500 records: records/s and CPU.
 * Prints the figures and writes them as the "Scale" section of BENCHMARKS.md.
 */
import os from 'node:os';
import { type Coordinator, type CoordinatorOptions, startCoordinator } from '@shardline/coordinator';
import { type LocalKinesis, type RedisServer, startLocalKinesis, startRedisServer } from '@shardline/testing';
import { Redis } from 'ioredis';
import { childCpuSeconds, fillShards, fmt, machineLine, processCpuSeconds, sleep } from './lib-bench.js';
import { progress, QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const SHARDS = QUICK ? 20 : 200;
const IDLE_WINDOW_MS = QUICK ? 4_000 : 30_000;
const FLAT_IDLE_WINDOW_MS = QUICK ? 4_000 : 15_000;
const DRAIN_PER_SHARD = QUICK ? 100 : 500;
/** The idle fetch interval of both idle rows, and the defaults' backoff ceiling. */
const IDLE_FETCH_MS = 1_000;
const IDLE_FETCH_MAX_MS = 5_000;
/**
 * Past the backoff's ramp before measuring: pauses of 1, 1, 1, 2 and 4 s after the first empty answers
 * (about 9 s), then 5 s each; the backoff-disabled row settles as long, for the same start-up share.
 */
const SETTLE_MS = 12_000;

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => process.exit(130));
}

/** Calls per command from `INFO commandstats`. */
function commandCalls(info: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(match[1]!, Number(match[2]));
  return out;
}

interface Usage {
  seconds: number;
  /** This process, every thread: CPU seconds per wall second. */
  cores: number;
  /** The main thread's busy share (event-loop utilisation). */
  mainElu: number;
  kinesaliteCores: number;
  redisCores: number;
  /** Redis commands per second (INFO itself left out), and the busiest ones. */
  redisPerS: number;
  redisTop: string;
}

/** Measures CPU and Redis load while `during()` runs. */
async function usage(
  kinesis: LocalKinesis,
  redis: { server: RedisServer; admin: Redis } | undefined,
  during: () => Promise<void>,
): Promise<Usage> {
  const fromCalls = redis === undefined ? undefined : commandCalls(await redis.admin.info('commandstats'));
  const cpu = processCpuSeconds();
  const kCpu = childCpuSeconds(kinesis.pid);
  const rCpu = redis === undefined ? Number.NaN : childCpuSeconds(redis.server.pid);
  const elu = performance.eventLoopUtilization();
  const started = performance.now();
  await during();
  const seconds = (performance.now() - started) / 1_000;
  const out: Usage = {
    seconds,
    cores: (processCpuSeconds() - cpu) / seconds,
    mainElu: performance.eventLoopUtilization(elu).utilization,
    kinesaliteCores: (childCpuSeconds(kinesis.pid) - kCpu) / seconds,
    redisCores: redis === undefined ? Number.NaN : (childCpuSeconds(redis.server.pid) - rCpu) / seconds,
    redisPerS: Number.NaN,
    redisTop: '',
  };
  if (redis !== undefined && fromCalls !== undefined) {
    const to = commandCalls(await redis.admin.info('commandstats'));
    const per = [...to]
      .filter(([name]) => name !== 'info')
      .map(([name, calls]) => [name, (calls - (fromCalls.get(name) ?? 0)) / seconds] as const)
      .filter(([, rate]) => rate > 0)
      .sort((a, b) => b[1] - a[1]);
    out.redisPerS = per.reduce((sum, [, r]) => sum + r, 0);
    out.redisTop = per
      .slice(0, 5)
      .map(([name, r]) => `${name} ${r.toFixed(0)}`)
      .join(', ');
  }
  return out;
}

/**
 * Starts a coordinator; resolves when every shard is leased by it and reading (status() state), and has
 * had a first GetRecords answered (status() lastFetchAt).
 */
async function startAll<T>(
  options: CoordinatorOptions<T>,
  timeoutMs: number,
): Promise<{ ms: number; fetchedMs: number; coordinator: Coordinator<T> }> {
  const started = performance.now();
  const coordinator = await startCoordinator(options);
  const deadline = Date.now() + timeoutMs;
  const count = () => {
    const shards = coordinator.status().shards.filter((s) => s.state === 'reading');
    return { reading: shards.length, fetched: shards.filter((s) => s.lastFetchAt !== undefined).length };
  };
  let ms = 0;
  for (let n = count(); n.fetched < SHARDS; n = count()) {
    if (ms === 0 && n.reading === SHARDS) ms = performance.now() - started;
    if (Date.now() > deadline) {
      await coordinator.stop();
      throw new Error(
        `${n.reading} of ${SHARDS} shards reading, ${n.fetched} fetched from, after ${timeoutMs} ms`,
      );
    }
    await sleep(20);
  }
  const fetchedMs = performance.now() - started;
  return { ms: ms === 0 ? fetchedMs : ms, fetchedMs, coordinator };
}

interface LeaseKindFigures {
  kind: 'memory' | 'redis';
  leaseAllMs: number;
  firstFetchAllMs: number;
  idle: Usage;
  flatIdle: Usage;
  drainMs: number;
  drainFromFirstMs: number;
  drainBatches: number;
  drain: Usage;
}

async function run(
  kinesis: LocalKinesis,
  kind: 'memory' | 'redis',
  idleStream: string,
  drainStream: string,
): Promise<LeaseKindFigures> {
  let server: RedisServer | undefined;
  let admin: Redis | undefined;
  if (kind === 'redis') {
    server = await startRedisServer();
    admin = new Redis(server.url, { maxRetriesPerRequest: 2 });
  }
  const redis = server !== undefined && admin !== undefined ? { server, admin } : undefined;
  const base = {
    kinesis: kinesis.clientConfig,
    ...(server === undefined
      ? {}
      : { leases: { redis: server.url, keyPrefix: `bench-scale-${process.pid}` } }),
  };
  try {
    // 1 and 2: an idle stream.
    const idle = await startAll(
      { ...base, streamName: idleStream, group: `idle-${kind}`, handler: () => {} },
      120_000,
    );
    progress(
      `${kind} leases: ${SHARDS} shards reading after ${fmt(idle.ms)} ms, all fetched from after ${fmt(idle.fetchedMs)} ms; ` +
        `idle for ${IDLE_WINDOW_MS / 1_000} s`,
    );
    await sleep(SETTLE_MS);
    const idleUsage = await usage(kinesis, redis, () => sleep(IDLE_WINDOW_MS));
    await idle.coordinator.stop();
    progress(
      `${kind} leases: idle ${idleUsage.cores.toFixed(3)} cores` +
        (redis === undefined ? '' : `, ${fmt(idleUsage.redisPerS)} Redis commands/s`),
    );

    const flat = await startAll(
      {
        ...base,
        streamName: idleStream,
        group: `idle-flat-${kind}`,
        idleFetchIntervalMs: IDLE_FETCH_MS,
        idleFetchMaxIntervalMs: IDLE_FETCH_MS,
        handler: () => {},
      },
      120_000,
    );
    await sleep(SETTLE_MS);
    const flatUsage = await usage(kinesis, redis, () => sleep(FLAT_IDLE_WINDOW_MS));
    await flat.coordinator.stop();
    progress(`${kind} leases, idle backoff disabled: idle ${flatUsage.cores.toFixed(3)} cores`);

    // 3: the pre-filled stream, from the start call to the last record.
    const total = SHARDS * DRAIN_PER_SHARD;
    let count = 0;
    let batches = 0;
    let first = 0;
    let last = 0;
    let drainMs = 0;
    let coordinator: Coordinator | undefined;
    const drainUsage = await usage(kinesis, redis, async () => {
      const started = performance.now();
      coordinator = await startCoordinator({
        ...base,
        streamName: drainStream,
        group: `drain-${kind}`,
        handler: (batch) => {
          if (first === 0) first = performance.now();
          count += batch.records.length;
          batches++;
          last = performance.now();
        },
      });
      const deadline = Date.now() + 300_000;
      while (count < total) {
        if (Date.now() > deadline) throw new Error(`drain: ${count} of ${total} records after 300 s`);
        await sleep(5);
      }
      drainMs = performance.now() - started;
    });
    await coordinator?.stop();
    progress(`${kind} leases: drained ${fmt(total)} records in ${fmt(drainMs)} ms`);
    return {
      kind,
      leaseAllMs: idle.ms,
      firstFetchAllMs: idle.fetchedMs,
      idle: idleUsage,
      flatIdle: flatUsage,
      drainMs,
      drainFromFirstMs: last - first,
      drainBatches: batches,
      drain: drainUsage,
    };
  } finally {
    admin?.disconnect();
    await server?.stop();
  }
}

const ms1 = (cores: number) => `${((cores * 1_000) / SHARDS).toFixed(2)} ms`;

async function main(): Promise<void> {
  const startedAt = Date.now();
  const kinesis = await startLocalKinesis({
    engine: 'kinesalite',
    inProcess: false,
    shardLimit: 2 * SHARDS + 100,
  });
  const figures: LeaseKindFigures[] = [];
  try {
    const idleStream = 'bench-scale-idle';
    const drainStream = 'bench-scale-drain';
    await kinesis.createStream(idleStream, { shards: SHARDS });
    const created = await kinesis.createStream(drainStream, { shards: SHARDS });
    const client = kinesis.client();
    progress(`filling ${SHARDS} x ${DRAIN_PER_SHARD} records`);
    const encoder = new TextEncoder();
    await fillShards(client, drainStream, created.shards, DRAIN_PER_SHARD, (s, i) =>
      encoder.encode(JSON.stringify({ s, i, pad: 'x'.repeat(60) })),
    );
    client.destroy();
    for (const kind of ['memory', 'redis'] as const)
      figures.push(await run(kinesis, kind, idleStream, drainStream));
  } finally {
    await kinesis.stop();
  }

  const rows: string[] = [];
  for (const f of figures) {
    const leases = f.kind === 'memory' ? 'in-memory leases' : 'Redis leases';
    const redisCol = (u: Usage) =>
      f.kind === 'memory'
        ? ''
        : `; Redis ${fmt(u.redisPerS)} commands/s (${u.redisTop}), redis-server ${u.redisCores.toFixed(3)} cores`;
    const total = SHARDS * DRAIN_PER_SHARD;
    rows.push(
      `| ${leases}: startCoordinator() to all ${SHARDS} shards leased and reading (status() state), and to a first GetRecords answered on each | ${(f.leaseAllMs / 1_000).toFixed(2)} s; ${(f.firstFetchAllMs / 1_000).toFixed(2)} s | |`,
      `| ${leases}: idle (empty shards, defaults: idleFetchIntervalMs ${fmt(IDLE_FETCH_MS)} backing off to idleFetchMaxIntervalMs ${fmt(IDLE_FETCH_MAX_MS)}), ${(f.idle.seconds).toFixed(0)} s | ` +
        `${f.idle.cores.toFixed(3)} cores (${ms1(f.idle.cores)} CPU per shard per second), main thread ${(f.idle.mainElu * 100).toFixed(1)}% busy; ` +
        `kinesalite ${f.idle.kinesaliteCores.toFixed(3)} cores${redisCol(f.idle)} | |`,
      `| ${leases}: idle, backoff disabled (idleFetchIntervalMs = idleFetchMaxIntervalMs = ${fmt(IDLE_FETCH_MS)}: one empty GetRecords per shard per second), ${(f.flatIdle.seconds).toFixed(0)} s | ` +
        `${f.flatIdle.cores.toFixed(3)} cores (${ms1(f.flatIdle.cores)} per shard per second), main thread ${(f.flatIdle.mainElu * 100).toFixed(1)}% busy; ` +
        `kinesalite ${f.flatIdle.kinesaliteCores.toFixed(3)} cores${redisCol(f.flatIdle)} | the defaults (backoff): ${(f.idle.cores / f.flatIdle.cores).toFixed(2)} of this CPU |`,
      `| ${leases}: drain ${SHARDS} x ${DRAIN_PER_SHARD} records (start to last record) | ` +
        `${fmt(total / (f.drainMs / 1_000))} records/s (${(f.drainMs / 1_000).toFixed(1)} s; first to last record ${fmt(total / (f.drainFromFirstMs / 1_000))}/s; ${fmt(total / f.drainBatches)} records per batch on average); ` +
        `${f.drain.cores.toFixed(2)} cores, main thread ${(f.drain.mainElu * 100).toFixed(0)}% busy; kinesalite ${f.drain.kinesaliteCores.toFixed(2)} cores${redisCol(f.drain)} | |`,
    );
  }
  for (const row of rows) console.log(row);
  // What the backoff saves: the disabled row makes SHARDS empty calls/s, the defaults SHARDS / 5 once
  // past the ramp; the rest of the idle cost (lease ticks, timers) is the same in both.
  const notes = figures.map((f) => {
    const callsSaved = SHARDS * (1_000 / IDLE_FETCH_MS - 1_000 / IDLE_FETCH_MAX_MS);
    const saved = f.flatIdle.cores - f.idle.cores;
    const perCallMs = (saved / callsSaved) * 1_000;
    const kPerCallMs = ((f.flatIdle.kinesaliteCores - f.idle.kinesaliteCores) / callsSaved) * 1_000;
    return (
      `${f.kind === 'memory' ? 'In-memory' : 'Redis'} leases: the idle backoff (${fmt(SHARDS)} empty GetRecords/s ` +
      `without it, ${fmt((SHARDS * 1_000) / IDLE_FETCH_MAX_MS)}/s with it once past the ramp) saves about ` +
      `${((saved / f.flatIdle.cores) * 100).toFixed(0)}% of the idle CPU: ${perCallMs.toFixed(2)} ms of this process's CPU ` +
      `and ${kPerCallMs.toFixed(2)} ms of kinesalite's per empty GetRecords saved. The main thread is ` +
      `${(f.idle.mainElu * 100).toFixed(1)}% busy with the defaults: the idle cost is in the worker threads' calls.`
    );
  });
  for (const note of notes) console.log(note);
  const cpus = os.cpus().length;
  const section = [
    '## Scale',
    '',
    `Command: \`npx tsx scripts/bench/scale.ts${QUICK ? ' --quick' : ''}\`; run ${new Date().toISOString()} in ` +
      `${((Date.now() - startedAt) / 1_000).toFixed(0)} s; machine: ${machineLine()}. One host, ${SHARDS} shards, kinesalite ` +
      `in its own process (shardLimit ${2 * SHARDS + 100}); startCoordinator with its defaults (workerThreads min(${cpus}, 4), ` +
      'leaseDurationMs 10,000, shardSyncIntervalMs 60,000, idleFetchIntervalMs 1,000, idleFetchMaxIntervalMs 5,000) and a ' +
      'handler that only counts. ' +
      'Redis leases use a private redis-server (so `INFO commandstats` deltas count this host only, less the INFO calls; ' +
      'it is stopped afterwards, taking every key with it). "cores" is CPU seconds per wall second of the whole bench ' +
      'process (process.cpuUsage: every thread, the worker threads included); kinesalite and redis-server are measured ' +
      `from /proc. Idle figures start ${SETTLE_MS / 1_000} s after all shards were reading.`,
    '',
    '| measure | result | compared with |',
    '| --- | --- | --- |',
    ...rows,
    '',
    ...notes.flatMap((n) => [n, '']),
    '`INFO commandstats` counts the commands run inside Lua scripts too. Every leaseRenewIntervalMs ' +
      '(leaseDurationMs / 3 = 3.3 s) the host renews all its leases in one script call (renew-leases-1.lua: an HMGET ' +
      "and an HSET per lease inside it, so about shards / 3.3 s of each), heartbeats, and lists the group's leases " +
      'with one script call (list-leases-1.lua) that reads the group version key and reads the leases again ' +
      "(HGETALL per lease) only when the version moved or a listed lease may have run out: an idle host's round " +
      'trips to Redis stay a few per tick whatever it holds, the commands inside the renew script grow with the ' +
      'leases held (the Consumer-bound section measures both at 16 and 200 shards), and neither depends on the idle ' +
      'fetch settings. While draining, the first checkpoint of each shard raises the version, so the listing is read in full more often (the hgetall of the drain rows).',
    '',
  ].join('\n');
  writeBenchmarkSection('Scale', section);
}

await main();
