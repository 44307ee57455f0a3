/**
 * A local Kinesis for tests, demos and development: kinesis-mock (high fidelity, child process) or
 * kinesalite (fast, in-process or child process), behind one handle that hands out SDK clients
 * configured for it.
 */
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  KinesisClient,
  type KinesisClientConfig,
  type Shard,
} from '@aws-sdk/client-kinesis';
import {
  childLogger,
  ErrorCodes,
  type Logger,
  listAllShards,
  ShardlineError,
  ShardlineOptionError,
  silentLogger,
} from '@shardline/common';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { delay } from './child-process.js';
import { startKinesaliteChild, startKinesaliteInProcess } from './kinesalite.js';
import { startKinesisMock } from './kinesis-mock.js';

export type LocalKinesisEngine = 'kinesis-mock' | 'kinesalite';

export interface LocalKinesisOptions {
  /**
   * `'kinesis-mock'`: high fidelity (ChildShards, UpdateShardCount, ListShards filters and paging,
   * enhanced fan-out), always a child process. `'kinesalite'`: fast, no ChildShards, no
   * UpdateShardCount, ignores ListShards paging and filters.
   * @defaultValue 'kinesis-mock'
   */
  engine?: LocalKinesisEngine;
  /**
   * kinesalite only: run it inside this process (`true`) or in a child process (`false`, which keeps
   * its CPU off this thread). kinesis-mock always runs as a child process; `true` is an error for it.
   * @defaultValue true for kinesalite, false for kinesis-mock
   */
  inProcess?: boolean;
  /**
   * The emulator's account-wide shard limit (CreateStream, SplitShard and UpdateShardCount fail beyond it).
   * @defaultValue 1000
   */
  shardLimit?: number;
  /**
   * The region the clients sign for (kinesis-mock namespaces streams by region).
   * @defaultValue 'us-east-1'
   */
  region?: string;
  /**
   * The plain HTTP port to listen on (loopback for kinesalite; all interfaces for kinesis-mock, as it
   * always binds them). Unset picks a free port, retrying with others if it is taken meanwhile. A
   * given port is used as is: startup fails if it is taken.
   * @defaultValue undefined (a free port)
   */
  port?: number;
  /**
   * How long to wait for the emulator to answer before giving up (the process is killed then).
   * @defaultValue 30000
   */
  startupTimeoutMs?: number;
  /**
   * Debug lines about the emulator's lifecycle (ports, pid, stop).
   * @defaultValue silentLogger
   */
  logger?: Logger;
}

export const LOCAL_KINESIS_DEFAULTS = Object.freeze({
  engine: 'kinesis-mock' as LocalKinesisEngine,
  shardLimit: 1000,
  region: 'us-east-1',
  startupTimeoutMs: 30_000,
  /** Bound of createStream / deleteStream / waitForStreamActive waits. */
  streamWaitTimeoutMs: 30_000,
});

/** {@link LocalKinesisOptions} after validation and defaults. */
export interface ResolvedLocalKinesisOptions {
  readonly engine: LocalKinesisEngine;
  readonly inProcess: boolean;
  readonly shardLimit: number;
  readonly region: string;
  readonly port: number | undefined;
  readonly startupTimeoutMs: number;
  readonly logger: Logger;
}

