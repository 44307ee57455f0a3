/**
 * Carrying out the store side of an allocation plan: acquiring the leases it names (falling back to
 * its spares when another host wins a race) and asking the owners of the leases it wants handed over.
 * The Allocator plans without I/O; this is its I/O, so the coordinator's tick stays a short sequence.
 */

import { SHARD_END } from '@shardline/common';
import type { AllocationPlan } from './allocator.js';
import type { Lease, LeaseManager } from './leases/types.js';

export interface PlanExecutionContext {
  hostId: string;
  leases: LeaseManager;
  /** Whether this host has a session for the shard already. */
  has(shardId: string): boolean;
  stopping(): boolean;
  /** A lease acquired (the acquire sent at `sent`, performance.now()): start its session. */
  begin(lease: Lease, sent: number): void;
  report(error: unknown, message: string, shardId: string): void;
}

/** Acquires `plan.acquire` in order (spares standing in for races lost), then requests the handoffs. */
export async function executePlan(plan: AllocationPlan, c: PlanExecutionContext): Promise<void> {
  const candidates = [...plan.acquire];
  const spares = [...plan.spares];
  while (candidates.length > 0) {
    if (c.stopping()) return;
    const shardId = candidates.shift()!;
    if (c.has(shardId)) continue;
    const sent = performance.now();
    const lease = await c.leases.acquire(shardId);
    if (c.stopping()) {
      if (lease !== undefined) await c.leases.release(shardId, lease.counter).catch(() => false);
      return;
    }
    if (lease === undefined) {
      // Another host won it: try the next candidate instead.
      const spare = spares.shift();
      if (spare !== undefined) candidates.push(spare);
      continue;
    }
    if (lease.checkpoint === SHARD_END) {
      await c.leases.release(shardId, lease.counter).catch(() => false);
      continue;
    }
    c.begin(lease, sent);
  }
  await Promise.all(
    plan.requestHandoffs.map(({ shardId }) =>
      c.leases.requestHandoff(shardId, c.hostId).catch((error: unknown) => {
        c.report(error, 'handoff request failed', shardId);
        return false;
      }),
    ),
  );
}
