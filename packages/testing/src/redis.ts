/**
 * Redis for tests: find one (REDIS_URL, else 127.0.0.1:6379, else start `redis-server`), give each
 * test its own key prefix, and clean up exactly that prefix.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { ErrorCodes, ShardlineError, ShardlineOptionError } from '@shardline/common';
import { Redis, type RedisOptions } from 'ioredis';
import { delay, type ManagedProcess, packageScriptPath, spawnNodeWithWatchdog } from './child-process.js';
import { getFreePort } from './ports.js';

export const REDIS_DEFAULTS = Object.freeze({
  defaultUrl: 'redis://127.0.0.1:6379',
  probeTimeoutMs: 1_000,
  redisServerCommand: 'redis-server',
  startupTimeoutMs: 10_000,
  testName: 'shardline',
});

export interface ResolveRedisUrlOptions {
  /**
   * Where `REDIS_URL` is read.
   * @defaultValue process.env
   */
  env?: Record<string, string | undefined>;
  /**
   * The server tried when `REDIS_URL` is unset.
   * @defaultValue 'redis://127.0.0.1:6379'
   */
  defaultUrl?: string;
  /**
   * How long the server at `defaultUrl` gets to answer PING.
   * @defaultValue 1000
   */
  probeTimeoutMs?: number;
  /**
   * The program started (from PATH, or a path) when no server answers. One is started per command
   * and process, shared by later calls, and killed when this process exits.
   * @defaultValue 'redis-server'
   */
  redisServerCommand?: string;
}

export interface RedisServerOptions {
  /**
   * The loopback port to listen on. Unset picks a free one (retrying if it is taken meanwhile).
   * @defaultValue undefined (a free port)
   */
  port?: number;
  /**
   * The redis-server program: a name looked up on PATH, or a path.
   * @defaultValue 'redis-server'
   */
  command?: string;
  /**
   * How long the server gets to answer PING before it is killed and the start fails.
   * @defaultValue 10000
   */
  startupTimeoutMs?: number;
  /**
   * `true`: the server does not keep this process alive (it is still killed when the process exits).
   * @defaultValue false
   */
  unref?: boolean;
  /**
   * Started with `--requirepass`: clients must AUTH. `url` then carries it (`redis://:PASSWORD@...`).
   * @defaultValue undefined (no password)
   */
  password?: string;
  /**
   * Extra redis-server arguments, appended last (e.g. `['--cluster-enabled', 'yes']`).
   * @defaultValue []
   */
  args?: readonly string[];
}

export interface RedisServer {
  /** `redis://127.0.0.1:PORT`, or `redis://:PASSWORD@127.0.0.1:PORT` with a password */
  readonly url: string;
  readonly port: number;
  /** The redis-server process (stop it with SIGSTOP / SIGCONT to simulate a hung server). */
  readonly pid: number;
  /** SIGKILLs the server (nothing is persisted) and resolves when it is gone. Idempotent. */
  stop(): Promise<void>;
}

export interface TestRedis {
  readonly url: string;
  /** `test:<name>:<random>`: every key of the test should start with it. */
  readonly keyPrefix: string;
  /** A new ioredis client for {@link TestRedis.url}; cleanup() closes it. */
  client(options?: RedisOptions): Redis;
  /** Deletes every key starting with keyPrefix (SCAN, not KEYS) and closes the clients. */
  cleanup(): Promise<void>;
}

const BIND_FAILURE = /EADDRINUSE|Address already in use/i;
const MAX_BIND_ATTEMPTS = 3;
const HOST = '127.0.0.1';
const SCAN_COUNT = 1_000;
const QUIT_TIMEOUT_MS = 1_000;

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

function validateRedisUrl(option: string, value: unknown): string {
  let protocol: string | undefined;
  try {
    protocol = new URL(String(value)).protocol;
  } catch {
    protocol = undefined;
  }
  if (typeof value !== 'string' || (protocol !== 'redis:' && protocol !== 'rediss:')) {
    throw new ShardlineOptionError(
      option,
      `must be a redis:// or rediss:// URL (got ${JSON.stringify(value)})`,
    );
  }
  return value;
}

/** A one-shot client for probes: no reconnects, no offline queue, every step bounded by `timeoutMs`. */
function probeClient(url: string, timeoutMs: number): Redis {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
  });
  // A refused connection is an answer here, not an error to print.
  redis.on('error', () => {});
  return redis;
}

/** Whether the server at `url` answers PING within `timeoutMs`. Never throws. */
export async function pingRedis(
  url: string,
  timeoutMs: number = REDIS_DEFAULTS.probeTimeoutMs,
): Promise<boolean> {
  const redis = probeClient(url, timeoutMs);
  let timer: NodeJS.Timeout | undefined;
  try {
    const probe = redis
      .connect()
      .then(() => redis.ping())
      .then(
        (reply) => reply === 'PONG',
        () => false,
      );
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    return await Promise.race([probe, timeout]);
  } finally {
    clearTimeout(timer);
    redis.disconnect();
  }
}

