/**
 * What the lease benchmarks share (leases.ts on Redis, dynamodb-leases.ts on DynamoDB): host child
 * processes (test/integration/fixtures/host.mjs) killed with this process, a group of them with an
 * observer reading its leases, the failover and rebalance runs, and an idle host's Redis commands.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { DynamoDbLeaseManager, type LeaseManager, RedisLeaseManager } from '@shardline/coordinator';
import { type LocalKinesis, startRedisServer } from '@shardline/testing';
import { Redis } from 'ioredis';
import { type Item, Production } from '../../test/integration/coordinator-helpers.js';

const HOST_SCRIPT = fileURLToPath(new URL('../../test/integration/fixtures/host.mjs', import.meta.url));
export const SHARDS = 6;
const KEYS = 60;
const GROUP = 'bench-leases';
const IDLE_HOSTS = 1;

export const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const s = (ms: number) => `${(ms / 1_000).toFixed(1)} s`;

interface Report {
  type: 'ready' | 'stopped' | 'batch' | 'event';
  hostId: string;
  t: number;
  shardId?: string;
  name?: string;
  records?: Item[];
}

/** Where a group's leases live, as the host fixture takes it. */
export type LeaseStoreConfig =
  | { redisUrl: string; keyPrefix: string }
  | {
      dynamodb: {
        tableName: string;
        endpoint: string;
        region: string;
        credentials: { accessKeyId: string; secretAccessKey: string };
        createTable: boolean;
      };
    };

type HostConfig = {
  hostId: string;
  streamName: string;
  group: string;
  kinesis: { endpoint: string; region: string; credentials: unknown };
  leaseDurationMs: number;
} & LeaseStoreConfig;

/** Every host child started, so that exit (normal, error or signal) kills them all. */
const children = new Set<ChildProcess>();

export function killChildren(): void {
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

export class Host {
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

export async function waitFor(
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
export function duplicates(hosts: readonly Host[]): number {
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

/** A consumer group on one stream: its hosts, and an observer reading the leases from the store. */
export class Group {
  readonly hosts: Host[] = [];
  readonly observer: LeaseManager;
  #count = 0;

  constructor(
    readonly kinesis: LocalKinesis,
    readonly streamName: string,
    readonly store: LeaseStoreConfig,
    readonly leaseDurationMs: number,
  ) {
    this.observer =
      'dynamodb' in store
        ? new DynamoDbLeaseManager({ ...store.dynamodb, hostId: 'observer', leaseDurationMs })
        : new RedisLeaseManager({
            redis: store.redisUrl,
            group: GROUP,
            stream: streamName,
            hostId: 'observer',
            keyPrefix: store.keyPrefix,
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
      ...this.store,
      leaseDurationMs: this.leaseDurationMs,
    });
    this.hosts.push(host);
    return host;
  }

  live(): Host[] {
    return this.hosts.filter((h) => h.child.exitCode === null && h.child.signalCode === null);
  }

  /** Owner -> shard ids of its live leases (owned, not expired on the store clock). */
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
export function firstBatches(
  by: readonly Host[],
  shardIds: readonly string[],
  since: number,
): Map<string, number> {
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

export interface LeaseFigures {
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

/** A store for one run: its config for the hosts, and what frees it after. */
export interface BenchStore {
  name: string;
  config: LeaseStoreConfig;
  cleanup(): Promise<void>;
}

/** Failover (SIGKILL of 1 of 3 hosts, `repeats` times) and rebalance (a 4th joins), on `store`. */
export async function failoverAndRebalance(
  kinesis: LocalKinesis,
  leaseDurationMs: number,
  store: BenchStore,
  repeats: number,
): Promise<Omit<LeaseFigures, 'commandsPerHostPerS' | 'commandsTop' | 'joinMs'>> {
  const streamName = `bench-leases-${store.name}-${leaseDurationMs}-${process.pid}`;
  await kinesis.createStream(streamName, { shards: SHARDS });
  const group = new Group(kinesis, streamName, store.config, leaseDurationMs);
  const production = new Production(kinesis, streamName, KEYS);
  try {
    for (let n = 0; n < 3; n++) group.start();
    await waitFor('3 hosts ready', () => group.hosts.every((h) => h.ready), 20_000);
    await group.settle(SHARDS, 3 * leaseDurationMs);

    const failoverMs: number[] = [];
    const failoverDuplicates: number[] = [];
    for (let rep = 0; rep < repeats; rep++) {
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
        `${store.name} lease ${leaseDurationMs} ms: failover ${rep + 1}: ${failoverMs.at(-1)} ms (${victimShards.length} shards), ` +
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
      `${store.name} lease ${leaseDurationMs} ms: rebalance ${rebalanceMs} ms to ${spread}, ${rebalanceDuplicates} duplicates`,
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
    await store.cleanup();
  }
}

export interface RedisLoad {
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
export async function redisCommands(
  kinesis: LocalKinesis,
  leaseDurationMs: number,
  o: { shards: number; windowMs: number },
): Promise<RedisLoad> {
  const server = await startRedisServer();
  const streamName = `bench-leases-idle-${leaseDurationMs}-${o.shards}-${process.pid}`;
  await kinesis.createStream(streamName, { shards: o.shards });
  const group = new Group(
    kinesis,
    streamName,
    { redisUrl: server.url, keyPrefix: 'bench-leases' },
    leaseDurationMs,
  );
  const admin = new Redis(server.url, { maxRetriesPerRequest: 2 });
  try {
    for (let n = 0; n < IDLE_HOSTS; n++) group.start();
    await waitFor('idle hosts ready', () => group.hosts.every((h) => h.ready), 20_000);
    await group.settle(o.shards, 6 * leaseDurationMs);
    // Past the settling: renewals, heartbeats and shard syncs only.
    await delay(2_000);
    const from = commandCalls(await admin.info('commandstats'));
    const startedAt = performance.now();
    await delay(o.windowMs);
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
      `lease ${leaseDurationMs} ms: ${IDLE_HOSTS} idle host(s) on ${o.shards} shards: ` +
        `${rate.toFixed(1)} Redis commands/s per host (${top})`,
    );
    // A host joins: it asks the busy one for its whole share by handoff, not one lease per round.
    const joinedAt = performance.now();
    group.start();
    await group.settle(o.shards, 10 * leaseDurationMs);
    const joinMs = performance.now() - joinedAt;
    console.log(
      `lease ${leaseDurationMs} ms: a host joining took ${o.shards / 2} of ${o.shards} leases in ${s(joinMs)}`,
    );
    return { rate, top, joinMs };
  } finally {
    await group.stop();
    admin.disconnect();
    await server.stop();
  }
}
