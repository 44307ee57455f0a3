/**
 * The per-shard Kinesis limits the FaultProxy enforces in limits mode, as token buckets.
 *
 * Each limit is a bucket holding at most one second of its rate, full at first use, refilled continuously.
 * - GetRecords: a call passes when the shard's call bucket holds a whole token and its read-byte bucket is
 *   above zero; the call takes one token, and the bytes it returned are charged when the answer arrives,
 *   driving the byte bucket below zero when the answer is larger than what was left. That debt is what
 *   throttles the following calls, as on AWS (a 10 MiB answer from a full 2 MiB bucket blocks the shard's
 *   reads for 4 s at 2 MiB/s).
 * - Writes: each PutRecords entry (or PutRecord) takes one record token and `data + partition key` bytes;
 *   an entry that does not fit whole is refused and takes nothing, so a later smaller entry may still pass.
 *
 * So over any interval of `t` seconds a shard serves at most `rate * (1 + t)` of each resource, and a burst
 * arriving at once gets exactly one second's worth.
 */
import { ShardlineOptionError } from '@shardline/common';
import type { EntryFailure, RequestContext } from './matching.js';
import { streamKey } from './shards.js';

/** Per-shard limits. Omitted fields take the Kinesis values. */
export interface LimitsOptions {
  /**
   * GetRecords calls per second per shard.
   * @defaultValue 5
   */
  getRecordsPerSec?: number;
  /**
   * Bytes per second per shard returned by GetRecords (record data + partition key).
   * @defaultValue 2 MiB (2_097_152)
   */
  readBytesPerSec?: number;
  /**
   * Records written per second per shard (PutRecords entries and PutRecord calls).
   * @defaultValue 1_000
   */
  putRecordsPerSec?: number;
  /**
   * Bytes written per second per shard, counting data + partition key.
   * @defaultValue 1 MiB (1_048_576)
   */
  putBytesPerSec?: number;
}

export type ResolvedLimits = Readonly<Required<LimitsOptions>>;

/** The Kinesis per-shard limits (provisioned mode). */
export const LIMITS_DEFAULTS: ResolvedLimits = Object.freeze({
  getRecordsPerSec: 5,
  readBytesPerSec: 2 * 1024 * 1024,
  putRecordsPerSec: 1_000,
  putBytesPerSec: 1024 * 1024,
});

/** `true` -> the defaults, `false`/undefined -> no limits, an object -> the defaults overridden. */
export function resolveLimits(value: unknown, option = 'limits'): ResolvedLimits | undefined {
  if (value === undefined || value === false) return undefined;
  if (value === true) return LIMITS_DEFAULTS;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new ShardlineOptionError(
      option,
      `must be a boolean or an object of per-shard limits (got ${String(value)})`,
    );
  }
  const input = value as Record<string, unknown>;
  const known = Object.keys(LIMITS_DEFAULTS);
  for (const key of Object.keys(input)) {
    if (!known.includes(key)) {
      throw new ShardlineOptionError(
        `${option}.${key}`,
        `is not a known limit (use one of ${known.join(', ')})`,
      );
    }
  }
  const out: Record<string, number> = {};
  for (const key of known as Array<keyof LimitsOptions>) {
    const given = input[key];
    if (given === undefined) {
      out[key] = LIMITS_DEFAULTS[key];
      continue;
    }
    if (typeof given !== 'number' || !Number.isFinite(given) || given <= 0) {
      throw new ShardlineOptionError(
        `${option}.${key}`,
        `must be a finite number > 0 (got ${String(given)})`,
      );
    }
    out[key] = given;
  }
  return Object.freeze(out as Required<LimitsOptions>);
}

class TokenBucket {
  #tokens: number;
  #at: number;
  readonly #rate: number;

  constructor(ratePerSec: number, now: number) {
    this.#rate = ratePerSec;
    this.#tokens = ratePerSec;
    this.#at = now;
  }

  level(now: number): number {
    if (now > this.#at) {
      // Multiply before dividing so that whole-millisecond steps refill exact amounts.
      this.#tokens = Math.min(this.#rate, this.#tokens + ((now - this.#at) * this.#rate) / 1000);
      this.#at = now;
    }
    return this.#tokens;
  }

