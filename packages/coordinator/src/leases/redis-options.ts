/**
 * Options of the Redis lease manager: defaults, validation, and how the connection is described in
 * messages without its credentials.
 */
import { type Logger, ShardlineOptionError, silentLogger } from '@shardline/common';
import type { Cluster, Redis, RedisOptions } from 'ioredis';

/** Where the leases live: a Redis URL, ioredis options, or a ready ioredis Redis / Cluster instance. */
export type RedisConnection = string | RedisOptions | Redis | Cluster;

export interface RedisLeaseManagerOptions {
  /**
   * `redis://[user:password@]host:port[/db]`, `rediss://...` for TLS, ioredis `RedisOptions`, or a
   * ready ioredis `Redis` / `Cluster` instance. An instance is used as it is (its own timeouts and
   * queueing) and is not closed by {@link RedisLeaseManager.close}; a URL or options get a client of
   * our own, tuned to fail fast (see redis.ts) and closed by close().
   */
  redis: RedisConnection;
  /**
   * Extra ioredis options for the client made from a URL (e.g. `tls: { ca }` for `rediss://`). They
   * override Shardline's connection defaults.
   * @defaultValue undefined
   */
  redisOptions?: RedisOptions;
  /** Consumer group: leases and checkpoints are namespaced by it. No `{` or `}` (the hash tag). */
  group: string;
  /** Stream name. No `{` or `}` (the hash tag). */
  stream: string;
  /** This host's id, unique among the hosts of the group. */
  hostId: string;
  /**
   * How long a lease lasts without renewal, on the Redis server clock.
   * @defaultValue 10000
   */
  leaseDurationMs?: number;
  /**
   * First part of every key: `<keyPrefix>:{<group>:<stream>}:...`. No `{` or `}`.
   * @defaultValue 'shardline'
   */
  keyPrefix?: string;
  /**
   * Longest a call waits, connecting included, before it fails with ERR_REDIS. Lease safety does not
   * depend on it (see RedisLeaseManager.renew); it only bounds how long a caller can hang.
   * @defaultValue 5000
   */
  commandTimeoutMs?: number;
  /**
   * Receives connection warnings (lost, restored). Credentials never appear in them.
   * @defaultValue a silent logger
   */
  logger?: Logger;
}

export const REDIS_LEASE_DEFAULTS = Object.freeze({
  keyPrefix: 'shardline',
  leaseDurationMs: 10_000,
  commandTimeoutMs: 5_000,
  /** Reconnect delays grow by this much per attempt... */
  reconnectStepMs: 100,
  /** ...up to this, so leases resume within a second of Redis coming back. */
  maxReconnectDelayMs: 1_000,
  /** ensureLeases sends at most this many shards per script call, so no call blocks Redis for long. */
  ensureBatchSize: 500,
});

const MIN_LEASE_DURATION_MS = 100;
const MAX_DURATION_MS = 86_400_000;
const MAX_NAME_LENGTH = 256;

export type ResolvedConnection =
  | { kind: 'url'; url: string; options: RedisOptions; description: string; secrets: string[] }
  | { kind: 'options'; options: RedisOptions; description: string; secrets: string[] }
  | { kind: 'instance'; client: Redis | Cluster; description: string; secrets: string[] };

export interface ResolvedRedisLeaseManagerOptions {
  readonly connection: ResolvedConnection;
  readonly group: string;
  readonly stream: string;
  readonly hostId: string;
  readonly leaseDurationMs: number;
  readonly keyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly logger: Logger;
}

/**
 * The URL without password or query string (which may carry `password=`), e.g.
 * `redis://user:***@host:6379/2`. Never throws; an unparsable URL becomes `<invalid Redis URL>`.
 */
export function redactRedisUrl(url: string): string {
  try {
    const parsed = new URL(url);
    // ioredis reads a lone `user@` as a password: mask it too.
    const auth = parsed.password !== '' ? `${parsed.username}:***@` : parsed.username !== '' ? '***@' : '';
    return `${parsed.protocol}//${auth}${parsed.host}${parsed.pathname === '/' ? '' : parsed.pathname}`;
  } catch {
    return '<invalid Redis URL>';
  }
}

/** Secrets a URL carries (ioredis reads a bare `user@` as a password too), to scrub from messages. */
function urlSecrets(url: string): string[] {
  try {
    const parsed = new URL(url);
    const secrets = [parsed.password, parsed.username];
    for (const [name, value] of parsed.searchParams) {
      if (/pass|auth|secret|token/i.test(name)) secrets.push(value);
    }
    return secrets
      .flatMap((s) => {
        try {
          return [s, decodeURIComponent(s)];
        } catch {
          return [s];
        }
      })
      .filter((s) => s.length >= 3);
  } catch {
    return [];
  }
}

