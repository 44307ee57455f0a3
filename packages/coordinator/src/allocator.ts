/**
 * Lease allocation: which leases this host should take, give back or ask for, from one snapshot of
 * the leases, the shard graph and the live hosts. No I/O: the coordinator executes the plan.
 *
 * Rules (KCL's, plus resharding and a per-host cap):
 * - Only eligible shards count (every parent ended or gone); ended shards do not.
 * - Target = min(fair share, maxShardConsumers), fair share = ceil(active shards / live hosts).
 * - Take free or expired leases up to the target, closed shards first (their children wait on them),
 *   then older generations, then older shards, so children never starve their parents.
 * - A lease reserved for another host's pending handoff is left to it (the store refuses it anyway).
 * - When nothing is free and this host is under its target, ask the most loaded live hosts for leases,
 *   up to the deficit at once (requests still pending count as coming here), each only when the move
 *   narrows the gap by 2 (no ping-pong): a host joining a large group reaches its share in about one
 *   handoff round instead of one round per lease. The store keeps one request per lease and caps the
 *   owner's renewals at request time + leaseDurationMs, so a handoff the owner does not complete ends
 *   with its lease expiring: no overlap, no timer here.
 * - Every pending request on a lease this host holds is honoured (handOver): even a requester that
 *   died meanwhile, as the capped lease would run out anyway and a release first checkpoints.
 * - Leases that stay free for `overflowAfterPlans` consecutive plans while every host had its chance
 *   are taken beyond the fair share (up to the cap): hosts with a lower cap must not leave shards
 *   unread. Balancing later moves them back by handoff.
 * - Warn when live hosts x maxShardConsumers cannot cover the open shards (children waiting included).
 */

import { SHARD_END, ShardlineOptionError } from '@shardline/common';
import type { HostInfo, Lease } from './leases/types.js';
import type { Topology } from './topology.js';

export interface AllocationInput {
  /** Every lease of the group and stream (LeaseManager.listLeases()). */
  leases: readonly Lease[];
  topology: Topology;
  /** LeaseManager.liveHosts(); this host counts as live whether listed or not. */
  liveHosts: readonly HostInfo[];
  /** The lease store's clock (LeaseManager.now()): expiry is compared on it. */
  now: number;
  /**
   * Shards this host must not take (e.g. stopped here after handler failures): left to other hosts.
   * @defaultValue none
   */
  exclude?: ReadonlySet<string>;
  /**
   * This plan's cap in place of the allocator's `maxShardConsumers` (a multi-stream host: its total
   * minus the leases its other streams hold). At least 0.
   * @defaultValue the allocator's maxShardConsumers
   */
  maxShardConsumers?: number;
}

export interface HandoffRequest {
  shardId: string;
  /** The current owner, asked to hand the lease over. */
  from: string;
}

export interface HandOver {
  shardId: string;
  /** The host that asked for it. */
  to: string;
}

export interface CapacityWarning {
  code: 'insufficient-capacity';
  message: string;
  /** Open shards, children waiting on their parents included. */
  openShards: number;
  liveHosts: number;
  maxShardConsumers: number;
}

export interface AllocationPlan {
  /** Leases to acquire, in order of preference. */
  acquire: string[];
  /** Further candidates, in order, to try in place of an acquire the store refuses (another host won). */
  spares: string[];
  /** Leases this host holds and should give back (over `maxShardConsumers`): checkpoint, then release. */
  release: string[];
  /** Leases this host holds that a live host asked for: finish the in-flight batch, checkpoint, release. */
  handOver: HandOver[];
  /** Ask each `from` to hand its `shardId` over to this host (at most the deficit, busiest hosts first). */
  requestHandoffs: HandoffRequest[];
  warning: CapacityWarning | undefined;
  /** For status and logs. */
  fairShare: number;
  target: number;
  /** Leases this host holds now (unexpired, shard not ended). */
  held: number;
}

