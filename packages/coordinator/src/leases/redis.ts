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
import { RedisGate } from './redis-gate.js';
import { decodeLease, handoffDeadlineOf } from './redis-lease.js';
import { LeaseListCache, type ListedLease } from './redis-list-cache.js';
import {
  REDIS_LEASE_DEFAULTS,
  type RedisLeaseManagerOptions,
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
import { validCheckpoint, validCounter, validSeeds, validShardId } from './validation.js';

/** The keys of one group and stream. All share the hash tag `{<group>:<stream>}`: one Cluster slot. */
export interface LeaseKeys {
  /** Sorted set of shard ids (all scores 0, so ZRANGE is id order). */
  readonly index: string;
  /** Sorted set: host id -> last heartbeat (server ms). */
  readonly hosts: string;
  /** Hash: host id -> leases held at its last heartbeat. */
  readonly hostShards: string;
  /** String: the group version, raised by every change other hosts allocate by (see redis-list-cache.ts). */
  readonly version: string;
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
    version: `${base}version`,
    lease: (shardId: string) => `${base}lease:${shardId}`,
  });
}

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
 * **Listing.** `listLeases` reads every lease only when the group version moved or a lease of the last
 * listing may have run out since (see redis-list-cache.ts); otherwise one short script call confirms
 * the cached listing, so an idle host's Redis load does not grow with its leases. A cached listing may
 * show earlier expiries than the stored ones, and older checkpoint positions for leases other hosts
 * hold; every other field, and whether a lease is held, are as a full read would show them.
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
  readonly #gate: RedisGate;
  readonly #scripts: LeaseScripts;
  readonly #logger: Logger;
  readonly #listing: LeaseListCache;
  #closing: Promise<void> | undefined;
  #joined = false;

  constructor(options: RedisLeaseManagerOptions) {
    const resolved = resolveRedisLeaseManagerOptions(options);
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
    this.#gate = new RedisGate({
      connection: resolved.connection,
      commandTimeoutMs: resolved.commandTimeoutMs,
      logger: this.#logger,
    });
    this.#scripts = defineLeaseScripts(this.#gate.client);
    this.#listing = new LeaseListCache(this.hostId, this.leaseDurationMs);
  }

  #lease(shardId: string, raw: RawLease, nowMs: number): Lease | undefined {
    return decodeLease(shardId, raw, nowMs, this.leaseDurationMs);
  }

  async ensureLeases(seeds: readonly LeaseSeed[]): Promise<void> {
    const args: string[] = [];
    for (const seed of validSeeds(seeds)) {
      args.push(seed.shardId, JSON.stringify(seed.parentShardIds), JSON.stringify(seed.childShardIds));
    }
    // A shard the cached listing lacks (created by a host that does not raise the version): read all.
    if (!this.#listing.hasAll(seeds.map((seed) => seed.shardId))) this.#listing.invalidate();
    const perCall = REDIS_LEASE_DEFAULTS.ensureBatchSize * 3;
    for (let start = 0; start < args.length; start += perCall) {
      const chunk = args.slice(start, start + perCall);
      await this.#gate.run('ensureLeases', () => this.#scripts.ensureLeases(this.keys.index, chunk));
    }
  }

  async listLeases(): Promise<Lease[]> {
    const query = this.#listing.query();
    const { nowMs, version, leases } = await this.#gate.run('listLeases', () =>
      this.#scripts.listLeases(this.keys.index, query.version, query.dueMs),
    );
    if (leases === undefined) {
      // The script answers so only for the version sent, which only a snapshot has.
      if (query.snapshot === undefined) throw new ShardlineError(ErrorCodes.REDIS, 'listLeases: no listing');
      return this.#listing.confirmed(query.snapshot, nowMs);
    }
    const listed: ListedLease[] = [];
    for (const [shardId, raw] of leases) {
      const lease = this.#lease(shardId, raw, nowMs);
      if (lease === undefined) continue;
      listed.push({ lease, handoffDeadlineMs: handoffDeadlineOf(raw, nowMs, this.leaseDurationMs) });
    }
    return this.#listing.store(query, version, nowMs, listed);
  }

  async getLease(shardId: string): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    const { nowMs, lease } = await this.#gate.run('getLease', () =>
      this.#scripts.getLease(this.keys.lease(shardId)),
    );
    return this.#lease(shardId, lease, nowMs);
  }

  async acquire(shardId: string): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    const reply = await this.#gate.run('acquire', () =>
      this.#scripts.acquire(this.keys.lease(shardId), this.keys.version, this.hostId, this.leaseDurationMs),
    );
    if (reply.status !== 'OK') {
      this.#logger.debug({ shardId, refused: reply.status }, 'lease not acquired');
      // The listing that made us try was out of date (a race, or a host that does not raise the version).
      this.#listing.invalidate();
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
    const reply = await this.#gate.run(
      'renew',
      () => this.#scripts.renewLeases(this.keys.index, this.hostId, this.leaseDurationMs, args),
      options.timeoutMs,
    );
    for (const { shardId, status, lease } of reply.leases) {
      const renewed = status === 'OK' ? this.#lease(shardId, lease, reply.nowMs) : undefined;
      if (renewed === undefined) {
        this.#logger.debug({ shardId, refused: status }, 'lease not renewed');
        this.#listing.invalidate();
      } else this.#listing.renewed(renewed);
      out.set(shardId, renewed);
    }
    return out;
  }

  async removeLease(shardId: string, counter: number): Promise<boolean> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const reply = await this.#gate.run('removeLease', () =>
      this.#scripts.removeLease(this.keys.index, shardId, counter),
    );
    if (reply.status !== 'OK') this.#listing.invalidate();
    return reply.status === 'OK';
  }

  async release(shardId: string, counter: number, failure?: LeaseFailure): Promise<boolean> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const note = failure === undefined ? '' : JSON.stringify(failure);
    const reply = await this.#gate.run('release', () =>
      this.#scripts.release(this.keys.lease(shardId), this.keys.version, this.hostId, counter, note),
    );
    if (reply.status !== 'OK') this.#listing.invalidate();
    return reply.status === 'OK';
  }

  async checkpoint(shardId: string, counter: number, checkpoint: Checkpoint): Promise<void> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const valid = validCheckpoint(checkpoint);
    const [position, subSequence] = checkpointArgs(valid);
    const reply = await this.#gate.run('checkpoint', () =>
      this.#scripts.checkpoint(
        this.keys.lease(shardId),
        this.keys.version,
        this.hostId,
        counter,
        position,
        subSequence,
      ),
    );
    if (reply.status === 'OK') {
      this.#listing.checkpointed(shardId, counter, valid);
      return;
    }
    this.#listing.invalidate();
    switch (reply.status) {
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
    const reply = await this.#gate.run('requestHandoff', () =>
      this.#scripts.requestHandoff(
        this.keys.lease(shardId),
        this.keys.version,
        toHostId,
        this.leaseDurationMs,
      ),
    );
    if (reply.status !== 'OK') this.#listing.invalidate();
    return reply.status === 'OK';
  }

  async heartbeat(shards: number): Promise<void> {
    if (typeof shards !== 'number' || !Number.isSafeInteger(shards) || shards < 0) {
      throw new ShardlineOptionError('shards', `must be a non-negative integer (got ${String(shards)})`);
    }
    await this.#gate.run('heartbeat', () =>
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
    const { hosts } = await this.#gate.run('liveHosts', () =>
      this.#scripts.liveHosts(this.keys.hosts, this.keys.hostShards, this.leaseDurationMs),
    );
    return hosts;
  }

  async now(): Promise<number> {
    return this.#gate.run('now', () => this.#scripts.time(this.keys.index));
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
    if (this.#joined && this.#gate.ready) {
      await this.#gate.bounded(this.#scripts.leave(this.keys.hosts, this.keys.hostShards, this.hostId));
    }
    await this.#gate.close();
  }
}

/** The script arguments for a checkpoint: position ('SHARD_END' or digits), sub-sequence or ''. */
function checkpointArgs(checkpoint: Checkpoint): [string, string] {
  if (checkpoint === SHARD_END) return [SHARD_END, ''];
  const sub = checkpoint.subSequenceNumber;
  return [checkpoint.sequenceNumber, sub === undefined ? '' : String(sub)];
}
