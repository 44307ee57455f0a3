/**
 * Leases and checkpoints in Redis, for many hosts sharing a stream. Every transition is one Lua script
 * (see scripts.ts and lua/), fenced by owner + counter, timed on the Redis server clock.
 */
import {
  childLogger,
  ErrorCodes,
  type Logger,
  SHARD_END,
  ShardlineError,
  ShardlineOptionError,
} from '@shardline/common';
import { type Cluster, Redis, type RedisOptions } from 'ioredis';
import {
  REDIS_LEASE_DEFAULTS,
  type RedisLeaseManagerOptions,
  type ResolvedConnection,
  type ResolvedRedisLeaseManagerOptions,
  resolveRedisLeaseManagerOptions,
} from './redis-options.js';
import { defineLeaseScripts, type LeaseScripts, type RawLease } from './scripts.js';
import type {
  Checkpoint,
  HeldLease,
  HostInfo,
  Lease,
  LeaseCallOptions,
  LeaseFailure,
  LeaseManager,
  LeaseSeed,
} from './types.js';

const MAX_SHARD_ID_LENGTH = 256;
const MAX_SEQUENCE_LENGTH = 256;
/** close() gives the goodbye (leave) and QUIT at most this long: Redis may be the reason we stop. */
const CLOSE_TIMEOUT_MS = 1_000;
/** ioredis ReplyError prefixes that a later retry can clear (failover, loading, busy script). */
const TRANSIENT_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK)\b/;

/** The keys of one group and stream. All share the hash tag `{<group>:<stream>}`: one Cluster slot. */
export interface LeaseKeys {
  /** Sorted set of shard ids (all scores 0, so ZRANGE is id order). */
  readonly index: string;
  /** Sorted set: host id -> last heartbeat (server ms). */
  readonly hosts: string;
  /** Hash: host id -> leases held at its last heartbeat. */
  readonly hostShards: string;
  /** Hash per shard: owner, counter, expiresAtMs, checkpoint, subSequenceNumber, parents, children, handoffTo, handoffAtMs. */
  lease(shardId: string): string;
}

export function leaseKeys(keyPrefix: string, group: string, stream: string): LeaseKeys {
  const base = `${keyPrefix}:{${group}:${stream}}:`;
  return Object.freeze({
    // The Lua scripts derive lease keys from this one by replacing 'shards' with 'lease:<id>'.
    index: `${base}shards`,
    hosts: `${base}hosts`,
    hostShards: `${base}host-shards`,
    lease: (shardId: string) => `${base}lease:${shardId}`,
  });
}

function noop(): void {}

/**
 * Leases and checkpoints in Redis (see {@link LeaseManager} for the contract).
 *
 * **Clock.** Expiry is measured on the Redis server clock (`TIME` inside the scripts); `now()` returns
 * it. Host clocks are never compared.
 *
 * **Renewal and safety.** `renew()` returns undefined when the lease is lost (moved, released, expired):
 * the host must stop handing out that shard's records at once. Because a renew can also fail without an
 * answer (Redis down, network cut), the coordinator must treat the lease as lost when no renew has
 * *succeeded* in time, timed on **its own monotonic clock from the moment it sent the last successful
 * renew**: valid until `sentAt + (lease.expiresAtMs - lease.readAtMs) - safetyMargin`. `sentAt` precedes
 * the server's execution, so that deadline falls before the server-side expiry (the margin covers clock
 * rate drift and scheduling delays), and a host cut off from Redis stops before another host can take
 * the lease, whatever the offset between the clocks.
 *
 * **Handoff.** `requestHandoff()` marks the lease; the owner sees `handoffTo` in its next renew and
 * should finish its in-flight batch, checkpoint and release. While the request is pending, renewals do
 * not extend the lease past request time + leaseDurationMs, so an owner that does not release in time
 * loses the lease then, never overlapping with the requester. A released lease stays reserved for the
 * requester until that same deadline.
 *
 * **Expired leases.** `getLease`/`listLeases` report the owner and expiry as stored; a lease whose
 * `expiresAtMs` is not after `now()` is free to acquire. A late checkpoint or release by the owner of an
 * expired lease that nobody took since is accepted (nobody else can have read the shard meanwhile);
 * renewing it is refused (acquire it again).
 *
 * **Connection.** For a URL or options, the client is built to fail fast instead of queueing:
 * `maxRetriesPerRequest: 0` (a command whose connection dropped fails at once instead of being re-sent
 * after a reconnect, when the caller has moved on), `enableOfflineQueue: false` (nothing waits in a
 * queue to run later, after the caller gave up: each call instead waits for the connection, at most
 * `commandTimeoutMs`), `connectTimeout` and `commandTimeout` = `commandTimeoutMs`, and reconnection
 * forever with delays of 100 ms more per attempt up to 1 s. A ready instance passed in keeps its own
 * settings; calls are still bounded by `commandTimeoutMs`.
 *
 * Errors: Redis unreachable, timeouts and Redis error replies are ShardlineError ERR_REDIS with the
 * ioredis error as `cause` (retriable unless the reply says it is permanent, e.g. WRONGPASS, NOPERM,
 * WRONGTYPE). Messages name the server without credentials.
 */
