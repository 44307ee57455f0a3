/**
 * In-memory leases: one host, or several coordinators of one process sharing a {@link MemoryLeaseStore}
 * (tests, demos). Fenced exactly as the Redis lease manager: every transition checks owner and counter
 * and happens atomically (synchronously, before the returned promise settles), so interleavings of
 * several managers behave as concurrent Lua scripts on one Redis.
 *
 * Transition rules (the LeaseManager contract, made precise; the Redis scripts follow the same):
 * - `acquire`: succeeds when the lease is free, expired (`expiresAtMs <= now`) or already this host's
 *   (a retry), unless a live handoff reservation names another host; sets owner, counter + 1, expiry
 *   now + leaseDurationMs; clears the handoff request; notes the first acquisition's time
 *   (`firstAcquiredAtMs`, kept for good). Refused for a shard without lease, and while
 *   another host holds it unexpired (even when it was asked to hand it to this host: the owner hands
 *   over, or its lease runs out).
 * - `renew`: succeeds when owner and counter match and the lease has not expired. While a handoff
 *   request is pending, the expiry never goes past request time + leaseDurationMs: an owner that does
 *   not hand over in time loses the lease then, never overlapping with the requester.
 * - `release`, `checkpoint`: succeed when owner and counter match, expired or not: a matching counter
 *   proves nobody acquired the lease since, so nobody else can have read the shard meanwhile.
 * - `release` frees owner and expiry, keeps the checkpoint, and keeps a pending handoff request as a
 *   reservation: until request time + leaseDurationMs only the requester may acquire the lease. A
 *   failure note given with it stays in the lease until the next acquisition.
 * - `checkpoint` refuses a stale owner or counter with `ERR_LEASE_LOST`; SHARD_END is final (a position
 *   after it is refused with `ERR_INVALID_OPTION`, SHARD_END again is accepted).
 * - `renewLeases`: `renew` for each lease given, all at one instant.
 * - `removeLease`: deletes a lease nobody holds (free or expired) whose counter is still the one given.
 * - `requestHandoff`: refused when the lease is free or expired, held by the requester, or a live
 *   request is pending. A request is live for leaseDurationMs; leases show `handoffTo` only while live.
 * - Every lease read carries `readAtMs`, the store time of the read.
 * - `liveHosts`: heartbeats within one lease duration; `close()` withdraws this host's heartbeat.
 */

import { ErrorCodes, SHARD_END, ShardlineError, ShardlineOptionError } from '@shardline/common';
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
import { validCheckpoint, validCounter, validIds, validShardId } from './validation.js';

/** The namespaces of each store, kept off its public surface. */
const namespaces = new WeakMap<MemoryLeaseStore, Map<string, Namespace>>();

function namespaceOf(store: MemoryLeaseStore, name: string): Namespace {
  let byName = namespaces.get(store);
  if (byName === undefined) {
    byName = new Map();
    namespaces.set(store, byName);
  }
  let ns = byName.get(name);
  if (ns === undefined) {
    ns = { leases: new Map(), hosts: new Map() };
    byName.set(name, ns);
  }
  return ns;
}

/** A lease as stored. */
interface StoredLease extends Omit<Lease, 'readAtMs'> {
  /** When the pending handoff was asked for: it caps renewals and reserves the lease until then + duration. */
  handoffAtMs: number | undefined;
}

interface Namespace {
  leases: Map<string, StoredLease>;
  hosts: Map<string, { lastSeenAtMs: number; shards: number }>;
}

export interface MemoryLeaseStoreOptions {
  /**
   * The store's clock in ms: lease expiry and heartbeats are measured on it (as Redis uses its server
   * clock). Inject one in tests.
   * @defaultValue Date.now
   */
  clock?: () => number;
}

/**
 * Leases and heartbeats shared by the {@link MemoryLeaseManager}s of one process. Namespaces (one per
 * consumer group and stream) keep groups apart, as Redis key prefixes do.
 */
export class MemoryLeaseStore {
  readonly #clock: () => number;

  constructor(options: MemoryLeaseStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('options', 'must be an object like { clock? }');
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new ShardlineOptionError('clock', 'must be a function returning milliseconds');
    }
    this.#clock = options.clock ?? Date.now;
  }

  /** The store's clock (ms). */
  now(): number {
    return this.#clock();
  }
}

