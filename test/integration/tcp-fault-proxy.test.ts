import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { ErrorCodes, type Logger, type ShardlineOptionError } from '@shardline/common';
import {
  getFreePort,
  isPortOpen,
  resolveTcpFaultProxyOptions,
  startTcpFaultProxy,
  type TcpFaultProxy,
  type TcpProxyClosedConnection,
  type TcpProxyConnection,
  type TestRedis,
  useTestRedis,
} from '@shardline/testing';
import { expect } from 'chai';
import { Redis, type RedisOptions } from 'ioredis';
import { rejection } from '../support/assertions.js';
import { waitUntil } from '../support/child.js';

/** Bytes of a command (or an array reply) of bulk strings in RESP, as ioredis and Redis write them. */
function resp(...args: string[]): number {
  let bytes = `*${args.length}\r\n`.length;
  for (const arg of args) {
    const length = Buffer.byteLength(arg);
    bytes += `$${length}\r\n`.length + length + 2;
  }
  return bytes;
}

/** Tracks whether a promise settled, without changing it. */
function track<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let settled = false;
  const tracked = promise.finally(() => {
    settled = true;
  });
  return { promise: tracked, settled: () => settled };
}

function only(proxy: TcpFaultProxy): TcpProxyConnection {
  const connections = proxy.connections;
  expect(connections).to.have.length(1);
  return connections[0]!;
}

function connectionOf(proxy: TcpFaultProxy, client: Redis): TcpProxyConnection {
  const found = proxy.connections.find((c) => c.clientPort === client.stream.localPort);
  if (found === undefined) throw new Error(`no proxy connection from port ${client.stream.localPort}`);
  return found;
}