export class RedisLeaseManager implements LeaseManager {
  readonly hostId: string;
  readonly leaseDurationMs: number;
  readonly group: string;
  readonly stream: string;
  readonly keys: LeaseKeys;
  readonly #options: ResolvedRedisLeaseManagerOptions;
  readonly #redis: Redis | Cluster;
  readonly #ownsClient: boolean;
  readonly #scripts: LeaseScripts;
  readonly #logger: Logger;
  #closing: Promise<void> | undefined;
  #connecting: Promise<void> | undefined;
  #joined = false;
  #connectionLost = false;

  constructor(options: RedisLeaseManagerOptions) {
    const resolved = resolveRedisLeaseManagerOptions(options);
    this.#options = resolved;
    this.hostId = resolved.hostId;
    this.leaseDurationMs = resolved.leaseDurationMs;
    this.group = resolved.group;
    this.stream = resolved.stream;
    this.keys = leaseKeys(resolved.keyPrefix, resolved.group, resolved.stream);
    this.#logger = childLogger(resolved.logger, {
      component: 'redis-leases',
      group: resolved.group,
      stream: resolved.stream,
    });
    const { connection } = resolved;
    if (connection.kind === 'instance') {
      this.#redis = connection.client;
      this.#ownsClient = false;
    } else {
      this.#redis = this.#createClient(connection);
      this.#ownsClient = true;
    }
    this.#scripts = defineLeaseScripts(this.#redis);
  }

  #createClient(connection: Exclude<ResolvedConnection, { kind: 'instance' }>): Redis {
    const timeoutMs = this.#options.commandTimeoutMs;
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
      const fields = { redis: connection.description, error: this.#scrub(error.message) };
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
  #scrub(text: string): string {
    let out = text;
    for (const secret of this.#options.connection.secrets) out = out.split(secret).join('***');
    return out;
  }

  #redisError(operation: string, error: unknown): ShardlineError {
    if (error instanceof ShardlineError) return error;
    const message = this.#scrub(error instanceof Error ? error.message : String(error));
    const isReply = (error as { name?: unknown } | null)?.name === 'ReplyError';
    const retriable = !isReply || TRANSIENT_REPLY.test(message);
    return new ShardlineError(
      ErrorCodes.REDIS,
      `Redis ${operation} failed (${this.#options.connection.description}): ${message}`,
      { retriable, cause: error, details: { operation } },
    );
  }

  /**
   * The outcome of the connection attempt under way: resolves on 'ready', rejects on the next 'error'
   * or on 'end'. One promise (three listeners) shared by every waiting call, however many there are.
   */
  #connectionOutcome(): Promise<void> {
    if (this.#connecting !== undefined) return this.#connecting;
    const client = this.#redis;
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
    const client = this.#redis;
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
  async #run<T>(operation: string, call: () => Promise<T>, timeoutMs?: number): Promise<T> {
    if (this.#closing !== undefined) {
      throw new ShardlineError(ErrorCodes.CLOSED, `the Redis lease manager is closed (${operation})`);
    }
    const limitMs = Math.min(this.#options.commandTimeoutMs, timeoutMs ?? Number.POSITIVE_INFINITY);
    const what = limitMs < this.#options.commandTimeoutMs ? "the call's timeoutMs" : 'commandTimeoutMs';
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

  #lease(shardId: string, raw: RawLease, nowMs: number): Lease | undefined {
    if (raw.length === 0) return undefined;
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < raw.length; i += 2) fields.set(raw[i]!, raw[i + 1]!);
    const owner = fields.get('owner');
    const expires = fields.get('expiresAtMs');
    const position = fields.get('checkpoint');
    const subSequence = fields.get('subSequenceNumber');
    let checkpoint: Checkpoint | undefined;
    if (position === SHARD_END) checkpoint = SHARD_END;
    else if (position !== undefined) {
      checkpoint =
        subSequence === undefined
          ? { sequenceNumber: position }
          : { sequenceNumber: position, subSequenceNumber: Number(subSequence) };
    }
    // A request past its deadline is dead: not shown, and the next request or acquire replaces it.
    const handoffAt = Number(fields.get('handoffAtMs'));
    const handoffTo =
      Number.isFinite(handoffAt) && handoffAt + this.leaseDurationMs > nowMs
        ? fields.get('handoffTo')
        : undefined;
    return {
      shardId,
      owner,
      counter: Number(fields.get('counter') ?? '0'),
      expiresAtMs: owner === undefined || expires === undefined ? undefined : Number(expires),
      checkpoint,
      parentShardIds: idList(fields.get('parents')),
      childShardIds: idList(fields.get('children')),
      handoffTo,
      readAtMs: nowMs,
      ...failureOf(fields.get('failure')),
    };
  }

  async ensureLeases(seeds: readonly LeaseSeed[]): Promise<void> {
    if (!Array.isArray(seeds)) {
      throw new ShardlineOptionError(
        'seeds',
        `must be an array of { shardId, parentShardIds } (got ${typeof seeds})`,
      );
    }
    const args: string[] = [];
    for (const [i, seed] of seeds.entries()) {
      if (typeof seed !== 'object' || seed === null) {
        throw new ShardlineOptionError(
          `seeds[${i}]`,
          'must be an object { shardId, parentShardIds, childShardIds? }',
        );
      }
      const shardId = validShardId(`seeds[${i}].shardId`, seed.shardId);
      const parents = validIds(`seeds[${i}].parentShardIds`, seed.parentShardIds);
      const children =
        seed.childShardIds === undefined ? [] : validIds(`seeds[${i}].childShardIds`, seed.childShardIds);
      args.push(shardId, JSON.stringify(parents), JSON.stringify(children));
    }
    const perCall = REDIS_LEASE_DEFAULTS.ensureBatchSize * 3;
    for (let start = 0; start < args.length; start += perCall) {
      const chunk = args.slice(start, start + perCall);
      await this.#run('ensureLeases', () => this.#scripts.ensureLeases(this.keys.index, chunk));
    }
  }

  async listLeases(): Promise<Lease[]> {
    const { nowMs, leases } = await this.#run('listLeases', () => this.#scripts.listLeases(this.keys.index));
    const out: Lease[] = [];
    for (const [shardId, raw] of leases) {
      const lease = this.#lease(shardId, raw, nowMs);
      if (lease !== undefined) out.push(lease);
    }
    return out;
  }

  async getLease(shardId: string): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    const { nowMs, lease } = await this.#run('getLease', () =>
      this.#scripts.getLease(this.keys.lease(shardId)),
    );
    return this.#lease(shardId, lease, nowMs);
  }

  async acquire(shardId: string): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    const reply = await this.#run('acquire', () =>
      this.#scripts.acquire(this.keys.lease(shardId), this.hostId, this.leaseDurationMs),
    );
    if (reply.status !== 'OK') {
      this.#logger.debug({ shardId, refused: reply.status }, 'lease not acquired');
      return undefined;
    }
    return this.#lease(shardId, reply.lease, reply.nowMs);
  }

  /**
   * Extends the lease to leaseDurationMs from now (server clock), or less while a handoff is pending.
   * Undefined means lost: stop handing out the shard's records now. A rejected promise (ERR_REDIS) means
   * unknown: keep the lease only until the deadline measured on this host's monotonic clock from when
   * the last *successful* renew was sent (see the class documentation).
   */
  async renew(shardId: string, counter: number): Promise<Lease | undefined> {
    return (await this.renewLeases([{ shardId, counter }])).get(shardId);
  }

  /**
   * {@link renew} for every lease in `held`, in one script call: one round trip per renewal round
   * however many leases the host holds. A rejected promise means unknown for all of them.
   */
  async renewLeases(
    held: readonly HeldLease[],
    options: LeaseCallOptions = {},
  ): Promise<Map<string, Lease | undefined>> {
    if (!Array.isArray(held)) {
      throw new ShardlineOptionError('held', `must be an array of { shardId, counter } (got ${typeof held})`);
    }
    const args: Array<string | number> = [];
    for (const [i, entry] of held.entries()) {
      args.push(validShardId(`held[${i}].shardId`, entry?.shardId));
      validCounter(entry.counter);
      args.push(entry.counter);
    }
    const out = new Map<string, Lease | undefined>();
    if (held.length === 0) return out;
    const reply = await this.#run(
      'renew',
      () => this.#scripts.renewLeases(this.keys.index, this.hostId, this.leaseDurationMs, args),
      options.timeoutMs,
    );
    for (const { shardId, status, lease } of reply.leases) {
      if (status !== 'OK') {
        this.#logger.debug({ shardId, refused: status }, 'lease not renewed');
        out.set(shardId, undefined);
      } else out.set(shardId, this.#lease(shardId, lease, reply.nowMs));
    }
    return out;
  }

  async removeLease(shardId: string, counter: number): Promise<boolean> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const reply = await this.#run('removeLease', () =>
      this.#scripts.removeLease(this.keys.index, shardId, counter),
    );
    return reply.status === 'OK';
  }

  async release(shardId: string, counter: number, failure?: LeaseFailure): Promise<boolean> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const note = failure === undefined ? '' : JSON.stringify(failure);
    const reply = await this.#run('release', () =>
      this.#scripts.release(this.keys.lease(shardId), this.hostId, counter, note),
    );
    return reply.status === 'OK';
  }

  async checkpoint(shardId: string, counter: number, checkpoint: Checkpoint): Promise<void> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const [position, subSequence] = checkpointArgs(checkpoint);
    const reply = await this.#run('checkpoint', () =>
      this.#scripts.checkpoint(this.keys.lease(shardId), this.hostId, counter, position, subSequence),
    );
    switch (reply.status) {
      case 'OK':
        return;
      case 'ENDED':
        throw new ShardlineOptionError(
          'checkpoint',
          `cannot follow SHARD_END: shard ${shardId} was read to its end, a position after that is refused (got sequence ${position})`,
        );
      case 'NOT_FOUND':
      case 'NOT_OWNER':
      case 'STALE_COUNTER': {
        const current = this.#lease(shardId, reply.lease, reply.nowMs);
        const holder =
          current === undefined
            ? 'there is no lease for it'
            : current.owner === undefined
              ? `it is free (counter ${current.counter})`
              : `it is held by ${current.owner} with counter ${current.counter}`;
        throw new ShardlineError(
          ErrorCodes.LEASE_LOST,
          `checkpoint of shard ${shardId} refused: this host (${this.hostId}) had the lease with counter ${counter}, but ${holder}`,
          {
            details: {
              shardId,
              hostId: this.hostId,
              counter,
              reason: reply.status,
              owner: current?.owner ?? null,
              currentCounter: current?.counter ?? null,
            },
          },
        );
      }
      default:
        throw new ShardlineError(ErrorCodes.INTERNAL, `unexpected checkpoint status ${String(reply.status)}`);
    }
  }

  async requestHandoff(shardId: string, toHostId: string): Promise<boolean> {
    validShardId('shardId', shardId);
    if (typeof toHostId !== 'string' || toHostId === '') {
      throw new ShardlineOptionError(
        'toHostId',
        `must be a non-empty host id (got ${JSON.stringify(toHostId)})`,
      );
    }
    const reply = await this.#run('requestHandoff', () =>
      this.#scripts.requestHandoff(this.keys.lease(shardId), toHostId, this.leaseDurationMs),
    );
    return reply.status === 'OK';
  }

  async heartbeat(shards: number): Promise<void> {
    if (typeof shards !== 'number' || !Number.isSafeInteger(shards) || shards < 0) {
      throw new ShardlineOptionError('shards', `must be a non-negative integer (got ${String(shards)})`);
    }
    await this.#run('heartbeat', () =>
      this.#scripts.heartbeat(
        this.keys.hosts,
        this.keys.hostShards,
        this.hostId,
        shards,
        this.leaseDurationMs,
      ),
    );
    this.#joined = true;
  }

  async liveHosts(): Promise<HostInfo[]> {
    const { hosts } = await this.#run('liveHosts', () =>
      this.#scripts.liveHosts(this.keys.hosts, this.keys.hostShards, this.leaseDurationMs),
    );
    return hosts;
  }

  async now(): Promise<number> {
    return this.#run('now', () => this.#scripts.time(this.keys.index));
  }

  /**
   * Leaves the live hosts (best effort, so the others rebalance at once) and closes the connection when
   * it is ours; an instance passed in is left open. Idempotent. Leases are not released here: release
   * them first (a graceful stop) or let them expire.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    const bounded = <T>(promise: Promise<T>): Promise<unknown> =>
      Promise.race([
        promise.catch(noop),
        new Promise((resolve) => setTimeout(resolve, CLOSE_TIMEOUT_MS).unref()),
      ]);
    if (this.#joined && this.#redis.status === 'ready') {
      await bounded(this.#scripts.leave(this.keys.hosts, this.keys.hostShards, this.hostId));
    }
    if (!this.#ownsClient) return;
    if (this.#redis.status === 'ready') await bounded(this.#redis.quit());
    this.#redis.disconnect();
  }
}

/** A stored failure note, when it parses as one (a note is advisory: a bad one is ignored). */
function failureOf(json: string | undefined): { failure?: LeaseFailure } {
  if (json === undefined) return {};
  try {
    const value = JSON.parse(json) as Partial<LeaseFailure> | null;
    if (
      typeof value?.hostId === 'string' &&
      typeof value.code === 'string' &&
      typeof value.message === 'string' &&
      typeof value.atMs === 'number' &&
      (value.reason === 'handler' || value.reason === 'reader' || value.reason === 'crashes')
    ) {
      return { failure: value as LeaseFailure };
    }
  } catch {
    // ignored
  }
  return {};
}

