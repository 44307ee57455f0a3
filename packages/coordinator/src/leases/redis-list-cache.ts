/**
 * The Redis lease manager's last full lease listing, so that a host re-reads every lease only when
 * something it allocates by may have changed: an idle host's Redis load then does not grow with the
 * leases of its group.
 *
 * Every change another host must see to allocate (a lease created, acquired, released, asked for,
 * removed, its parents or children set, its first checkpoint, SHARD_END) raises the group version in
 * the script that makes it (see list-leases-1.lua). A renewal does not: it only pushes an expiry
 * forward. So a cached listing is still the store's, as far as allocation goes, while the version is
 * the one it was read at, except for time: a lease that is not renewed runs out, and a handoff
 * reservation lapses. The listing is therefore good only until its due time, its earliest expiry or
 * handoff deadline still ahead (less a margin, so that a `now()` read just after the listing does not
 * see a cached expiry as past when the real one is later). Read at or after it, the leases are read in
 * full again: a dead host's lease is found expired by the first listing after it ran out, as without
 * a cache. Both checks run in the list script, on the server clock, atomically with the read.
 *
 * What a cached listing may show out of date: expiries earlier than the stored ones (never later, and
 * never past while the lease is held), and checkpoint positions of leases other hosts hold (as of the
 * last full read, which their due time brings about at least once per lease duration). This host's own
 * leases follow its renewals and checkpoints.
 */

import type { Checkpoint, Lease } from './types.js';

/** Fraction of leaseDurationMs by which a listing falls due before its earliest expiry. */
export const LIST_CACHE_MARGIN_FRACTION = 0.1;

/** One lease of a full listing, with its live handoff request's deadline (server ms) when it has one. */
export interface ListedLease {
  lease: Lease;
  handoffDeadlineMs: number | undefined;
}

/** A full listing: valid at `version`, read at `readAtMs` (server clock). */
export interface ListSnapshot {
  readonly version: string;
  readonly readAtMs: number;
  /** In listing order (shard id order). Entries are replaced, never changed in place. */
  readonly entries: Map<string, ListedLease>;
}

/** What a listing call sends: the cached version ('' for none) and its due time (undefined: none). */
export interface ListQuery {
  snapshot: ListSnapshot | undefined;
  version: string;
  dueMs: number | undefined;
  epoch: number;
}

export class LeaseListCache {
  readonly #hostId: string;
  readonly #marginMs: number;
  #snapshot: ListSnapshot | undefined;
  /** Raised by invalidate(): a listing that was in flight then is not kept. */
  #epoch = 0;

  constructor(hostId: string, leaseDurationMs: number) {
    this.#hostId = hostId;
    this.#marginMs = Math.ceil(leaseDurationMs * LIST_CACHE_MARGIN_FRACTION);
  }

  /** What to send with the next listing. */
  query(): ListQuery {
    const snapshot = this.#snapshot;
    if (snapshot === undefined) return { snapshot, version: '', dueMs: undefined, epoch: this.#epoch };
    let due = Number.POSITIVE_INFINITY;
    for (const { lease, handoffDeadlineMs } of snapshot.entries.values()) {
      // A time already past when read stays past: only a change (a version bump) can alter that lease.
      const expires = lease.owner === undefined ? undefined : lease.expiresAtMs;
      if (expires !== undefined && expires > snapshot.readAtMs && expires < due) due = expires;
      if (
        handoffDeadlineMs !== undefined &&
        handoffDeadlineMs > snapshot.readAtMs &&
        handoffDeadlineMs < due
      ) {
        due = handoffDeadlineMs;
      }
    }
    return {
      snapshot,
      version: snapshot.version,
      dueMs: due === Number.POSITIVE_INFINITY ? undefined : due - this.#marginMs,
      epoch: this.#epoch,
    };
  }

  /**
   * A full listing read at `readAtMs` for `query`: kept unless the store has no version yet or the
   * cache was invalidated since the query was made. Returns the leases.
   */
  store(query: ListQuery, version: string, readAtMs: number, listed: readonly ListedLease[]): Lease[] {
    const entries = new Map(listed.map((entry) => [entry.lease.shardId, entry]));
    if (version !== '' && query.epoch === this.#epoch) this.#snapshot = { version, readAtMs, entries };
    return listed.map(({ lease }) => copy(lease, readAtMs));
  }

  /** The leases of `snapshot`, which the store confirmed still good at `nowMs`. */
  confirmed(snapshot: ListSnapshot, nowMs: number): Lease[] {
    return [...snapshot.entries.values()].map(({ lease }) => copy(lease, nowMs));
  }

  /** Forgets the listing: the next one reads every lease. */
  invalidate(): void {
    this.#snapshot = undefined;
    this.#epoch++;
  }

  /** Whether every id has a lease in the cached listing (false without one). */
  hasAll(shardIds: readonly string[]): boolean {
    const entries = this.#snapshot?.entries;
    return entries !== undefined && shardIds.every((id) => entries.has(id));
  }

  /** A lease this host renewed: its new expiry, when the cached copy is this host's at that counter. */
  renewed(lease: Lease): void {
    this.#patch(lease.shardId, lease.counter, (cached) =>
      lease.expiresAtMs !== undefined && lease.expiresAtMs > (cached.expiresAtMs ?? 0)
        ? { ...cached, expiresAtMs: lease.expiresAtMs }
        : undefined,
    );
  }

  /** A checkpoint this host wrote, when the cached copy is this host's at that counter. */
  checkpointed(shardId: string, counter: number, checkpoint: Checkpoint): void {
    this.#patch(shardId, counter, (cached) => ({
      ...cached,
      checkpoint: typeof checkpoint === 'string' ? checkpoint : { ...checkpoint },
    }));
  }

  #patch(shardId: string, counter: number, change: (cached: Lease) => Lease | undefined): void {
    const entry = this.#snapshot?.entries.get(shardId);
    if (entry === undefined || entry.lease.owner !== this.#hostId || entry.lease.counter !== counter) return;
    const lease = change(entry.lease);
    if (lease !== undefined) this.#snapshot!.entries.set(shardId, { ...entry, lease });
  }
}

/** A copy the caller may keep or change, read at `readAtMs`. */
function copy(lease: Lease, readAtMs: number): Lease {
  const out: Lease = {
    ...lease,
    parentShardIds: [...lease.parentShardIds],
    childShardIds: [...lease.childShardIds],
    readAtMs,
  };
  if (typeof lease.checkpoint === 'object') out.checkpoint = { ...lease.checkpoint };
  if (lease.failure !== undefined) out.failure = { ...lease.failure };
  return out;
}