describe('TCP fault proxy in front of the real Redis (ioredis)', () => {
  let redis: TestRedis;
  let direct: Redis;
  let proxy: TcpFaultProxy;
  let clients: Redis[];

  beforeEach(async () => {
    redis = await useTestRedis('tcp-fault-proxy');
    direct = redis.client();
    const url = new URL(redis.url);
    proxy = await startTcpFaultProxy({ target: { host: url.hostname, port: Number(url.port || 6379) } });
    clients = [];
  });

  afterEach(async () => {
    for (const client of clients) client.disconnect();
    await proxy.stop();
    await redis.cleanup();
  });

  /** An ioredis client whose connection goes through the proxy. */
  function proxied(options: RedisOptions = {}): Redis {
    const client = new Redis(proxy.clientUrl(redis.url), options);
    // Errors a test provokes are asserted where it cares; the rest must not print "Unhandled error event".
    client.on('error', () => {});
    clients.push(client);
    return client;
  }

  it('forwards PING and counts the bytes each way', async () => {
    const client = proxied();
    expect(await client.ping()).to.equal('PONG');
    const connection = only(proxy);
    expect(connection).to.include({ id: 1, state: 'open', clientOpen: true, targetOpen: true, heldUp: 0 });
    expect(connection.clientPort).to.equal(client.stream.localPort);
    expect(connection.bytesUp).to.be.at.least(resp('PING'));
    expect(connection.bytesDown).to.be.at.least('+PONG\r\n'.length);
    expect(proxy.counters).to.include({
      accepted: 1,
      refused: 0,
      bytesUp: connection.bytesUp,
      bytesDown: connection.bytesDown,
    });
  });

  it('holds commands during a blackhole and delivers their replies in order after heal (no desync)', async () => {
    const key = `${redis.keyPrefix}:counter`;
    const client = proxied();
    expect(await client.set(key, '0')).to.equal('OK');
    expect(await client.incr(key)).to.equal(1);

    expect(proxy.blackhole()).to.equal(1);
    expect(only(proxy).state).to.equal('blackholed');
    const during = track(
      Promise.all([client.incr(key), client.incr(key), client.get(key), client.incr(key)]),
    );
    const sent = 3 * resp('INCR', key) + resp('GET', key);
    // Every byte of the four commands reached the proxy, and none went on.
    await waitUntil('the commands to be held', () => only(proxy).heldUp === sent);
    expect(await direct.get(key)).to.equal('1');
    // Whoever reaches Redis directly is not partitioned.
    expect(await direct.incr(key)).to.equal(2);
    expect(during.settled()).to.equal(false);

    expect(proxy.heal()).to.equal(1);
    expect(await during.promise).to.deep.equal([3, 4, '4', 5]);
    expect(await client.incr(key)).to.equal(6);
    expect(await client.get(key)).to.equal('6');
    expect(only(proxy)).to.include({ state: 'open', heldUp: 0, heldDown: 0 });
  });

  it('holds a reply on its way back: a BLPOP answered during the blackhole arrives after heal', async () => {
    const list = `${redis.keyPrefix}:list`;
    const client = proxied();
    expect(await client.ping()).to.equal('PONG');
    const before = only(proxy).bytesUp;
    const popped = track(client.blpop(list, 0));
    await waitUntil('BLPOP to be forwarded', () => only(proxy).bytesUp === before + resp('BLPOP', list, '0'));
    proxy.blackhole();
    expect(await direct.lpush(list, 'v')).to.equal(1);
    await waitUntil('the BLPOP reply to be held', () => only(proxy).heldDown === resp(list, 'v'));
    // Redis handed the element to the partitioned client: the reply exists, it just cannot get through.
    expect(await direct.llen(list)).to.equal(0);
    expect(popped.settled()).to.equal(false);

    proxy.heal();
    expect(await popped.promise).to.deep.equal([list, 'v']);
    expect(await client.ping()).to.equal('PONG');
  });

  it('accepts a new connection during a blackhole and connects it to Redis only when healed', async () => {
    proxy.blackhole();
    const client = proxied();
    // ioredis reaches the proxy and sends its ready check, which is held.
    await waitUntil('the held connection', () => proxy.connections.length === 1 && only(proxy).heldUp > 0);
    expect(only(proxy)).to.include({ state: 'blackholed', targetOpen: false, bytesUp: 0 });
    expect(client.status).to.not.equal('ready');
    const ping = track(client.ping());

    proxy.heal();
    expect(await ping.promise).to.equal('PONG');
    expect(client.status).to.equal('ready');
    expect(only(proxy)).to.include({ state: 'open', targetOpen: true });
  });

  it('delays every chunk each way, keeping the order, and later connections get the delay too', async () => {
    const key = `${redis.keyPrefix}:delayed`;
    const client = proxied();
    expect(await client.ping()).to.equal('PONG');

    expect(proxy.delay(150)).to.equal(1);
    expect(only(proxy).delayMs).to.equal(150);
    const started = performance.now();
    expect(await client.ping()).to.equal('PONG');
    // The command waits 150 ms on its way up, its reply 150 ms on its way down.
    expect(performance.now() - started).to.be.at.least(300);

    const replies = await Promise.all(Array.from({ length: 20 }, () => client.incr(key)));
    expect(replies).to.deep.equal(Array.from({ length: 20 }, (_, i) => i + 1));

    const later = proxied();
    expect(await later.ping()).to.equal('PONG');
    expect(connectionOf(proxy, later).delayMs).to.equal(150);

    expect(proxy.delay(0)).to.equal(2);
    expect(proxy.connections.map((c) => c.delayMs)).to.deep.equal([0, 0]);
    expect(await client.incr(key)).to.equal(21);
  });

  it('reset: ioredis sees ECONNRESET, reconnects through the proxy and works again', async () => {
    const key = `${redis.keyPrefix}:after-reset`;
    const client = proxied();
    const errors: NodeJS.ErrnoException[] = [];
    client.on('error', (error: NodeJS.ErrnoException) => errors.push(error));
    const closes: TcpProxyClosedConnection[] = [];
    proxy.on('close', (c) => closes.push(c));
    expect(await client.ping()).to.equal('PONG');
    const first = only(proxy).id;

    expect(proxy.reset()).to.equal(1);
    await waitUntil('ioredis to see the reset', () => errors.length > 0);
    expect(errors[0]!.code).to.equal('ECONNRESET');
    expect(closes.map((c) => [c.id, c.reason])).to.deep.equal([[first, 'reset']]);

    await waitUntil('ioredis to reconnect', () => client.status === 'ready');
    expect(await client.incr(key)).to.equal(1);
    expect(only(proxy).id).to.not.equal(first);
    expect(proxy.counters).to.include({ accepted: 2, resets: 1, closed: 1 });
  });

  it('applies faults by connection id, id list or predicate, leaving the other connections working', async () => {
    const key = `${redis.keyPrefix}:shared`;
    const a = proxied();
    const b = proxied();
    expect(await a.ping()).to.equal('PONG');
    expect(await b.ping()).to.equal('PONG');
    const idA = connectionOf(proxy, a).id;
    const idB = connectionOf(proxy, b).id;

    expect(proxy.blackhole(idA)).to.equal(1);
    const held = track(a.incr(key));
    await waitUntil('a to be held', () => connectionOf(proxy, a).heldUp === resp('INCR', key));
    expect(await b.incr(key)).to.equal(1);
    // A filtered blackhole is not inherited by later connections.
    const c = proxied();
    expect(await c.incr(key)).to.equal(2);
    expect(held.settled()).to.equal(false);
    expect(proxy.heal([idA])).to.equal(1);
    expect(await held.promise).to.equal(3);

    expect(proxy.delay(50, [idA, idB])).to.equal(2);
    expect(proxy.connections.map((x) => x.delayMs)).to.deep.equal([50, 50, 0]);
    expect(proxy.delay(0, (x) => x.delayMs > 0)).to.equal(2);

    const errors: NodeJS.ErrnoException[] = [];
    b.on('error', (error: NodeJS.ErrnoException) => errors.push(error));
    expect(proxy.reset((x) => x.id === idB)).to.equal(1);
    await waitUntil('b to see the reset', () => errors.length > 0);
    expect(await a.incr(key)).to.equal(4);
    expect(await c.incr(key)).to.equal(5);
    expect(proxy.blackhole(999)).to.equal(0);
  });

  it('stop() closes every connection and the listener, held ones included; idempotent', async () => {
    const a = proxied({ retryStrategy: () => null });
    expect(await a.ping()).to.equal('PONG');
    proxy.blackhole();
    const b = proxied({ retryStrategy: () => null });
    await waitUntil('b to be held', () => proxy.connections.length === 2);
    const ended = Promise.all([a, b].map((c) => new Promise((resolve) => c.once('end', resolve))));
    const closes: TcpProxyClosedConnection[] = [];
    proxy.on('close', (c) => closes.push(c));

    await Promise.all([proxy.stop(), proxy.stop()]);
    await ended;
    expect(proxy.connections).to.deep.equal([]);
    expect(closes.map((c) => c.reason)).to.deep.equal(['stop', 'stop']);
    expect(await isPortOpen(proxy.port, proxy.host)).to.equal(false);
    expect(proxy.blackhole()).to.equal(0);
    await proxy.stop();
  });
});

