/**
 * The generic checks every coordinator option is built from. Each takes the option's full dotted name
 * (`fanOut.subscriptionRenewMs`) and throws a ShardlineOptionError that starts with it and says what to
 * change, so one wording serves every option.
 */

import { ShardlineOptionError } from '@shardline/common';
import type { RedisConnection } from '../leases/redis-options.js';
import { LIMITS } from './defaults.js';

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const CONTROL = /[\u0000-\u001f\u007f]/;

/** A short description of a bad value for a message: strings quoted and cut, objects never dumped. */
export function show(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'function') return 'a function';
  return String(value);
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** Unknown keys are typos far more often than not: a default would silently apply instead. */
export function rejectUnknownKeys(
  object: Record<string, unknown>,
  known: readonly string[],
  prefix: string,
): void {
  for (const key of Object.keys(object)) {
    if (known.includes(key)) continue;
    const lower = key.toLowerCase();
    const guess = known.find(
      (k) =>
        k.toLowerCase().startsWith(lower) ||
        lower.startsWith(k.toLowerCase()) ||
        editDistance(k, key) <= (key.length >= 5 ? 3 : 2),
    );
    throw new ShardlineOptionError(
      `${prefix}${key}`,
      `is not an option${guess === undefined ? '' : ` (did you mean '${prefix}${guess}'?)`}; known: ${known.join(', ')}`,
    );
  }
}

/** A nested options object; omitted is `{}`, so its defaults apply. */
export function objectOption(value: unknown, option: string, example: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (!isObject(value))
    throw new ShardlineOptionError(option, `must be an object like ${example} (got ${show(value)})`);
  return value;
}

/** A name that ends up in keys, logs and metrics labels: bounded, and without control characters. */
export function identifier(value: unknown, option: string, what: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(option, `must be a non-empty string: ${what} (got ${show(value)})`);
  }
  if (value.length > LIMITS.maxIdLength) {
    throw new ShardlineOptionError(
      option,
      `must be at most ${LIMITS.maxIdLength} characters (got ${value.length})`,
    );
  }
  if (CONTROL.test(value)) throw new ShardlineOptionError(option, 'must not contain control characters');
  return value;
}

/** Redis Cluster hash tags are delimited by braces: one inside a key part would move the tag. */
export function noBraces(value: string, option: string): string {
  if (value.includes('{') || value.includes('}')) {
    throw new ShardlineOptionError(
      option,
      `must not contain '{' or '}' (they delimit Redis Cluster hash tags)`,
    );
  }
  return value;
}

/** A string the service accepts only in one shape; `what` names the shape and its rule. */
export function matching(value: unknown, option: string, pattern: RegExp, what: string): string {
  if (typeof value !== 'string' || !pattern.test(value)) {
    throw new ShardlineOptionError(option, `must be ${what} (got ${show(value)})`);
  }
  return value;
}

/** The range of a number option. */
export interface NumberBounds {
  /** Inclusive. */
  min: number;
  /** Inclusive. */
  max?: number;
  /** Exclusive: the value must stay under it. */
  below?: number;
  /** `integer()` only: `Infinity` is accepted (as "no limit"). */
  infinity?: boolean;
  /** Why the bounds are what they are, told with a value out of them. */
  why?: string;
}

function checkBounds(v: number, option: string, bounds: NumberBounds): number {
  const got = bounds.why === undefined ? `got ${v}` : `${bounds.why}; got ${v}`;
  if (v < bounds.min) throw new ShardlineOptionError(option, `must be >= ${bounds.min} (${got})`);
  if (bounds.max !== undefined && v > bounds.max) {
    throw new ShardlineOptionError(option, `must be <= ${bounds.max} (${got})`);
  }
  if (bounds.below !== undefined && v >= bounds.below) {
    throw new ShardlineOptionError(option, `must be < ${bounds.below} (${got})`);
  }
  return v;
}

/** A count; `fallback` when omitted. */
export function integer(value: unknown, option: string, fallback: number, bounds: NumberBounds): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || Number.isNaN(v)) {
    throw new ShardlineOptionError(option, `must be a number (got ${show(v)})`);
  }
  if (v === Number.POSITIVE_INFINITY && bounds.infinity === true) return v;
  if (!Number.isInteger(v)) {
    throw new ShardlineOptionError(
      option,
      `must be an integer${bounds.infinity === true ? ' or Infinity' : ''} (got ${v})`,
    );
  }
  return checkBounds(v, option, bounds);
}

/** A duration: finite (a timer cannot wait forever), fractions allowed; `fallback` when omitted. */
export function milliseconds(value: unknown, option: string, fallback: number, bounds: NumberBounds): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ShardlineOptionError(option, `must be a finite number of milliseconds (got ${show(v)})`);
  }
  return checkBounds(v, option, bounds);
}

export function redisConnection(value: unknown, option: string): RedisConnection {
  // Objects are ioredis options or instances: the lease manager and BullMQ judge them.
  if (typeof value === 'string') {
    let protocol: string;
    try {
      protocol = new URL(value).protocol;
    } catch {
      // Never echo the value: a Redis URL may carry a password.
      throw new ShardlineOptionError(
        option,
        'must be a valid redis:// or rediss:// URL (it does not parse as a URL)',
      );
    }
    if (protocol !== 'redis:' && protocol !== 'rediss:') {
      throw new ShardlineOptionError(
        option,
        `must be a redis:// or rediss:// URL, ioredis options or an ioredis instance (got a ${protocol} URL)`,
      );
    }
    return value;
  }
  if (isObject(value)) return value as RedisConnection;
  throw new ShardlineOptionError(
    option,
    `must be a redis:// or rediss:// URL, ioredis options or an ioredis Redis/Cluster instance (got ${show(value)})`,
  );
}
