/**
 * What one host has seen of the lease table, on its own monotonic clock: DynamoDB has no server clock,
 * so expiry is judged as KCL judges it. A lease whose `leaseCounter` has not changed for
 * leaseDurationMs since this host first saw that value is expired (the holder increments the counter on
 * every renew; a host can only take a lease with a write conditional on the counter it saw, so it can
 * never take one renewed since). A handoff request is live for leaseDurationMs from when this host
 * first saw its id. For the leases this host holds it keeps the fencing token and when the last good
 * renew was *sent*: the lease is ours until sent + leaseDurationMs at the latest on any observer's clock.
 */
import type { ItemLease } from './dynamodb-item.js';
import type { Lease } from './types.js';

/** The local monotonic clock, in epoch-like ms (performance.timeOrigin + performance.now()). */
export function monotonicNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Past this many handoff request ids, those seen more than two lease durations ago are dropped. */
const MAX_REQUESTS_REMEMBERED = 1_024;

interface Seen {
  leaseCounter: number;
  at: number;
}

interface Held {
  token: number;
  renewedAt: number;
}

export class LeaseObserver {
  readonly #hostId: string;
  readonly #durationMs: number;
  readonly #seen = new Map<string, Seen>();
  readonly #handoffSeen = new Map<string, number>();
  readonly #held = new Map<string, Held>();

  constructor(hostId: string, leaseDurationMs: number) {
    this.#hostId = hostId;
    this.#durationMs = leaseDurationMs;
  }

  /** Notes an item read at `at`. A counter lower than one already seen is a stale read: ignored. */
  observe(lease: ItemLease, at: number): void {
    const seen = this.#seen.get(lease.shardId);
    if (seen === undefined || lease.leaseCounter > seen.leaseCounter) {
      this.#seen.set(lease.shardId, { leaseCounter: lease.leaseCounter, at });
    }
    if (lease.handoffId !== undefined && !this.#handoffSeen.has(lease.handoffId)) {
      this.#handoffSeen.set(lease.handoffId, at);
      // Requests are live for a lease duration: forget those long past (ids are never reused).
      if (this.#handoffSeen.size > MAX_REQUESTS_REMEMBERED) {
        for (const [id, seenAt] of this.#handoffSeen) {
          if (seenAt < at - 2 * this.#durationMs) this.#handoffSeen.delete(id);
        }
      }
    }
  }

  /** The counter value last seen (the one a take or removal must be conditional on). */
  seenCounter(shardId: string): number | undefined {
    return this.#seen.get(shardId)?.leaseCounter;
  }

  /** Whether the lease's owner has not written for a lease duration (judged on this host's clock). */
  expired(lease: ItemLease, now: number): boolean {
    if (lease.owner === undefined) return true;
    return this.expiresAt(lease) <= now;
  }

  /** When the lease expires on this host's clock (for a held one: from its last good renew). */
  expiresAt(lease: ItemLease): number {
    const held = this.#held.get(lease.shardId);
    if (held !== undefined && lease.owner === this.#hostId && lease.acquisitions === held.token) {
      const handoffAt = lease.handoffId === undefined ? undefined : this.#handoffSeen.get(lease.handoffId);
      const full = held.renewedAt + this.#durationMs;
      return handoffAt === undefined ? full : Math.min(full, handoffAt + this.#durationMs);
    }
    const seen = this.#seen.get(lease.shardId);
    return (seen?.at ?? Number.NEGATIVE_INFINITY) + this.#durationMs;
  }

  /** The requester of a live handoff request, else undefined. */
  liveHandoff(lease: ItemLease, now: number): string | undefined {
    if (lease.handoffTo === undefined || lease.handoffId === undefined) return undefined;
    const at = this.#handoffSeen.get(lease.handoffId) ?? now;
    return at + this.#durationMs > now ? lease.handoffTo : undefined;
  }

  /** This host acquired or renewed the lease with `token`, the write sent at `sentAt`. */
  hold(shardId: string, token: number, sentAt: number): void {
    this.#held.set(shardId, { token, renewedAt: sentAt });
  }

  /** The held lease's local record when `token` is the current one. */
  held(shardId: string, token: number): Held | undefined {
    const held = this.#held.get(shardId);
    return held?.token === token ? held : undefined;
  }

  drop(shardId: string, token?: number): void {
    if (token === undefined || this.#held.get(shardId)?.token === token) this.#held.delete(shardId);
  }

  forget(shardId: string): void {
    this.#held.delete(shardId);
    this.#seen.delete(shardId);
  }

  /** Shardline's view of an item read at `now`. */
  toLease(lease: ItemLease, now: number): Lease {
    const lease_: Lease = {
      shardId: lease.shardId,
      owner: lease.owner,
      counter: lease.acquisitions,
      expiresAtMs: lease.owner === undefined ? undefined : this.expiresAt(lease),
      checkpoint: lease.checkpoint,
      parentShardIds: [...lease.parentShardIds],
      childShardIds: [...lease.childShardIds],
      handoffTo: this.liveHandoff(lease, now),
      readAtMs: now,
    };
    if (lease.failure !== undefined) lease_.failure = lease.failure;
    if (lease.firstAcquiredAtMs !== undefined) lease_.firstAcquiredAtMs = lease.firstAcquiredAtMs;
    return lease_;
  }
}
