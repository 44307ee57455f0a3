/**
 * One connection of the TCP fault proxy: the client's socket, the socket to the target, and a queue per
 * direction through which every byte passes.
 *
 * Bytes are queued, never dropped, while a connection is blackholed or delayed: a partitioned TCP stream
 * retransmits what it could not deliver, and a request/reply protocol (Redis) desyncs if a byte goes
 * missing. A queue holds at most `maxBufferedBytes`; beyond that the proxy stops reading the sender, so its
 * writes back up in its own buffers as they would behind a full TCP window. FIN and RST are queued
 * behind the data too: a partition does not let a close through either.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';

/** Where a {@link ProxiedConnection} reports to its proxy. */
export interface ConnectionHooks {
  /** Called once, when both sockets are gone. */
  closed(connection: ProxiedConnection): void;
  /** The target refused the connection (or did not accept it within the connect timeout). */
  refused(connection: ProxiedConnection, error: unknown): void;
  /** Bytes just written to the target (`up`) or to the client (`down`). */
  forwarded(direction: 'up' | 'down', bytes: number): void;
}

export interface ConnectionSettings {
  readonly target: { readonly host: string; readonly port: number };
  readonly connectTimeoutMs: number;
  readonly maxBufferedBytes: number;
}

/**
 * Why a connection ended: `client` / `target` when that side closed (FIN or RST) first, else what the
 * proxy did.
 */
export type TcpCloseReason = 'client' | 'target' | 'reset' | 'refused' | 'stop';

type Item =
  | { readonly kind: 'data'; readonly chunk: Buffer; readonly due: number }
  | { readonly kind: 'end' | 'reset'; readonly due: number };

/** Sends an RST where the socket allows it; a socket that is connecting or not TCP is just destroyed. */
export function resetSocket(socket: Socket | undefined): void {
  if (socket === undefined || socket.destroyed) return;
  if (socket.connecting) {
    socket.destroy();
    return;
  }
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/** One direction: reads `source`, writes `destination` once the connection lets it. */
class Pipe {
  readonly #connection: ProxiedConnection;
  readonly #maxBufferedBytes: number;
  readonly #onForward: (bytes: number) => void;
  readonly #queue: Item[] = [];
  #source: Socket | undefined;
  #destination: Socket | undefined;
  #lastDue = 0;
  #timer: NodeJS.Timeout | undefined;
  #waitingForDrain = false;
  #sourcePaused = false;
  #endQueued = false;
  #resetQueued = false;
  /** Bytes read and not yet written on. */
  queuedBytes = 0;
  forwardedBytes = 0;

  constructor(connection: ProxiedConnection, maxBufferedBytes: number, onForward: (bytes: number) => void) {
    this.#connection = connection;
    this.#maxBufferedBytes = maxBufferedBytes;
    this.#onForward = onForward;
  }

  attachSource(source: Socket, onEnd: () => void): void {
    this.#source = source;
    source.on('data', (chunk: Buffer) => this.#push({ kind: 'data', chunk, due: this.#due() }));
    source.on('end', () => {
      onEnd();
      this.close('end');
    });
  }

  attachDestination(destination: Socket): void {
    this.#destination = destination;
    destination.on('drain', () => {
      this.#waitingForDrain = false;
      this.pump();
    });
  }

  /** The source's FIN or RST is queued or passed on: nothing more comes from it. */
  get sourceDone(): boolean {
    return this.#endQueued || this.#resetQueued;
  }

  /** Queues the source's end: `end` after a FIN, `reset` after an abrupt close (even after a FIN). */
  close(kind: 'end' | 'reset'): void {
    if (this.#resetQueued || (kind === 'end' && this.#endQueued)) return;
    if (kind === 'end') this.#endQueued = true;
    else this.#resetQueued = true;
    this.#push({ kind, due: this.#due() });
  }

  /** Forgets everything queued (the connection is being torn down). */
  discard(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
    this.queuedBytes = 0;
  }

  /** Writes what is due, unless blackholed, not yet connected or waiting for the destination to drain. */
  pump(): void {
    const destination = this.#destination;
    while (this.#queue.length > 0 && this.#timer === undefined) {
      if (destination === undefined || this.#connection.blackholed || !this.#connection.upstreamConnected)
        break;
      if (this.#waitingForDrain && !destination.destroyed) break;
      const head = this.#queue[0]!;
      const wait = head.due - performance.now();
      if (wait > 0) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.pump();
        }, Math.ceil(wait));
        break;
      }
      this.#queue.shift();
      if (head.kind === 'data') this.queuedBytes -= head.chunk.length;
      // A destination already gone takes nothing: its connection is closing, and what it missed is lost
      // as it would be on a broken TCP connection.
      if (destination.destroyed) continue;
      if (head.kind === 'data') {
        this.forwardedBytes += head.chunk.length;
        this.#onForward(head.chunk.length);
        if (!destination.write(head.chunk)) this.#waitingForDrain = true;
      } else if (head.kind === 'end') {
        destination.end();
      } else {
        resetSocket(destination);
      }
    }
    this.#resumeSourceIfRoom();
  }

  #due(): number {
    // Never before an earlier chunk: a delay that shrinks must not reorder the stream.
    this.#lastDue = Math.max(this.#lastDue, performance.now() + this.#connection.delayMs);
    return this.#lastDue;
  }

  #push(item: Item): void {
    this.#queue.push(item);
    if (item.kind === 'data') {
      this.queuedBytes += item.chunk.length;
      if (this.queuedBytes >= this.#maxBufferedBytes && !this.#sourcePaused) {
        this.#sourcePaused = true;
        this.#source?.pause();
      }
    }
    this.pump();
  }

  #resumeSourceIfRoom(): void {
    if (!this.#sourcePaused || this.queuedBytes >= this.#maxBufferedBytes / 2) return;
    this.#sourcePaused = false;
    this.#source?.resume();
  }
}

