/**
 * Leases in DynamoDB, in a KCL 2.x/3.x single-stream lease table (docs/dynamodb-lease-table.md): a
 * team can stop its KCL workers and start Shardline hosts on the same table, and back.
 *
 * The same transition rules as the memory store (see memory.ts), with time judged as KCL does, without
 * a server clock (see dynamodb-observer.ts): `now()` is this host's monotonic clock; a lease held by
 * another host expires leaseDurationMs after this host last saw its `leaseCounter` change; a lease
 * this host holds runs until its last good renew's send time + leaseDurationMs (`readAtMs` is the local
 * time of the answer, so `expiresAtMs - readAtMs` is what is left). Every write of the holder is
 * conditional on `leaseOwner` and the fencing token `shardlineAcquisitions` (the `counter` of the
 * Lease), and increments `leaseCounter` (KCL semantics), so observers see it as a renewal. Conditions
 * on the token rather than on the current `leaseCounter` let a checkpoint and a renew of one lease run
 * at once, and a renew whose answer was lost does not lose the lease. Takes and removals are
 * conditional on the `leaseCounter` this host judged the lease expired by.
 *
 * No host items: KCL scans the whole table and would take any item as a shard's lease, so the live
 * hosts are derived, as KCL 2.x does, from the owners of unexpired leases and the requesters of live
 * handoffs, plus this host once it has sent a heartbeat (heartbeat() writes nothing).
 */
import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ErrorCodes, SHARD_END, ShardlineError, ShardlineOptionError } from '@shardline/common';
import { LeaseCalls, n, s } from './dynamodb-calls.js';
import { checkpointToAttributes, type ItemLease, newLeaseItem } from './dynamodb-item.js';
import { LeaseObserver, monotonicNow } from './dynamodb-observer.js';
import {
  createDynamoDbClient,
  DYNAMODB_LEASE_DEFAULTS,
  type DynamoDbLeaseManagerOptions,
  resolveDynamoDbLeases,
} from './dynamodb-options.js';
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

/** Writes in flight at once for ensureLeases. */
const ENSURE_CONCURRENCY = 16;

/** The holder's conditions: still the owner, no acquisition since its own. */
const HOLDER = '#owner = :me AND #acq = :token';

export class DynamoDbLeaseManager implements LeaseManager {
  readonly hostId: string;
  readonly leaseDurationMs: number;
  readonly tableName: string;
  readonly #client: DynamoDBClient;
  readonly #ownClient: boolean;
  readonly #callTimeoutMs: number;
  readonly #observer: LeaseObserver;
  readonly #calls: LeaseCalls;
  #closed = false;
  #listing: { startedAt: number; leases: Promise<ItemLease[]> } | undefined;
  #heartbeat: { at: number; shards: number } | undefined;

  constructor(options: DynamoDbLeaseManagerOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('options', 'must be an object like { tableName, hostId, region? }');
    }
    const { hostId, leaseDurationMs, callTimeoutMs, streamId, ...table } = options;
    if (streamId !== undefined && (typeof streamId !== 'string' || !/^[^:]*:[^:]+:\d+$/.test(streamId))) {
      throw new ShardlineOptionError(
        'streamId',
        `must be a KCL stream identifier 'account:streamName:creationEpoch' (got ${String(streamId)})`,
      );
    }
    if (typeof hostId !== 'string' || hostId.length === 0) {
      throw new ShardlineOptionError('hostId', `must be a non-empty string (got ${String(hostId)})`);
    }
    for (const [name, value] of [
      ['leaseDurationMs', leaseDurationMs],
      ['callTimeoutMs', callTimeoutMs],
    ] as const) {
      if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value) || value < 1)) {
        throw new ShardlineOptionError(name, `must be a finite number >= 1 (got ${String(value)})`);
      }
    }
    const resolved = resolveDynamoDbLeases(table, '');
    this.hostId = hostId;
    this.leaseDurationMs = leaseDurationMs ?? DYNAMODB_LEASE_DEFAULTS.leaseDurationMs;
    this.#callTimeoutMs = callTimeoutMs ?? DYNAMODB_LEASE_DEFAULTS.callTimeoutMs;
    this.tableName = resolved.tableName;
    this.#ownClient = resolved.client === undefined;
    this.#client = resolved.client ?? createDynamoDbClient(resolved);
    this.#observer = new LeaseObserver(hostId, this.leaseDurationMs);
    this.#calls = new LeaseCalls({
      client: this.#client,
      tableName: this.tableName,
      createTable: resolved.createTable === true,
      callTimeoutMs: this.#callTimeoutMs,
      assertOpen: (operation) => this.#assertOpen(operation),
      observe: (lease, at) => this.#observer.observe(lease, at),
      streamId,
    });
  }

  #assertOpen(operation: string): void {
    if (this.#closed) {
      throw new ShardlineError(
        ErrorCodes.CLOSED,
        `lease manager of host '${this.hostId}' is closed: cannot ${operation}()`,
      );
    }
  }

  /** A listing started within a quarter lease (or in flight), else a new one. */
  #recentListing(): Promise<ItemLease[]> {
    const now = monotonicNow();
    if (this.#listing !== undefined && this.#listing.startedAt > now - this.leaseDurationMs / 4) {
      return this.#listing.leases;
    }
    return this.#list(now);
  }

  #list(now = monotonicNow()): Promise<ItemLease[]> {
    const leases = this.#calls.scan();
    this.#listing = { startedAt: now, leases };
    leases.catch(() => {
      if (this.#listing?.leases === leases) this.#listing = undefined;
    });
    return leases;
  }

  async ensureLeases(seeds: readonly LeaseSeed[]): Promise<void> {
    const checked = validSeeds(seeds);
    if (checked.length === 0) return;
    const existing = new Map((await this.#list()).map((l) => [l.shardId, l]));
    const work = checked.map((seed) => async () => {
      const lease = existing.get(seed.shardId);
      if (lease === undefined) {
        if (await this.#calls.putNew(newLeaseItem(seed.shardId, seed.parentShardIds, seed.childShardIds)))
          return;
      } else if (seed.childShardIds.every((c) => lease.childShardIds.includes(c))) {
        return;
      }
      if (seed.childShardIds.length === 0) return;
      // ADD to a string set is a union: no counter change (KCL's updateLeaseWithMetaInfo neither).
      await this.#calls.update(seed.shardId, 'ADD #children :children', 'attribute_exists(#key)', {
        ':children': { SS: [...new Set(seed.childShardIds)] },
      });
    });
    let next = 0;
    const runners = Array.from({ length: Math.min(ENSURE_CONCURRENCY, work.length) }, async () => {
      while (next < work.length) await work[next++]!();
    });
    await Promise.all(runners);
    this.#listing = undefined;
  }

  async listLeases(): Promise<Lease[]> {
    const leases = await this.#list();
    const now = monotonicNow();
    return leases.map((l) => this.#observer.toLease(l, now));
  }

  async getLease(shardId: string): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    const lease = await this.#calls.get(shardId);
    return lease === undefined ? undefined : this.#observer.toLease(lease, monotonicNow());
  }

  async acquire(shardId: string): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    const lease = await this.#calls.get(shardId);
    if (lease === undefined) return undefined;
    const now = monotonicNow();
    if (lease.owner !== undefined && lease.owner !== this.hostId && !this.#observer.expired(lease, now))
      return undefined;
    const reservedFor = this.#observer.liveHandoff(lease, now);
    if (reservedFor !== undefined && reservedFor !== this.hostId) return undefined;
    const token = lease.acquisitions + 1;
    const switched = lease.owner !== undefined && lease.owner !== this.hostId;
    const sent = monotonicNow();
    const after = await this.#calls.update(
      shardId,
      `SET #owner = :me, #counter = #counter + :one, #acq = :token, #firstAcq = if_not_exists(#firstAcq, :epoch)${
        switched ? ', #switches = if_not_exists(#switches, :zero) + :one' : ''
      } REMOVE #cpOwner, #handoffTo, #handoffId, #failure`,
      '#counter = :seen',
      {
        ':me': s(this.hostId),
        ':one': n(1),
        ':token': n(token),
        ':epoch': n(Date.now()),
        ':seen': n(this.#observer.seenCounter(shardId) ?? lease.leaseCounter),
        ...(switched ? { ':zero': n(0) } : {}),
      },
    );
    if (after === undefined) return undefined;
    this.#observer.hold(shardId, token, sent);
    // Read at the send time: what is left is timed from it, as the lease is.
    return this.#observer.toLease(after, sent);
  }

  async renew(shardId: string, counter: number): Promise<Lease | undefined> {
    validShardId('shardId', shardId);
    validCounter(counter);
    return this.#renew(shardId, counter, this.#callTimeoutMs);
  }

  async #renew(shardId: string, token: number, timeoutMs: number): Promise<Lease | undefined> {
    const held = this.#observer.held(shardId, token);
    const now = monotonicNow();
    if (held === undefined) return undefined;
    if (held.renewedAt + this.leaseDurationMs <= now) {
      this.#observer.drop(shardId, token);
      return undefined;
    }
    const sent = monotonicNow();
    const after = await this.#calls.update(
      shardId,
      'SET #counter = #counter + :one',
      HOLDER,
      { ':me': s(this.hostId), ':token': n(token), ':one': n(1) },
      timeoutMs,
    );
    if (after === undefined) {
      this.#observer.drop(shardId, token);
      return undefined;
    }
    this.#observer.hold(shardId, token, sent);
    // Past a pending handoff's cap the lease is let go: the requester may take it a lease later.
    if (this.#observer.expiresAt(after) <= monotonicNow()) {
      this.#observer.drop(shardId, token);
      return undefined;
    }
    return this.#observer.toLease(after, sent);
  }

  async renewLeases(
    held: readonly HeldLease[],
    options?: LeaseCallOptions,
  ): Promise<Map<string, Lease | undefined>> {
    if (!Array.isArray(held))
      throw new ShardlineOptionError('held', 'must be an array of { shardId, counter }');
    for (const entry of held) {
      validShardId('shardId', entry?.shardId);
      validCounter(entry.counter);
    }
    const timeoutMs = Math.max(1, Math.min(options?.timeoutMs ?? this.#callTimeoutMs, this.#callTimeoutMs));
    const settled = await Promise.allSettled(held.map((h) => this.#renew(h.shardId, h.counter, timeoutMs)));
    const out = new Map<string, Lease | undefined>();
    for (const [i, result] of settled.entries()) {
      // One unknown outcome makes the round's unknown: the sessions go by their deadlines.
      if (result.status === 'rejected') throw result.reason;
      out.set(held[i]!.shardId, result.value);
    }
    return out;
  }

  async removeLease(shardId: string, counter: number): Promise<boolean> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const lease = await this.#calls.get(shardId);
    if (lease === undefined || lease.acquisitions !== counter) return false;
    if (!this.#observer.expired(lease, monotonicNow())) return false;
    if (!(await this.#calls.deleteAt(shardId, lease.leaseCounter))) return false;
    this.#observer.forget(shardId);
    return true;
  }

  async release(shardId: string, counter: number, failure?: LeaseFailure): Promise<boolean> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const after = await this.#calls.update(
      shardId,
      `SET #counter = #counter + :one${failure === undefined ? '' : ', #failure = :failure'} REMOVE #owner, #cpOwner`,
      HOLDER,
      {
        ':me': s(this.hostId),
        ':token': n(counter),
        ':one': n(1),
        ...(failure === undefined ? {} : { ':failure': s(JSON.stringify(failure)) }),
      },
    );
    this.#observer.drop(shardId, counter);
    return after !== undefined;
  }

  async checkpoint(shardId: string, counter: number, checkpoint: Checkpoint): Promise<void> {
    validShardId('shardId', shardId);
    validCounter(counter);
    const value = validCheckpoint(checkpoint);
    const a = checkpointToAttributes(value);
    const after = await this.#calls.update(
      shardId,
      `SET #cp = :cp, #sub = :sub, #switches = :zero, #counter = #counter + :one${
        a.wholeRecord === undefined ? '' : ', #whole = :whole'
      } REMOVE #pending, #pendingSub, #pendingState${a.wholeRecord === undefined ? ', #whole' : ''}`,
      `${HOLDER}${value === SHARD_END ? '' : ' AND #cp <> :end'}`,
      {
        ':me': s(this.hostId),
        ':token': n(counter),
        ':one': n(1),
        ':zero': n(0),
        ':cp': s(a.checkpoint),
        ':sub': n(a.subSequenceNumber),
        ...(a.wholeRecord === undefined ? {} : { ':whole': s(a.wholeRecord) }),
        ...(value === SHARD_END ? {} : { ':end': s(SHARD_END) }),
      },
    );
    if (after !== undefined) return;
    const current = await this.#calls.get(shardId);
    if (
      current !== undefined &&
      current.owner === this.hostId &&
      current.acquisitions === counter &&
      value !== SHARD_END
    ) {
      throw new ShardlineOptionError(
        'checkpoint',
        `cannot follow SHARD_END: shard ${shardId} was read to its end, a position after that is refused (got sequence ${value.sequenceNumber})`,
      );
    }
    const reason =
      current === undefined ? 'NOT_FOUND' : current.owner !== this.hostId ? 'NOT_OWNER' : 'STALE_COUNTER';
    const holder =
      current === undefined
        ? 'there is no lease for it'
        : current.owner === undefined
          ? `it is free (counter ${current.acquisitions})`
          : `it is held by ${current.owner} with counter ${current.acquisitions}`;
    throw new ShardlineError(
      ErrorCodes.LEASE_LOST,
      `checkpoint of shard ${shardId} refused: this host (${this.hostId}) had the lease with counter ${counter}, but ${holder}`,
      {
        details: {
          shardId,
          hostId: this.hostId,
          counter,
          reason,
          owner: current?.owner ?? null,
          currentCounter: current?.acquisitions ?? null,
        },
      },
    );
  }

  async requestHandoff(shardId: string, toHostId: string): Promise<boolean> {
    validShardId('shardId', shardId);
    if (typeof toHostId !== 'string' || toHostId.length === 0) {
      throw new ShardlineOptionError('toHostId', `must be a non-empty string (got ${String(toHostId)})`);
    }
    const lease = await this.#calls.get(shardId);
    const now = monotonicNow();
    if (lease === undefined || lease.owner === undefined || lease.owner === toHostId) return false;
    if (this.#observer.expired(lease, now) || this.#observer.liveHandoff(lease, now) !== undefined)
      return false;
    const id = randomUUID();
    // Not the holder's write: the counter stays (as KCL's initiateGracefulLeaseHandoff), so the
    // request neither fences the owner's renewals nor looks like one to observers.
    const after = await this.#calls.update(
      shardId,
      'SET #handoffTo = :to, #handoffId = :id',
      `(#owner = :owner OR #cpOwner = :owner) AND ${
        lease.handoffId === undefined ? 'attribute_not_exists(#handoffId)' : '#handoffId = :old'
      }`,
      {
        ':to': s(toHostId),
        ':id': s(id),
        ':owner': s(lease.owner),
        ...(lease.handoffId === undefined ? {} : { ':old': s(lease.handoffId) }),
      },
    );
    return after !== undefined;
  }

  async heartbeat(shards: number): Promise<void> {
    if (typeof shards !== 'number' || !Number.isInteger(shards) || shards < 0) {
      throw new ShardlineOptionError('shards', `must be an integer >= 0 (got ${String(shards)})`);
    }
    this.#assertOpen('heartbeat');
    this.#heartbeat = { at: monotonicNow(), shards };
  }

  async liveHosts(): Promise<HostInfo[]> {
    const leases = await this.#recentListing();
    const now = monotonicNow();
    const hosts = new Map<string, HostInfo>();
    const see = (hostId: string, at: number, shards: number) => {
      const host = hosts.get(hostId) ?? { hostId, lastSeenAtMs: at, shards: 0 };
      host.lastSeenAtMs = Math.max(host.lastSeenAtMs, at);
      host.shards += shards;
      hosts.set(hostId, host);
    };
    for (const lease of leases) {
      if (lease.owner !== undefined && lease.owner !== this.hostId && !this.#observer.expired(lease, now)) {
        see(lease.owner, this.#observer.expiresAt(lease) - this.leaseDurationMs, 1);
      }
      const requester = this.#observer.liveHandoff(lease, now);
      if (requester !== undefined && requester !== this.hostId) see(requester, now, 0);
    }
    if (this.#heartbeat !== undefined && this.#heartbeat.at > now - this.leaseDurationMs) {
      hosts.set(this.hostId, {
        hostId: this.hostId,
        lastSeenAtMs: this.#heartbeat.at,
        shards: this.#heartbeat.shards,
      });
    }
    return [...hosts.values()].sort((a, b) => (a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0));
  }

  async now(): Promise<number> {
    this.#assertOpen('now');
    return monotonicNow();
  }

  /** Refuses further calls; destroys the client it made (not one given). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#heartbeat = undefined;
    if (this.#ownClient) this.#client.destroy();
  }
}