const ENGINES: readonly LocalKinesisEngine[] = ['kinesis-mock', 'kinesalite'];

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** Validates `options`, applies {@link LOCAL_KINESIS_DEFAULTS} and freezes the result. */
export function resolveLocalKinesisOptions(options: LocalKinesisOptions = {}): ResolvedLocalKinesisOptions {
  if (options === null || typeof options !== 'object') {
    throw new ShardlineOptionError('options', `must be an object (got ${String(options)})`);
  }
  const engine = options.engine ?? LOCAL_KINESIS_DEFAULTS.engine;
  if (!ENGINES.includes(engine)) {
    throw new ShardlineOptionError(
      'engine',
      `must be 'kinesis-mock' or 'kinesalite' (got ${JSON.stringify(engine)})`,
    );
  }
  if (options.inProcess !== undefined && typeof options.inProcess !== 'boolean') {
    throw new ShardlineOptionError(
      'inProcess',
      `must be a boolean (got ${JSON.stringify(options.inProcess)})`,
    );
  }
  if (engine === 'kinesis-mock' && options.inProcess === true) {
    throw new ShardlineOptionError(
      'inProcess',
      "must not be true with engine 'kinesis-mock': it always runs as a child process (use engine 'kinesalite')",
    );
  }
  const shardLimit = options.shardLimit ?? LOCAL_KINESIS_DEFAULTS.shardLimit;
  if (!isPositiveInteger(shardLimit)) {
    throw new ShardlineOptionError('shardLimit', `must be a positive integer (got ${String(shardLimit)})`);
  }
  const region = options.region ?? LOCAL_KINESIS_DEFAULTS.region;
  if (typeof region !== 'string' || region.trim() === '') {
    throw new ShardlineOptionError('region', `must be a non-empty string (got ${JSON.stringify(region)})`);
  }
  if (
    options.port !== undefined &&
    (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535)
  ) {
    throw new ShardlineOptionError(
      'port',
      `must be an integer from 1 to 65535 (got ${String(options.port)})`,
    );
  }
  const startupTimeoutMs = options.startupTimeoutMs ?? LOCAL_KINESIS_DEFAULTS.startupTimeoutMs;
  if (!isPositiveInteger(startupTimeoutMs)) {
    throw new ShardlineOptionError(
      'startupTimeoutMs',
      `must be a positive integer of milliseconds (got ${String(startupTimeoutMs)})`,
    );
  }
  const logger = options.logger ?? silentLogger;
  if (typeof logger !== 'object' || logger === null || typeof logger.debug !== 'function') {
    throw new ShardlineOptionError('logger', 'must be a pino-compatible logger with debug/info/warn/error');
  }
  return Object.freeze({
    engine,
    inProcess: options.inProcess ?? engine === 'kinesalite',
    shardLimit,
    region,
    port: options.port,
    startupTimeoutMs,
    logger: childLogger(logger, { component: 'local-kinesis', engine }),
  });
}

/** What an engine launcher returns: a listening emulator and how to end it. */
export interface EmulatorHandle {
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  readonly port: number;
  /** kinesis-mock: `https://127.0.0.1:TLS_PORT` (self-signed certificate; HTTP/2 and HTTP/1.1). */
  readonly tlsEndpoint?: string;
  /** Set when the emulator is a child process. */
  readonly pid?: number;
  /** Ends the emulator: the process is gone and the port closed when it resolves. Called once. */
  stop(): Promise<void>;
}

export interface CreatedStream {
  streamName: string;
  streamArn?: string;
  /** The stream's shards once it is ACTIVE. */
  shards: Shard[];
}

export interface CreateStreamOptions {
  /**
   * @defaultValue 1
   */
  shards?: number;
  /**
   * How long to wait for the stream to become ACTIVE.
   * @defaultValue 30000
   */
  timeoutMs?: number;
}

export interface LocalKinesis {
  readonly engine: LocalKinesisEngine;
  /** `http://127.0.0.1:PORT` */
  readonly endpoint: string;
  /**
   * kinesis-mock only: its TLS port, `https://127.0.0.1:PORT`, which speaks HTTP/2 (ALPN h2) and
   * HTTP/1.1 with a self-signed certificate (clients must not verify it). For HTTP/2 tests, such as
   * enhanced fan-out the way AWS requires it.
   */
  readonly tlsEndpoint?: string;
  readonly region: string;
  /**
   * Ready for `new KinesisClient(...)` or `startCoordinator({ kinesis })`: endpoint, region, dummy
   * static credentials, and an HTTP/1.1 keep-alive handler (the SDK's HTTP/2 default fails with both
   * emulators). Every read returns a new object with its own handler, because destroying a client
   * destroys its handler's sockets: clients built from separate reads never cut each other off.
   */
  readonly clientConfig: KinesisClientConfig;
  /** The emulator's pid when it runs as a child process. */
  readonly pid?: number;
  /**
   * A new client from {@link LocalKinesis.clientConfig}. The caller may destroy it; stop() destroys
   * every client made here that is still open.
   */
  client(): KinesisClient;
  /** Creates a stream and resolves when it is ACTIVE, with its shards. */
  createStream(name: string, options?: CreateStreamOptions): Promise<CreatedStream>;
  /** Deletes a stream and resolves when it is gone. A stream that does not exist is not an error. */
  deleteStream(name: string, options?: { timeoutMs?: number }): Promise<void>;
  /** Every shard of the stream, open and closed (follows ListShards pages). */
  listShards(name: string): Promise<Shard[]>;
  /** Resolves when the stream is ACTIVE: after SplitShard, MergeShards, UpdateShardCount. */
  waitForStreamActive(name: string, timeoutMs?: number): Promise<void>;
  /** Destroys the clients made by client(), ends the emulator and closes its port. Idempotent. */
  stop(): Promise<void>;
}

