/**
 * Lease benchmark (issue 4). Run: `npx tsx scripts/bench/leases.ts` (after `npx tsc -b`).
 *
 * Hosts are child processes running test/integration/fixtures/host.mjs (startCoordinator with Redis
 * leases, reporting batches and events as JSON lines); kinesalite runs in its own process. For
 * leaseDurationMs 10,000 (the default) and 3,000:
 * 1. failover: 3 hosts on 6 shards under continuous production; SIGKILL one; time from the kill to each
 *    of its shards being read again by another host (max over its shards). 3 repetitions (a fresh host
 *    replaces the victim and the group settles at 2/2/2 again in between); duplicates counted.
 * 2. rebalance: 3 hosts settled at 2/2/2, a 4th starts: time until it holds its fair share with the
 *    spread 2/2/1/1, and the records delivered twice meanwhile.
 * 3. Redis commands per second per host: 1 idle host on a 64-shard stream, on a private redis-server
 *    (so no other client counts), `INFO commandstats` deltas over 20 s after the leases settled.
 * Prints the figures and writes them as the "Leases" section of BENCHMARKS.md.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { RedisLeaseManager } from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis, startRedisServer, useTestRedis } from '@shardline/testing';
import { Redis } from 'ioredis';
import { type Item, Production } from '../../test/integration/coordinator-helpers.js';
import { QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const HOST_SCRIPT = fileURLToPath(new URL('../../test/integration/fixtures/host.mjs', import.meta.url));
// --quick: the short lease only, one failover, a short idle window: checks the script works.
const LEASES_MS = QUICK ? [3_000] : [10_000, 3_000];
const SHARDS = 6;
const IDLE_SHARDS = QUICK ? 16 : 64;
const IDLE_HOSTS = 1;
const IDLE_WINDOW_MS = QUICK ? 3_000 : 20_000;
const REPEATS = QUICK ? 1 : 3;
const KEYS = 60;
const GROUP = 'bench-leases';

interface Report {
  type: 'ready' | 'stopped' | 'batch' | 'event';
  hostId: string;
  t: number;
  shardId?: string;
  name?: string;
  records?: Item[];
}

interface HostConfig {
  hostId: string;
  streamName: string;
  group: string;
  kinesis: { endpoint: string; region: string; credentials: unknown };
  redisUrl: string;
  keyPrefix: string;
  leaseDurationMs: number;
}

/** Every host child started, so that exit (normal, error or signal) kills them all. */
const children = new Set<ChildProcess>();

function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killChildren();
    process.exit(130);
  });
}

class Host {
  readonly reports: Report[] = [];
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  stderr = '';

  constructor(readonly config: HostConfig) {
    this.child = spawn(process.execPath, [HOST_SCRIPT], {
      env: { ...process.env, SHARDLINE_HOST: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(this.child);
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-2_000);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.reports.push(JSON.parse(line) as Report);
      } catch {
        // Not a report line: ignored.
      }
    });
  }

  get id(): string {
    return this.config.hostId;
  }

  get ready(): boolean {
    return this.reports.some((r) => r.type === 'ready');
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function waitFor(
  what: string | (() => string),
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`,
      );
    }
    await delay(25);
  }
}

/** Records delivered more than once by any of the hosts (each extra delivery counts). */
function duplicates(hosts: readonly Host[]): number {
  const seen = new Set<string>();
  let count = 0;
  for (const host of hosts) {
    for (const r of host.reports) {
      for (const item of r.records ?? []) {
        const id = `${item.k}/${item.i}`;
        if (seen.has(id)) count++;
        else seen.add(id);
      }
    }
  }
  return count;
}

/** A consumer group on one stream: its hosts, and an observer reading the leases from Redis. */
class Group {
  readonly hosts: Host[] = [];
  readonly observer: RedisLeaseManager;
  #count = 0;

  constructor(
    readonly kinesis: LocalKinesis,
    readonly streamName: string,
    readonly redisUrl: string,
    readonly keyPrefix: string,
    readonly leaseDurationMs: number,
  ) {
    this.observer = new RedisLeaseManager({
      redis: redisUrl,
      group: GROUP,
      stream: streamName,
      hostId: 'observer',
      keyPrefix,
      leaseDurationMs,
    });
  }

  start(): Host {
    const config = this.kinesis.clientConfig;
    const host = new Host({
      hostId: `host-${++this.#count}`,
      streamName: this.streamName,
      group: GROUP,
      kinesis: {
        endpoint: String(config.endpoint),
        region: String(config.region),
        credentials: config.credentials,
      },
      redisUrl: this.redisUrl,
      keyPrefix: this.keyPrefix,
      leaseDurationMs: this.leaseDurationMs,
    });
    this.hosts.push(host);
    return host;
  }

  live(): Host[] {
    return this.hosts.filter((h) => h.child.exitCode === null && h.child.signalCode === null);
  }

  /** Owner -> shard ids of its live leases (owned, not expired on the Redis clock). */
  async owners(): Promise<Map<string, string[]>> {
    const [leases, now] = await Promise.all([this.observer.listLeases(), this.observer.now()]);
    const out = new Map<string, string[]>();
    for (const lease of leases) {
      if (lease.owner === undefined || (lease.expiresAtMs ?? 0) <= now) continue;
      out.set(lease.owner, [...(out.get(lease.owner) ?? []), lease.shardId]);
    }
    return out;
  }

  /** Waits until the live hosts hold every shard, none more than one above another. */
  async settle(shards: number, timeoutMs: number): Promise<void> {
    let counts: number[] = [];
    await waitFor(
      () => `leases spread over ${this.live().length} hosts (now ${counts.join('/')})`,
      async () => {
        const owners = await this.owners();
        counts = this.live().map((h) => owners.get(h.id)?.length ?? 0);
        const held = counts.reduce((a, b) => a + b, 0);
        return held === shards && Math.max(...counts) - Math.min(...counts) <= 1;
      },
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.hosts.map((h) => h.kill()));
    await this.observer.close();
  }
}