/** The `process_id` the server at `url` reports, or undefined if it does not answer in time. */
async function serverProcessId(url: string, timeoutMs: number): Promise<number | undefined> {
  const redis = probeClient(url, timeoutMs);
  try {
    await redis.connect();
    const match = /^process_id:(\d+)/m.exec(await redis.info('server'));
    return match === null ? undefined : Number(match[1]);
  } catch {
    return undefined;
  } finally {
    redis.disconnect();
  }
}

/**
 * Ready when the server on `port` is the one we started: another Redis already on a given port
 * answers PING too, while ours fails to bind.
 */
async function waitForRedisServer(
  managed: ManagedProcess,
  url: string,
  redisPid: () => number | undefined,
  deadline: number,
): Promise<'ready' | 'exited' | 'timeout'> {
  while (managed.exitInfo === undefined) {
    const pid = redisPid();
    if (pid !== undefined && (await serverProcessId(url, 500)) === pid) {
      return managed.exitInfo === undefined ? 'ready' : 'exited';
    }
    if (Date.now() >= deadline) return 'timeout';
    await Promise.race([delay(50), managed.exited]);
  }
  return 'exited';
}

/**
 * Kills redis-server first and lets the supervisor reap it and exit on its own, so no zombie is left
 * to an init that may be slow to reap; kills the supervisor too if it lingers.
 */
async function stopSupervised(managed: ManagedProcess, redisPid: number | undefined): Promise<void> {
  if (redisPid !== undefined) {
    try {
      process.kill(redisPid, 'SIGKILL');
    } catch {
      // Already gone.
    }
    await Promise.race([managed.exited, delay(5_000)]);
  }
  await managed.kill();
}

/**
 * Starts a throwaway `redis-server` on loopback: nothing saved to disk, killed on stop(), on this
 * process's exit, and (through a small Node supervisor with a watchdog) when this process is SIGKILLed.
 */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  if (
    options.port !== undefined &&
    (!Number.isInteger(options.port) || options.port < 1 || options.port > 65_535)
  ) {
    throw new ShardlineOptionError(
      'port',
      `must be an integer from 1 to 65535 (got ${String(options.port)})`,
    );
  }
  const command = options.command ?? REDIS_DEFAULTS.redisServerCommand;
  if (typeof command !== 'string' || command === '') {
    throw new ShardlineOptionError('command', `must be a non-empty string (got ${JSON.stringify(command)})`);
  }
  const startupTimeoutMs = options.startupTimeoutMs ?? REDIS_DEFAULTS.startupTimeoutMs;
  if (!isPositiveInteger(startupTimeoutMs)) {
    throw new ShardlineOptionError(
      'startupTimeoutMs',
      `must be a positive integer of milliseconds (got ${String(startupTimeoutMs)})`,
    );
  }
  const password = options.password;
  if (password !== undefined && (typeof password !== 'string' || password === '')) {
    throw new ShardlineOptionError('password', 'must be a non-empty string when set');
  }
  const extraArgs = options.args ?? [];
  if (!Array.isArray(extraArgs) || !extraArgs.every((arg) => typeof arg === 'string')) {
    throw new ShardlineOptionError('args', `must be an array of strings (got ${JSON.stringify(extraArgs)})`);
  }
  const auth = password === undefined ? '' : `:${encodeURIComponent(password)}@`;
  const deadline = Date.now() + startupTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    const port = options.port ?? (await getFreePort({ host: HOST }));
    const managed = spawnNodeWithWatchdog({
      name: command,
      script: packageScriptPath('supervise.cjs'),
      args: [
        command,
        '--port',
        String(port),
        '--bind',
        HOST,
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
        '--dir',
        tmpdir(),
        '--loglevel',
        'warning',
        ...(password === undefined ? [] : ['--requirepass', password]),
        ...extraArgs,
      ],
    });
    let redisPid: number | undefined;
    managed.child.on('message', (message: unknown) => {
      const m = message as { v?: unknown; type?: unknown; pid?: unknown } | null;
      if (m?.v === 1 && m.type === 'spawned' && isPositiveInteger(m.pid)) {
        redisPid = m.pid;
        managed.addExtraPid(m.pid);
      }
    });
    const readiness = await waitForRedisServer(
      managed,
      `redis://${auth}${HOST}:${port}`,
      () => redisPid,
      deadline,
    );
    if (readiness === 'ready' && redisPid !== undefined) {
      if (options.unref === true) managed.unref();
      let stopping: Promise<void> | undefined;
      const pid = redisPid;
      return {
        url: `redis://${auth}${HOST}:${port}`,
        port,
        pid,
        stop: () => {
          stopping ??= stopSupervised(managed, pid);
          return stopping;
        },
      };
    }
    await stopSupervised(managed, redisPid);
    const output = managed.outputTail();
    const retry =
      readiness === 'exited' &&
      options.port === undefined &&
      BIND_FAILURE.test(output) &&
      attempt < MAX_BIND_ATTEMPTS &&
      Date.now() < deadline;
    if (retry) continue;
    const reason =
      readiness === 'timeout'
        ? `did not answer PING on port ${port} within ${startupTimeoutMs} ms (startupTimeoutMs)`
        : managed.exitInfo?.code === 127
          ? 'could not be started (is it installed and on PATH?)'
          : `${managed.describeExit()} before it was ready`;
    throw new ShardlineError(
      ErrorCodes.REDIS,
      `${command} ${reason}${output === '' ? '' : `; its output ends with:\n${output}`}`,
      { details: { command, port, output } },
    );
  }
}

