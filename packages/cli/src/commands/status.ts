/**
 * `shardline status <stream> --group G --redis URL`: a consumer group's leases as Redis holds them (read
 * through @shardline/coordinator's readLeaseGroup, never written), each shard's lag measured on Kinesis,
 * and the live hosts. `--watch` redraws until Ctrl-C.
 */
import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  type GetShardIteratorCommandInput,
  type KinesisClient,
} from '@aws-sdk/client-kinesis';
import { ErrorCodes, listAllShards, SHARD_END, sleep } from '@shardline/common';
import {
  type Checkpoint,
  type LeaseGroupSnapshot,
  type LeaseGroupState,
  readLeaseGroup,
  redactRedisUrl,
} from '@shardline/coordinator';
import type { CommandContext } from '../context.js';
import { STATUS_DEFAULTS } from '../defaults.js';
import { CliError, EXIT_CODES } from '../exit.js';

export { STATUS_DEFAULTS };

import { table, toJson } from '../output.js';

/** `shardline status` options (after commander's parsing). */
export interface StatusOptions {
  group: string;
  redis: string;
  keyPrefix: string;
  /** `true` for a bare `--watch`, the seconds otherwise. */
  watch?: true | number;
}

/** One shard as `status --json` prints it. */
export interface StatusShard {
  shardId: string;
  state: LeaseGroupState;
  owner?: string;
  counter: number;
  /** `SHARD_END`, a sequence number, or `<sequenceNumber>:<subSequenceNumber>`. */
  checkpoint?: string;
  /** ISO time the lease expires (Redis clock), when it has an owner. */
  expiresAt?: string;
  expiresInMs?: number;
  /** How far the checkpoint is behind the tip of the shard (Kinesis MillisBehindLatest). */
  millisBehindLatest?: number;
  /** Why the lag is missing: `ended`, or the shard is gone from the stream, or the error. */
  lagUnavailable?: string;
  parentShardIds: string[];
  childShardIds: string[];
  handoffTo?: string;
  /** State `failed`: why the last owner stopped reading the shard, and where. */
  failure?: {
    hostId: string;
    reason: string;
    code: string;
    message: string;
    sequenceNumber?: string;
    subSequenceNumber?: number;
    at: string;
  };
}

/** What `status --json` prints (one object per refresh with --watch). */
export interface StatusReport {
  stream: string;
  group: string;
  keyPrefix: string;
  redis: string;
  /** The Redis server clock when the leases were read. */
  readAt: string;
  shards: StatusShard[];
  hosts: Array<{
    hostId: string;
    shards: number;
    leasesHeld: number;
    lastSeenAt: string;
    lastSeenMsAgo: number;
  }>;
}

function checkpointText(checkpoint: Checkpoint | undefined): string | undefined {
  if (checkpoint === undefined) return undefined;
  if (checkpoint === SHARD_END) return SHARD_END;
  return checkpoint.subSequenceNumber === undefined
    ? checkpoint.sequenceNumber
    : `${checkpoint.sequenceNumber}:${checkpoint.subSequenceNumber}`;
}

function iteratorInput(
  stream: string,
  shardId: string,
  checkpoint: Checkpoint | undefined,
): GetShardIteratorCommandInput {
  if (checkpoint === undefined || checkpoint === SHARD_END) {
    return { StreamName: stream, ShardId: shardId, ShardIteratorType: 'TRIM_HORIZON' };
  }
  // A sub-sequence checkpoint stops inside an aggregated record: the rest of it is still to read.
  return {
    StreamName: stream,
    ShardId: shardId,
    ShardIteratorType:
      checkpoint.subSequenceNumber === undefined ? 'AFTER_SEQUENCE_NUMBER' : 'AT_SEQUENCE_NUMBER',
    StartingSequenceNumber: checkpoint.sequenceNumber,
  };
}

/** MillisBehindLatest at the checkpoint: one GetShardIterator and one GetRecords (Limit 1). */
async function lagOf(
  client: KinesisClient,
  stream: string,
  shardId: string,
  checkpoint: Checkpoint | undefined,
  signal: AbortSignal,
): Promise<number | undefined> {
  const iterator = await client.send(
    new GetShardIteratorCommand(iteratorInput(stream, shardId, checkpoint)),
    {
      abortSignal: signal,
    },
  );
  if (iterator.ShardIterator === undefined) return undefined;
  const records = await client.send(
    new GetRecordsCommand({ ShardIterator: iterator.ShardIterator, Limit: 1 }),
    {
      abortSignal: signal,
    },
  );
  return records.MillisBehindLatest;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function eachLimited<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(lanes);
}

