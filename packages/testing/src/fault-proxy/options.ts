/** Options of the FaultProxy: defaults and validation. */
import { performance } from 'node:perf_hooks';
import { type Logger, ShardlineOptionError, silentLogger } from '@shardline/common';
import { type LimitsOptions, resolveLimits } from './limits.js';
import { DEFAULT_ACCOUNT_ID } from './wire.js';

export interface FaultProxyOptions {
  /** The upstream Kinesis endpoint, `http://` or `https://`. */
  target: string;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue 0 (any free port) */
  port?: number;
  /** Source of randomness for `probability` and partial-failure picks; pass a seeded one in tests. @defaultValue Math.random */
  random?: () => number;
  /** Monotonic clock in milliseconds for limits and events; a controllable one makes limit tests exact. @defaultValue performance.now */
  now?: () => number;
  /** Enforce the per-shard limits: `true` for the Kinesis values, or some of them overridden. @defaultValue false */
  limits?: boolean | LimitsOptions;
  /** How long a stream's shard map (fetched by ListShards) is trusted before it is fetched again. @defaultValue 5_000 */
  shardMapTtlMs?: number;
  /** Account id in error messages, unless the request names one (ARN, 12-digit access key id). @defaultValue '000000000000' */
  accountId?: string;
  /** Larger request bodies are refused with HTTP 413 (Kinesis accepts at most 10 MiB of records per PutRecords, 13.4 MiB as base64 JSON). @defaultValue 16 MiB */
  maxRequestBytes?: number;
  /** Where internal problems are reported. @defaultValue silentLogger */
  logger?: Logger;
}

/** Defaults of {@link FaultProxyOptions}. */
export const FAULT_PROXY_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 0,
  shardMapTtlMs: 5_000,
  accountId: DEFAULT_ACCOUNT_ID,
  maxRequestBytes: 16 * 1024 * 1024,
  // Longer than clients keep idle sockets, so a reused socket is not closed under a request in flight.
  keepAliveTimeoutMs: 65_000,
});

/** {@link FaultProxyOptions} after validation and defaults. */
export interface ResolvedFaultProxyOptions {
  target: URL;
  host: string;
  port: number;
  random: () => number;
  now: () => number;
  limits: boolean | LimitsOptions | undefined;
  shardMapTtlMs: number;
  accountId: string;
  maxRequestBytes: number;
  logger: Logger;
}

/** A value as error messages show it. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  if (value !== null && typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/** Validates options and fills defaults. @throws ShardlineOptionError naming the option. */
export function resolveFaultProxyOptions(options: FaultProxyOptions): Readonly<ResolvedFaultProxyOptions> {
  if (options === null || typeof options !== 'object') {
    throw new ShardlineOptionError(
      'options',
      `must be an object with at least { target } (got ${describe(options)})`,
    );
  }
  let target: URL;
  try {
    target = new URL(options.target);
  } catch {
    throw new ShardlineOptionError(
      'target',
      `must be an http:// or https:// URL (got ${describe(options.target)})`,
    );
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new ShardlineOptionError(
      'target',
      `must be an http:// or https:// URL (got ${describe(options.target)})`,
    );
  }
  const d = FAULT_PROXY_DEFAULTS;
  const host = options.host ?? d.host;
  if (typeof host !== 'string' || host.length === 0) {
    throw new ShardlineOptionError('host', `must be a non-empty string (got ${describe(host)})`);
  }
  const port = options.port ?? d.port;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ShardlineOptionError('port', `must be an integer from 0 to 65535 (got ${describe(port)})`);
  }
  for (const name of ['random', 'now'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw new ShardlineOptionError(name, `must be a function (got ${describe(options[name])})`);
    }
  }
  resolveLimits(options.limits);
  const shardMapTtlMs = options.shardMapTtlMs ?? d.shardMapTtlMs;
  if (typeof shardMapTtlMs !== 'number' || !Number.isFinite(shardMapTtlMs) || shardMapTtlMs < 0) {
    throw new ShardlineOptionError(
      'shardMapTtlMs',
      `must be a finite number >= 0 (got ${describe(shardMapTtlMs)})`,
    );
  }
  const accountId = options.accountId ?? d.accountId;
  if (typeof accountId !== 'string' || !/^[0-9]{12}$/.test(accountId)) {
    throw new ShardlineOptionError('accountId', `must be a string of 12 digits (got ${describe(accountId)})`);
  }
  const maxRequestBytes = options.maxRequestBytes ?? d.maxRequestBytes;
  if (!Number.isInteger(maxRequestBytes) || maxRequestBytes < 1024) {
    throw new ShardlineOptionError(
      'maxRequestBytes',
      `must be an integer >= 1024 (got ${describe(maxRequestBytes)})`,
    );
  }
  const logger = options.logger ?? silentLogger;
  if (logger === null || typeof logger !== 'object' || typeof logger.error !== 'function') {
    throw new ShardlineOptionError('logger', 'must have debug, info, warn and error methods');
  }
  return Object.freeze({
    target,
    host,
    port,
    random: options.random ?? Math.random,
    now: options.now ?? (() => performance.now()),
    limits: options.limits,
    shardMapTtlMs,
    accountId,
    maxRequestBytes,
    logger,
  });
}