const startedServers = new Map<string, Promise<RedisServer>>();

/**
 * The Redis URL tests should use: `REDIS_URL` if set; else `redis://127.0.0.1:6379` if it answers
 * PING within a second; else a `redis-server` started from PATH (one per process, killed on exit).
 * Throws a ShardlineError (ERR_REDIS) saying how to provide Redis when none of these works.
 */
export async function resolveRedisUrl(options: ResolveRedisUrlOptions = {}): Promise<string> {
  const env = options.env ?? process.env;
  const fromEnv = env.REDIS_URL;
  if (fromEnv !== undefined && fromEnv !== '') return validateRedisUrl('REDIS_URL', fromEnv);
  const defaultUrl = validateRedisUrl('defaultUrl', options.defaultUrl ?? REDIS_DEFAULTS.defaultUrl);
  const probeTimeoutMs = options.probeTimeoutMs ?? REDIS_DEFAULTS.probeTimeoutMs;
  if (!isPositiveInteger(probeTimeoutMs)) {
    throw new ShardlineOptionError(
      'probeTimeoutMs',
      `must be a positive integer of milliseconds (got ${String(probeTimeoutMs)})`,
    );
  }
  if (await pingRedis(defaultUrl, probeTimeoutMs)) return defaultUrl;
  const command = options.redisServerCommand ?? REDIS_DEFAULTS.redisServerCommand;
  let server = startedServers.get(command);
  if (server === undefined) {
    server = startRedisServer({ command, unref: true });
    startedServers.set(command, server);
    // A failed start is not cached: the next call tries again (someone may have started Redis).
    server.catch(() => startedServers.delete(command));
  }
  try {
    return (await server).url;
  } catch (error) {
    throw new ShardlineError(
      ErrorCodes.REDIS,
      `no Redis available: REDIS_URL is not set, nothing answered PING at ${defaultUrl} within ${probeTimeoutMs} ms, ` +
        `and starting '${command}' failed (${(error as Error).message.split('\n')[0]}). ` +
        'Set REDIS_URL=redis://HOST:PORT, run a Redis server on 127.0.0.1:6379, or install redis-server ' +
        '(e.g. apt-get install -y redis-server) so that it is on PATH.',
      { cause: error },
    );
  }
}

/** `*`, `?`, `[`, `]` and `\` are glob syntax in SCAN MATCH. */
function escapeGlob(value: string): string {
  return value.replace(/[*?[\]\\]/g, '\\$&');
}

async function closeClient(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  const ended = new Promise((resolve) => client.once('end', resolve));
  // quit() lets pending replies arrive, but a server the test killed never answers it: bound it.
  await Promise.race([client.quit().catch(() => undefined), delay(QUIT_TIMEOUT_MS)]);
  client.disconnect();
  await Promise.race([ended, delay(QUIT_TIMEOUT_MS)]);
}

/** Deletes every key matching `${prefix}*`, in SCAN pages (KEYS would block the server). */
async function deletePrefix(redis: Redis, prefix: string): Promise<number> {
  const match = `${escapeGlob(prefix)}*`;
  let cursor = '0';
  let deleted = 0;
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', SCAN_COUNT);
    cursor = next;
    if (keys.length > 0) deleted += await redis.unlink(...keys);
  } while (cursor !== '0');
  return deleted;
}

/**
 * A Redis for one test (or describe block) with its own key prefix `test:<name>:<random>`.
 * Call cleanup() in `after`/`afterEach`: it deletes that prefix's keys and closes the clients.
 */
export async function useTestRedis(name: string = REDIS_DEFAULTS.testName): Promise<TestRedis> {
  if (typeof name !== 'string' || name === '') {
    throw new ShardlineOptionError('name', `must be a non-empty string (got ${JSON.stringify(name)})`);
  }
  const url = await resolveRedisUrl();
  const keyPrefix = `test:${name}:${randomBytes(6).toString('hex')}`;
  const clients = new Set<Redis>();
  return {
    url,
    keyPrefix,
    client(options?: RedisOptions): Redis {
      const client = options === undefined ? new Redis(url) : new Redis(url, options);
      clients.add(client);
      return client;
    },
    async cleanup(): Promise<void> {
      const admin = new Redis(url, {
        maxRetriesPerRequest: 2,
        connectTimeout: 2_000,
        retryStrategy: () => null,
      });
      admin.on('error', () => {});
      try {
        await deletePrefix(admin, keyPrefix);
      } catch (error) {
        throw new ShardlineError(ErrorCodes.REDIS, `could not delete the test keys ${keyPrefix}* at ${url}`, {
          cause: error,
        });
      } finally {
        const toClose = [...clients, admin];
        clients.clear();
        await Promise.all(toClose.map(closeClient));
      }
    },
  };
}