/** Static credentials: the emulators accept any signature. Not a 12-digit id: kinesis-mock's default account. */
const LOCAL_CREDENTIALS = Object.freeze({
  accessKeyId: 'shardline-local',
  secretAccessKey: 'shardline-local',
});
/** Many shards read in parallel through one client must not queue behind the SDK's 50-socket default. */
const LOCAL_MAX_SOCKETS = 256;
const POLL_INTERVAL_MS = 25;

function errorName(error: unknown): string | undefined {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : undefined;
}

function validateStreamName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new ShardlineOptionError('name', `must be a non-empty stream name (got ${JSON.stringify(name)})`);
  }
}

function validateTimeout(option: string, value: unknown): number {
  const timeoutMs = value ?? LOCAL_KINESIS_DEFAULTS.streamWaitTimeoutMs;
  if (!isPositiveInteger(timeoutMs)) {
    throw new ShardlineOptionError(
      option,
      `must be a positive integer of milliseconds (got ${String(timeoutMs)})`,
    );
  }
  return timeoutMs;
}

class RunningLocalKinesis implements LocalKinesis {
  readonly engine: LocalKinesisEngine;
  readonly endpoint: string;
  readonly tlsEndpoint?: string;
  readonly region: string;
  readonly pid?: number;
  readonly #handle: EmulatorHandle;
  readonly #logger: Logger;
  readonly #clients = new Set<KinesisClient>();
  #admin: KinesisClient | undefined;
  #stopping: Promise<void> | undefined;

  constructor(options: ResolvedLocalKinesisOptions, handle: EmulatorHandle) {
    this.engine = options.engine;
    this.region = options.region;
    this.endpoint = handle.endpoint;
    if (handle.tlsEndpoint !== undefined) this.tlsEndpoint = handle.tlsEndpoint;
    if (handle.pid !== undefined) this.pid = handle.pid;
    this.#handle = handle;
    this.#logger = options.logger;
  }

  get clientConfig(): KinesisClientConfig {
    return {
      endpoint: this.endpoint,
      region: this.region,
      credentials: { ...LOCAL_CREDENTIALS },
      requestHandler: new NodeHttpHandler({ httpAgent: { keepAlive: true, maxSockets: LOCAL_MAX_SOCKETS } }),
    };
  }

  client(): KinesisClient {
    this.#assertRunning('client');
    const client = new KinesisClient(this.clientConfig);
    this.#clients.add(client);
    return client;
  }