  /** Removes `amount`, going below zero if need be (debt). */
  charge(amount: number, now: number): void {
    this.level(now);
    this.#tokens -= amount;
  }
}

interface ShardBuckets {
  getCalls: TokenBucket;
  readBytes: TokenBucket;
  putRecords: TokenBucket;
  putBytes: TokenBucket;
}

/** Token buckets per shard key. */
export class ShardLimiter {
  readonly limits: ResolvedLimits;
  readonly #buckets = new Map<string, ShardBuckets>();
  readonly #now: () => number;

  constructor(limits: ResolvedLimits, now: () => number) {
    this.limits = limits;
    this.#now = now;
  }

  #shard(key: string, now: number): ShardBuckets {
    let b = this.#buckets.get(key);
    if (b === undefined) {
      const l = this.limits;
      b = {
        getCalls: new TokenBucket(l.getRecordsPerSec, now),
        readBytes: new TokenBucket(l.readBytesPerSec, now),
        putRecords: new TokenBucket(l.putRecordsPerSec, now),
        putBytes: new TokenBucket(l.putBytesPerSec, now),
      };
      this.#buckets.set(key, b);
    }
    return b;
  }

  /** Admits a GetRecords call on the shard at `now` (taking a call token), or refuses it (taking nothing). */
  tryGetRecords(key: string, now: number = this.#now()): boolean {
    const b = this.#shard(key, now);
    if (b.getCalls.level(now) < 1 || b.readBytes.level(now) <= 0) return false;
    b.getCalls.charge(1, now);
    return true;
  }

  /** Charges the bytes a GetRecords answer returned. */
  chargeRead(key: string, bytes: number): void {
    if (bytes <= 0) return;
    const now = this.#now();
    this.#shard(key, now).readBytes.charge(bytes, now);
  }

  /** Admits one record of `bytes` (data + partition key) on the shard at `now`, or refuses it (taking nothing). */
  tryPut(key: string, bytes: number, now: number = this.#now()): boolean {
    const b = this.#shard(key, now);
    if (b.putRecords.level(now) < 1 || b.putBytes.level(now) < bytes) return false;
    b.putRecords.charge(1, now);
    b.putBytes.charge(bytes, now);
    return true;
  }
}

/** What limits mode decided for one call. */
export type LimitDecision = { refusedShard: string } | { throttledEntries: number };

/**
 * Limits mode for one call at `at`: a GetRecords takes a call token of its shard; PutRecord(s) entries
 * (but those a rule already failed) take record and byte tokens of theirs, `shards[i]` being entry i's.
 * A whole call refused (GetRecords, PutRecord) returns its shard; refused PutRecords entries are added to
 * `failures`, with `message(shardId)`.
 */
export function applyLimits(
  limiter: ShardLimiter,
  ctx: RequestContext,
  shards: ReadonlyArray<string | undefined>,
  at: number,
  failures: Map<number, EntryFailure>,
  message: (shardId: string) => string,
): LimitDecision {
  let throttledEntries = 0;
  if (ctx.operation === 'GetRecords' && ctx.iterator !== undefined) {
    const key = `${streamKey(ctx.iterator.stream)}|${ctx.iterator.shardId}`;
    if (!limiter.tryGetRecords(key, at)) return { refusedShard: ctx.iterator.shardId };
  } else if ((ctx.operation === 'PutRecord' || ctx.operation === 'PutRecords') && ctx.entries !== undefined) {
    for (let i = 0; i < ctx.entries.length; i++) {
      const shardId = shards[i];
      if (failures.has(i) || shardId === undefined || ctx.stream === undefined) continue;
      if (limiter.tryPut(`${streamKey(ctx.stream)}|${shardId}`, ctx.entries[i]!.bytes, at)) continue;
      if (ctx.operation === 'PutRecord') return { refusedShard: shardId };
      failures.set(i, { code: 'ProvisionedThroughputExceededException', message: message(shardId) });
      throttledEntries++;
    }
  }
  return { throttledEntries };
}
