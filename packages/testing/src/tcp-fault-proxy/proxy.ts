/**
 * A TCP proxy that a test runs in its own process and controls, between a client (a child process's
 * ioredis connection, say) and a TCP server (Redis): it partitions, delays or resets chosen connections
 * while everything else keeps reaching the server directly.
 *
 * ```ts
 * const proxy = await startTcpFaultProxy({ target: { host: '127.0.0.1', port: 6379 } });
 * const host = spawnHost({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` }); // only this host goes through it
 * proxy.blackhole();    // partition: nothing passes, nothing is closed
 * // ... the other hosts take the partitioned host's leases ...
 * proxy.heal();         // held bytes are delivered, in order
 * await proxy.stop();
 * ```
 *
 * It knows nothing of the protocol it carries: it moves bytes, holds them, delays them, or resets the
 * connection. How each fault behaves is described on {@link TcpFaultProxy}.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { ShardlineOptionError, TypedEvents } from '@shardline/common';
import { ProxiedConnection, type TcpCloseReason } from './connection.js';
import {
  describe,
  type ResolvedTcpFaultProxyOptions,
  resolveTcpFaultProxyOptions,
  type TcpFaultProxyOptions,
  type TcpProxyTarget,
} from './options.js';

/**
 * One connection through the proxy, as a snapshot.
 *
 * `state`: `connecting` (the connection to the target is being opened), `open` (bytes flow),
 * `blackholed` (nothing flows; `targetOpen` is false while a connection accepted during the blackhole
 * waits for its heal to connect), `closed` (in `close` events only). A side that closed while the
 * connection is blackholed shows `clientOpen` or `targetOpen` false while its FIN or RST is held.
 */
export interface TcpProxyConnection {
  /** 1, 2, ... in the order connections were accepted. */
  readonly id: number;
  readonly state: 'connecting' | 'open' | 'blackholed' | 'closed';
  /** The client's address and port, as the proxy sees them (the port is the client socket's `localPort`). */
  readonly clientAddress: string;
  readonly clientPort: number;
  /** The client's socket is open. */
  readonly clientOpen: boolean;
  /** The socket to the target is connected and open. */
  readonly targetOpen: boolean;
  /** Added latency per chunk, each direction. */
  readonly delayMs: number;
  /** Bytes written to the target. */
  readonly bytesUp: number;
  /** Bytes written to the client. */
  readonly bytesDown: number;
  /** Bytes read from the client and not yet written to the target (held by a blackhole or a delay). */
  readonly heldUp: number;
  /** Bytes read from the target and not yet written to the client. */
  readonly heldDown: number;
  /** When it was accepted (`Date.now()`). */
  readonly openedAt: number;
}

/** A connection that ended, with why: as {@link TcpFaultProxyEvents.close} reports it. */
export interface TcpProxyClosedConnection extends TcpProxyConnection {
  /**
   * `client` / `target`: that side closed (or reset) first; `reset`: {@link TcpFaultProxy.reset};
   * `refused`: the target refused the connection or did not accept it in `connectTimeoutMs`; `stop`.
   */
  readonly reason: TcpCloseReason;
}

/**
 * Which connections a call applies to: an id, several ids, or a predicate over the snapshots. A filter
 * selects live connections only; calls without one also set what later connections start with.
 */
export type TcpConnectionFilter = number | readonly number[] | ((connection: TcpProxyConnection) => boolean);

/** Counts since the proxy started. */
export interface TcpFaultProxyCounters {
  /** Client connections accepted. */
  accepted: number;
  /** Connections the target refused (or did not accept within `connectTimeoutMs`); their client was reset. */
  refused: number;
  /** Connections reset by {@link TcpFaultProxy.reset}. */
  resets: number;
  /** Connections that ended, for any reason. */
  closed: number;
  /** Bytes written to the target, all connections. */
  bytesUp: number;
  /** Bytes written to clients, all connections. */
  bytesDown: number;
}

/** Events of a {@link TcpFaultProxy}. */
export interface TcpFaultProxyEvents {
  /** A client connected to the proxy (before the connection to the target is open). */
  connection: TcpProxyConnection;
  /** Both sides of a connection are closed. */
  close: TcpProxyClosedConnection;
}

/**
 * A running TCP fault proxy (see {@link startTcpFaultProxy}). Faults apply at once, to bytes in the proxy
 * as well as to those that come later; bytes already handed to the operating system are delivered.
 */
