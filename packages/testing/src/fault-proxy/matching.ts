/**
 * How the FaultProxy reads a Kinesis call: the stream it names, the shards it touches (directly, through
 * a known iterator, or by routing its PutRecord(s) entries), and whether a rule matches it.
 */
import type http from 'node:http';
import { type ActiveRule, fireRule, matches } from './rules.js';
import {
  entryHashKey,
  type IteratorShards,
  type IteratorTarget,
  type ShardMapCache,
  type StreamRef,
  streamKey,
} from './shards.js';
import { base64ByteLength, credentialScope, parseStreamArn, type WireProtocol } from './wire.js';

/** A PutRecord(s) entry as routing and limits see it. */
export interface PutEntry {
  hashKey: bigint | undefined;
  /** data + partition key */
  bytes: number;
}

/** One Kinesis call, as the proxy decides on it. */
export interface RequestContext {
  req: http.IncomingMessage;
  body: Buffer;
  protocol: WireProtocol;
  operation: string;
  json: Record<string, unknown> | undefined;
  stream: StreamRef | undefined;
  accountId: string;
  /** Shards named by the request itself or by its iterator; undefined for PutRecord(s). */
  direct: string[] | undefined;
  iterator: IteratorTarget | undefined;
  entries: PutEntry[] | undefined;
  entryShards: Promise<Array<string | undefined>> | undefined;
  entryShardsKnown: Array<string | undefined> | undefined;
  /** When limits were decided (proxy clock); events report it. */
  at: number | undefined;
}

/** Why a PutRecords entry is answered as failed. */
export interface EntryFailure {
  code: string;
  message: string;
}

/** What building a context reads from and records into. */
export interface ContextSources {
  readonly iterators: IteratorShards;
  /** The last client credentials per stream (kept for the proxy's own ListShards). */
  readonly authByStream: Map<string, { authorization: string; date: string }>;
  /** The account in error messages unless the request names one. */
  readonly accountId: string;
}

/** Reads the call's stream, shards and entries, and keeps its credentials for the proxy's ListShards. */
export function buildContext(
  deps: ContextSources,
  req: http.IncomingMessage,
  body: Buffer,
  operation: string,
  protocol: WireProtocol,
  json: Record<string, unknown> | undefined,
): RequestContext {
  const scope = credentialScope(req.headers);
  let stream: StreamRef | undefined;
  let arnAccount: string | undefined;
  let iterator: IteratorTarget | undefined;
  let direct: string[] | undefined;
  let entries: PutEntry[] | undefined;
  if (json !== undefined) {
    const arn = parseStreamArn(json.StreamARN) ?? parseStreamArn(json.ConsumerARN);
    if (typeof json.StreamName === 'string' && json.StreamName.length > 0) {
      stream = { scope: arn?.region ?? scope.region ?? '', streamName: json.StreamName };
    } else if (arn !== undefined) {
      stream = { scope: arn.region, streamName: arn.streamName };
    }
    arnAccount = arn?.accountId;
    switch (operation) {
      case 'GetRecords':
        iterator = deps.iterators.lookup(json.ShardIterator);
        if (iterator !== undefined) {
          stream ??= iterator.stream;
          direct = [iterator.shardId];
        } else {
          direct = [];
        }
        break;
      case 'GetShardIterator':
      case 'SubscribeToShard':
        direct = typeof json.ShardId === 'string' ? [json.ShardId] : [];
        break;
      case 'SplitShard':
        direct = typeof json.ShardToSplit === 'string' ? [json.ShardToSplit] : [];
        break;
      case 'MergeShards':
        direct = [json.ShardToMerge, json.AdjacentShardToMerge].filter(
          (s): s is string => typeof s === 'string',
        );
        break;
      case 'PutRecord':
        entries = [putEntry(json)];
        break;
      case 'PutRecords':
        if (Array.isArray(json.Records) && json.Records.every((r) => r !== null && typeof r === 'object')) {
          entries = (json.Records as Array<Record<string, unknown>>).map((r) => putEntry(r));
        } else {
          direct = [];
        }
        break;
      default:
        direct = [];
    }
  } else {
    direct = [];
  }
  const authorization = req.headers.authorization;
  const date = req.headers['x-amz-date'];
  if (stream !== undefined && typeof authorization === 'string' && typeof date === 'string') {
    const key = streamKey(stream);
    if (deps.authByStream.size >= 10_000 && !deps.authByStream.has(key)) deps.authByStream.clear();
    deps.authByStream.set(key, { authorization, date });
  }
  let accountId = deps.accountId;
  if (arnAccount !== undefined && /^[0-9]{12}$/.test(arnAccount)) accountId = arnAccount;
  else if (scope.accessKeyId !== undefined && /^[0-9]{12}$/.test(scope.accessKeyId))
    accountId = scope.accessKeyId;
  return {
    req,
    body,
    protocol,
    operation,
    json,
    stream,
    accountId,
    direct,
    iterator,
    entries,
    entryShards: undefined,
    entryShardsKnown: undefined,
    at: undefined,
  };
}

