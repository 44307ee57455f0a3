/**
 * The demo's tally as text, and the production rate it reached beside the one asked for (`--rate`):
 * a local Kinesis on a busy machine may not keep up, and a demo that ran slower than asked says so.
 */

import { table } from '../output.js';
import type { DemoResult } from './result.js';

/** Below this share of --rate, the tally says that the rate was not reached and why. */
const SLOW_SHARE = 0.9;

/** Records acknowledged per second of production (0 when nothing was produced). */
export function achievedRate(produced: number, producingMs: number): number {
  if (produced === 0 || producingMs <= 0) return 0;
  return Math.round((produced * 1_000) / producingMs);
}

/** `1000/s` or `312/s, asked for 1000/s`, for the phase line. */
export function rateText(produced: number, producingMs: number, requested: number): string {
  return `${achievedRate(produced, producingMs)}/s, asked for ${requested}/s`;
}

/** The tally's rate line: achieved and asked for, and why when it fell short. */
export function rateLine(rate: DemoResult['rate']): string {
  const line = `${rate.achieved} records/s (asked for ${rate.requested}/s)`;
  if (rate.achieved >= rate.requested * SLOW_SHARE) return line;
  // The producer keeps one PutRecords call in flight per shard (per-key order across retries), so the
  // emulator's answer time bounds the rate.
  return `${line}: slower, paced by the local Kinesis's answers (one PutRecords call in flight per shard)`;
}

export function humanReport(result: DemoResult): string {
  const lines = [
    `shardline demo: ${result.ok ? 'OK' : `FAILED: ${result.reason}`}`,
    `  produced  ${result.produced} of ${result.requested} records (${result.keys} keys)${result.failedPuts > 0 ? `, ${result.failedPuts} puts failed` : ''}`,
    `  rate      ${rateLine(result.rate)}`,
    `  consumed  ${result.consumed.unique} unique, ${result.consumed.duplicates} duplicates, ${result.lost} lost`,
    `  order     ${result.orderKept ? 'kept for every key' : `${result.outOfOrder} records out of order`}`,
    `  leases    ${result.leases.store === 'redis' ? `Redis at ${result.leases.url}` : 'in memory'}`,
  ];
  if (result.split !== undefined) {
    lines.push(
      `  split     ${result.split.parent} -> ${result.split.children.join(', ') || '(no children seen)'}`,
    );
  }
  if (result.hosts !== undefined) {
    lines.push(
      `  hosts     ${result.hosts.map((h) => `${h.hostId} ${h.records} records${h.killed ? ' (killed)' : ''}`).join(', ')}`,
    );
  }
  if (result.failover !== undefined) {
    const f = result.failover;
    const moved = f.takenOver.map((t) => `${t.shardId} -> ${t.by} after ${(t.afterMs / 1000).toFixed(1)}s`);
    lines.push(
      `  failover  ${f.hostId} SIGKILLed at ${(f.killedAtMs / 1000).toFixed(1)}s holding ${f.shards.length} shard${f.shards.length === 1 ? '' : 's'}${moved.length > 0 ? `: ${moved.join(', ')}` : ''}`,
    );
  }
  if (result.metrics !== undefined) lines.push(`  metrics   ${result.metrics.url}`);
  lines.push(`  time      ${(result.durationMs / 1000).toFixed(1)}s`, '');
  const rows = result.shards.map((s) => [
    s.shardId,
    s.state,
    s.parentShardIds.join(',') || '-',
    String(s.recordsDelivered),
    s.checkpoint ?? '-',
  ]);
  return `${lines.join('\n')}${table(['shard', 'state', 'parents', 'records', 'checkpoint'], rows)}`;
}