  #adminClient(): KinesisClient {
    this.#admin ??= new KinesisClient(this.clientConfig);
    return this.#admin;
  }

  #assertRunning(method: string): void {
    if (this.#stopping !== undefined) {
      throw new ShardlineError(
        ErrorCodes.CLOSED,
        `local Kinesis (${this.engine}) is stopped: cannot call ${method}()`,
      );
    }
  }

  async createStream(name: string, options: CreateStreamOptions = {}): Promise<CreatedStream> {
    this.#assertRunning('createStream');
    validateStreamName(name);
    const shards = options.shards ?? 1;
    if (!isPositiveInteger(shards)) {
      throw new ShardlineOptionError('shards', `must be a positive integer (got ${String(shards)})`);
    }
    const timeoutMs = validateTimeout('timeoutMs', options.timeoutMs);
    await this.#adminClient().send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
    const summary = await this.#waitForStatus(name, 'ACTIVE', timeoutMs);
    const created: CreatedStream = { streamName: name, shards: await this.listShards(name) };
    if (summary?.StreamARN !== undefined) created.streamArn = summary.StreamARN;
    this.#logger.debug({ stream: name, shards }, 'stream created');
    return created;
  }

  async deleteStream(name: string, options: { timeoutMs?: number } = {}): Promise<void> {
    this.#assertRunning('deleteStream');
    validateStreamName(name);
    const timeoutMs = validateTimeout('timeoutMs', options.timeoutMs);
    try {
      await this.#adminClient().send(
        new DeleteStreamCommand({ StreamName: name, EnforceConsumerDeletion: true }),
      );
    } catch (error) {
      if (errorName(error) === 'ResourceNotFoundException') return;
      throw error;
    }
    await this.#waitForStatus(name, 'GONE', timeoutMs);
  }

  async listShards(name: string): Promise<Shard[]> {
    this.#assertRunning('listShards');
    validateStreamName(name);
    return listAllShards(this.#adminClient(), { streamName: name });
  }

  async waitForStreamActive(name: string, timeoutMs?: number): Promise<void> {
    this.#assertRunning('waitForStreamActive');
    validateStreamName(name);
    await this.#waitForStatus(name, 'ACTIVE', validateTimeout('timeoutMs', timeoutMs));
  }

  /** Polls DescribeStreamSummary until the stream has `wanted` status, or is gone for 'GONE'. */
  async #waitForStatus(name: string, wanted: 'ACTIVE' | 'GONE', timeoutMs: number) {
    const deadline = Date.now() + timeoutMs;
    let last = 'unknown';
    for (;;) {
      try {
        const { StreamDescriptionSummary: summary } = await this.#adminClient().send(
          new DescribeStreamSummaryCommand({ StreamName: name }),
        );
        last = summary?.StreamStatus ?? 'unknown';
        if (wanted === 'ACTIVE' && last === 'ACTIVE') return summary;
      } catch (error) {
        if (errorName(error) !== 'ResourceNotFoundException') throw error;
        // Not visible yet while creating; gone when deleting.
        last = 'not found';
        if (wanted === 'GONE') return undefined;
      }
      if (Date.now() >= deadline) {
        throw new ShardlineError(
          ErrorCodes.INTERNAL,
          `stream '${name}' did not become ${wanted === 'ACTIVE' ? 'ACTIVE' : 'deleted'} within ${timeoutMs} ms (last status: ${last})`,
          { details: { stream: name, status: last, engine: this.engine } },
        );
      }
      await delay(POLL_INTERVAL_MS);
    }
  }

  stop(): Promise<void> {
    this.#stopping ??= (async () => {
      for (const client of this.#clients) client.destroy();
      this.#clients.clear();
      this.#admin?.destroy();
      await this.#handle.stop();
      this.#logger.debug({ endpoint: this.endpoint, pid: this.pid }, 'local Kinesis stopped');
    })();
    return this.#stopping;
  }
}

/**
 * Starts a local Kinesis and resolves once it answers requests.
 *
 * Child processes never outlive this process: stop() SIGKILLs them, so does this process's 'exit',
 * and a watchdog inside the child ends it when this process dies of anything else (even SIGKILL).
 */
export async function startLocalKinesis(options: LocalKinesisOptions = {}): Promise<LocalKinesis> {
  const resolved = resolveLocalKinesisOptions(options);
  let handle: EmulatorHandle;
  if (resolved.engine === 'kinesis-mock') handle = await startKinesisMock(resolved);
  else if (resolved.inProcess) handle = await startKinesaliteInProcess(resolved);
  else handle = await startKinesaliteChild(resolved);
  resolved.logger.debug({ endpoint: handle.endpoint, pid: handle.pid }, 'local Kinesis started');
  return new RunningLocalKinesis(resolved, handle);
}
