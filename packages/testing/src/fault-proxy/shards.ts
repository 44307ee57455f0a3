/**
 * How the FaultProxy knows which shard a request touches: GetRecords carries only an opaque iterator, so
 * iterators are learnt from GetShardIterator and GetRecords answers; PutRecord(s) entries are routed like
 * Kinesis does (MD5 of the partition key, or the explicit hash key, against the open shards' hash-key
 * ranges), with the ranges fetched from the upstream by ListShards and cached per stream.
 */
import {
  parseExplicitHashKey,
  partitionKeyToHashKey,
  type ShardHashRange,
  ShardRouter,
} from '@shardline/common';

/** A stream as a request names it. `scope` separates same-named streams of other regions/accounts. */
export interface StreamRef {
  scope: string;
  streamName: string;
}

export function streamKey(ref: StreamRef): string {
  return `${ref.scope}|${ref.streamName}`;
}

/**
 * The hash key Kinesis routes an entry by: the ExplicitHashKey when valid, else MD5 of the UTF-8 partition
 * key as an unsigned 128-bit big-endian integer. Undefined when neither is usable (the upstream will refuse
 * the entry, so it has no shard).
 */
export function entryHashKey(partitionKey: unknown, explicitHashKey: unknown): bigint | undefined {
  try {
    if (explicitHashKey !== undefined && explicitHashKey !== null) {
      return typeof explicitHashKey === 'string' ? parseExplicitHashKey(explicitHashKey) : undefined;
    }
    if (typeof partitionKey !== 'string' || partitionKey.length === 0) return undefined;
    return partitionKeyToHashKey(partitionKey);
  } catch {
    return undefined;
  }
}

/** The shard whose range holds `hashKey`, or undefined when it falls in a gap (resharding seen halfway). */
function shardOf(router: ShardRouter, hashKey: bigint): string | undefined {
  try {
    return router.shardForHashKey(hashKey);
  } catch {
    return undefined;
  }
}

/** Reads the open shards from a ListShards `Shards` array (closed shards have an EndingSequenceNumber). */
export function openShardRanges(shards: unknown): ShardHashRange[] {
  if (!Array.isArray(shards)) return [];
  const out: ShardHashRange[] = [];
  for (const shard of shards as Array<Record<string, unknown> | null>) {
    if (shard === null || typeof shard !== 'object' || typeof shard.ShardId !== 'string') continue;
    const seq = shard.SequenceNumberRange as Record<string, unknown> | undefined;
    if (seq !== undefined && seq !== null && typeof seq.EndingSequenceNumber === 'string') continue;
    const range = shard.HashKeyRange as Record<string, unknown> | undefined;
    const start = range?.StartingHashKey;
    const end = range?.EndingHashKey;
    if (typeof start !== 'string' || typeof end !== 'string') continue;
    if (!/^[0-9]{1,40}$/.test(start) || !/^[0-9]{1,40}$/.test(end)) continue;
    out.push({ shardId: shard.ShardId, startingHashKey: start, endingHashKey: end });
  }
  return out;
}

/** Fetches a stream's open shard ranges from the upstream; rejects when it cannot. */
export type ShardRangeFetcher = (ref: StreamRef) => Promise<ShardHashRange[]>;

interface CacheEntry {
  map: ShardRouter | undefined;
  fetchedAt: number;
  pending: Promise<ShardRouter | undefined> | undefined;
}

/** Per-stream shard maps, refreshed after `ttlMs`, on a routing miss, or when invalidated. */
export class ShardMapCache {
  readonly #entries = new Map<string, CacheEntry>();
  readonly #fetch: ShardRangeFetcher;
  readonly #ttlMs: number;
  readonly #now: () => number;
  // A stream that does not exist (yet) is asked again after this long, not on every put.
  readonly #failureTtlMs: number;

  constructor(fetch: ShardRangeFetcher, ttlMs: number, now: () => number) {
    this.#fetch = fetch;
    this.#ttlMs = ttlMs;
    this.#now = now;
    this.#failureTtlMs = Math.min(ttlMs, 1_000);
  }

  /** The stream's shard map; `refresh` forces a new ListShards unless one is already in flight. */
  async get(ref: StreamRef, refresh = false): Promise<ShardRouter | undefined> {
    const key = streamKey(ref);
    let entry = this.#entries.get(key);
    if (entry === undefined) {
      entry = { map: undefined, fetchedAt: Number.NEGATIVE_INFINITY, pending: undefined };
      this.#entries.set(key, entry);
    }
    if (entry.pending !== undefined) return entry.pending;
    const age = this.#now() - entry.fetchedAt;
    const ttl = entry.map === undefined ? this.#failureTtlMs : this.#ttlMs;
    if (!refresh && age < ttl) return entry.map;
    const current = entry;
    // A failed fetch, or ranges the router refuses, leave the stream unrouted until the next try.
    current.pending = this.#fetch(ref)
      .then((ranges) => (ranges.length === 0 ? undefined : new ShardRouter(ranges)))
      .catch(() => undefined);
    try {
      current.map = await current.pending;
      current.fetchedAt = this.#now();
      return current.map;
    } finally {
      current.pending = undefined;
    }
  }

  /**
   * The shard of each hash key (undefined where unknown). A key that falls outside every cached range means
   * the stream was resharded: the map is fetched again once.
   */
  async route(ref: StreamRef, hashKeys: Array<bigint | undefined>): Promise<Array<string | undefined>> {
    let map = await this.get(ref);
    if (map === undefined) return hashKeys.map(() => undefined);
    const lookup = (m: ShardRouter) => hashKeys.map((h) => (h === undefined ? undefined : shardOf(m, h)));
    let shards = lookup(map);
    if (shards.some((s, i) => s === undefined && hashKeys[i] !== undefined)) {
      map = await this.get(ref, true);
      if (map !== undefined) shards = lookup(map);
    }
    return shards;
  }

  invalidate(ref: StreamRef): void {
    const entry = this.#entries.get(streamKey(ref));
    if (entry !== undefined) entry.fetchedAt = Number.NEGATIVE_INFINITY;
  }

  clear(): void {
    this.#entries.clear();
  }
}

/** Where an iterator reads. */
export interface IteratorTarget {
  stream: StreamRef;
  shardId: string;
}

/**
 * Iterator -> shard, learnt from answers. Iterators live 5 minutes on Kinesis; entries are dropped oldest
 * first beyond `maxEntries`, or once older than `maxAgeMs`.
 */
export class IteratorShards {
  readonly #entries = new Map<string, IteratorTarget & { at: number }>();
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #now: () => number;

  constructor(now: () => number, maxEntries = 100_000, maxAgeMs = 15 * 60_000) {
    this.#now = now;
    this.#maxEntries = maxEntries;
    this.#maxAgeMs = maxAgeMs;
  }

  remember(iterator: unknown, target: IteratorTarget): void {
    if (typeof iterator !== 'string' || iterator.length === 0) return;
    const now = this.#now();
    this.#entries.delete(iterator);
    this.#entries.set(iterator, { ...target, at: now });
    // Map iteration order is insertion order, so the oldest entries come first.
    for (const [key, value] of this.#entries) {
      if (this.#entries.size <= this.#maxEntries && now - value.at <= this.#maxAgeMs) break;
      this.#entries.delete(key);
    }
  }

  lookup(iterator: unknown): IteratorTarget | undefined {
    return typeof iterator === 'string' ? this.#entries.get(iterator) : undefined;
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }
}
