/**
 * Partition key -> hash key -> shard routing, as Kinesis does it: MD5 of the UTF-8 partition key read as an
 * unsigned 128-bit big-endian integer, unless an explicit hash key overrides it; the record goes to the open
 * shard whose (inclusive) hash-key range holds that integer.
 */
import { hash } from 'node:crypto';
import { ErrorCodes, ShardlineError, ShardlineOptionError } from './errors.js';

/** The largest hash key, 2^128 - 1: the end of the last shard's range. */
export const MAX_HASH_KEY: bigint = (1n << 128n) - 1n;

/** Longest partition key Kinesis accepts, in UTF-16 code units (see {@link validatePartitionKey}). */
export const MAX_PARTITION_KEY_LENGTH = 256;

// The Kinesis API pattern for ExplicitHashKey: no sign, no leading zeros, at most 39 digits.
const EXPLICIT_HASH_KEY_PATTERN = /^(?:0|[1-9][0-9]{0,38})$/;

function invalidRecord(field: string, message: string): ShardlineError {
  return new ShardlineError(ErrorCodes.INVALID_RECORD, `${field} ${message}`, { details: { field } });
}

function describe(value: unknown): string {
  if (typeof value === 'string') {
    return value.length > 48 ? `'${value.slice(0, 45)}...' (${value.length} characters)` : `'${value}'`;
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (value === null) return 'null';
  return typeof value === 'object' ? 'an object' : String(value);
}

/**
 * The hash key Kinesis derives from a partition key: MD5 of its UTF-8 bytes as an unsigned 128-bit
 * big-endian integer. Does not validate the key (see {@link validatePartitionKey}).
 */
export function partitionKeyToHashKey(partitionKey: string): bigint {
  // One-shot `hash` + hex BigInt parsing measured ~2.5x faster than createHash + readBigUInt64BE here.
  return BigInt(`0x${hash('md5', partitionKey, 'hex')}`);
}

/**
 * Parses an ExplicitHashKey: a decimal string from 0 to 2^128 - 1 with no sign, spaces or leading zeros
 * (the pattern the Kinesis API enforces, so anything accepted here is accepted by Kinesis).
 *
 * @param field - the name used in the error message.
 * @throws ShardlineError with code `ERR_INVALID_RECORD` naming `field`.
 */
export function parseExplicitHashKey(value: string, field = 'explicitHashKey'): bigint {
  if (typeof value !== 'string') {
    throw invalidRecord(field, `must be a decimal string from 0 to 2^128-1 (got ${describe(value)})`);
  }
  if (!EXPLICIT_HASH_KEY_PATTERN.test(value)) {
    throw invalidRecord(
      field,
      `must be a decimal string from 0 to 2^128-1 without sign, spaces or leading zeros (got ${describe(value)})`,
    );
  }
  const parsed = BigInt(value);
  if (parsed > MAX_HASH_KEY) {
    throw invalidRecord(field, `must be at most 2^128-1 = ${MAX_HASH_KEY} (got ${value})`);
  }
  return parsed;
}

/**
 * Checks a partition key and returns it: a string of 1 to 256 characters that is well-formed Unicode.
 *
 * Kinesis documents the limit as "256 Unicode characters" without saying how they are counted. This
 * counts UTF-16 code units (`key.length`), as the Java KPL does (`String.length()`): it is never less
 * than the number of code points, so every key accepted here is accepted whichever way the service counts.
 * The cost is that a key of more than 128 astral characters (emoji...) is refused even if the service
 * might take it. Lone surrogates are refused because they cannot be encoded as UTF-8: the key Kinesis
 * received (and hashed) would not be the one the caller gave.
 *
 * @param field - the name used in the error message.
 * @throws ShardlineError with code `ERR_INVALID_RECORD` naming `field`.
 */
export function validatePartitionKey(key: unknown, field = 'partitionKey'): string {
  if (typeof key !== 'string') {
    throw invalidRecord(field, `must be a string of 1 to 256 characters (got ${describe(key)})`);
  }
  if (key.length === 0) throw invalidRecord(field, 'must not be empty');
  if (key.length > MAX_PARTITION_KEY_LENGTH) {
    throw invalidRecord(
      field,
      `must be at most ${MAX_PARTITION_KEY_LENGTH} characters (UTF-16 code units), got ${key.length}`,
    );
  }
  if (!(key as string & { isWellFormed(): boolean }).isWellFormed()) {
    throw invalidRecord(field, 'must be well-formed Unicode (it contains a lone surrogate)');
  }
  return key;
}

/** A shard's hash-key range, as ListShards returns it (both ends inclusive, decimal strings). */
export interface ShardHashRange {
  shardId: string;
  startingHashKey: string;
  endingHashKey: string;
}

/**
 * Finds the shard a record goes to, among the shards given (normally the stream's open shards).
 * Ranges are sorted once; each lookup is a binary search.
 */
export class ShardRouter {
  readonly #starts: bigint[] = [];
  readonly #ends: bigint[] = [];
  readonly #ids: string[] = [];

  /**
   * @throws ShardlineOptionError (`shards`) when the list is empty, a shard id repeats, a range is
   * malformed or reversed, or two ranges overlap (open shards never overlap; passing closed parents
   * together with their children would).
   */
  constructor(shards: readonly ShardHashRange[]) {
    if (!Array.isArray(shards) || shards.length === 0) {
      throw new ShardlineOptionError(
        'shards',
        'must be a non-empty array of { shardId, startingHashKey, endingHashKey }',
      );
    }
    const parsed: Array<{ id: string; start: bigint; end: bigint }> = [];
    const seen = new Set<string>();
    shards.forEach((shard, i) => {
      const where = `shards[${i}]`;
      if (shard === null || typeof shard !== 'object') {
        throw new ShardlineOptionError(
          where,
          'must be an object { shardId, startingHashKey, endingHashKey }',
        );
      }
      if (typeof shard.shardId !== 'string' || shard.shardId.length === 0) {
        throw new ShardlineOptionError(`${where}.shardId`, 'must be a non-empty string');
      }
      if (seen.has(shard.shardId)) {
        throw new ShardlineOptionError(`${where}.shardId`, `repeats shard '${shard.shardId}'`);
      }
      seen.add(shard.shardId);
      const start = parseRangeKey(shard.startingHashKey, `${where}.startingHashKey`);
      const end = parseRangeKey(shard.endingHashKey, `${where}.endingHashKey`);
      if (start > end) {
        throw new ShardlineOptionError(where, `has startingHashKey ${start} > endingHashKey ${end}`);
      }
      parsed.push({ id: shard.shardId, start, end });
    });
    parsed.sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
    for (let i = 1; i < parsed.length; i++) {
      const prev = parsed[i - 1]!;
      const cur = parsed[i]!;
      if (cur.start <= prev.end) {
        throw new ShardlineOptionError(
          'shards',
          `must not overlap: ${prev.id} [${prev.start}..${prev.end}] and ${cur.id} [${cur.start}..${cur.end}] ` +
            '(pass only open shards)',
        );
      }
    }
    for (const r of parsed) {
      this.#starts.push(r.start);
      this.#ends.push(r.end);
      this.#ids.push(r.id);
    }
  }

  /** The shard ids, in hash-key order. */
  get shardIds(): string[] {
    return [...this.#ids];
  }

  /**
   * The shard a record with this partition key (and optional explicit hash key, which wins) goes to.
   *
   * @throws ShardlineError `ERR_INVALID_RECORD` for an invalid key; `ERR_NOT_FOUND` (retriable: refresh the
   * shard list and retry) when no given shard holds the hash key, e.g. during resharding.
   */
  shardFor(partitionKey: string, explicitHashKey?: string): string {
    validatePartitionKey(partitionKey);
    const hashKey =
      explicitHashKey === undefined
        ? partitionKeyToHashKey(partitionKey)
        : parseExplicitHashKey(explicitHashKey, 'explicitHashKey');
    return this.shardForHashKey(hashKey);
  }

  /**
   * The shard whose range holds `hashKey`.
   *
   * @throws ShardlineError `ERR_INVALID_RECORD` when `hashKey` is outside 0..2^128-1; `ERR_NOT_FOUND`
   * (retriable) when it falls in a gap between the given ranges.
   */
  shardForHashKey(hashKey: bigint): string {
    if (typeof hashKey !== 'bigint' || hashKey < 0n || hashKey > MAX_HASH_KEY) {
      throw invalidRecord('hashKey', `must be a bigint from 0 to 2^128-1 (got ${describe(hashKey)})`);
    }
    const starts = this.#starts;
    // Last range whose start <= hashKey.
    let lo = 0;
    let hi = starts.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (starts[mid]! <= hashKey) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    if (found === -1 || hashKey > this.#ends[found]!) {
      throw new ShardlineError(
        ErrorCodes.NOT_FOUND,
        `no shard holds hash key ${hashKey}: the shard list has a gap there (resharding in progress, or ` +
          'closed shards left out without their children); refresh the shard list and retry',
        { retriable: true, details: { hashKey: hashKey.toString() } },
      );
    }
    return this.#ids[found]!;
  }
}

// Lenient on leading zeros (unlike parseExplicitHashKey): ranges come from ListShards or an emulator,
// not from user input that Kinesis will validate.
function parseRangeKey(value: unknown, option: string): bigint {
  if (typeof value !== 'string' || !/^[0-9]{1,64}$/.test(value) || BigInt(value) > MAX_HASH_KEY) {
    throw new ShardlineOptionError(
      option,
      `must be a decimal string from 0 to 2^128-1 (got ${describe(value)})`,
    );
  }
  return BigInt(value);
}
