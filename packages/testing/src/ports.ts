import { connect, createServer, type Server } from 'node:net';
import { ShardlineOptionError } from '@shardline/common';

export interface FreePortOptions {
  /**
   * The address to check the port on. Unset checks the unspecified address (all interfaces), the
   * strictest check: a process that binds `0.0.0.0` / `::` (kinesis-mock does) needs the port free
   * everywhere.
   * @defaultValue undefined (all interfaces)
   */
  host?: string;
}

function listenOnZero(host: string | undefined): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ port: 0, host, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/**
 * `count` distinct TCP ports that the OS reported free a moment ago.
 *
 * The ports are free only until someone else binds them: whoever binds them must be ready to retry
 * with new ports on `EADDRINUSE` (the launchers in this package do).
 */
export async function getFreePorts(count: number, options: FreePortOptions = {}): Promise<number[]> {
  if (!Number.isInteger(count) || count < 1) {
    throw new ShardlineOptionError('count', `must be a positive integer (got ${String(count)})`);
  }
  // All servers stay open until every port is known, so the OS never hands out the same port twice.
  const servers: Server[] = [];
  try {
    for (let i = 0; i < count; i++) servers.push(await listenOnZero(options.host));
    return servers.map((server) => {
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('server has no TCP address');
      return address.port;
    });
  } finally {
    await Promise.all(servers.map(closeServer));
  }
}

/** One TCP port that the OS reported free a moment ago. See {@link getFreePorts}. */
export async function getFreePort(options: FreePortOptions = {}): Promise<number> {
  const [port] = await getFreePorts(1, options);
  return port!;
}

/** Whether something accepts TCP connections on `host:port` (within `timeoutMs`). */
export function isPortOpen(port: number, host = '127.0.0.1', timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