interface EchoServer {
  port: number;
  /** Bytes received, all connections. */
  received(): number;
  /** Connections accepted. */
  accepted(): number;
  /** Connections still open. */
  open(): number;
  stop(): Promise<void>;
}

/** A TCP echo server that counts what it receives. */
async function startEchoServer(): Promise<EchoServer> {
  let received = 0;
  let accepted = 0;
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    accepted++;
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the echo server has no address');
  return {
    port: address.port,
    received: () => received,
    accepted: () => accepted,
    open: () => sockets.size,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

function connectTo(proxy: TcpFaultProxy): Promise<{ socket: Socket; echoed: () => Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(proxy.port, proxy.host);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.once('error', reject);
    socket.once('connect', () => resolve({ socket, echoed: () => Buffer.concat(chunks) }));
  });
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('TCP fault proxy with a plain echo server', () => {
  let echo: EchoServer;
  let proxy: TcpFaultProxy | undefined;
  const sockets: Socket[] = [];

  beforeEach(async () => {
    echo = await startEchoServer();
  });

  async function startProxy(options: Parameters<typeof startTcpFaultProxy>[0]): Promise<TcpFaultProxy> {
    proxy = await startTcpFaultProxy(options);
    return proxy;
  }

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await proxy?.stop();
    proxy = undefined;
    await echo.stop();
  });

  it('keeps large payloads byte-exact across blackhole and heal, with the sender held back', async () => {
    const maxBufferedBytes = 256 * 1024;
    const p = await startProxy({ target: { host: '127.0.0.1', port: echo.port }, maxBufferedBytes });
    p.blackhole();
    const { socket, echoed } = await connectTo(p);
    sockets.push(socket);
    const first = randomBytes(64 * 1024 + 3);
    socket.write(first);
    await waitUntil('the first part to be held', () => only(p).heldUp === first.length);
    expect(echo.accepted()).to.equal(0);

    p.heal();
    await waitUntil('the first part to come back', () => echoed().length === first.length);
    expect(echoed().equals(first)).to.equal(true);
    expect(echo.accepted()).to.equal(1);

    const id = only(p).id;
    expect(p.blackhole(id)).to.equal(1);
    const second = randomBytes(5 * 1024 * 1024 + 7);
    socket.write(second);
    // The proxy holds up to maxBufferedBytes and then stops reading: the rest waits in the sender's buffers.
    await waitUntil('the proxy to hold its maximum', () => only(p).heldUp >= maxBufferedBytes);
    expect(only(p).heldUp).to.be.below(second.length);
    expect(echo.received()).to.equal(first.length);

    p.heal(id);
    const sent = Buffer.concat([first, second]);
    await waitUntil('everything to come back', () => echoed().length >= sent.length, 60_000);
    expect(echoed().length).to.equal(sent.length);
    expect(sha256(echoed())).to.equal(sha256(sent));
    expect(echo.received()).to.equal(sent.length);
    expect(only(p)).to.include({ bytesUp: sent.length, bytesDown: sent.length, heldUp: 0, heldDown: 0 });

    const closed = new Promise<TcpProxyClosedConnection>((resolve) => p.on('close', resolve));
    socket.end();
    expect((await closed).reason).to.equal('client');
    expect(p.connections).to.deep.equal([]);
  });

  it('holds a client reset behind a blackhole: the server sees it only after heal', async () => {
    const p = await startProxy({ target: { host: '127.0.0.1', port: echo.port } });
    const { socket, echoed } = await connectTo(p);
    socket.on('error', () => {});
    socket.write('ping');
    await waitUntil('the echo', () => echoed().toString() === 'ping');
    const closed = new Promise<TcpProxyClosedConnection>((resolve) => p.on('close', resolve));

    p.blackhole();
    socket.resetAndDestroy();
    await waitUntil('the proxy to see the client go', () => only(p).clientOpen === false);
    // The reset is held by the partition: the server's side is still open.
    expect(only(p)).to.include({ state: 'blackholed', targetOpen: true });
    expect(echo.open()).to.equal(1);

    p.heal();
    expect((await closed).reason).to.equal('client');
    await waitUntil('the server to see the reset', () => echo.open() === 0);
    expect(p.connections).to.deep.equal([]);
  });

  it('resets the client when the target refuses, counts it, and raises no error', async () => {
    const port = await getFreePort({ host: '127.0.0.1' });
    const logged: unknown[] = [];
    const logger: Logger = {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (fields: unknown) => logged.push(fields),
    };
    const p = await startProxy({ target: `tcp://127.0.0.1:${port}`, logger });
    p.on('close', () => {
      throw new Error('a listener that throws');
    });
    const closes: TcpProxyClosedConnection[] = [];
    p.on('close', (c) => closes.push(c));

    const socket = connect(p.port, p.host);
    let error: NodeJS.ErrnoException | undefined;
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e;
    });
    await new Promise((resolve) => socket.once('close', resolve));
    expect(error?.code).to.equal('ECONNRESET');
    await waitUntil('the proxy to close it', () => closes.length === 1);
    expect(closes[0]!.reason).to.equal('refused');
    expect(p.counters).to.include({ accepted: 1, refused: 1, closed: 1 });
    expect(logged).to.have.length(1);
    expect(p.clientUrl()).to.equal(`tcp://127.0.0.1:${p.port}`);
  });
});