/** A Redis failure as the CLI reports it: unreachable (4), refused credentials (5), else 1. */
export function redisFailure(error: unknown, url: string): CliError {
  const e = error as { code?: unknown; message?: unknown; retriable?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(error);
  const where = redactRedisUrl(url);
  if (e?.code !== ErrorCodes.REDIS) return new CliError(message, EXIT_CODES.FAILURE, { cause: error });
  if (/\b(NOAUTH|WRONGPASS|NOPERM)\b/.test(message)) {
    return new CliError(`Redis at ${where} refused access: ${message}`, EXIT_CODES.ACCESS_DENIED, {
      cause: error,
    });
  }
  if (e.retriable === true) {
    // The ShardlineError message reads "Redis listLeases failed (<url>): <reason>": keep the reason.
    const reason = message.replace(/^Redis \w+ failed \([^)]*\): /, '');
    return new CliError(`cannot reach Redis at ${where} (${reason})`, EXIT_CODES.UNREACHABLE, {
      cause: error,
    });
  }
  return new CliError(message, EXIT_CODES.FAILURE, { cause: error });
}

/** One snapshot: leases from Redis, then the lag of every unfinished shard from Kinesis. */
async function collect(
  ctx: CommandContext,
  stream: string,
  group: string,
  redis: string,
  keyPrefix: string,
): Promise<StatusReport> {
  const client = ctx.client();
  // The stream first: a missing stream is exit 3 whatever Redis holds.
  const streamShards = new Set(
    (await listAllShards(client, { streamName: stream, signal: ctx.signal })).map((s) => s.ShardId),
  );
  let snapshot: LeaseGroupSnapshot;
  try {
    snapshot = await readLeaseGroup({
      redis,
      group,
      stream,
      keyPrefix,
      commandTimeoutMs: STATUS_DEFAULTS.redisTimeoutMs,
    });
  } catch (error) {
    throw error instanceof Error && (error as { code?: unknown }).code === ErrorCodes.INVALID_OPTION
      ? new CliError(error.message, EXIT_CODES.USAGE, { cause: error })
      : redisFailure(error, redis);
  }
  const shards: StatusShard[] = snapshot.shards.map((s) => {
    const checkpoint = checkpointText(s.checkpoint);
    return {
      shardId: s.shardId,
      state: s.state,
      ...(s.owner === undefined ? {} : { owner: s.owner }),
      counter: s.counter,
      ...(checkpoint === undefined ? {} : { checkpoint }),
      ...(s.expiresAtMs === undefined
        ? {}
        : { expiresAt: new Date(s.expiresAtMs).toISOString(), expiresInMs: s.expiresInMs! }),
      parentShardIds: s.parentShardIds,
      childShardIds: s.childShardIds,
      ...(s.handoffTo === undefined ? {} : { handoffTo: s.handoffTo }),
      ...(s.failure === undefined
        ? {}
        : {
            failure: {
              hostId: s.failure.hostId,
              reason: s.failure.reason,
              code: s.failure.code,
              message: s.failure.message,
              ...(s.failure.sequenceNumber === undefined ? {} : { sequenceNumber: s.failure.sequenceNumber }),
              ...(s.failure.subSequenceNumber === undefined
                ? {}
                : { subSequenceNumber: s.failure.subSequenceNumber }),
              at: new Date(s.failure.atMs).toISOString(),
            },
          }),
    };
  });
  const byId = new Map(snapshot.shards.map((s) => [s.shardId, s]));
  await eachLimited(shards, STATUS_DEFAULTS.lagConcurrency, async (shard) => {
    if (shard.state === 'ended') {
      shard.lagUnavailable = 'ended';
      return;
    }
    if (!streamShards.has(shard.shardId)) {
      shard.lagUnavailable = 'not in the stream any more';
      return;
    }
    try {
      const lag = await lagOf(client, stream, shard.shardId, byId.get(shard.shardId)!.checkpoint, ctx.signal);
      if (lag === undefined) shard.lagUnavailable = 'not reported by Kinesis';
      else shard.millisBehindLatest = lag;
    } catch (error) {
      if (ctx.signal.aborted) throw error;
      shard.lagUnavailable = (error as Error).message;
    }
  });
  const held = new Map<string, number>();
  for (const s of snapshot.shards) {
    if (s.state === 'held' && s.owner !== undefined) held.set(s.owner, (held.get(s.owner) ?? 0) + 1);
  }
  return {
    stream,
    group,
    keyPrefix,
    redis: redactRedisUrl(redis),
    readAt: new Date(snapshot.nowMs).toISOString(),
    shards,
    hosts: snapshot.hosts.map((h) => ({
      hostId: h.hostId,
      shards: h.shards,
      leasesHeld: held.get(h.hostId) ?? 0,
      lastSeenAt: new Date(h.lastSeenAtMs).toISOString(),
      lastSeenMsAgo: Math.max(0, snapshot.nowMs - h.lastSeenAtMs),
    })),
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

function humanReport(report: StatusReport): string {
  const head = `group ${report.group} on stream ${report.stream} (key prefix ${report.keyPrefix}, Redis ${report.redis}) at ${report.readAt}\n`;
  if (report.shards.length === 0) {
    return `${head}no leases: no consumer of this group has started on this stream (or check --group and --key-prefix)\n`;
  }
  const rows = report.shards.map((s) => [
    s.shardId,
    s.state,
    s.owner ?? '-',
    String(s.counter),
    s.checkpoint ?? '-',
    s.expiresInMs === undefined || s.state === 'ended'
      ? '-'
      : s.expiresInMs > 0
        ? `in ${seconds(s.expiresInMs)}`
        : `${seconds(-s.expiresInMs)} ago`,
    s.millisBehindLatest === undefined ? '-' : seconds(s.millisBehindLatest),
  ]);
  const counts = new Map<string, number>();
  for (const s of report.shards) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
  const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
  const hosts =
    report.hosts.length === 0
      ? 'no live hosts\n'
      : table(
          ['host', 'shards', 'held now', 'last seen'],
          report.hosts.map((h) => [
            h.hostId,
            String(h.shards),
            String(h.leasesHeld),
            `${seconds(h.lastSeenMsAgo)} ago`,
          ]),
        );
  const failures = report.shards
    .filter((s) => s.failure !== undefined)
    .map((s) => {
      const f = s.failure!;
      const at =
        f.sequenceNumber === undefined
          ? ''
          : ` at sequence number ${f.sequenceNumber}${f.subSequenceNumber === undefined ? '' : `:${f.subSequenceNumber}`}`;
      return `${s.shardId} stopped on ${f.hostId}${at} (${f.at}): ${f.code}: ${f.message}\n`;
    })
    .join('');
  return `${head}${report.shards.length} leases: ${summary}\n\n${table(
    ['shard', 'state', 'owner', 'counter', 'checkpoint', 'expires', 'lag'],
    rows,
  )}${failures === '' ? '' : `\nfailed shards:\n${failures}`}\n${report.hosts.length} live host${report.hosts.length === 1 ? '' : 's'}\n${hosts}`;
}

/** `shardline status`: see the file comment. Resolves with the exit code. */
export async function statusCommand(
  ctx: CommandContext,
  stream: string,
  options: StatusOptions,
): Promise<number> {
  const { group, redis } = options;
  const json = ctx.globals.json === true;
  const stdout = ctx.io.stdout as { isTTY?: boolean };
  const intervalMs =
    options.watch === undefined
      ? undefined
      : (options.watch === true ? STATUS_DEFAULTS.watchIntervalSeconds : options.watch) * 1000;
  let first = true;
  for (;;) {
    let report: StatusReport | undefined;
    try {
      report = await collect(ctx, stream, group, redis, options.keyPrefix);
    } catch (error) {
      // Once the first snapshot worked, a watch rides out a failing refresh instead of ending.
      if (first || intervalMs === undefined || ctx.signal.aborted) throw error;
      ctx.warn(`status: refresh failed: ${(error as Error).message}`);
    }
    if (report !== undefined) {
      if (json) await ctx.out(`${toJson(report)}\n`);
      else {
        // On a terminal the watch redraws in place; in a pipe every refresh follows the last.
        const clear = intervalMs !== undefined && stdout.isTTY === true ? '\x1b[H\x1b[2J' : '';
        await ctx.out(
          `${clear}${humanReport(report)}${intervalMs !== undefined && clear === '' ? '\n' : ''}`,
        );
      }
    }
    first = false;
    if (intervalMs === undefined) return EXIT_CODES.OK;
    await sleep(intervalMs, ctx.signal).catch(() => {});
    if (ctx.signal.aborted) return EXIT_CODES.INTERRUPTED;
  }
}