function isInstance(value: unknown): value is Redis | Cluster {
  const v = value as { defineCommand?: unknown; quit?: unknown; disconnect?: unknown } | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.defineCommand === 'function' &&
    typeof v.quit === 'function' &&
    typeof v.disconnect === 'function'
  );
}

function describeOptions(options: RedisOptions): string {
  if (typeof options.path === 'string') return `redis+unix://${options.path}`;
  const protocol = options.tls === undefined ? 'redis' : 'rediss';
  return `${protocol}://${options.host ?? '127.0.0.1'}:${options.port ?? 6379}`;
}

function resolveConnection(redis: unknown, redisOptions: unknown): ResolvedConnection {
  if (redisOptions !== undefined && (typeof redisOptions !== 'object' || redisOptions === null)) {
    throw new ShardlineOptionError('redisOptions', 'must be an object of ioredis options');
  }
  if (typeof redis === 'string') {
    let protocol: string | undefined;
    try {
      protocol = new URL(redis).protocol;
    } catch {
      protocol = undefined;
    }
    if (protocol !== 'redis:' && protocol !== 'rediss:') {
      throw new ShardlineOptionError(
        'redis',
        `must be a redis:// or rediss:// URL, ioredis options, or an ioredis Redis/Cluster instance (got ${redactRedisUrl(redis)})`,
      );
    }
    return {
      kind: 'url',
      url: redis,
      options: { ...(redisOptions as RedisOptions | undefined) },
      description: redactRedisUrl(redis),
      secrets: [...urlSecrets(redis), (redisOptions as RedisOptions | undefined)?.password ?? ''].filter(
        (s) => s.length >= 3,
      ),
    };
  }
  if (isInstance(redis)) {
    const options = (redis as { options?: RedisOptions }).options ?? {};
    const isCluster = typeof (redis as { nodes?: unknown }).nodes === 'function';
    return {
      kind: 'instance',
      client: redis,
      description: isCluster
        ? 'a Redis Cluster instance'
        : `an ioredis instance (${describeOptions(options)})`,
      secrets: [options.password ?? ''].filter((s) => s.length >= 3),
    };
  }
  if (typeof redis === 'object' && redis !== null && !Array.isArray(redis)) {
    const options = { ...(redis as RedisOptions), ...(redisOptions as RedisOptions | undefined) };
    return {
      kind: 'options',
      options,
      description: describeOptions(options),
      secrets: [options.password ?? ''].filter((s) => s.length >= 3),
    };
  }
  throw new ShardlineOptionError(
    'redis',
    `must be a redis:// or rediss:// URL, ioredis options, or an ioredis Redis/Cluster instance (got ${redis === null ? 'null' : typeof redis})`,
  );
}

function name(option: string, value: unknown, allowBraces: boolean): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_NAME_LENGTH) {
    throw new ShardlineOptionError(
      option,
      `must be a non-empty string of at most ${MAX_NAME_LENGTH} characters (got ${JSON.stringify(value)})`,
    );
  }
  if (!allowBraces && /[{}]/.test(value)) {
    throw new ShardlineOptionError(
      option,
      `must not contain '{' or '}': they would change the Redis Cluster hash tag (got ${JSON.stringify(value)})`,
    );
  }
  return value;
}

function milliseconds(option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > MAX_DURATION_MS) {
    throw new ShardlineOptionError(
      option,
      `must be an integer from ${min} to ${MAX_DURATION_MS} (got ${String(value)})`,
    );
  }
  return value;
}

/** Validates the options, applies {@link REDIS_LEASE_DEFAULTS}, and freezes the result. */
export function resolveRedisLeaseManagerOptions(
  options: RedisLeaseManagerOptions,
): ResolvedRedisLeaseManagerOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ShardlineOptionError('options', 'must be an object with redis, group, stream and hostId');
  }
  const logger = options.logger ?? silentLogger;
  if (typeof logger !== 'object' || logger === null || typeof logger.warn !== 'function') {
    throw new ShardlineOptionError('logger', 'must be a logger with debug, info, warn and error methods');
  }
  return Object.freeze({
    connection: resolveConnection(options.redis, options.redisOptions),
    group: name('group', options.group, false),
    stream: name('stream', options.stream, false),
    hostId: name('hostId', options.hostId, true),
    keyPrefix: name('keyPrefix', options.keyPrefix ?? REDIS_LEASE_DEFAULTS.keyPrefix, false),
    leaseDurationMs: milliseconds(
      'leaseDurationMs',
      options.leaseDurationMs ?? REDIS_LEASE_DEFAULTS.leaseDurationMs,
      MIN_LEASE_DURATION_MS,
    ),
    commandTimeoutMs: milliseconds(
      'commandTimeoutMs',
      options.commandTimeoutMs ?? REDIS_LEASE_DEFAULTS.commandTimeoutMs,
      1,
    ),
    logger,
  });
}