describe('TCP fault proxy options', () => {
  async function optionError(promise: Promise<unknown>): Promise<ShardlineOptionError> {
    const error = await rejection<ShardlineOptionError>(promise);
    expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
    return error;
  }

  it('rejects invalid options, naming the option', async () => {
    const cases: Array<[unknown, string]> = [
      [undefined, 'options'],
      [{}, 'target'],
      [{ target: 'not a url' }, 'target'],
      [{ target: 'tcp://127.0.0.1' }, 'target'],
      [{ target: { host: '', port: 6379 } }, 'target.host'],
      [{ target: { host: '127.0.0.1', port: 70_000 } }, 'target.port'],
      [{ target: { host: '127.0.0.1', port: 6379 }, host: '' }, 'host'],
      [{ target: { host: '127.0.0.1', port: 6379 }, port: -1 }, 'port'],
      [{ target: { host: '127.0.0.1', port: 6379 }, connectTimeoutMs: 0 }, 'connectTimeoutMs'],
      [{ target: { host: '127.0.0.1', port: 6379 }, maxBufferedBytes: 10 }, 'maxBufferedBytes'],
      [{ target: { host: '127.0.0.1', port: 6379 }, logger: {} }, 'logger'],
    ];
    for (const [options, option] of cases) {
      const error = await optionError(
        startTcpFaultProxy(options as Parameters<typeof startTcpFaultProxy>[0]),
      );
      expect(error.option, JSON.stringify(options)).to.equal(option);
    }
  });

  it('rejects invalid arguments of its methods, naming them', async () => {
    const proxy = await startTcpFaultProxy({ target: { host: '127.0.0.1', port: 6379 } });
    try {
      const bad: Array<[() => unknown, string]> = [
        [() => proxy.delay(-1), 'ms'],
        [() => proxy.delay(Number.NaN), 'ms'],
        [() => proxy.blackhole('1' as unknown as number), 'filter'],
        [() => proxy.heal([0]), 'filter'],
        [() => proxy.on('nope' as 'close', () => {}), 'event'],
        [() => proxy.on('close', 'x' as unknown as () => void), 'listener'],
        [() => proxy.clientUrl(), 'url'],
        [() => proxy.clientUrl('nope'), 'url'],
      ];
      for (const [call, option] of bad) {
        const error = await optionError(Promise.resolve().then(call));
        expect(error.option).to.equal(option);
      }
      expect(proxy.clientUrl('redis://:secret@127.0.0.1:6379/2')).to.equal(
        `redis://:secret@127.0.0.1:${proxy.port}/2`,
      );
    } finally {
      await proxy.stop();
    }
  });

  it('takes the target from a URL, with the default port of redis: and http: when it has none', async () => {
    for (const [url, target] of [
      ['redis://:pw@localhost/3', { host: 'localhost', port: 6379 }],
      ['rediss://[::1]:6380', { host: '::1', port: 6380 }],
      ['http://127.0.0.1:80/x', { host: '127.0.0.1', port: 80 }],
      ['tcp://127.0.0.1:9', { host: '127.0.0.1', port: 9 }],
    ] as const) {
      expect(resolveTcpFaultProxyOptions({ target: url })).to.deep.include({ target, targetUrl: url });
    }
  });

  it('fails to start when the port is taken', async () => {
    const first = await startTcpFaultProxy({ target: { host: '127.0.0.1', port: 6379 } });
    try {
      const error = await rejection<NodeJS.ErrnoException>(
        startTcpFaultProxy({ target: { host: '127.0.0.1', port: 6379 }, port: first.port }),
      );
      expect(error.code).to.equal('EADDRINUSE');
    } finally {
      await first.stop();
    }
  });
});
