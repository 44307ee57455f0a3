/**
 * Leases of shards gone from the stream (aged out of retention): without cleanup the lease store, and
 * every lease listing, would grow with each reshard for good. A lease is deleted once its shard has been
 * absent from complete listings for a while and no lease of the group needs it any more: a child present
 * in the stream without a checkpoint still needs its parents' leases (they tell it to start at
 * TRIM_HORIZON after them rather than at the initial position). Deletion is fenced in the store: only
 * while nobody holds the lease and its counter is still the one seen here.
 */

import type { Logger } from '@shardline/common';
import type { Topology } from '../topology.js';
import type { Lease, LeaseManager } from './types.js';

export const GONE_LEASES_DEFAULTS = Object.freeze({
  /** Complete listings a shard must be absent from (besides the delay) before its lease goes. */
  minListingsAbsent: 2,
});

export interface GoneLeasesOptions {
  leases: LeaseManager;
  /** How long a shard must have been absent from every complete listing. */
  delayMs: number;
  logger: Logger;
  /** Reports a failed removal (it is tried again at the next tick). */
  report(error: unknown, shardId: string): void;
}

export class GoneLeases {
  readonly #o: GoneLeasesOptions;
  /** Leases of shards absent from complete listings: since when (performance.now()), in how many. */
  readonly #absent = new Map<string, { sinceMs: number; listings: number }>();

  constructor(options: GoneLeasesOptions) {
    this.#o = options;
  }

  /** After a complete listing (`topology` updated from it): which known leases it does not show. */
  noteListing(leases: readonly Lease[], topology: Topology): void {
    const known = new Set(leases.map((l) => l.shardId));
    for (const id of [...this.#absent.keys()])
      if (!known.has(id) || topology.has(id)) this.#absent.delete(id);
    for (const id of known) {
      if (topology.has(id)) continue;
      const seen = this.#absent.get(id);
      if (seen === undefined) this.#absent.set(id, { sinceMs: performance.now(), listings: 1 });
      else seen.listings++;
    }
  }

  /**
   * Deletes what may go, from one lease snapshot (`now`: the store's clock when it was read).
   * `stopping()` ends the round early.
   */
  async remove(
    leases: readonly Lease[],
    topology: Topology,
    now: number,
    stopping: () => boolean,
  ): Promise<void> {
    if (this.#absent.size === 0) return;
    const byId = new Map(leases.map((l) => [l.shardId, l]));
    const needed = new Set<string>();
    for (const lease of leases) {
      if (!topology.has(lease.shardId) || lease.checkpoint !== undefined) continue;
      for (const parent of [...lease.parentShardIds, ...topology.parentsOf(lease.shardId)])
        needed.add(parent);
    }
    const nowMono = performance.now();
    for (const [shardId, absent] of this.#absent) {
      const lease = byId.get(shardId);
      if (
        lease === undefined ||
        needed.has(shardId) ||
        absent.listings < GONE_LEASES_DEFAULTS.minListingsAbsent ||
        nowMono - absent.sinceMs < this.#o.delayMs ||
        (lease.owner !== undefined && (lease.expiresAtMs ?? 0) > now)
      ) {
        continue;
      }
      if (stopping()) return;
      try {
        if (await this.#o.leases.removeLease(shardId, lease.counter)) {
          this.#absent.delete(shardId);
          this.#o.logger.info({ shardId }, 'lease of a shard gone from the stream removed');
        }
      } catch (error) {
        this.#o.report(error, shardId);
      }
    }
  }
}
