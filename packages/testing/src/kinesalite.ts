/**
 * kinesalite in this process (fast, no extra process) or in a child process (keeps its CPU off the
 * caller's thread), always on loopback.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, ShardlineError } from '@shardline/common';
import { packageScriptPath, spawnNodeWithWatchdog, stopLoggingUnexpectedExit } from './child-process.js';
import type { EmulatorHandle, ResolvedLocalKinesisOptions } from './local-kinesis.js';

/** The options kinesalite's factory reads (see its cli.js). */
interface KinesaliteOptions {
  createStreamMs: number;
  deleteStreamMs: number;
  updateStreamMs: number;
  shardLimit: number;
}

type KinesaliteFactory = (options: KinesaliteOptions) => Server;

/** What kinesalite-server.cjs sends over IPC. */
export type KinesaliteChildMessage =
  | { v: 1; type: 'listening'; port: number }
  | { v: 1; type: 'error'; message: string };

export function isKinesaliteChildMessage(value: unknown): value is KinesaliteChildMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as Record<string, unknown>;
  if (message.v !== 1) return false;
  if (message.type === 'listening') return Number.isInteger(message.port);
  if (message.type === 'error') return typeof message.message === 'string';
  return false;
}

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
  const child = spawnNodeWithWatchdog({
    name: 'kinesalite',
    script: packageScriptPath('kinesalite-server.cjs'),
    args: [JSON.stringify({ ...kinesaliteOptions(options), port: options.port ?? 0, host: HOST })],
  });
  let timer: NodeJS.Timeout | undefined;
  let onMessage: ((message: unknown) => void) | undefined;
  const outcome = await new Promise<KinesaliteChildMessage | 'exited' | 'timeout'>((resolve) => {
    onMessage = (message) => {
      if (isKinesaliteChildMessage(message)) resolve(message);
    };
    child.child.on('message', onMessage);
    void child.exited.then(() => resolve('exited'));
    timer = setTimeout(() => resolve('timeout'), options.startupTimeoutMs);
  });
  clearTimeout(timer);
  child.child.off('message', onMessage!);
  if (typeof outcome === 'object' && outcome.type === 'listening') {
    options.logger.debug({ port: outcome.port, pid: child.pid }, 'kinesalite child listening');
    return {
      endpoint: `http://${HOST}:${outcome.port}`,
      port: outcome.port,
      pid: child.pid!,
      stop: stopLoggingUnexpectedExit(child, options.logger),
    };
  }
  await child.kill();
  const reason =
    outcome === 'timeout'
      ? `did not start within ${options.startupTimeoutMs} ms (startupTimeoutMs)`
      : outcome === 'exited'
        ? `${child.describeExit()} before it was ready`
        : `failed: ${outcome.message}`;
  const output = child.outputTail();
  throw new ShardlineError(
    ErrorCodes.INTERNAL,
    `kinesalite child process ${reason}${output === '' ? '' : `; its output ends with:\n${output}`}`,
    { details: { pid: child.pid, output } },
  );
}
