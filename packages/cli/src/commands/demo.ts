/**
 * `shardline demo`: the whole library end to end with nothing to set up. An embedded local Kinesis
 * (kinesis-mock), a Producer writing keyed records, a Coordinator reading them with worker threads
 * (Redis leases when a Redis answers), a shard split half-way, and a tally that holds or fails the run.
 * With --hosts N the coordinators are N child processes sharing the Redis leases (demo/hosts.ts), and
 * --kill-one SIGKILLs one of them part-way to show failover. This file runs the phases; the parts
 * are in ../demo/ (hosts, live view, metrics, Redis, split, result and report).
 */
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { sleep } from '@shardline/common';
import { type Coordinator, startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { Registry } from 'prom-client';
import type { CommandContext } from '../context.js';
import { DEMO_DEFAULTS } from '../defaults.js';
import { type DemoShardView, HostGroup, mergeShardViews } from '../demo/hosts.js';
import { LiveView, type ProgressSnapshot } from '../demo/live-view.js';
import { closeMetrics, demoGauges, serveMetrics } from '../demo/metrics.js';
import { deleteRedisKeys, demoRedisUrl, findRedis } from '../demo/redis.js';
import { achievedRate, humanReport, rateText } from '../demo/report.js';
import { demoResult, type FailoverInfo, type SplitInfo } from '../demo/result.js';
import { planSplit, splitShard } from '../demo/split.js';
import { DeliveryTally, type DemoItem } from '../demo/tally.js';
import { CliError, EXIT_CODES } from '../exit.js';

export { DEMO_DEFAULTS };

import { toJson } from '../output.js';

/** `shardline demo` options (after commander's parsing). */
export interface DemoOptions {
  /** Records to produce. */
  records: number;
  /** Shards of the stream at creation (one more after the split). */
  shards: number;
  /** Records per second the producer is paced at. */
  rate: number;
  /** `false` with `--no-redis`: in-memory leases even when a Redis answers. */
  redis: boolean;
  /** Coordinator hosts; more than 1 runs each in a child process, sharing Redis leases. */
  hosts: number;
  /** SIGKILL one host part-way (needs hosts >= 2). */
  killOne?: boolean;
  /** Serve GET /metrics (Prometheus text) on 127.0.0.1:port while the demo runs. */
  metricsPort?: number;
}

/** Checks the option combinations before anything starts (usage errors: exit 2). */
function checkCombinations(options: DemoOptions): void {
  if (options.killOne === true && options.hosts < 2) {
    throw new CliError(
      `--kill-one needs --hosts 2 or more (got ${options.hosts}): one host is killed and the others take over its shards`,
      EXIT_CODES.USAGE,
    );
  }
  if (options.hosts > 1 && !options.redis) {
    throw new CliError(
      `--hosts ${options.hosts} needs Redis leases (the hosts are separate processes): drop --no-redis`,
      EXIT_CODES.USAGE,
    );
  }
}

/** `shardline demo`: see the file comment. Resolves with the exit code. */
export async function demoCommand(ctx: CommandContext, options: DemoOptions): Promise<number> {
  checkCombinations(options);
  const { signal } = ctx;
  const startedAt = performance.now();
  const elapsed = (): number => Math.round(performance.now() - startedAt);
  const tally = new DeliveryTally();
  const stream = DEMO_DEFAULTS.streamName;
  const keyPrefix = `shardline-demo:${randomBytes(6).toString('hex')}`;
  const multiHost = options.hosts > 1;
  const view = new LiveView(ctx.io.stderr);
  const say = (message: string): void => view.message(message);
  if (ctx.globals.endpoint !== undefined)
    say('demo: --endpoint is ignored: the demo runs its own local Kinesis');

  let local: LocalKinesis | undefined;
  let producer: Producer<DemoItem> | undefined;
  let coordinator: Coordinator<DemoItem> | undefined;
  let hostGroup: HostGroup | undefined;
  let metricsServer: Server | undefined;
  let redisUrl: string | undefined;
  let progress: NodeJS.Timeout | undefined;
  let produced = 0;
  /** Time spent producing (each phase until its last put settled), the split's pause left out. */
  let producingMs = 0;
  let failedPuts = 0;
  let firstPutError: unknown;
  let split: SplitInfo | undefined;
  let finalShards: DemoShardView[] = [];
  let failover: FailoverInfo | undefined;
  /** Date.now() at the kill: hosts time their lease events on the same wall clock. */
  let killedAtWallMs = 0;
  let reason: string | undefined;
  const hostFailures: string[] = [];

  // Everything that can be refused is checked before the local Kinesis starts.
  if (options.redis) {
    redisUrl = await findRedis(ctx, multiHost, DEMO_DEFAULTS.redisProbeMs);
    if (redisUrl === undefined && multiHost) {
      throw new CliError(
        `--hosts ${options.hosts} needs a Redis: none answered at ${demoRedisUrl(ctx)} (set REDIS_URL)`,
        EXIT_CODES.USAGE,
      );
    }
  }
  const registry = options.metricsPort === undefined ? undefined : new Registry();
  if (registry !== undefined) {
    demoGauges(registry, () => ({ produced, unique: tally.unique, duplicates: tally.duplicates }));
    try {
      metricsServer = await serveMetrics(options.metricsPort!, {
        registry,
        hosts: () => hostGroup?.metrics() ?? Promise.resolve([]),
      });
    } catch (error) {
      throw new CliError(
        `--metrics-port ${options.metricsPort}: ${(error as Error).message}`,
        EXIT_CODES.USAGE,
        {
          cause: error,
        },
      );
    }
  }
  const metricsUrl =
    options.metricsPort === undefined ? undefined : `http://127.0.0.1:${options.metricsPort}/metrics`;

  const shardViews = (): DemoShardView[] =>
    hostGroup !== undefined
      ? hostGroup.shards()
      : coordinator !== undefined
        ? mergeShardViews([coordinator.status()])
        : [];
  const snapshot = (): ProgressSnapshot => {
    const shards = shardViews();
    const p: ProgressSnapshot = {
      elapsedMs: elapsed(),
      produced,
      requested: options.records,
      consumed: tally.unique,
      duplicates: tally.duplicates,
      shards,
    };
    if (hostGroup !== undefined) {
      p.hosts = hostGroup.summaries().map((h) => ({
        hostId: h.hostId,
        records: h.records,
        killed: h.killed,
        reading: shards.filter((s) => s.owner === h.hostId).length,
      }));
    }
    return p;
  };

  try {
    say('demo: starting a local Kinesis (kinesis-mock)...');
    local = await startLocalKinesis({ engine: 'kinesis-mock' });
    ctx.debug(`demo: local Kinesis at ${local.endpoint}`);
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    await local.createStream(stream, { shards: options.shards });
    say(
      `demo: stream ${stream} (${options.shards} shard${options.shards === 1 ? '' : 's'}), leases ${redisUrl === undefined ? 'in memory' : `in Redis at ${redisUrl} (keys ${keyPrefix}:*)`}${multiHost ? `, ${options.hosts} host processes` : ''}; ${options.records} records at ${options.rate}/s${metricsUrl === undefined ? '' : `; metrics at ${metricsUrl}`}`,
    );

    if (multiHost) {
      const config = local.clientConfig;
      hostGroup = await HostGroup.start(
        {
          hosts: options.hosts,
          tally,
          streamName: stream,
          group: DEMO_DEFAULTS.group,
          kinesis: { endpoint: config.endpoint, region: config.region, credentials: config.credentials },
          redisUrl: redisUrl!,
          keyPrefix,
          leaseDurationMs: DEMO_DEFAULTS.hostLeaseDurationMs,
          metrics: registry !== undefined,
          statusIntervalMs: DEMO_DEFAULTS.hostStatusIntervalMs,
          onLease: (lease) => {
            if (failover === undefined || !failover.shards.includes(lease.shardId)) return;
            if (
              lease.hostId === failover.hostId ||
              failover.takenOver.some((t) => t.shardId === lease.shardId)
            ) {
              return;
            }
            const afterMs = Math.max(0, lease.atMs - killedAtWallMs);
            failover.takenOver.push({ shardId: lease.shardId, by: lease.hostId, afterMs });
            say(
              `demo: ${lease.hostId} took over ${lease.shardId} ${(afterMs / 1000).toFixed(1)}s after ${failover.hostId} was killed`,
            );
          },
          onHostFailure: (hostId, message) => {
            hostFailures.push(`${hostId}: ${message}`);
            say(`demo: host ${hostId} failed: ${message}`);
          },
        },
        signal,
      );
      if (signal.aborted) return EXIT_CODES.INTERRUPTED;
      say(
        `demo: ${options.hosts} hosts started (${hostGroup
          .summaries()
          .map((h) => `${h.hostId} pid ${h.pid}`)
          .join(', ')})`,
      );
      // The first host up takes every lease; the others get theirs by handoff within a few renewals.
      // Production starts once they share the shards, so every host has records to show.
      const group = hostGroup;
      const spread = Math.min(options.hosts, options.shards);
      const owners = (): number =>
        new Set(group.shards().flatMap((v) => (v.owner === undefined ? [] : [v.owner]))).size;
      const spreadDeadline = Date.now() + DEMO_DEFAULTS.spreadWaitMs;
      while (owners() < spread && Date.now() < spreadDeadline && !signal.aborted) {
        await sleep(100, signal).catch(() => {});
      }
      if (signal.aborted) return EXIT_CODES.INTERRUPTED;
      if (owners() < spread) {
        say(
          `demo: the hosts did not share the shards within ${DEMO_DEFAULTS.spreadWaitMs / 1000}s: producing anyway`,
        );
      } else {
        say(`demo: ${spread} hosts read the shards (${(elapsed() / 1000).toFixed(1)}s)`);
      }
    } else {
      coordinator = await startCoordinator<DemoItem>({
        streamName: stream,
        group: DEMO_DEFAULTS.group,
        hostId: 'host-1',
        kinesis: local.clientConfig,
        ...(redisUrl === undefined ? {} : { leases: { redis: redisUrl, keyPrefix } }),
        workerThreads: 2,
        // A demo should show records moving at once, not after the production defaults' idle spacing.
        idleFetchIntervalMs: 200,
        checkpoint: { mode: 'auto', intervalMs: 1_000 },
        ...(registry === undefined ? {} : { metrics: { registry } }),
        handler: (batch) => {
          for (const record of batch.records) tally.add(record.data);
        },
      });
    }
    producer = new Producer<DemoItem>({
      streamName: stream,
      kinesis: local.clientConfig,
      // One call per shard at a time: a retry can never overtake a later record of the same key.
      maxInFlightPerShard: 1,
      lingerMs: 50,
      ...(registry === undefined ? {} : { metrics: { registry } }),
      signal,
    });

    progress = setInterval(() => view.update(snapshot()), DEMO_DEFAULTS.progressIntervalMs);

    const keys = Array.from({ length: DEMO_DEFAULTS.keys }, (_, i) => `key-${String(i).padStart(2, '0')}`);
    const nextSeq = new Map<string, number>();
    const writer = producer;
    const produce = async (from: number, to: number): Promise<void> => {
      const pending: Promise<void>[] = [];
      const phaseStart = performance.now();
      for (let i = from; i < to && !signal.aborted; i++) {
        const wait = phaseStart + ((i - from) * 1_000) / options.rate - performance.now();
        // Sleep in slices of at least 10 ms: a timer per record would cost more than the pacing is worth.
        if (wait >= 10) await sleep(wait, signal).catch(() => {});
        if (signal.aborted) break;
        const key = keys[i % keys.length]!;
        const seq = nextSeq.get(key) ?? 0;
        nextSeq.set(key, seq + 1);
        pending.push(
          writer.put({ key, seq }, { partitionKey: key }).then(
            () => {
              produced++;
            },
            (error: unknown) => {
              failedPuts++;
              firstPutError ??= error;
            },
          ),
        );
      }
      await Promise.all(pending);
      producingMs += performance.now() - phaseStart;
    };

    const half = Math.floor(options.records / 2);
    if (options.killOne === true && hostGroup !== undefined) {
      const killAt = Math.floor(options.records * DEMO_DEFAULTS.killAtFraction);
      await produce(0, killAt);
      // Kill a host that is reading something, or the failover shows nothing.
      const group = hostGroup;
      const deadline = Date.now() + DEMO_DEFAULTS.killWaitMs;
      while (
        !signal.aborted &&
        Date.now() < deadline &&
        !group.summaries().some((h) => group.shardsOf(h.hostId).length > 0)
      ) {
        await sleep(100, signal).catch(() => {});
      }
      if (signal.aborted) return EXIT_CODES.INTERRUPTED;
      const killedAtMs = elapsed();
      killedAtWallMs = Date.now();
      const victim = await group.killBusiest();
      failover = { hostId: victim.hostId, killedAtMs, shards: victim.shards, takenOver: [] };
      say(
        `demo: ${produced} records produced: SIGKILLed ${victim.hostId} at ${(killedAtMs / 1000).toFixed(1)}s, reading ${victim.shards.join(', ') || 'no shard'}`,
      );
      await produce(killAt, half);
    } else {
      await produce(0, half);
    }
    if (!signal.aborted) {
      split = planSplit(await local.listShards(stream));
      say(`demo: ${produced} records produced: splitting ${split.parent} at hash key ${split.hashKey}`);
      split.children = await splitShard(local, stream, split, signal);
    }
    await produce(half, options.records);
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    say(
      `demo: ${produced} records produced (${rateText(produced, producingMs, options.rate)}); waiting for the consumer`,
    );

    // Done when every produced record was delivered and the consumer followed the split (the parent
    // read to its end, the children read after it) and, after a kill, every shard of the dead host
    // was taken over.
    const parent = split?.parent;
    const children = split?.children ?? [];
    const drained = (shards: readonly DemoShardView[]): boolean => {
      if (tally.unique < produced) return false;
      if (failover !== undefined && failover.takenOver.length < failover.shards.length) return false;
      if (parent === undefined) return true;
      const byId = new Map(shards.map((s) => [s.shardId, s]));
      return byId.get(parent)?.state === 'ended' && children.every((c) => byId.get(c)?.state === 'reading');
    };
    const deadline = Date.now() + DEMO_DEFAULTS.drainTimeoutMs;
    let shards = shardViews();
    while (!drained(shards) && Date.now() < deadline && !signal.aborted) {
      await sleep(100, signal).catch(() => {});
      shards = shardViews();
    }
    finalShards = shards;
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    if (!drained(shards)) {
      const notMoved =
        failover?.shards.filter((id) => !failover!.takenOver.some((t) => t.shardId === id)) ?? [];
      reason =
        tally.unique < produced
          ? `timed out after ${DEMO_DEFAULTS.drainTimeoutMs / 1000}s waiting for the consumer (${tally.unique} of ${produced} records delivered)`
          : notMoved.length > 0
            ? `timed out after ${DEMO_DEFAULTS.drainTimeoutMs / 1000}s: the killed host's shards ${notMoved.join(', ')} were not taken over`
            : `timed out after ${DEMO_DEFAULTS.drainTimeoutMs / 1000}s waiting for the consumer to follow the split`;
    }
  } finally {
    if (progress !== undefined) clearInterval(progress);
    view.finish();
    const cleanup: Array<[string, () => Promise<void>]> = [
      ['producer', async () => producer?.close()],
      ['coordinator', async () => coordinator?.stop()],
      ['host processes', async () => hostGroup?.stop()],
      ['Redis keys', async () => (redisUrl === undefined ? undefined : deleteRedisKeys(redisUrl, keyPrefix))],
      ['local Kinesis', async () => local?.stop()],
      ['metrics server', async () => (metricsServer === undefined ? undefined : closeMetrics(metricsServer))],
    ];
    for (const [what, step] of cleanup) {
      try {
        await step();
      } catch (error) {
        ctx.warn(`demo: could not stop the ${what}: ${(error as Error).message}`);
      }
    }
  }

  const result = demoResult({
    stream,
    redisUrl,
    keyPrefix,
    requested: options.records,
    requestedRate: options.rate,
    achievedRate: achievedRate(produced, producingMs),
    produced,
    failedPuts,
    firstPutError,
    tally,
    reason,
    hostFailures,
    split,
    shards: finalShards,
    hosts: hostGroup?.summaries(),
    failover,
    metricsUrl,
    durationMs: elapsed(),
  });
  await ctx.out(ctx.globals.json === true ? `${toJson(result)}\n` : humanReport(result));
  if (!result.ok) ctx.warn(`demo failed: ${result.reason}`);
  return result.ok ? EXIT_CODES.OK : EXIT_CODES.FAILURE;
}