export interface AllocatorOptions {
  hostId: string;
  /** >= 1 or Infinity. */
  maxShardConsumers: number;
  /**
   * Consecutive plans a lease must stay free, with this host at its target, before it is taken beyond
   * the fair share.
   * @defaultValue 3
   */
  overflowAfterPlans?: number;
}

export const ALLOCATOR_DEFAULTS = Object.freeze({ overflowAfterPlans: 3 });

/**
 * Plans allocation for one host. Stateful only in what a snapshot cannot show: how many consecutive
 * plans each lease stayed free.
 */
export class Allocator {
  readonly hostId: string;
  readonly maxShardConsumers: number;
  readonly #overflowAfterPlans: number;
  /** shardId -> consecutive plans it was free and eligible while this host was at its target. */
  #freeStreak = new Map<string, number>();

  constructor(options: AllocatorOptions) {
    if (typeof options?.hostId !== 'string' || options.hostId.length === 0) {
      throw new ShardlineOptionError('hostId', 'must be a non-empty string');
    }
    const max = options.maxShardConsumers;
    if (
      typeof max !== 'number' ||
      !(max === Number.POSITIVE_INFINITY || (Number.isInteger(max) && max >= 1))
    ) {
      throw new ShardlineOptionError(
        'maxShardConsumers',
        `must be an integer >= 1 or Infinity (got ${String(max)})`,
      );
    }
    const overflow = options.overflowAfterPlans ?? ALLOCATOR_DEFAULTS.overflowAfterPlans;
    if (!Number.isInteger(overflow) || overflow < 1) {
      throw new ShardlineOptionError(
        'overflowAfterPlans',
        `must be an integer >= 1 (got ${String(overflow)})`,
      );
    }
    this.hostId = options.hostId;
    this.maxShardConsumers = max;
    this.#overflowAfterPlans = overflow;
  }

