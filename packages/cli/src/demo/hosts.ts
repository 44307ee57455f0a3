/**
 * The parent side of `shardline demo --hosts N`: forks the host processes, counts what each reports
 * into the shared tally, merges their statuses into one view, kills one on request, and stops them.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { assertNever } from '@shardline/common';
import type { CoordinatorStatus, ShardStatus } from '@shardline/coordinator';
import {
  DEMO_HOST_ENV,
  type DemoHostConfig,
  type HostMessage,
  isHostMessage,
  type ParentMessage,
} from './host-protocol.js';
import type { DeliveryTally } from './tally.js';

const HOST_ENTRY = fileURLToPath(new URL('./host.js', import.meta.url));

/** How long hosts get to start, and to stop gracefully before they are killed. */
const HOST_START_TIMEOUT_MS = 30_000;
const HOST_STOP_TIMEOUT_MS = 15_000;
const METRICS_TIMEOUT_MS = 2_000;

/** One shard as the demo shows it: the view of the host reading it (or the best one known). */
export interface DemoShardView {
  shardId: string;
  state: ShardStatus['state'];
  /** The host reading it, by its own status. */
  owner?: string;
  millisBehindLatest?: number;
  /** Summed over every host (a killed host's last report included). */
  recordsDelivered: number;
  parentShardIds: string[];
  checkpoint?: string;
}

/** What a host did, for the tally. */
export interface HostSummary {
  hostId: string;
  pid: number;
  /** Records it handed to the demo's handler (redeliveries included). */
  records: number;
  killed: boolean;
}

/** A lease a host acquired, as the host reported it. */
export interface LeaseTaken {
  hostId: string;
  shardId: string;
  counter: number;
  atMs: number;
}

/** Which state wins when hosts disagree about a shard: the host actually on it tells the truth. */
const STATE_RANK: Record<ShardStatus['state'], number> = {
  reading: 6,
  ended: 5,
  failing: 4,
  'waiting-for-parent': 3,
  available: 2,
  'leased-elsewhere': 1,
};

/** Merges host statuses: per shard, the entry of the host with the most telling state. */
export function mergeShardViews(statuses: readonly CoordinatorStatus[]): DemoShardView[] {
  const merged = new Map<string, DemoShardView>();
  const rank = new Map<string, number>();
  for (const status of statuses) {
    for (const s of status.shards) {
      const current = merged.get(s.shardId);
      const delivered = (current?.recordsDelivered ?? 0) + s.recordsDelivered;
      const r = STATE_RANK[s.state];
      if (current === undefined || r > (rank.get(s.shardId) ?? 0)) {
        rank.set(s.shardId, r);
        merged.set(s.shardId, {
          shardId: s.shardId,
          state: s.state,
          ...(s.state === 'reading' ? { owner: status.hostId } : {}),
          ...(s.millisBehindLatest === undefined ? {} : { millisBehindLatest: s.millisBehindLatest }),
          recordsDelivered: delivered,
          parentShardIds: s.parentShardIds,
          ...(s.checkpoint === undefined ? {} : { checkpoint: s.checkpoint }),
        });
      } else {
        current.recordsDelivered = delivered;
      }
    }
  }
  return [...merged.values()].sort((a, b) => a.shardId.localeCompare(b.shardId));
}

interface Host {
  hostId: string;
  child: ChildProcess;
  pid: number;
  ready: boolean;
  records: number;
  killed: boolean;
  exited: boolean;
  status?: CoordinatorStatus;
  exit: Promise<void>;
}

export interface HostGroupOptions extends Omit<DemoHostConfig, 'hostId'> {
  hosts: number;
  tally: DeliveryTally;
  /** Called for every lease a host takes (to show takeovers). */
  onLease?: (lease: LeaseTaken) => void;
  /** A host failed or exited on its own. */
  onHostFailure?: (hostId: string, message: string) => void;
}

export class HostGroup {
  readonly #hosts: Host[] = [];
  readonly #options: HostGroupOptions;
  readonly #pendingMetrics = new Map<number, { results: object[][]; waiting: number; done: () => void }>();
  #nextMetricsId = 0;

  private constructor(options: HostGroupOptions) {
    this.#options = options;
  }

  /** Forks the hosts and resolves once every one has started its coordinator. */
  static async start(options: HostGroupOptions, signal: AbortSignal): Promise<HostGroup> {
    const group = new HostGroup(options);
    try {
      await group.#startAll(signal);
    } catch (error) {
      await group.stop();
      throw error;
    }
    return group;
  }

