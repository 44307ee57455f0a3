/**
 * Hosts of a consumer group as real child processes (test/integration/fixtures/host.mjs) and the
 * analysis of what they reported: coverage, duplicates, per-key order, lease generations that
 * overlap, batches held at once by two hosts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Item } from './coordinator-helpers.js';

const HOST_SCRIPT = fileURLToPath(new URL('./fixtures/host.mjs', import.meta.url));

export interface DeliveredRecord {
  k: string;
  i: number;
  seq: string;
}

/**
 * A handler call (or, in iterator mode, a batch in the loop's hands) of a host: `t` when it started,
 * `end` when it finished. `batch`: processed; `attempt`: the handler failed on it (it is retried).
 */
export interface BatchReport {
  type: 'batch' | 'attempt';
  hostId: string;
  t: number;
  end: number;
  shardId: string;
  counter: number | undefined;
  first?: string;
  last?: string;
  records: DeliveredRecord[];
}

export interface EventReport {
  type: 'event';
  hostId: string;
  t: number;
  name: string;
  // biome-ignore lint/suspicious/noExplicitAny: event payloads differ by name; the tests read known fields
  payload: any;
}

export interface LifecycleReport {
  type: 'ready' | 'stopped';
  hostId: string;
  t: number;
}

export type Report = BatchReport | EventReport | LifecycleReport;

export interface HostConfig {
  hostId: string;
  streamName: string;
  group: string;
  kinesis: {
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  };
  /** The lease store: Redis (url and key prefix), or a DynamoDB lease table when `dynamodb` is set. */
  redisUrl?: string;
  keyPrefix?: string;
  dynamodb?: {
    tableName: string;
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
    createTable?: boolean;
  };
  leaseDurationMs: number;
  checkpointIntervalMs?: number;
  /** The coordinator's initialPosition. @defaultValue 'TRIM_HORIZON' */
  initialPosition?: 'TRIM_HORIZON' | 'LATEST';
  /** `handler` (default) or `iterator` (a for-await loop). */
  mode?: 'handler' | 'iterator';
  /** Each batch takes this long to process. @defaultValue 0 */
  processMs?: number;
  /** Handler mode: this fraction of calls throws after processing (seeded), and the batch is retried. */
  failRate?: number;
  /** Seed of the failures. */
  seed?: number;
}

/** A host child process and what it reported, in order. */
export class HostProcess {
  readonly reports: Report[] = [];
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  #stderr = '';
  #exitCode: number | null | undefined;

  constructor(readonly config: HostConfig) {
    this.child = spawn(process.execPath, [HOST_SCRIPT], {
      env: { ...process.env, SHARDLINE_HOST: JSON.stringify(config) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code) => {
        this.#exitCode = code;
        resolve(code);
      });
    });
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.#stderr = (this.#stderr + chunk.toString()).slice(-4_000);
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.reports.push(JSON.parse(line) as Report);
      } catch {
        this.#stderr += `\n(stdout) ${line}`;
      }
    });
  }

  get hostId(): string {
    return this.config.hostId;
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  get stderr(): string {
    return this.#stderr;
  }

  /** Batches processed. */
  batches(): BatchReport[] {
    return this.reports.filter((r): r is BatchReport => r.type === 'batch');
  }

  /** Every handler call or batch in hand, processed or failed. */
  holds(): BatchReport[] {
    return this.reports.filter((r): r is BatchReport => r.type === 'batch' || r.type === 'attempt');
  }

  events(name: string): EventReport[] {
    return this.reports.filter((r): r is EventReport => r.type === 'event' && r.name === name);
  }

  has(type: 'ready' | 'stopped'): boolean {
    return this.reports.some((r) => r.type === type);
  }

  signal(signal: NodeJS.Signals): void {
    if (this.running) this.child.kill(signal);
  }

  /** SIGKILLs (after SIGCONT, in case it was paused) and waits for the exit. */
  async kill(): Promise<void> {
    if (this.running) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGKILL');
    }
    await this.exited;
  }
}