/** Shard -> the first time one of `by` delivered a batch of it at or after `since`. */
function firstBatches(by: readonly Host[], shardIds: readonly string[], since: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const host of by) {
    for (const r of host.reports) {
      if (r.type !== 'batch' || r.t < since || r.shardId === undefined || !shardIds.includes(r.shardId))
        continue;
      out.set(r.shardId, Math.min(out.get(r.shardId) ?? r.t, r.t));
    }
  }
  return out;
}

interface LeaseFigures {
  leaseDurationMs: number;
  failoverMs: number[];
  failoverDuplicates: number[];
  rebalanceMs: number;
  rebalanceSpread: string;
  rebalanceDuplicates: number;
  commandsPerHostPerS: number;
  commandsTop: string;
  joinMs: number;
}

async function failoverAndRebalance(
  kinesis: LocalKinesis,
  leaseDurationMs: number,
): Promise<Omit<LeaseFigures, 'commandsPerHostPerS' | 'commandsTop' | 'joinMs'>> {
  const redis = await useTestRedis('bench-leases');
  const streamName = `bench-leases-${leaseDurationMs}-${process.pid}`;
  await kinesis.createStream(streamName, { shards: SHARDS });
  const group = new Group(kinesis, streamName, redis.url, redis.keyPrefix, leaseDurationMs);
  const production = new Production(kinesis, streamName, KEYS);
  try {
    for (let n = 0; n < 3; n++) group.start();
    await waitFor('3 hosts ready', () => group.hosts.every((h) => h.ready), 20_000);
    await group.settle(SHARDS, 3 * leaseDurationMs);

    const failoverMs: number[] = [];
    const failoverDuplicates: number[] = [];
    for (let rep = 0; rep < REPEATS; rep++) {
      const victim = group.live().at(-1)!;
      const victimShards = (await group.owners()).get(victim.id) ?? [];
      // Mid-stream: the victim is delivering from its shards when it dies.
      const since = Date.now();
      await waitFor(
        `${victim.id} delivering`,
        () => firstBatches([victim], victimShards, since).size === victimShards.length,
        10_000,
      );
      const before = duplicates(group.hosts);
      const killedAt = Date.now();
      await victim.kill();
      const survivors = group.live();
      let takenAt = new Map<string, number>();
      await waitFor(
        `${victimShards.join(', ')} read again`,
        () => {
          takenAt = firstBatches(survivors, victimShards, killedAt);
          return takenAt.size === victimShards.length;
        },
        leaseDurationMs + 15_000,
      );
      failoverMs.push(Math.max(...takenAt.values()) - killedAt);
      // A replacement, then 2/2/2 again; re-read records show up in the first batches after the takeover.
      const replacement = group.start();
      await waitFor(`${replacement.id} ready`, () => replacement.ready, 20_000);
      await group.settle(SHARDS, 3 * leaseDurationMs);
      await delay(1_000);
      failoverDuplicates.push(duplicates(group.hosts) - before);
      console.log(
        `lease ${leaseDurationMs} ms: failover ${rep + 1}: ${failoverMs.at(-1)} ms (${victimShards.length} shards), ` +
          `${failoverDuplicates.at(-1)} duplicates`,
      );
    }

    // Rebalance: settled at 2/2/2 (above), a fourth host joins.
    const before = duplicates(group.hosts);
    const joiner = group.start();
    await waitFor(`${joiner.id} ready`, () => joiner.ready, 20_000);
    const joinedAt = joiner.reports.find((r) => r.type === 'ready')!.t;
    let spread = '';
    await waitFor(
      `${joiner.id} holding its fair share`,
      async () => {
        const owners = await group.owners();
        const counts = group.live().map((h) => owners.get(h.id)?.length ?? 0);
        spread = [...counts].sort((a, b) => b - a).join('/');
        const held = counts.reduce((a, b) => a + b, 0);
        return held === SHARDS && Math.max(...counts) <= 2 && Math.min(...counts) >= 1;
      },
      4 * leaseDurationMs,
    );
    const rebalanceMs = Date.now() - joinedAt;
    // Records delivered twice meanwhile would show up once the joiner reads its shards.
    const joinerShards = (await group.owners()).get(joiner.id) ?? [];
    const sinceSpread = Date.now();
    await waitFor(
      `${joiner.id} delivering`,
      () => firstBatches([joiner], joinerShards, sinceSpread).size === joinerShards.length,
      10_000,
    );
    await delay(1_000);
    const rebalanceDuplicates = duplicates(group.hosts) - before;
    console.log(
      `lease ${leaseDurationMs} ms: rebalance ${rebalanceMs} ms to ${spread}, ${rebalanceDuplicates} duplicates`,
    );
    return {
      leaseDurationMs,
      failoverMs,
      failoverDuplicates,
      rebalanceMs,
      rebalanceSpread: spread,
      rebalanceDuplicates,
    };
  } finally {
    await production.stop().catch(() => undefined);
    await group.stop();
    await redis.cleanup();
  }
}

