/**
 * kinesalite in this process (fast, no extra process) or in a child process (keeps its CPU off the
 * caller's thread), always on loopback.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, ShardlineError } from '@shardline/common';
import { startListeningChild } from './listening-child.js';
import type { EmulatorHandle, ResolvedLocalKinesisOptions } from './local-kinesis.js';

/** The options kinesalite's factory reads (see its cli.js). */
interface KinesaliteOptions {
  createStreamMs: number;
  deleteStreamMs: number;
  updateStreamMs: number;
  shardLimit: number;
}

type KinesaliteFactory = (options: KinesaliteOptions) => Server;

const HOST = '127.0.0.1';

/** Streams change state at once: tests wait on ACTIVE, never on kinesalite's 500 ms defaults. */
function kinesaliteOptions(options: ResolvedLocalKinesisOptions): KinesaliteOptions {
  return { createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: options.shardLimit };
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, HOST, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

export async function startKinesaliteInProcess(
  options: ResolvedLocalKinesisOptions,
): Promise<EmulatorHandle> {
  // kinesalite is CommonJS without types.
  const kinesalite = createRequire(import.meta.url)('kinesalite') as KinesaliteFactory;
  const server = kinesalite(kinesaliteOptions(options));
  let port: number;
  try {
    port = await listen(server, options.port ?? 0);
  } catch (error) {
    throw new ShardlineError(
      ErrorCodes.INTERNAL,
      `kinesalite could not listen on ${HOST}:${options.port ?? 0}`,
      {
        cause: error,
      },
    );
  }
  // Without a listener a later server error would crash the process.
  server.on('error', (error) => options.logger.error({ err: error }, 'kinesalite server error'));
  return {
    endpoint: `http://${HOST}:${port}`,
    port,
    stop: () =>
      new Promise<void>((resolve, reject) => {
        // close() alone waits for in-flight requests of clients that may never send another one.
        server.closeAllConnections();
        server.close((error?: Error) => (error === undefined || error === null ? resolve() : reject(error)));
      }),
  };
}

export async function startKinesaliteChild(options: ResolvedLocalKinesisOptions): Promise<EmulatorHandle> {
  const port = await startListeningChild({
    name: 'kinesalite',
    script: 'kinesalite-server.cjs',
    args: [JSON.stringify({ ...kinesaliteOptions(options), port: options.port ?? 0, host: HOST })],
    startupTimeoutMs: options.startupTimeoutMs,
    logger: options.logger,
  });
  return { endpoint: `http://${HOST}:${port.port}`, port: port.port, pid: port.pid, stop: port.stop };
}
