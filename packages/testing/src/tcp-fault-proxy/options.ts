/** Options of the TCP fault proxy: defaults and validation. */
import { type Logger, ShardlineOptionError, silentLogger } from '@shardline/common';

/** The TCP server behind the proxy. */
export interface TcpProxyTarget {
  host: string;
  port: number;
}

export interface TcpFaultProxyOptions {
  /**
   * The server to forward to: `{ host, port }`, or a URL such as `'redis://127.0.0.1:6379'`, whose host
   * and port are used (the port may be left out for redis:, rediss: (6379), http: (80) and https: (443))
   * and which {@link TcpFaultProxy.clientUrl} then rewrites by default.
   */
  target: TcpProxyTarget | string;
  /**
   * Address the proxy listens on.
   * @defaultValue '127.0.0.1'
   */
  host?: string;
  /**
   * Port the proxy listens on.
   * @defaultValue 0 (a free port)
   */
  port?: number;
  /**
   * How long a connection to the target may take before it counts as refused.
   * @defaultValue 5000
   */
  connectTimeoutMs?: number;
  /**
   * Bytes the proxy holds per connection and direction (blackholed or delayed) before it stops reading
   * from the sender, whose writes then back up in its own buffers as behind a full TCP window.
   * @defaultValue 4 MiB (4_194_304)
   */
  maxBufferedBytes?: number;
  /**
   * Where connection lifecycle lines go (debug) and listeners that throw (error).
   * @defaultValue silentLogger
   */
  logger?: Logger;
}

/** Defaults of {@link TcpFaultProxyOptions}. */
export const TCP_FAULT_PROXY_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 0,
  connectTimeoutMs: 5_000,
  maxBufferedBytes: 4 * 1024 * 1024,
});

/** {@link TcpFaultProxyOptions} after validation and defaults. */
export interface ResolvedTcpFaultProxyOptions {
  readonly target: Readonly<TcpProxyTarget>;
  /** The target as given when it was a URL. */
  readonly targetUrl: string | undefined;
  readonly host: string;
  readonly port: number;
  readonly connectTimeoutMs: number;
  readonly maxBufferedBytes: number;
  readonly logger: Logger;
}

export function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  if (value !== null && typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

function isPort(value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= 65_535;
}

/** Ports of URL schemes that may leave theirs out (`new URL()` drops 80 and 443 even when given). */
const DEFAULT_PORTS: Readonly<Record<string, number>> = {
  'redis:': 6379,
  'rediss:': 6379,
  'http:': 80,
  'https:': 443,
};

function resolveTarget(target: unknown): { target: TcpProxyTarget; targetUrl: string | undefined } {
  if (typeof target === 'string') {
    let url: URL | undefined;
    try {
      url = new URL(target);
    } catch {
      url = undefined;
    }
    const port =
      url === undefined ? undefined : url.port === '' ? DEFAULT_PORTS[url.protocol] : Number(url.port);
    if (url === undefined || url.hostname === '' || port === undefined) {
      throw new ShardlineOptionError(
        'target',
        `must be { host, port } or a URL with a host, and a port unless it is redis:, rediss:, http: or https: (got ${describe(target)})`,
      );
    }
    return {
      target: { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port },
      targetUrl: target,
    };
  }
  if (target === null || typeof target !== 'object') {
    throw new ShardlineOptionError('target', `must be { host, port } or a URL (got ${describe(target)})`);
  }
  const { host, port } = target as Partial<TcpProxyTarget>;
  if (typeof host !== 'string' || host === '') {
    throw new ShardlineOptionError('target.host', `must be a non-empty string (got ${describe(host)})`);
  }
  if (!isPort(port, 1)) {
    throw new ShardlineOptionError(
      'target.port',
      `must be an integer from 1 to 65535 (got ${describe(port)})`,
    );
  }
  return { target: { host, port }, targetUrl: undefined };
}

/** Validates options and fills defaults. @throws ShardlineOptionError naming the option. */
export function resolveTcpFaultProxyOptions(options: TcpFaultProxyOptions): ResolvedTcpFaultProxyOptions {
  if (options === null || typeof options !== 'object') {
    throw new ShardlineOptionError(
      'options',
      `must be an object with at least { target } (got ${describe(options)})`,
    );
  }
  const { target, targetUrl } = resolveTarget(options.target);
  const d = TCP_FAULT_PROXY_DEFAULTS;
  const host = options.host ?? d.host;
  if (typeof host !== 'string' || host === '') {
    throw new ShardlineOptionError('host', `must be a non-empty string (got ${describe(host)})`);
  }
  const port = options.port ?? d.port;
  if (!isPort(port, 0)) {
    throw new ShardlineOptionError('port', `must be an integer from 0 to 65535 (got ${describe(port)})`);
  }
  const connectTimeoutMs = options.connectTimeoutMs ?? d.connectTimeoutMs;
  if (typeof connectTimeoutMs !== 'number' || !Number.isInteger(connectTimeoutMs) || connectTimeoutMs < 1) {
    throw new ShardlineOptionError(
      'connectTimeoutMs',
      `must be a positive integer of milliseconds (got ${describe(connectTimeoutMs)})`,
    );
  }
  const maxBufferedBytes = options.maxBufferedBytes ?? d.maxBufferedBytes;
  if (
    typeof maxBufferedBytes !== 'number' ||
    !Number.isInteger(maxBufferedBytes) ||
    maxBufferedBytes < 1024
  ) {
    throw new ShardlineOptionError(
      'maxBufferedBytes',
      `must be an integer >= 1024 (got ${describe(maxBufferedBytes)})`,
    );
  }
  const logger = options.logger ?? silentLogger;
  if (logger === null || typeof logger !== 'object' || typeof logger.debug !== 'function') {
    throw new ShardlineOptionError('logger', 'must have debug, info, warn and error methods');
  }
  return Object.freeze({
    target: Object.freeze(target),
    targetUrl,
    host,
    port,
    connectTimeoutMs,
    maxBufferedBytes,
    logger,
  });
}