export interface MemoryLeaseManagerOptions {
  /** This host's id. */
  hostId: string;
  /** Lease lifetime without renewal, >= 1 ms. */
  leaseDurationMs: number;
  /**
   * Shared with other managers (other hosts) in this process.
   * @defaultValue a store of its own
   */
  store?: MemoryLeaseStore;
  /**
   * Keeps consumer groups and streams apart in a shared store, e.g. `${group}:${stream}`.
   * @defaultValue ''
   */
  namespace?: string;
}

function copy(lease: StoredLease, now: number, leaseDurationMs: number): Lease {
  return {
    shardId: lease.shardId,
    owner: lease.owner,
    counter: lease.counter,
    expiresAtMs: lease.expiresAtMs,
    checkpoint:
      lease.checkpoint === undefined || lease.checkpoint === SHARD_END
        ? lease.checkpoint
        : { ...lease.checkpoint },
    parentShardIds: [...lease.parentShardIds],
    childShardIds: [...lease.childShardIds],
    handoffTo: liveHandoff(lease, now, leaseDurationMs),
    readAtMs: now,
    ...(lease.firstAcquiredAtMs === undefined ? {} : { firstAcquiredAtMs: lease.firstAcquiredAtMs }),
    ...(lease.failure === undefined ? {} : { failure: { ...lease.failure } }),
  };
}

/** The pending handoff's requester, while the request is live. */
function liveHandoff(lease: StoredLease, now: number, leaseDurationMs: number): string | undefined {
  if (lease.handoffTo === undefined || lease.handoffAtMs === undefined) return undefined;
  return lease.handoffAtMs + leaseDurationMs > now ? lease.handoffTo : undefined;
}

/** {@link LeaseManager} over a {@link MemoryLeaseStore}; see the module notes for the exact rules. */
export class MemoryLeaseManager implements LeaseManager {
  readonly hostId: string;
  readonly leaseDurationMs: number;
  readonly store: MemoryLeaseStore;
  readonly #ns: Namespace;
  #closed = false;

