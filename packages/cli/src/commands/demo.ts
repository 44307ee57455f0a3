/**
 * `shardline demo`: the whole library end to end with nothing to set up. An embedded local Kinesis
 * (kinesis-mock), a Producer writing keyed records, a Coordinator reading them with worker threads
 * (Redis leases when a Redis answers), a shard split half-way, and a tally that holds or fails the run.
 */
import { randomBytes } from 'node:crypto';
import { type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { sleep } from '@shardline/common';
import { type Coordinator, type CoordinatorStatus, startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { type LocalKinesis, pingRedis, REDIS_DEFAULTS, startLocalKinesis } from '@shardline/testing';
import { Redis } from 'ioredis';
import type { CommandContext } from '../context.js';
import { DeliveryTally, type DemoItem } from '../demo/tally.js';
import { EXIT_CODES } from '../exit.js';
import { table, toJson } from '../output.js';

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
}

export const DEMO_DEFAULTS = Object.freeze({
  records: 2_000,
  shards: 4,
  rate: 500,
  /** Partition keys the records are spread over (key-00 .. key-31). */
  keys: 32,
  streamName: 'shardline-demo',
  group: 'shardline-demo',
  /** A Redis that takes longer than this to answer PING is not used: the demo must start at once. */
  redisProbeMs: 500,
  progressIntervalMs: 1_000,
  /** How long the consumer gets, after the last record was produced, to deliver everything. */
  drainTimeoutMs: 60_000,
});

interface SplitInfo {
  parent: string;
  hashKey: string;
  children: string[];
}

interface ShardSummary {
  shardId: string;
  state: string;
  parentShardIds: string[];
  recordsDelivered: number;
  checkpoint?: string;
}

/** The tally `--json` prints. */
export interface DemoResult {
  ok: boolean;
  reason?: string;
  stream: string;
  leases: { store: 'redis' | 'memory'; url?: string; keyPrefix?: string };
  requested: number;
  produced: number;
  failedPuts: number;
  consumed: { unique: number; duplicates: number; total: number };
  lost: number;
  orderKept: boolean;
  outOfOrder: number;
  keys: number;
  split?: SplitInfo;
  shards: ShardSummary[];
  durationMs: number;
}

function shortId(shardId: string): string {
  return `#${Number(shardId.replace(/^shardId-/, ''))}`;
}

/** The Redis URL to use for leases, or undefined: REDIS_URL, else the default local server, if it answers. */
async function findRedis(ctx: CommandContext): Promise<string | undefined> {
  const url = ctx.io.env.REDIS_URL || REDIS_DEFAULTS.defaultUrl;
  if (await pingRedis(url, DEMO_DEFAULTS.redisProbeMs)) return url;
  ctx.warn(`demo: no Redis answered at ${url}: leases in memory`);
  return undefined;
}

/** Deletes the demo's keys (SCAN, not KEYS: never blocks a shared server). */
async function deleteRedisKeys(url: string, keyPrefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, connectTimeout: 2_000, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}:*`, 'COUNT', 1_000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

function summarize(status: CoordinatorStatus | undefined): ShardSummary[] {
  if (status === undefined) return [];
  return status.shards
    .map((s) => ({
      shardId: s.shardId,
      state: s.state,
      parentShardIds: s.parentShardIds,
      recordsDelivered: s.recordsDelivered,
      ...(s.checkpoint === undefined ? {} : { checkpoint: s.checkpoint }),
    }))
    .sort((a, b) => a.shardId.localeCompare(b.shardId));
}

function progressLine(
  elapsedMs: number,
  produced: number,
  requested: number,
  tally: DeliveryTally,
  status?: CoordinatorStatus,
): string {
  const parts = [
    `${(elapsedMs / 1000).toFixed(1).padStart(5)}s`,
    `produced ${produced}/${requested}`,
    `consumed ${tally.unique}`,
    `dup ${tally.duplicates}`,
  ];
  if (status !== undefined) {
    const leases = status.shards.filter((s) => s.owner !== undefined && s.state === 'reading').length;
    parts.push(`leases ${leases}`);
    const shards = status.shards.map((s) => {
      const lag =
        s.state === 'reading' && s.millisBehindLatest !== undefined
          ? ` ${(s.millisBehindLatest / 1000).toFixed(1)}s`
          : '';
      return `${shortId(s.shardId)} ${s.state}${lag}`;
    });
    parts.push(`| ${shards.join(', ')}`);
  }
  return `shardline: demo: ${parts.join('  ')}\n`;
}

function humanReport(result: DemoResult): string {
  const lines = [
    `shardline demo: ${result.ok ? 'OK' : `FAILED: ${result.reason}`}`,
    `  produced  ${result.produced} of ${result.requested} records (${result.keys} keys)${result.failedPuts > 0 ? `, ${result.failedPuts} puts failed` : ''}`,
    `  consumed  ${result.consumed.unique} unique, ${result.consumed.duplicates} duplicates, ${result.lost} lost`,
    `  order     ${result.orderKept ? 'kept for every key' : `${result.outOfOrder} records out of order`}`,
    `  leases    ${result.leases.store === 'redis' ? `Redis at ${result.leases.url}` : 'in memory'}`,
  ];
  if (result.split !== undefined) {
    lines.push(
      `  split     ${result.split.parent} -> ${result.split.children.join(', ') || '(no children seen)'}`,
    );
  }
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

/** The first open shard (lowest id): the one split. */
function shardToSplit(shards: readonly Shard[]): Shard {
  const open = shards
    .filter((s) => s.SequenceNumberRange?.EndingSequenceNumber === undefined)
    .sort((a, b) => (a.ShardId ?? '').localeCompare(b.ShardId ?? ''));
  const shard = open[0];
  if (shard?.ShardId === undefined || shard.HashKeyRange === undefined) {
    throw new Error('the demo stream has no open shard to split');
  }
  return shard;
}

/** `shardline demo`: see the file comment. Resolves with the exit code. */
export async function demoCommand(ctx: CommandContext, options: DemoOptions): Promise<number> {
  const { signal } = ctx;
  const startedAt = performance.now();
  const tally = new DeliveryTally();
  const stream = DEMO_DEFAULTS.streamName;
  const keyPrefix = `shardline-demo:${randomBytes(6).toString('hex')}`;
  if (ctx.globals.endpoint !== undefined)
    ctx.warn('demo: --endpoint is ignored: the demo runs its own local Kinesis');

  let local: LocalKinesis | undefined;
  let producer: Producer<DemoItem> | undefined;
  let coordinator: Coordinator<DemoItem> | undefined;
  let redisUrl: string | undefined;
  let progress: NodeJS.Timeout | undefined;
  let produced = 0;
  let failedPuts = 0;
  let firstPutError: unknown;
  let split: SplitInfo | undefined;
  let finalStatus: CoordinatorStatus | undefined;
  let reason: string | undefined;

  try {
    ctx.warn('demo: starting a local Kinesis (kinesis-mock)...');
    local = await startLocalKinesis({ engine: 'kinesis-mock' });
    ctx.debug(`demo: local Kinesis at ${local.endpoint}`);
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    await local.createStream(stream, { shards: options.shards });
    redisUrl = options.redis ? await findRedis(ctx) : undefined;
    ctx.warn(
      `demo: stream ${stream} (${options.shards} shard${options.shards === 1 ? '' : 's'}), leases ${redisUrl === undefined ? 'in memory' : `in Redis at ${redisUrl}`}; ${options.records} records at ${options.rate}/s`,
    );

    coordinator = await startCoordinator<DemoItem>({
      streamName: stream,
      group: DEMO_DEFAULTS.group,
      kinesis: local.clientConfig,
      ...(redisUrl === undefined ? {} : { leases: { redis: redisUrl, keyPrefix } }),
      workerThreads: 2,
      // A demo should show records moving at once, not after the production defaults' idle spacing.
      idleFetchIntervalMs: 200,
      checkpoint: { mode: 'auto', intervalMs: 1_000 },
      handler: (batch) => {
        for (const record of batch.records) tally.add(record.data);
      },
    });
    producer = new Producer<DemoItem>({
      streamName: stream,
      kinesis: local.clientConfig,
      // One call per shard at a time: a retry can never overtake a later record of the same key.
      maxInFlightPerShard: 1,
      lingerMs: 50,
      signal,
    });

    const stderr = ctx.io.stderr as { isTTY?: boolean };
    const live = coordinator;
    if (stderr.isTTY === true) {
      progress = setInterval(() => {
        ctx.io.stderr.write(
          progressLine(performance.now() - startedAt, produced, options.records, tally, live.status()),
        );
      }, DEMO_DEFAULTS.progressIntervalMs);
    }

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
    };

    const half = Math.floor(options.records / 2);
    await produce(0, half);
    if (!signal.aborted) {
      const shard = shardToSplit(await local.listShards(stream));
      const start = BigInt(shard.HashKeyRange!.StartingHashKey!);
      const end = BigInt(shard.HashKeyRange!.EndingHashKey!);
      const hashKey = ((start + end) / 2n + 1n).toString();
      split = { parent: shard.ShardId!, hashKey, children: [] };
      ctx.warn(`demo: ${produced} records produced: splitting ${shard.ShardId} at hash key ${hashKey}`);
      const client = local.client();
      try {
        await client.send(
          new SplitShardCommand({
            StreamName: stream,
            ShardToSplit: shard.ShardId!,
            NewStartingHashKey: hashKey,
          }),
          { abortSignal: signal },
        );
      } finally {
        client.destroy();
      }
      await local.waitForStreamActive(stream);
      split.children = (await local.listShards(stream))
        .filter((s) => s.ParentShardId === split!.parent || s.AdjacentParentShardId === split!.parent)
        .map((s) => s.ShardId!)
        .sort();
    }
    await produce(half, options.records);
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    ctx.warn(`demo: ${produced} records produced; waiting for the consumer`);

    // Done when every produced record was delivered and the coordinator followed the split: the parent
    // read to its end, the children read after it.
    const parent = split?.parent;
    const children = split?.children ?? [];
    const drained = (status: CoordinatorStatus): boolean => {
      if (tally.unique < produced) return false;
      if (parent === undefined) return true;
      const byId = new Map(status.shards.map((s) => [s.shardId, s]));
      return byId.get(parent)?.state === 'ended' && children.every((c) => byId.get(c)?.state === 'reading');
    };
    const deadline = Date.now() + DEMO_DEFAULTS.drainTimeoutMs;
    let status = coordinator.status();
    while (!drained(status) && Date.now() < deadline && !signal.aborted) {
      await sleep(100, signal).catch(() => {});
      status = coordinator.status();
    }
    finalStatus = status;
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    if (!drained(status)) {
      reason = `timed out after ${DEMO_DEFAULTS.drainTimeoutMs / 1000}s waiting for the consumer (${tally.unique} of ${produced} records delivered)`;
    }
  } finally {
    if (progress !== undefined) clearInterval(progress);
    const cleanup: Array<[string, () => Promise<void>]> = [
      ['producer', async () => producer?.close()],
      ['coordinator', async () => coordinator?.stop()],
      ['Redis keys', async () => (redisUrl === undefined ? undefined : deleteRedisKeys(redisUrl, keyPrefix))],
      ['local Kinesis', async () => local?.stop()],
    ];
    for (const [what, step] of cleanup) {
      try {
        await step();
      } catch (error) {
        ctx.warn(`demo: could not stop the ${what}: ${(error as Error).message}`);
      }
    }
  }

  const lost = Math.max(0, produced - tally.unique);
  const problems: string[] = [];
  if (reason !== undefined) problems.push(reason);
  if (failedPuts > 0)
    problems.push(`${failedPuts} puts failed (${(firstPutError as Error | undefined)?.message})`);
  if (lost > 0 && reason === undefined) problems.push(`${lost} records lost`);
  if (tally.unique > produced)
    problems.push(`${tally.unique - produced} records consumed that were not produced`);
  if (tally.outOfOrder > 0) problems.push(`per-key order broken: ${tally.examples.join('; ')}`);
  if (tally.invalid > 0) problems.push(`${tally.invalid} records were not demo records`);
  const result: DemoResult = {
    ok: problems.length === 0,
    ...(problems.length === 0 ? {} : { reason: problems.join('; ') }),
    stream,
    leases: redisUrl === undefined ? { store: 'memory' } : { store: 'redis', url: redisUrl, keyPrefix },
    requested: options.records,
    produced,
    failedPuts,
    consumed: { unique: tally.unique, duplicates: tally.duplicates, total: tally.unique + tally.duplicates },
    lost,
    orderKept: tally.outOfOrder === 0,
    outOfOrder: tally.outOfOrder,
    keys: tally.keys,
    ...(split === undefined ? {} : { split }),
    shards: summarize(finalStatus),
    durationMs: Math.round(performance.now() - startedAt),
  };
  await ctx.out(ctx.globals.json === true ? `${toJson(result)}\n` : humanReport(result));
  if (!result.ok) ctx.warn(`demo failed: ${result.reason}`);
  return result.ok ? EXIT_CODES.OK : EXIT_CODES.FAILURE;
}