export interface TcpFaultProxy {
  /** The address clients connect to. */
  readonly host: string;
  readonly port: number;
  /** The target the proxy forwards to. */
  readonly target: Readonly<TcpProxyTarget>;
  /** The live connections, oldest first (snapshots). */
  readonly connections: readonly TcpProxyConnection[];
  /** A snapshot of the counters. */
  readonly counters: TcpFaultProxyCounters;
  /**
   * `url` with its host and port replaced by the proxy's: `clientUrl('redis://:pw@127.0.0.1:6379/2')` is
   * `'redis://:pw@127.0.0.1:PROXY_PORT/2'`.
   * @param url - @defaultValue the target, when it was given as a URL
   * @throws ShardlineOptionError when `url` is not a URL (or is omitted and the target was not a URL).
   */
  clientUrl(url?: string): string;
  /**
   * Partitions the matching connections: nothing is forwarded either way, and nothing is closed. Bytes
   * are held, not dropped (a partitioned TCP stream retransmits; a missing byte would desync a
   * request/reply protocol), FINs and RSTs too. Without a filter, every connection and every later one:
   * new connections are accepted but not connected to the target until healed. Returns how many live
   * connections matched.
   */
  blackhole(filter?: TcpConnectionFilter): number;
  /**
   * Ends the blackhole of the matching connections: held bytes go first, in order; held new connections
   * connect to the target. Without a filter, every connection, and later ones are no longer blackholed.
   * Returns how many live connections matched.
   */
  heal(filter?: TcpConnectionFilter): number;
  /**
   * Adds `ms` of latency to every chunk, each direction, keeping the order (`0` clears it). Bytes already
   * waiting keep the time they were given. Without a filter, later connections get it too. Returns how
   * many live connections matched.
   * @throws ShardlineOptionError when `ms` is not a finite number >= 0.
   */
  delay(ms: number, filter?: TcpConnectionFilter): number;
  /**
   * Resets the matching connections at once, both sides (RST: the client sees ECONNRESET), dropping
   * what is held. Without a filter, every live connection; later ones are not affected. Returns how many.
   */
  reset(filter?: TcpConnectionFilter): number;
  /**
   * Subscribes to proxy events; returns the unsubscribe function. A listener that throws is logged.
   */
  on<E extends keyof TcpFaultProxyEvents>(
    event: E,
    listener: (payload: TcpFaultProxyEvents[E]) => void,
  ): () => void;
  /** Closes the listener and every connection; resolves when all their sockets are closed. Idempotent. */
  stop(): Promise<void>;
}

function compileFilter(filter: TcpConnectionFilter | undefined): (c: TcpProxyConnection) => boolean {
  if (filter === undefined) return () => true;
  if (typeof filter === 'function') return filter;
  const ids = typeof filter === 'number' ? [filter] : filter;
  if (!Array.isArray(ids) || !ids.every((id) => Number.isInteger(id) && id >= 1)) {
    throw new ShardlineOptionError(
      'filter',
      `must be a connection id, an array of ids or a predicate (got ${describe(filter)})`,
    );
  }
  const wanted = new Set(ids);
  return (c) => wanted.has(c.id);
}

function snapshot(c: ProxiedConnection): TcpProxyConnection {
  return Object.freeze({
    id: c.id,
    state: c.state,
    clientAddress: c.clientAddress,
    clientPort: c.clientPort,
    clientOpen: !c.client.destroyed,
    targetOpen: c.upstreamConnected && c.upstream !== undefined && !c.upstream.destroyed,
    delayMs: c.delayMs,
    bytesUp: c.up.forwardedBytes,
    bytesDown: c.down.forwardedBytes,
    heldUp: c.up.queuedBytes,
    heldDown: c.down.queuedBytes,
    openedAt: c.openedAt,
  });
}