  constructor(options: MemoryLeaseManagerOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('options', 'must be an object like { hostId, leaseDurationMs, store? }');
    }
    if (typeof options.hostId !== 'string' || options.hostId.length === 0) {
      throw new ShardlineOptionError('hostId', `must be a non-empty string (got ${String(options.hostId)})`);
    }
    const duration = options.leaseDurationMs;
    if (typeof duration !== 'number' || !Number.isFinite(duration) || duration < 1) {
      throw new ShardlineOptionError(
        'leaseDurationMs',
        `must be a finite number >= 1 (got ${String(duration)})`,
      );
    }
    if (options.store !== undefined && !(options.store instanceof MemoryLeaseStore)) {
      throw new ShardlineOptionError('store', 'must be a MemoryLeaseStore');
    }
    if (options.namespace !== undefined && typeof options.namespace !== 'string') {
      throw new ShardlineOptionError('namespace', 'must be a string');
    }
    this.hostId = options.hostId;
    this.leaseDurationMs = duration;
    this.store = options.store ?? new MemoryLeaseStore();
    this.#ns = namespaceOf(this.store, options.namespace ?? '');
  }

  #open(method: string): void {
    if (this.#closed) {
      throw new ShardlineError(
        ErrorCodes.CLOSED,
        `lease manager of host '${this.hostId}' is closed: cannot ${method}()`,
      );
    }
  }

  /** Runs `fn` as one atomic transition; validation and closed errors reject the promise, never throw. */
  async #run<R>(method: string, fn: () => R): Promise<R> {
    this.#open(method);
    return fn();
  }

  ensureLeases(seeds: readonly LeaseSeed[]): Promise<void> {
    return this.#run('ensureLeases', () => {
      if (!Array.isArray(seeds))
        throw new ShardlineOptionError('seeds', 'must be an array of { shardId, parentShardIds }');
      // Validate everything first: a bad seed must not leave half the batch written.
      const checked = seeds.map((seed, i) => {
        if (typeof seed !== 'object' || seed === null) {
          throw new ShardlineOptionError(`seeds[${i}]`, 'must be an object like { shardId, parentShardIds }');
        }
        validShardId('shardId', seed.shardId);
        return {
          shardId: seed.shardId,
          parentShardIds: validIds(`seeds[${i}].parentShardIds`, seed.parentShardIds),
          childShardIds:
            seed.childShardIds === undefined ? [] : validIds(`seeds[${i}].childShardIds`, seed.childShardIds),
        };
      });
      for (const seed of checked) {
        const existing = this.#ns.leases.get(seed.shardId);
        if (existing === undefined) {
          this.#ns.leases.set(seed.shardId, {
            shardId: seed.shardId,
            owner: undefined,
            counter: 0,
            expiresAtMs: undefined,
            checkpoint: undefined,
            parentShardIds: [...new Set(seed.parentShardIds)],
            childShardIds: [...new Set(seed.childShardIds)],
            handoffTo: undefined,
            handoffAtMs: undefined,
          });
          continue;
        }
        for (const child of seed.childShardIds) {
          if (!existing.childShardIds.includes(child)) existing.childShardIds.push(child);
        }
      }
    });
  }

  listLeases(): Promise<Lease[]> {
    return this.#run('listLeases', () => {
      const now = this.store.now();
      return [...this.#ns.leases.values()]
        .sort((a, b) => (a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0))
        .map((lease) => this.#copy(lease, now));
    });
  }

  getLease(shardId: string): Promise<Lease | undefined> {
    return this.#run('getLease', () => {
      validShardId('shardId', shardId);
      const lease = this.#ns.leases.get(shardId);
      return lease === undefined ? undefined : this.#copy(lease);
    });
  }

  acquire(shardId: string): Promise<Lease | undefined> {
    return this.#run('acquire', () => {
      validShardId('shardId', shardId);
      const lease = this.#ns.leases.get(shardId);
      if (lease === undefined) return undefined;
      const now = this.store.now();
      const expired = lease.expiresAtMs === undefined || lease.expiresAtMs <= now;
      if (lease.owner !== undefined && lease.owner !== this.hostId && !expired) return undefined;
      const reservedFor = liveHandoff(lease, now, this.leaseDurationMs);
      if (reservedFor !== undefined && reservedFor !== this.hostId) return undefined;
      lease.owner = this.hostId;
      lease.counter += 1;
      lease.expiresAtMs = now + this.leaseDurationMs;
      lease.firstAcquiredAtMs ??= now;
      lease.handoffTo = undefined;
      lease.handoffAtMs = undefined;
      delete lease.failure;
      return this.#copy(lease, now);
    });
  }

  renew(shardId: string, counter: number): Promise<Lease | undefined> {
    return this.#run('renew', () => {
      validShardId('shardId', shardId);
      validCounter(counter);
      return this.#renew(shardId, counter);
    });
  }

  #renew(shardId: string, counter: number): Lease | undefined {
    const lease = this.#owned(shardId, counter);
    if (lease === undefined) return undefined;
    const now = this.store.now();
    if (lease.expiresAtMs === undefined || lease.expiresAtMs <= now) return undefined;
    let expiry = now + this.leaseDurationMs;
    if (liveHandoff(lease, now, this.leaseDurationMs) !== undefined) {
      expiry = Math.min(expiry, lease.handoffAtMs! + this.leaseDurationMs);
    }
    lease.expiresAtMs = expiry;
    return this.#copy(lease, now);
  }

  renewLeases(
    held: readonly HeldLease[],
    _options?: LeaseCallOptions,
  ): Promise<Map<string, Lease | undefined>> {
    return this.#run('renewLeases', () => {
      if (!Array.isArray(held))
        throw new ShardlineOptionError('held', 'must be an array of { shardId, counter }');
      for (const entry of held) {
        validShardId('shardId', entry?.shardId);
        validCounter(entry.counter);
      }
      const out = new Map<string, Lease | undefined>();
      for (const { shardId, counter } of held) out.set(shardId, this.#renew(shardId, counter));
      return out;
    });
  }

  removeLease(shardId: string, counter: number): Promise<boolean> {
    return this.#run('removeLease', () => {
      validShardId('shardId', shardId);
      validCounter(counter);
      const lease = this.#ns.leases.get(shardId);
      if (lease === undefined || lease.counter !== counter) return false;
      const now = this.store.now();
      if (lease.owner !== undefined && lease.expiresAtMs !== undefined && lease.expiresAtMs > now)
        return false;
      this.#ns.leases.delete(shardId);
      return true;
    });
  }

  release(shardId: string, counter: number, failure?: LeaseFailure): Promise<boolean> {
    return this.#run('release', () => {
      validShardId('shardId', shardId);
      validCounter(counter);
      const lease = this.#owned(shardId, counter);
      if (lease === undefined) return false;
      lease.owner = undefined;
      lease.expiresAtMs = undefined;
      if (failure !== undefined) lease.failure = { ...failure };
      return true;
    });
  }

  checkpoint(shardId: string, counter: number, checkpoint: Checkpoint): Promise<void> {
    return this.#run('checkpoint', () => {
      validShardId('shardId', shardId);
      validCounter(counter);
      const value = validCheckpoint(checkpoint);
      const lease = this.#owned(shardId, counter);
      if (lease === undefined) {
        const current = this.#ns.leases.get(shardId);
        throw new ShardlineError(
          ErrorCodes.LEASE_LOST,
          current === undefined
            ? `cannot checkpoint shard ${shardId}: it has no lease`
            : `cannot checkpoint shard ${shardId}: host '${this.hostId}' with counter ${counter} no longer holds its lease`,
          {
            details: {
              shardId,
              hostId: this.hostId,
              counter,
              owner: current?.owner ?? null,
              currentCounter: current?.counter ?? null,
            },
          },
        );
      }
      if (lease.checkpoint === SHARD_END && value !== SHARD_END) {
        throw new ShardlineOptionError(
          'checkpoint',
          `cannot follow SHARD_END: shard ${shardId} was read to its end, a position after that is refused (got sequence ${value.sequenceNumber})`,
        );
      }
      lease.checkpoint = value;
    });
  }

  requestHandoff(shardId: string, toHostId: string): Promise<boolean> {
    return this.#run('requestHandoff', () => {
      validShardId('shardId', shardId);
      if (typeof toHostId !== 'string' || toHostId.length === 0) {
        throw new ShardlineOptionError('toHostId', `must be a non-empty string (got ${String(toHostId)})`);
      }
      const lease = this.#ns.leases.get(shardId);
      const now = this.store.now();
      if (lease === undefined || lease.owner === undefined || lease.owner === toHostId) return false;
      if (lease.expiresAtMs === undefined || lease.expiresAtMs <= now) return false;
      if (liveHandoff(lease, now, this.leaseDurationMs) !== undefined) return false;
      lease.handoffTo = toHostId;
      lease.handoffAtMs = now;
      return true;
    });
  }

  heartbeat(shards: number): Promise<void> {
    return this.#run('heartbeat', () => {
      if (typeof shards !== 'number' || !Number.isInteger(shards) || shards < 0) {
        throw new ShardlineOptionError('shards', `must be an integer >= 0 (got ${String(shards)})`);
      }
      this.#ns.hosts.set(this.hostId, { lastSeenAtMs: this.store.now(), shards });
    });
  }

  liveHosts(): Promise<HostInfo[]> {
    return this.#run('liveHosts', () => {
      const since = this.store.now() - this.leaseDurationMs;
      const live: HostInfo[] = [];
      for (const [hostId, seen] of this.#ns.hosts) {
        // Dead hosts are dropped here as Redis drops them from the sorted set (ZREMRANGEBYSCORE).
        if (seen.lastSeenAtMs < since) this.#ns.hosts.delete(hostId);
        else live.push({ hostId, lastSeenAtMs: seen.lastSeenAtMs, shards: seen.shards });
      }
      return live.sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
    });
  }

  now(): Promise<number> {
    return this.#run('now', () => this.store.now());
  }

  /** Withdraws this host's heartbeat (so others rebalance at once) and refuses further calls. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#ns.hosts.delete(this.hostId);
  }

  #copy(lease: StoredLease, now = this.store.now()): Lease {
    return copy(lease, now, this.leaseDurationMs);
  }

  #owned(shardId: string, counter: number): StoredLease | undefined {
    const lease = this.#ns.leases.get(shardId);
    if (lease === undefined || lease.owner !== this.hostId || lease.counter !== counter) return undefined;
    return lease;
  }
}