function putEntry(record: Record<string, unknown>): PutEntry {
  const key = record.PartitionKey;
  return {
    hashKey: entryHashKey(key, record.ExplicitHashKey),
    bytes: base64ByteLength(record.Data) + (typeof key === 'string' ? Buffer.byteLength(key, 'utf8') : 0),
  };
}

/** Where each PutRecord(s) entry goes (undefined where unknown); fetches the shard map on first need. */
export function entryShards(
  shardMaps: ShardMapCache,
  ctx: RequestContext,
): Promise<Array<string | undefined>> {
  if (ctx.entryShards === undefined) {
    const entries = ctx.entries ?? [];
    ctx.entryShards =
      ctx.stream === undefined
        ? Promise.resolve(entries.map(() => undefined))
        : shardMaps.route(
            ctx.stream,
            entries.map((e) => e.hashKey),
          );
    ctx.entryShards.then(
      (shards) => {
        ctx.entryShardsKnown = shards;
      },
      () => {},
    );
  }
  return ctx.entryShards;
}

/** The shards a request touches; those matching `prefer` first. */
export async function touchedShards(
  shardMaps: ShardMapCache,
  ctx: RequestContext,
  prefer?: string | RegExp,
): Promise<string[]> {
  let shards = ctx.direct;
  if (shards === undefined) {
    shards = [...new Set((await entryShards(shardMaps, ctx)).filter((s): s is string => s !== undefined))];
  }
  if (prefer === undefined) return shards;
  return [...shards.filter((s) => matches(prefer, s)), ...shards.filter((s) => !matches(prefer, s))];
}

/**
 * Whether a rule matches the call: undefined if not; otherwise the eligible entry indexes (partial-failure)
 * or an empty array.
 */
export async function matchRule(
  shardMaps: ShardMapCache,
  active: ActiveRule,
  ctx: RequestContext,
): Promise<number[] | undefined> {
  const rule = active.rule;
  if (active.removed || active.remaining <= 0) return undefined;
  if (active.operations !== undefined && !active.operations.has(ctx.operation)) return undefined;
  if (!matches(rule.streamName, ctx.stream?.streamName)) return undefined;
  if (rule.action.type === 'partial-failure') {
    if (ctx.entries === undefined || ctx.entries.length === 0) return undefined;
    if (rule.shardId === undefined) return ctx.entries.map((_, i) => i);
    const shards = await entryShards(shardMaps, ctx);
    const eligible = shards.flatMap((s, i) => (matches(rule.shardId, s) ? [i] : []));
    return eligible.length === 0 ? undefined : eligible;
  }
  if (rule.shardId !== undefined) {
    const shards = await touchedShards(shardMaps, ctx);
    if (!shards.some((s) => matches(rule.shardId, s))) return undefined;
  }
  return [];
}

/** The rule that decides a call, with the entries it may fail (partial-failure), and the latency added. */
export interface RuleDecision {
  latencyMs: number;
  decision: { active: ActiveRule; candidates: number[] } | undefined;
}

/**
 * Checks the rules in order: a matching latency rule that fires adds its delay (and `onLatency` is
 * called) and checking goes on; the first other rule that fires decides and checking stops.
 */
export async function decideRules(
  rules: ActiveRule[],
  shardMaps: ShardMapCache,
  ctx: RequestContext,
  random: () => number,
  onLatency: () => void,
): Promise<RuleDecision> {
  let latencyMs = 0;
  for (const active of [...rules]) {
    const candidates = await matchRule(shardMaps, active, ctx);
    if (candidates === undefined || active.removed || active.remaining <= 0) continue;
    const probability = active.rule.probability;
    if (probability !== undefined && probability < 1 && !(random() < probability)) continue;
    fireRule(rules, active);
    const action = active.rule.action;
    if (action.type === 'latency') {
      latencyMs += action.ms;
      onLatency();
      continue;
    }
    return { latencyMs, decision: { active, candidates } };
  }
  return { latencyMs, decision: undefined };
}