/** A client connection and its connection to the target. */
export class ProxiedConnection {
  readonly id: number;
  readonly client: Socket;
  readonly openedAt = Date.now();
  readonly clientAddress: string;
  readonly clientPort: number;
  upstream: Socket | undefined;
  upstreamConnected = false;
  blackholed: boolean;
  delayMs: number;
  /** Set when the proxy ends the connection itself. */
  closeReason: 'reset' | 'refused' | 'stop' | undefined;
  /** The side that closed first. */
  #endedBy: 'client' | 'target' | undefined;
  readonly up: Pipe;
  readonly down: Pipe;
  readonly #settings: ConnectionSettings;
  readonly #hooks: ConnectionHooks;
  #finished = false;

  constructor(
    id: number,
    client: Socket,
    settings: ConnectionSettings,
    hooks: ConnectionHooks,
    initial: { blackholed: boolean; delayMs: number },
  ) {
    this.id = id;
    this.client = client;
    this.clientAddress = client.remoteAddress ?? '';
    this.clientPort = client.remotePort ?? 0;
    this.#settings = settings;
    this.#hooks = hooks;
    this.blackholed = initial.blackholed;
    this.delayMs = initial.delayMs;
    this.up = new Pipe(this, settings.maxBufferedBytes, (n) => hooks.forwarded('up', n));
    this.down = new Pipe(this, settings.maxBufferedBytes, (n) => hooks.forwarded('down', n));
    this.down.attachDestination(client);
    this.up.attachSource(client, () => {
      this.#endedBy ??= 'client';
    });
    client.setNoDelay(true);
    // Every socket error becomes a close handled below, never an uncaught 'error' in the test process.
    client.on('error', () => {});
    client.on('close', (hadError) => this.#clientClosed(hadError));
    if (!this.blackholed) this.connectUpstream();
  }

  get reason(): TcpCloseReason {
    return this.closeReason ?? this.#endedBy ?? 'client';
  }

  get state(): 'connecting' | 'open' | 'blackholed' | 'closed' {
    if (this.#finished) return 'closed';
    if (this.blackholed) return 'blackholed';
    return this.upstreamConnected ? 'open' : 'connecting';
  }

  /** Opens the connection to the target, once; a blackholed new connection waits for its heal. */
  connectUpstream(): void {
    if (this.upstream !== undefined || this.client.destroyed || this.closeReason !== undefined) return;
    const { host, port } = this.#settings.target;
    const upstream = connect({ host, port, allowHalfOpen: true });
    this.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.setTimeout(this.#settings.connectTimeoutMs, () => {
      if (!this.upstreamConnected) {
        upstream.destroy(
          new Error(`no connection to ${host}:${port} within ${this.#settings.connectTimeoutMs} ms`),
        );
      }
    });
    upstream.on('error', (error) => {
      if (!this.upstreamConnected && this.closeReason === undefined) {
        this.closeReason = 'refused';
        this.#hooks.refused(this, error);
      }
    });
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      this.upstreamConnected = true;
      this.pump();
    });
    upstream.on('close', (hadError) => this.#upstreamClosed(hadError));
    this.up.attachDestination(upstream);
    this.down.attachSource(upstream, () => {
      this.#endedBy ??= 'target';
    });
  }

  pump(): void {
    this.up.pump();
    this.down.pump();
  }

  /** RSTs both sides now, dropping what is queued. */
  reset(reason: 'reset'): void {
    this.closeReason ??= reason;
    this.up.discard();
    this.down.discard();
    resetSocket(this.client);
    resetSocket(this.upstream);
    this.#finishIfGone();
  }

  /** Closes both sides now (stop), dropping what is queued. Resolves when both sockets are closed. */
  destroy(reason: 'stop'): Promise<void> {
    this.closeReason ??= reason;
    this.up.discard();
    this.down.discard();
    const sockets = [this.client, this.upstream].filter((s): s is Socket => s !== undefined);
    const closed = Promise.all(
      sockets.map((s) =>
        s.closed ? undefined : new Promise<void>((resolve) => s.once('close', () => resolve())),
      ),
    );
    for (const socket of sockets) socket.destroy();
    this.#finishIfGone();
    return closed.then(() => {});
  }

  #clientClosed(hadError: boolean): void {
    this.#endedBy ??= 'client';
    if (this.upstream === undefined || !this.upstreamConnected) {
      // Nothing reached the target yet: the connection just ends (what the client sent while held is lost).
      this.up.discard();
      this.upstream?.destroy();
    } else {
      // An abrupt close is passed on as an RST behind the queued bytes; after a FIN the `end` is queued.
      if (hadError || !this.up.sourceDone) this.up.close('reset');
      // Nothing can reach the client any more.
      this.down.discard();
    }
    this.#finishIfGone();
  }

  #upstreamClosed(hadError: boolean): void {
    if (this.closeReason === 'refused') {
      this.up.discard();
      this.down.discard();
      resetSocket(this.client);
    } else {
      this.#endedBy ??= 'target';
      if (hadError || !this.down.sourceDone) this.down.close('reset');
      this.up.discard();
    }
    this.#finishIfGone();
  }

  #finishIfGone(): void {
    if (this.#finished) return;
    if (!this.client.destroyed) return;
    if (this.upstream !== undefined && !this.upstream.destroyed) return;
    this.#finished = true;
    this.up.discard();
    this.down.discard();
    this.#hooks.closed(this);
  }
}
