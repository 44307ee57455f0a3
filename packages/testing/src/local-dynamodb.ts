/**
 * A local DynamoDB for tests and benches: dynalite (in memory) in a child process of its own, with the
 * parent-death watchdog, on loopback. Several processes (coordinator hosts of a multi-process test)
 * share it over HTTP by its endpoint.
 */
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { type Logger, ShardlineOptionError, silentLogger } from '@shardline/common';
import { startListeningChild } from './listening-child.js';

export interface LocalDynamoDbOptions {
  /** @defaultValue 30000 */
  startupTimeoutMs?: number;
  /** @defaultValue silent */
  logger?: Logger;
}

export interface LocalDynamoDb {
  /** `http://127.0.0.1:<port>` */
  readonly endpoint: string;
  readonly port: number;
  readonly pid: number;
  /** Region and dummy credentials dynalite accepts, with the endpoint: for `new DynamoDBClient()` or `leases.dynamodb`. */
  readonly clientConfig: Readonly<{
    endpoint: string;
    region: string;
    credentials: { accessKeyId: string; secretAccessKey: string };
  }>;
  /** A new client for it (destroy it when done). */
  client(config?: DynamoDBClientConfig): DynamoDBClient;
  /** Kills the child process. Idempotent. */
  stop(): Promise<void>;
}

export const LOCAL_DYNAMODB_DEFAULTS = Object.freeze({ startupTimeoutMs: 30_000 });

const HOST = '127.0.0.1';

export async function startLocalDynamoDb(options: LocalDynamoDbOptions = {}): Promise<LocalDynamoDb> {
  const startupTimeoutMs = options.startupTimeoutMs ?? LOCAL_DYNAMODB_DEFAULTS.startupTimeoutMs;
  if (!Number.isInteger(startupTimeoutMs) || startupTimeoutMs < 1) {
    throw new ShardlineOptionError(
      'startupTimeoutMs',
      `must be a positive integer of milliseconds (got ${String(startupTimeoutMs)})`,
    );
  }
  const started = await startListeningChild({
    name: 'dynalite',
    script: 'dynalite-server.cjs',
    args: [JSON.stringify({ port: 0, host: HOST })],
    startupTimeoutMs,
    logger: options.logger ?? silentLogger,
  });
  const endpoint = `http://${HOST}:${started.port}`;
  const clientConfig = Object.freeze({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  let stopped: Promise<void> | undefined;
  return {
    endpoint,
    port: started.port,
    pid: started.pid,
    clientConfig,
    client: (config = {}) => new DynamoDBClient({ ...clientConfig, ...config }),
    stop: () => {
      stopped ??= started.stop();
      return stopped;
    },
  };
}