  plan(input: AllocationInput): AllocationPlan {
    const cap = input.maxShardConsumers ?? this.maxShardConsumers;
    const { leases, topology, now } = input;
    const me = this.hostId;
    const checkpoints = new Map<string, Lease['checkpoint']>();
    for (const lease of leases) checkpoints.set(lease.shardId, lease.checkpoint);

    const liveIds = new Set(input.liveHosts.map((h) => h.hostId));
    liveIds.add(me);

    const held = (l: Lease) => l.owner !== undefined && l.expiresAtMs !== undefined && l.expiresAtMs > now;
    // Preference: closed shards first (children wait on them), then older generations and shards.
    const rank = new Map<string, number>();
    const order = topology.shardIds();
    const closedFirst = [
      ...order.filter((id) => topology.isClosed(id)),
      ...order.filter((id) => !topology.isClosed(id)),
    ];
    for (const [i, id] of closedFirst.entries()) rank.set(id, i);

    const active = leases.filter(
      (l) =>
        topology.has(l.shardId) && l.checkpoint !== SHARD_END && topology.eligible(l.shardId, checkpoints),
    );
    active.sort((a, b) => rank.get(a.shardId)! - rank.get(b.shardId)!);

    const load = new Map<string, number>();
    for (const lease of active) {
      if (held(lease)) load.set(lease.owner!, (load.get(lease.owner!) ?? 0) + 1);
    }
    const mine = active.filter((l) => held(l) && l.owner === me);
    const fairShare = active.length === 0 ? 0 : Math.ceil(active.length / liveIds.size);
    const target = Math.min(fairShare, cap);

    const plan: AllocationPlan = {
      acquire: [],
      spares: [],
      release: [],
      handOver: [],
      requestHandoffs: [],
      warning: undefined,
      fairShare,
      target,
      held: mine.length,
    };

    // Over the cap (leases taken by a race, or by a previous run with a higher cap): give back the youngest.
    if (mine.length > cap) {
      plan.release = mine
        .slice(cap)
        .map((l) => l.shardId)
        .reverse();
    }

    for (const lease of mine) {
      const to = lease.handoffTo;
      if (to !== undefined && to !== me && !plan.release.includes(lease.shardId)) {
        plan.handOver.push({ shardId: lease.shardId, to });
      }
    }

    const reservedForOther = (l: Lease) => l.handoffTo !== undefined && l.handoffTo !== me;
    const exclude = input.exclude;
    const takeable = active.filter(
      (l) => !held(l) && !reservedForOther(l) && !(exclude?.has(l.shardId) ?? false),
    );
    // Released to this host first, then the rest in preference order (stable sort keeps it).
    takeable.sort((a, b) => Number(b.handoffTo === me) - Number(a.handoffTo === me));

    let room = Math.max(0, target - mine.length);
    for (const lease of takeable) {
      if (room === 0) break;
      plan.acquire.push(lease.shardId);
      room--;
    }

    // Leases nobody takes (other hosts capped below their share) are taken beyond the fair share.
    const stillFree = takeable.filter((l) => !plan.acquire.includes(l.shardId));
    const streak = new Map<string, number>();
    for (const lease of stillFree) streak.set(lease.shardId, (this.#freeStreak.get(lease.shardId) ?? 0) + 1);
    this.#freeStreak = streak;
    let capRoom = Math.max(0, cap - mine.length - plan.acquire.length);
    for (const lease of stillFree) {
      if (capRoom === 0) break;
      if (streak.get(lease.shardId)! >= this.#overflowAfterPlans) {
        plan.acquire.push(lease.shardId);
        capRoom--;
      }
    }

    plan.spares = takeable.map((l) => l.shardId).filter((id) => !plan.acquire.includes(id));

    // Nothing free and under target: ask the most loaded hosts for the rest of the deficit. Leases
    // already promised here count as moved, on both sides.
    if (stillFree.length === 0) {
      const pending = active.filter((l) => l.handoffTo === me && held(l) && l.owner !== me);
      for (const l of pending) load.set(l.owner!, load.get(l.owner!)! - 1);
      let projected = mine.length + plan.acquire.length + pending.length;
      // Per owner, the leases it could give: open and young last, so parents stay where they are read.
      const givable = new Map<string, Lease[]>();
      for (const l of active) {
        if (!held(l) || l.owner === me || l.handoffTo !== undefined || (exclude?.has(l.shardId) ?? false))
          continue;
        const list = givable.get(l.owner!) ?? [];
        list.push(l);
        givable.set(l.owner!, list);
      }
      while (projected < target) {
        let busiest: string | undefined;
        let busiestLoad = -1;
        for (const hostId of liveIds) {
          if (hostId === me || (givable.get(hostId)?.length ?? 0) === 0) continue;
          const count = load.get(hostId) ?? 0;
          if (count > busiestLoad || (count === busiestLoad && busiest !== undefined && hostId < busiest)) {
            busiest = hostId;
            busiestLoad = count;
          }
        }
        if (busiest === undefined || busiestLoad < projected + 2) break;
        const pick = givable.get(busiest)!.pop()!;
        plan.requestHandoffs.push({ shardId: pick.shardId, from: busiest });
        load.set(busiest, busiestLoad - 1);
        projected++;
      }
    }

    if (this.maxShardConsumers !== Number.POSITIVE_INFINITY) {
      const openShards = topology.openShardIds().filter((id) => checkpoints.get(id) !== SHARD_END).length;
      const capacity = liveIds.size * this.maxShardConsumers;
      if (capacity < openShards) {
        plan.warning = {
          code: 'insufficient-capacity',
          message:
            `${liveIds.size} live host(s) x maxShardConsumers ${this.maxShardConsumers} = ${capacity} readers ` +
            `cannot cover the ${openShards} open shards (children waiting on their parents included): ` +
            'some shards will not be read; raise maxShardConsumers or add hosts',
          openShards,
          liveHosts: liveIds.size,
          maxShardConsumers: this.maxShardConsumers,
        };
      }
    }
    return plan;
  }
}
