/**
 * The lease manager's way to Redis: the ioredis client (our own, tuned to fail fast, or an instance
 * passed in), and bounded, error-wrapping calls through {@link RedisGate.run}.
 *
 * For a URL or options, the client is built to fail fast instead of queueing: `maxRetriesPerRequest: 0`
 * (a command whose connection dropped fails at once instead of being re-sent after a reconnect, when the
 * caller has moved on), `enableOfflineQueue: false` (nothing waits in a queue to run later, after the
 * caller gave up: each call instead waits for the connection, at most its timeout), `connectTimeout`
 * and `commandTimeout` = `commandTimeoutMs`, and reconnection forever with delays of 100 ms more per
 * attempt up to 1 s. A ready instance passed in keeps its own settings; calls are still bounded.
 */

import { ErrorCodes, type Logger, ShardlineError } from '@shardline/common';
import { type Cluster, Redis, type RedisOptions } from 'ioredis';
import { REDIS_LEASE_DEFAULTS, type ResolvedConnection } from './redis-options.js';

/** close() gives the goodbye and QUIT at most this long: Redis may be the reason we stop. */
const CLOSE_TIMEOUT_MS = 1_000;
/** ioredis ReplyError prefixes that a later retry can clear (failover, loading, busy script). */
const TRANSIENT_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK)\b/;

function noop(): void {}

export interface RedisGateOptions {
  connection: ResolvedConnection;
  commandTimeoutMs: number;
  logger: Logger;
}

export class RedisGate {
  readonly client: Redis | Cluster;
  readonly #o: RedisGateOptions;
  readonly #ownsClient: boolean;
  readonly #logger: Logger;
  #closed = false;
  #connecting: Promise<void> | undefined;
  #connectionLost = false;

  constructor(options: RedisGateOptions) {
    this.#o = options;
    this.#logger = options.logger;
    const { connection } = options;
    if (connection.kind === 'instance') {
      this.client = connection.client;
      this.#ownsClient = false;
    } else {
      this.client = this.#createClient(connection);
      this.#ownsClient = true;
    }
  }

  get ready(): boolean {
    return this.client.status === 'ready';
  }

  /** `promise`, or nothing after CLOSE_TIMEOUT_MS; never rejects. */
  bounded<T>(promise: Promise<T>): Promise<unknown> {
    return Promise.race([
      promise.catch(noop),
      new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref()),
    ]);
  }

  /** Refuses further calls and closes the client when it is ours (an instance passed in stays open). */
  async close(): Promise<void> {
    this.#closed = true;
    if (!this.#ownsClient) return;
    if (this.client.status === 'ready') await this.bounded(this.client.quit());
    this.client.disconnect();
  }

  #createClient(connection: Exclude<ResolvedConnection, { kind: 'instance' }>): Redis {
    const timeoutMs = this.#o.commandTimeoutMs;
    const defaults: RedisOptions = {
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: (attempt: number) =>
        Math.min(attempt * REDIS_LEASE_DEFAULTS.reconnectStepMs, REDIS_LEASE_DEFAULTS.maxReconnectDelayMs),
    };
    const options = { ...defaults, ...connection.options };
    const client = connection.kind === 'url' ? new Redis(connection.url, options) : new Redis(options);
    // Without a listener ioredis prints every connection error to the console; log the first of a
    // streak as a warning and the rest at debug level.
    client.on('error', (error: Error) => {
      const fields = { redis: connection.description, error: this.scrub(error.message) };
      if (this.#connectionLost) {
        this.#logger.debug(fields, 'Redis connection error');
      } else {
        this.#connectionLost = true;
        this.#logger.warn(fields, 'Redis connection lost; reconnecting');
      }
    });
    client.on('ready', () => {
      if (this.#connectionLost) {
        this.#connectionLost = false;
        this.#logger.info({ redis: connection.description }, 'Redis connection restored');
      }
    });
    return client;
  }

  /** Removes every credential of the connection from a text. */
  scrub(text: string): string {
    let out = text;
    for (const secret of this.#o.connection.secrets) out = out.split(secret).join('***');
    return out;
  }

  #redisError(operation: string, error: unknown): ShardlineError {
    if (error instanceof ShardlineError) return error;
    const message = this.scrub(error instanceof Error ? error.message : String(error));
    const isReply = (error as { name?: unknown } | null)?.name === 'ReplyError';
    const retriable = !isReply || TRANSIENT_REPLY.test(message);
    return new ShardlineError(
      ErrorCodes.REDIS,
      `Redis ${operation} failed (${this.#o.connection.description}): ${message}`,
      { retriable, cause: error, details: { operation } },
    );
  }

  /**
   * The outcome of the connection attempt under way: resolves on 'ready', rejects on the next 'error'
   * or on 'end'. One promise (three listeners) shared by every waiting call, however many there are.
   */
  #connectionOutcome(): Promise<void> {
    if (this.#connecting !== undefined) return this.#connecting;
    const client = this.client;
    const outcome = new Promise<void>((resolve, reject) => {
      const settle = (error?: Error): void => {
        client.off('ready', onReady);
        client.off('error', onError);
        client.off('end', onEnd);
        this.#connecting = undefined;
        if (error === undefined) resolve();
        else reject(error);
      };
      const onReady = (): void => settle();
      const onError = (error: Error): void => settle(error);
      const onEnd = (): void => settle(new Error('the connection is closed'));
      client.on('ready', onReady);
      client.on('error', onError);
      client.on('end', onEnd);
    });
    // Nobody may be waiting any more when it settles.
    outcome.catch(noop);
    this.#connecting = outcome;
    if (client.status === 'wait') client.connect().catch(noop);
    return outcome;
  }

  /**
   * Resolves once the client is ready; rejects at `deadline`, or on a connection error (so a call fails
   * as soon as Redis is known unreachable, not only at the deadline).
   */
  async #whenReady(deadline: number, timeoutMessage: string): Promise<void> {
    const client = this.client;
    if (client.status === 'ready') return;
    if (client.status === 'end') throw new Error('the connection is closed');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(timeoutMessage)), Math.max(0, deadline - performance.now()));
    });
    try {
      await Promise.race([this.#connectionOutcome(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Runs one Redis call: refuses after close(), waits for the connection, bounds the whole call by
   * `timeoutMs` (commandTimeoutMs unless a caller asks for less; also for instances without a
   * commandTimeout of their own), wraps errors.
   */
  async run<T>(operation: string, call: () => Promise<T>, timeoutMs?: number): Promise<T> {
    if (this.#closed) {
      throw new ShardlineError(ErrorCodes.CLOSED, `the Redis lease manager is closed (${operation})`);
    }
    const limitMs = Math.min(this.#o.commandTimeoutMs, timeoutMs ?? Number.POSITIVE_INFINITY);
    const what = limitMs < this.#o.commandTimeoutMs ? "the call's timeoutMs" : 'commandTimeoutMs';
    const deadline = performance.now() + limitMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.#whenReady(deadline, `not connected within ${limitMs} ms (${what})`);
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no reply within ${limitMs} ms (${what})`)),
          Math.max(0, deadline - performance.now()),
        );
      });
      return await Promise.race([call(), timeout]);
    } catch (error) {
      throw this.#redisError(operation, error);
    } finally {
      clearTimeout(timer);
    }
  }
}