interface RedisLoad {
  /** Commands per second per host. */
  rate: number;
  /** The busiest commands, as `name N/s` per host. */
  top: string;
  /** A second host joining the idle one: from its start to the two holding half the shards each. */
  joinMs: number;
}

/** Calls per command from `INFO commandstats`. */
function commandCalls(info: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(match[1]!, Number(match[2]));
  return out;
}

/** Redis commands per second per idle host, on a private redis-server that no one else uses. */
async function redisCommands(kinesis: LocalKinesis, leaseDurationMs: number): Promise<RedisLoad> {
  const server = await startRedisServer();
  const streamName = `bench-leases-idle-${leaseDurationMs}-${process.pid}`;
  await kinesis.createStream(streamName, { shards: IDLE_SHARDS });
  const group = new Group(kinesis, streamName, server.url, 'bench-leases', leaseDurationMs);
  const admin = new Redis(server.url, { maxRetriesPerRequest: 2 });
  try {
    for (let n = 0; n < IDLE_HOSTS; n++) group.start();
    await waitFor('idle hosts ready', () => group.hosts.every((h) => h.ready), 20_000);
    await group.settle(IDLE_SHARDS, 6 * leaseDurationMs);
    // Past the settling: renewals, heartbeats and shard syncs only.
    await delay(2_000);
    const from = commandCalls(await admin.info('commandstats'));
    const startedAt = performance.now();
    await delay(IDLE_WINDOW_MS);
    const to = commandCalls(await admin.info('commandstats'));
    const seconds = (performance.now() - startedAt) / 1_000;
    // This script's own INFO calls are left out (`info` is counted once each).
    const perCommand = [...to]
      .filter(([name]) => name !== 'info')
      .map(([name, calls]) => [name, (calls - (from.get(name) ?? 0)) / IDLE_HOSTS / seconds] as const)
      .filter(([, rate]) => rate > 0)
      .sort((a, b) => b[1] - a[1]);
    const rate = perCommand.reduce((sum, [, r]) => sum + r, 0);
    const top = perCommand
      .slice(0, 4)
      .map(([name, r]) => `${name} ${r.toFixed(1)}/s`)
      .join(', ');
    console.log(
      `lease ${leaseDurationMs} ms: ${IDLE_HOSTS} idle host(s) on ${IDLE_SHARDS} shards: ` +
        `${rate.toFixed(1)} Redis commands/s per host (${top})`,
    );
    // A host joins: it asks the busy one for its whole share by handoff, not one lease per round.
    const joinedAt = performance.now();
    group.start();
    await group.settle(IDLE_SHARDS, 10 * leaseDurationMs);
    const joinMs = performance.now() - joinedAt;
    console.log(
      `lease ${leaseDurationMs} ms: a host joining took ${IDLE_SHARDS / 2} of ${IDLE_SHARDS} leases in ${s(joinMs)}`,
    );
    return { rate, top, joinMs };
  } finally {
    await group.stop();
    admin.disconnect();
    await server.stop();
  }
}

