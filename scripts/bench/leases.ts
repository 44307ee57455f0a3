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
import os from 'node:os';
import { startLocalKinesis, useTestRedis } from '@shardline/testing';
import { QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';
import {
  type BenchStore,
  failoverAndRebalance,
  killChildren,
  type LeaseFigures,
  median,
  redisCommands,
  s,
} from './lib-leases.js';

// --quick: the short lease only, one failover, a short idle window: checks the script works.
const LEASES_MS = QUICK ? [3_000] : [10_000, 3_000];
const IDLE_SHARDS = QUICK ? 16 : 64;
const IDLE_HOSTS = 1;
const IDLE_WINDOW_MS = QUICK ? 3_000 : 20_000;
const REPEATS = QUICK ? 1 : 3;

async function redisStore(): Promise<BenchStore> {
  const redis = await useTestRedis('bench-leases');
  return {
    name: 'redis',
    config: { redisUrl: redis.url, keyPrefix: redis.keyPrefix },
    cleanup: () => redis.cleanup(),
  };
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  const kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
  const figures: LeaseFigures[] = [];
  try {
    const partial: Array<Omit<LeaseFigures, 'commandsPerHostPerS' | 'commandsTop' | 'joinMs'>> = [];
    for (const lease of LEASES_MS) {
      partial.push(await failoverAndRebalance(kinesis, lease, await redisStore(), REPEATS));
    }
    // Idle hosts load the machine little: both lease durations at once, each on its own redis-server. One
    // host each while counting commands; then a second joins and takes its half by handoff.
    const rates = await Promise.all(
      LEASES_MS.map((lease) =>
        redisCommands(kinesis, lease, { shards: IDLE_SHARDS, windowMs: IDLE_WINDOW_MS }),
      ),
    );
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