function idList(json: string | undefined): string[] {
  if (json === undefined) return [];
  try {
    const value: unknown = JSON.parse(json);
    // cjson encodes an empty array as {}.
    return Array.isArray(value) ? value.filter((id): id is string => typeof id === 'string') : [];
  } catch {
    return [];
  }
}

function validShardId(option: string, value: unknown): string {
  if (typeof value !== 'string' || value === '' || value.length > MAX_SHARD_ID_LENGTH) {
    throw new ShardlineOptionError(
      option,
      `must be a shard id: a non-empty string of at most ${MAX_SHARD_ID_LENGTH} characters (got ${JSON.stringify(value)})`,
    );
  }
  return value;
}

function validIds(option: string, value: unknown): string[] {
  if (!Array.isArray(value)) {
    throw new ShardlineOptionError(option, `must be an array of shard ids (got ${JSON.stringify(value)})`);
  }
  return value.map((id, i) => validShardId(`${option}[${i}]`, id));
}

function validCounter(value: unknown): void {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ShardlineOptionError(
      'counter',
      `must be the lease counter from acquire, a non-negative integer (got ${String(value)})`,
    );
  }
}

/** The script arguments for a checkpoint: position ('SHARD_END' or digits), sub-sequence or ''. */
function checkpointArgs(checkpoint: unknown): [string, string] {
  if (checkpoint === SHARD_END) return [SHARD_END, ''];
  const c = checkpoint as { sequenceNumber?: unknown; subSequenceNumber?: unknown } | null;
  if (typeof c !== 'object' || c === null) {
    throw new ShardlineOptionError(
      'checkpoint',
      `must be 'SHARD_END' or { sequenceNumber, subSequenceNumber? } (got ${JSON.stringify(checkpoint)})`,
    );
  }
  if (
    typeof c.sequenceNumber !== 'string' ||
    !/^\d+$/.test(c.sequenceNumber) ||
    c.sequenceNumber.length > MAX_SEQUENCE_LENGTH
  ) {
    throw new ShardlineOptionError(
      'checkpoint.sequenceNumber',
      `must be a Kinesis sequence number (a string of digits) (got ${JSON.stringify(c.sequenceNumber)})`,
    );
  }
  if (c.subSequenceNumber === undefined) return [c.sequenceNumber, ''];
  if (
    typeof c.subSequenceNumber !== 'number' ||
    !Number.isSafeInteger(c.subSequenceNumber) ||
    c.subSequenceNumber < 0
  ) {
    throw new ShardlineOptionError(
      'checkpoint.subSequenceNumber',
      `must be a non-negative integer when set (got ${String(c.subSequenceNumber)})`,
    );
  }
  return [c.sequenceNumber, String(c.subSequenceNumber)];
}