export interface Delivery extends DeliveredRecord {
  hostId: string;
  shardId: string;
  counter: number | undefined;
  t: number;
}

export function deliveries(hosts: readonly HostProcess[]): Delivery[] {
  const out: Delivery[] = [];
  for (const host of hosts) {
    for (const b of host.batches()) {
      for (const r of b.records)
        out.push({ ...r, hostId: b.hostId, shardId: b.shardId, counter: b.counter, t: b.t });
    }
  }
  // Time order, so that of two deliveries of a record the later one counts as the duplicate.
  return out.sort((x, y) => x.t - y.t);
}

export interface Analysis {
  delivered: number;
  unique: number;
  missing: string[];
  duplicates: Delivery[];
  orderErrors: string[];
  overlaps: string[];
}

/**
 * Coverage, duplicates and per-key order. Each key lives on one shard (no resharding here), and each
 * lease generation (shard + counter) reads its shard contiguously, so within a generation a key's items
 * must come as i, i+1, ...; a later generation may start again at most right after what was delivered
 * (no gap), earlier only when it re-reads records after the last checkpoint (counted as duplicates).
 */
export function analyse(
  hosts: readonly HostProcess[],
  produced: readonly Item[],
  resharded = false,
): Analysis {
  const all = deliveries(hosts);
  const seen = new Set<string>();
  const duplicates: Delivery[] = [];
  for (const d of all) {
    const id = `${d.k}/${d.i}`;
    if (seen.has(id)) duplicates.push(d);
    seen.add(id);
  }
  const missing = produced.filter((item) => !seen.has(`${item.k}/${item.i}`)).map((x) => `${x.k}/${x.i}`);
  const orderErrors: string[] = [];
  const byShard = new Map<string, BatchReport[]>();
  for (const host of hosts) {
    for (const b of host.batches()) {
      const list = byShard.get(b.shardId) ?? [];
      byShard.set(b.shardId, list);
      list.push(b);
    }
  }
  for (const [shardId, batches] of byShard) {
    // Stable sort: report order is kept within a host's generation.
    batches.sort((a, b) => (a.counter ?? -1) - (b.counter ?? -1));
    const maxSeen = new Map<string, number>();
    let generation: string | undefined;
    let last = new Map<string, number>();
    for (const b of batches) {
      const g = `${b.hostId}#${b.counter}`;
      if (g !== generation) {
        generation = g;
        last = new Map();
      }
      for (const r of b.records) {
        const previous = last.get(r.k);
        if (previous !== undefined && r.i !== previous + 1) {
          orderErrors.push(`${shardId} ${g}: ${r.k} ${r.i} after ${previous}`);
        }
        // After resharding a child shard starts a key where its parent left off: see keyOrderErrors.
        if (previous === undefined && !resharded) {
          const before = maxSeen.get(r.k) ?? -1;
          if (r.i > before + 1) orderErrors.push(`${shardId} ${g}: ${r.k} starts at ${r.i}, after ${before}`);
        }
        last.set(r.k, r.i);
        maxSeen.set(r.k, Math.max(maxSeen.get(r.k) ?? -1, r.i));
      }
    }
  }
  return {
    delivered: all.length,
    unique: seen.size,
    missing,
    duplicates,
    orderErrors,
    overlaps: overlaps(byShard),
  };
}

/**
 * Two lease generations of a shard delivering at the same time: every batch of an older generation
 * (lower counter) must come before the first batch of a newer one. Batch times are the hosts'
 * Date.now(), one clock on one machine.
 */
