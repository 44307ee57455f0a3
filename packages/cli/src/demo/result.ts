/**
 * What `shardline demo` reports: the result `--json` prints (and the human report renders), and the
 * verdict: the problems that fail the run (lost, duplicated beyond at-least-once, out of order...).
 */
import type { DemoShardView, HostSummary } from './hosts.js';
import type { DeliveryTally } from './tally.js';

/** The shard the demo split, where, and the children it got. */
export interface SplitInfo {
  parent: string;
  hashKey: string;
  children: string[];
}

export interface ShardSummary {
  shardId: string;
  state: string;
  parentShardIds: string[];
  recordsDelivered: number;
  checkpoint?: string;
}

/** --kill-one: which host died, when, and who took its shards. */
export interface FailoverInfo {
  hostId: string;
  /** ms after the demo started. */
  killedAtMs: number;
  /** The shards it was reading. */
  shards: string[];
  takenOver: Array<{ shardId: string; by: string; afterMs: number }>;
}

/** The tally `--json` prints. */
export interface DemoResult {
  ok: boolean;
  reason?: string;
  stream: string;
  leases: { store: 'redis' | 'memory'; url?: string; keyPrefix?: string };
  requested: number;
  produced: number;
  /**
   * Records per second: `requested` is --rate, `achieved` what was acknowledged per second of
   * production (the split's pause excluded). Below the request when the local Kinesis, or this
   * machine, cannot keep up.
   */
  rate: { requested: number; achieved: number };
  failedPuts: number;
  consumed: { unique: number; duplicates: number; total: number };
  lost: number;
  orderKept: boolean;
  outOfOrder: number;
  keys: number;
  split?: SplitInfo;
  shards: ShardSummary[];
  /** With --hosts: what each host handled (redeliveries included). */
  hosts?: HostSummary[];
  failover?: FailoverInfo;
  metrics?: { url: string };
  durationMs: number;
}

/** What a finished (or interrupted) run saw, for {@link demoResult}. */
export interface DemoRun {
  stream: string;
  /** The lease store: Redis at this URL under this prefix, or memory when undefined. */
  redisUrl: string | undefined;
  keyPrefix: string;
  requested: number;
  requestedRate: number;
  /** Records per second acknowledged, over the time spent producing. */
  achievedRate: number;
  produced: number;
  failedPuts: number;
  firstPutError: unknown;
  tally: DeliveryTally;
  /** Why the run did not complete (a timeout), if it did not. */
  reason: string | undefined;
  hostFailures: readonly string[];
  split: SplitInfo | undefined;
  shards: readonly DemoShardView[];
  hosts: HostSummary[] | undefined;
  failover: FailoverInfo | undefined;
  metricsUrl: string | undefined;
  durationMs: number;
}

function summarize(shards: readonly DemoShardView[]): ShardSummary[] {
  return shards.map((s) => ({
    shardId: s.shardId,
    state: s.state,
    parentShardIds: s.parentShardIds,
    recordsDelivered: s.recordsDelivered,
    ...(s.checkpoint === undefined ? {} : { checkpoint: s.checkpoint }),
  }));
}

/** The result of a run: `ok` unless a record was lost, invented or out of order, or something failed. */
export function demoResult(run: DemoRun): DemoResult {
  const { tally, produced, failedPuts, reason } = run;
  const lost = Math.max(0, produced - tally.unique);
  const problems: string[] = [];
  if (reason !== undefined) problems.push(reason);
  if (failedPuts > 0)
    problems.push(`${failedPuts} puts failed (${(run.firstPutError as Error | undefined)?.message})`);
  if (lost > 0 && reason === undefined) problems.push(`${lost} records lost`);
  if (tally.unique > produced)
    problems.push(`${tally.unique - produced} records consumed that were not produced`);
  if (tally.outOfOrder > 0) problems.push(`per-key order broken: ${tally.examples.join('; ')}`);
  if (tally.invalid > 0) problems.push(`${tally.invalid} records were not demo records`);
  if (run.hostFailures.length > 0) problems.push(`hosts failed: ${run.hostFailures.join('; ')}`);
  return {
    ok: problems.length === 0,
    ...(problems.length === 0 ? {} : { reason: problems.join('; ') }),
    stream: run.stream,
    leases:
      run.redisUrl === undefined
        ? { store: 'memory' }
        : { store: 'redis', url: run.redisUrl, keyPrefix: run.keyPrefix },
    requested: run.requested,
    produced,
    rate: { requested: run.requestedRate, achieved: run.achievedRate },
    failedPuts,
    consumed: { unique: tally.unique, duplicates: tally.duplicates, total: tally.unique + tally.duplicates },
    lost,
    orderKept: tally.outOfOrder === 0,
    outOfOrder: tally.outOfOrder,
    keys: tally.keys,
    ...(run.split === undefined ? {} : { split: run.split }),
    shards: summarize(run.shards),
    ...(run.hosts === undefined ? {} : { hosts: run.hosts }),
    ...(run.failover === undefined ? {} : { failover: run.failover }),
    ...(run.metricsUrl === undefined ? {} : { metrics: { url: run.metricsUrl } }),
    durationMs: run.durationMs,
  };
}