class RunningTcpFaultProxy implements TcpFaultProxy {
  readonly host: string;
  readonly port: number;
  readonly target: Readonly<TcpProxyTarget>;
  readonly #options: ResolvedTcpFaultProxyOptions;
  readonly #server: Server;
  readonly #connections = new Map<number, ProxiedConnection>();
  readonly #events: TypedEvents<TcpFaultProxyEvents>;
  readonly #counters: TcpFaultProxyCounters = {
    accepted: 0,
    refused: 0,
    resets: 0,
    closed: 0,
    bytesUp: 0,
    bytesDown: 0,
  };
  /** What connections start with; set by the calls without a filter. */
  readonly #defaults = { blackholed: false, delayMs: 0 };
  #nextId = 1;
  #stopping: Promise<void> | undefined;

  constructor(options: ResolvedTcpFaultProxyOptions, server: Server, host: string, port: number) {
    this.#options = options;
    this.#server = server;
    this.host = host;
    this.port = port;
    this.target = options.target;
    this.#events = new TypedEvents<TcpFaultProxyEvents>(['connection', 'close'], {
      logger: options.logger,
      label: 'tcp fault proxy',
    });
    server.on('connection', (socket: Socket) => this.#accept(socket));
    server.on('error', (error) => options.logger.error({ err: error }, 'tcp fault proxy: server error'));
  }

  get connections(): readonly TcpProxyConnection[] {
    return [...this.#connections.values()].map(snapshot);
  }

  get counters(): TcpFaultProxyCounters {
    return { ...this.#counters };
  }

  clientUrl(url: string | undefined = this.#options.targetUrl): string {
    if (url === undefined) {
      throw new ShardlineOptionError('url', 'is required when the target was not given as a URL');
    }
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new ShardlineOptionError('url', `must be a URL (got ${describe(url)})`);
    }
    parsed.hostname = this.host.includes(':') ? `[${this.host}]` : this.host;
    parsed.port = String(this.port);
    return parsed.toString();
  }

  blackhole(filter?: TcpConnectionFilter): number {
    return this.#apply(
      filter,
      (c) => {
        c.blackholed = true;
      },
      () => {
        this.#defaults.blackholed = true;
      },
    );
  }

  heal(filter?: TcpConnectionFilter): number {
    return this.#apply(
      filter,
      (c) => {
        c.blackholed = false;
        c.connectUpstream();
        c.pump();
      },
      () => {
        this.#defaults.blackholed = false;
      },
    );
  }

  delay(ms: number, filter?: TcpConnectionFilter): number {
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) {
      throw new ShardlineOptionError('ms', `must be a finite number >= 0 (got ${describe(ms)})`);
    }
    return this.#apply(
      filter,
      (c) => {
        c.delayMs = ms;
      },
      () => {
        this.#defaults.delayMs = ms;
      },
    );
  }

  reset(filter?: TcpConnectionFilter): number {
    return this.#apply(filter, (c) => {
      this.#counters.resets++;
      c.reset('reset');
    });
  }

  on<E extends keyof TcpFaultProxyEvents>(
    event: E,
    listener: (payload: TcpFaultProxyEvents[E]) => void,
  ): () => void {
    return this.#events.on(event, listener);
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await Promise.all([...this.#connections.values()].map((c) => c.destroy('stop')));
    await closed;
  }

  /** Applies `change` to the matching live connections; `byDefault` too when there is no filter. */
  #apply(
    filter: TcpConnectionFilter | undefined,
    change: (c: ProxiedConnection) => void,
    byDefault?: () => void,
  ): number {
    const matches = compileFilter(filter);
    if (this.#stopping !== undefined) return 0;
    if (filter === undefined) byDefault?.();
    let count = 0;
    for (const connection of [...this.#connections.values()]) {
      if (!matches(snapshot(connection))) continue;
      count++;
      change(connection);
    }
    return count;
  }

  #accept(socket: Socket): void {
    if (this.#stopping !== undefined) {
      socket.on('error', () => {});
      socket.destroy();
      return;
    }
    this.#counters.accepted++;
    const logger = this.#options.logger;
    const connection = new ProxiedConnection(
      this.#nextId++,
      socket,
      this.#options,
      {
        closed: (c) => {
          this.#connections.delete(c.id);
          this.#counters.closed++;
          const reason = c.reason;
          logger.debug({ connection: c.id, reason }, 'tcp fault proxy: connection closed');
          this.#events.emit('close', { ...snapshot(c), reason });
        },
        refused: (c, error) => {
          this.#counters.refused++;
          logger.debug({ connection: c.id, err: error }, 'tcp fault proxy: the target refused a connection');
        },
        forwarded: (direction, bytes) => {
          if (direction === 'up') this.#counters.bytesUp += bytes;
          else this.#counters.bytesDown += bytes;
        },
      },
      this.#defaults,
    );
    this.#connections.set(connection.id, connection);
    logger.debug(
      { connection: connection.id, client: `${connection.clientAddress}:${connection.clientPort}` },
      'tcp fault proxy: connection accepted',
    );
    this.#events.emit('connection', snapshot(connection));
  }
}

/**
 * Starts a TCP fault proxy listening on `host:port` (default 127.0.0.1, a free port) in front of
 * `target`, forwarding every connection until told otherwise.
 * @throws ShardlineOptionError for invalid options; the listen error (EADDRINUSE) when the port is taken.
 */
export async function startTcpFaultProxy(options: TcpFaultProxyOptions): Promise<TcpFaultProxy> {
  const resolved = resolveTcpFaultProxyOptions(options);
  // Half-open connections stay open: a client's FIN goes on to the target (queued like its bytes) while
  // the target may still answer.
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(resolved.port, resolved.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') {
    server.close();
    throw new Error('tcp fault proxy: the server has no TCP address');
  }
  return new RunningTcpFaultProxy(resolved, server, address.address, address.port);
}