export function overlaps(byShard: ReadonlyMap<string, readonly BatchReport[]>): string[] {
  const out: string[] = [];
  for (const [shardId, batches] of byShard) {
    const span = new Map<number, { hostId: string; first: number; last: number }>();
    for (const b of batches) {
      if (b.counter === undefined) {
        out.push(`${shardId}: a batch of ${b.hostId} without lease counter`);
        continue;
      }
      const s = span.get(b.counter);
      if (s === undefined) span.set(b.counter, { hostId: b.hostId, first: b.t, last: b.t });
      else if (s.hostId !== b.hostId)
        out.push(`${shardId}: counter ${b.counter} on ${s.hostId} and ${b.hostId}`);
      else {
        s.first = Math.min(s.first, b.t);
        s.last = Math.max(s.last, b.t);
      }
    }
    const ordered = [...span.entries()].sort((x, y) => x[0] - y[0]);
    for (let n = 1; n < ordered.length; n++) {
      const [olderCounter, older] = ordered[n - 1]!;
      for (const [newerCounter, newer] of ordered.slice(n)) {
        if (older.last > newer.first) {
          out.push(
            `${shardId}: ${older.hostId}#${olderCounter} delivered at ${older.last}, ` +
              `after ${newer.hostId}#${newerCounter} started at ${newer.first}`,
          );
        }
      }
    }
  }
  return out;
}

/**
 * Per key across shards (resharding): in delivery time order, first deliveries must come as 0, 1, 2...
 * so a child shard's records of a key never come before its parent's.
 */
export function keyOrderErrors(hosts: readonly HostProcess[]): string[] {
  const next = new Map<string, number>();
  const seen = new Set<string>();
  const errors: string[] = [];
  for (const d of deliveries(hosts)) {
    const id = `${d.k}/${d.i}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const expected = next.get(d.k) ?? 0;
    if (d.i !== expected) errors.push(`${d.k}: ${d.i} (${d.shardId}, ${d.hostId}) where ${expected} was due`);
    next.set(d.k, Math.max(expected, d.i + 1));
  }
  return errors;
}

/** The shard ids each host delivered from since `sinceMs`. */
export function shardsDeliveredBy(host: HostProcess, sinceMs: number): Set<string> {
  return new Set(
    host
      .batches()
      .filter((b) => b.t >= sinceMs)
      .map((b) => b.shardId),
  );
}

/** Shard -> time of the first batch some of `by` delivered from it at or after `sinceMs`. */
export function firstBatches(
  by: readonly HostProcess[],
  shardIds: readonly string[],
  sinceMs: number,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const host of by) {
    for (const b of host.batches()) {
      if (!shardIds.includes(b.shardId) || b.t < sinceMs) continue;
      out.set(b.shardId, Math.min(out.get(b.shardId) ?? b.t, b.t));
    }
  }
  return out;
}

export function describeHosts(hosts: readonly HostProcess[]): string {
  return hosts
    .map(
      (h) =>
        `${h.hostId}${h.running ? '' : ' (exited)'}: ${h.batches().length} batches; ${h.stderr.slice(-500)}`,
    )
    .join('\n');
}

/**
 * Two hosts holding a batch of one shard at overlapping times (from a handler call's start to its end,
 * failed calls included): the invariant a partition must not break. Times are the hosts' Date.now(),
 * one clock on one machine.
 */
export function holdOverlaps(hosts: readonly HostProcess[]): string[] {
  const byShard = new Map<string, BatchReport[]>();
  for (const host of hosts) {
    for (const b of host.holds()) {
      const list = byShard.get(b.shardId) ?? [];
      byShard.set(b.shardId, list);
      list.push(b);
    }
  }
  const out: string[] = [];
  for (const [shardId, holds] of byShard) {
    holds.sort((x, y) => x.t - y.t);
    for (let i = 0; i < holds.length; i++) {
      for (let j = i + 1; j < holds.length && holds[j]!.t < holds[i]!.end; j++) {
        const [a, b] = [holds[i]!, holds[j]!];
        if (a.hostId !== b.hostId) {
          out.push(`${shardId}: ${a.hostId} held ${a.t}..${a.end} while ${b.hostId} held ${b.t}..${b.end}`);
        }
      }
    }
  }
  return out;
}