const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const s = (ms: number) => `${(ms / 1_000).toFixed(1)} s`;

async function main(): Promise<void> {
  const startedAt = Date.now();
  const kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
  const figures: LeaseFigures[] = [];
  try {
    const partial: Array<Omit<LeaseFigures, 'commandsPerHostPerS' | 'commandsTop' | 'joinMs'>> = [];
    for (const lease of LEASES_MS) partial.push(await failoverAndRebalance(kinesis, lease));
    // Idle hosts load the machine little: both lease durations at once, each on its own redis-server. One
    // host each while counting commands; then a second joins and takes its half by handoff.
    const rates = await Promise.all(LEASES_MS.map((lease) => redisCommands(kinesis, lease)));
    partial.forEach((p, n) => {
      figures.push({
        ...p,
        commandsPerHostPerS: rates[n]!.rate,
        commandsTop: rates[n]!.top,
        joinMs: rates[n]!.joinMs,
      });
    });
  } finally {
    killChildren();
    await kinesis.stop();
  }
  console.log(`total ${s(Date.now() - startedAt)}`);

  const rows: string[] = [];
  for (const f of figures) {
    const L = f.leaseDurationMs;
    const ms = f.failoverMs;
    rows.push(
      `| failover (SIGKILL of 1 of 3 hosts, 6 shards), leaseDurationMs ${L.toLocaleString('en-US')}, ${REPEATS} runs | ` +
        `min ${s(Math.min(...ms))} / median ${s(median(ms))} / max ${s(Math.max(...ms))}; ` +
        `duplicates ${f.failoverDuplicates.join(' / ')} | <= ${s(L + 2_000)} | KCL up to ~30 s by default, async-kinesis 60 s |`,
      `| rebalance (4th host joins 3 at 2/2/2), leaseDurationMs ${L.toLocaleString('en-US')} | ` +
        `${s(f.rebalanceMs)} to ${f.rebalanceSpread}; ${f.rebalanceDuplicates} duplicates | <= ${s(2 * L)}, 0 duplicates | |`,
      `| Redis commands per idle host (${IDLE_HOSTS} host${IDLE_HOSTS === 1 ? '' : 's'}, ${IDLE_SHARDS} shards, idle ${IDLE_WINDOW_MS / 1_000} s), leaseDurationMs ${L.toLocaleString('en-US')} | ` +
        `${f.commandsPerHostPerS.toFixed(1)} commands/s (${f.commandsTop}) | | |`,
      `| a 2nd host joins 1 host holding ${IDLE_SHARDS} leases, leaseDurationMs ${L.toLocaleString('en-US')} | ` +
        `${s(f.joinMs)} to ${IDLE_SHARDS / 2}/${IDLE_SHARDS / 2} | | one request at a time (the allocator before): at least ${IDLE_SHARDS / 2} renewal periods, ${s((IDLE_SHARDS / 2) * (L / 3))} |`,
    );
  }
  const cpus = os.cpus();
  const section = [
    '## Leases',
    '',
    `Command: \`npx tsx scripts/bench/leases.ts${QUICK ? ' --quick' : ''}\`; run ${new Date().toISOString()}; machine: ${cpus.length} cores, ` +
      `${cpus[0]?.model ?? 'unknown CPU'}, Node ${process.version}. Hosts are child processes ` +
      '(test/integration/fixtures/host.mjs: startCoordinator, 1 worker thread, checkpoints every 500 ms); ' +
      'kinesalite in its own process; a Producer writes about 400 records/s over 60 keys throughout the failover ' +
      "and rebalance runs. Failover is from the SIGKILL to the last of the dead host's shards being read again by " +
      'another host (a fresh host replaces the victim and the group settles at 2/2/2 between runs); duplicates are ' +
      "records delivered twice (re-read after the victim's last checkpoint). Rebalance is from the joining host's " +
      "start to its holding at least 1 shard with no host above 2. Redis commands: `INFO commandstats` deltas (less this script's own INFO calls) " +
      `on a private redis-server, ${IDLE_HOSTS} host(s) holding all ${IDLE_SHARDS} leases, from 2 s after they settled, ` +
      'divided by hosts and seconds. The machine is ' +
      'shared with other work.',
    '',
    '| measure | result | goal | baseline |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
  writeBenchmarkSection('Leases', section);
}

await main();