  async #startAll(signal: AbortSignal): Promise<void> {
    const { hosts, tally, onLease, onHostFailure, ...shared } = this.#options;
    const readies: Promise<void>[] = [];
    for (let i = 1; i <= hosts; i++) {
      const hostId = `host-${i}`;
      const config: DemoHostConfig = { ...shared, hostId };
      const child = fork(HOST_ENTRY, [], {
        env: { ...process.env, [DEMO_HOST_ENV]: JSON.stringify(config) },
        stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      });
      let failed: ((error: Error) => void) | undefined;
      let started: (() => void) | undefined;
      const host: Host = {
        hostId,
        child,
        pid: child.pid ?? 0,
        ready: false,
        records: 0,
        killed: false,
        exited: false,
        exit: new Promise((resolve) => {
          child.once('exit', (code, sig) => {
            host.exited = true;
            failed?.(new Error(`demo host ${hostId} exited before it was ready (${sig ?? `code ${code}`})`));
            if (host.ready && !host.killed && !this.#stopping) {
              onHostFailure?.(hostId, `exited on its own (${sig ?? `code ${code}`})`);
            }
            resolve();
          });
        }),
      };
      readies.push(
        new Promise<void>((resolve, reject) => {
          started = resolve;
          failed = reject;
        }),
      );
      child.on('message', (message: unknown) => {
        if (!isHostMessage(message)) return;
        if (message.type === 'ready') {
          host.ready = true;
          failed = undefined;
          started?.();
        } else if (message.type === 'failed') {
          failed?.(new Error(`demo host ${hostId} could not start: ${message.message}`));
          onHostFailure?.(hostId, message.message);
        }
        this.#onMessage(host, message);
      });
      child.on('error', (error) => failed?.(error));
      this.#hosts.push(host);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`the demo hosts did not start within ${HOST_START_TIMEOUT_MS / 1000}s`)),
        HOST_START_TIMEOUT_MS,
      );
    });
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    try {
      await Promise.race([Promise.all(readies), timeout, aborted]);
    } finally {
      clearTimeout(timer);
    }
  }

  #stopping = false;

  #onMessage(host: Host, message: HostMessage): void {
    switch (message.type) {
      case 'batch':
        host.records += message.records.length;
        for (const record of message.records) this.#options.tally.add(record);
        return;
      case 'status':
        host.status = message.status;
        return;
      case 'lease':
        this.#options.onLease?.({
          hostId: message.hostId,
          shardId: message.shardId,
          counter: message.counter,
          atMs: message.atMs,
        });
        return;
      case 'metrics': {
        const pending = this.#pendingMetrics.get(message.id);
        if (pending === undefined) return;
        pending.results.push(message.metrics);
        if (--pending.waiting === 0) pending.done();
        return;
      }
      case 'ready':
      case 'failed':
      case 'stopped':
        return;
      default:
        assertNever(message);
    }
  }

  /**
   * The merged shard view from the live hosts' last statuses. A killed host's last status counts only
   * for the records it delivered: its states are stale (it still "reads" the shards it died with).
   */
  shards(): DemoShardView[] {
    const views = mergeShardViews(this.statuses());
    const byId = new Map(views.map((v) => [v.shardId, v]));
    for (const host of this.#hosts) {
      if (!host.killed || host.status === undefined) continue;
      for (const s of host.status.shards) {
        const view = byId.get(s.shardId);
        if (view !== undefined) view.recordsDelivered += s.recordsDelivered;
      }
    }
    return views;
  }

  /** Live hosts' last statuses. */
  statuses(): CoordinatorStatus[] {
    return this.#hosts.filter((h) => !h.killed && h.status !== undefined).map((h) => h.status!);
  }

  summaries(): HostSummary[] {
    return this.#hosts.map((h) => ({ hostId: h.hostId, pid: h.pid, records: h.records, killed: h.killed }));
  }

  /** The shards `hostId` reads, by its last status. */
  shardsOf(hostId: string): string[] {
    const host = this.#hosts.find((h) => h.hostId === hostId);
    return (host?.status?.shards ?? []).filter((s) => s.state === 'reading').map((s) => s.shardId);
  }

  /** SIGKILLs the live host reading the most shards; resolves with its id once it is gone. */
  async killBusiest(): Promise<{ hostId: string; shards: string[] }> {
    const live = this.#hosts.filter((h) => !h.killed && !h.exited);
    const busiest = live.reduce((best, h) =>
      this.shardsOf(h.hostId).length > this.shardsOf(best.hostId).length ? h : best,
    );
    const shards = this.shardsOf(busiest.hostId);
    busiest.killed = true;
    busiest.child.kill('SIGKILL');
    await busiest.exit;
    return { hostId: busiest.hostId, shards };
  }

  /** Every live host's metrics, as prom-client `getMetricsAsJSON()` arrays (hosts that do not answer in time are left out). */
  async metrics(): Promise<object[][]> {
    const live = this.#hosts.filter((h) => !h.exited && h.child.connected);
    if (live.length === 0) return [];
    const id = this.#nextMetricsId++;
    const results: object[][] = [];
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.#pendingMetrics.set(id, { results, waiting: live.length, done: resolve });
      timer = setTimeout(resolve, METRICS_TIMEOUT_MS);
      for (const host of live) this.#send(host, { v: 1, type: 'metrics', id });
    });
    clearTimeout(timer);
    this.#pendingMetrics.delete(id);
    return results;
  }

  #send(host: Host, message: ParentMessage): void {
    if (!host.child.connected) return;
    try {
      host.child.send(message);
    } catch {
      // The host is going away: its exit is handled where it is awaited.
    }
  }

  /** Asks every live host to stop gracefully (checkpoints, leases released), then kills stragglers. */
  async stop(): Promise<void> {
    this.#stopping = true;
    const live = this.#hosts.filter((h) => !h.exited);
    for (const host of live) this.#send(host, { v: 1, type: 'stop' });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, HOST_STOP_TIMEOUT_MS);
    });
    await Promise.race([Promise.all(live.map((h) => h.exit)), timeout]);
    clearTimeout(timer);
    for (const host of live) if (!host.exited) host.child.kill('SIGKILL');
    await Promise.all(live.map((h) => h.exit));
  }
}
