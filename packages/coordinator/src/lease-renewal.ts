/**
 * The renewal loop: every `intervalMs`, every lease this host holds, in one call to the lease store,
 * bounded below the sessions' deadline margin (a hung store cannot hold up the next round). It runs on
 * its own timer: it never waits on user code, on planning or on a shard listing, and it goes on during
 * a stop until the last lease is released. Each session moves its lease deadline from the result.
 */

import type { Lease, LeaseManager } from './leases/types.js';
import { SESSION_TIMING, type ShardSession } from './shard-session.js';

export interface LeaseRenewalOptions {
  leases: LeaseManager;
  leaseDurationMs: number;
  intervalMs: number;
  /** The sessions of this host (those that hold a lease are renewed). */
  sessions(): Iterable<ShardSession<unknown>>;
  /** A round that failed without an answer (the sessions decide from their deadlines). */
  report(error: unknown): void;
}

export class LeaseRenewal {
  readonly #o: LeaseRenewalOptions;
  #timer: NodeJS.Timeout | undefined;
  #round: Promise<void> | undefined;

  constructor(options: LeaseRenewalOptions) {
    this.#o = options;
  }

  start(): void {
    this.#timer ??= setInterval(() => void this.round(), this.#o.intervalMs);
  }

  /** Stops the timer and waits for the round in flight. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#round;
  }

  /** One round; one at a time (a call while one runs joins it). */
  round(): Promise<void> {
    this.#round ??= this.#renew().finally(() => {
      this.#round = undefined;
    });
    return this.#round;
  }

  async #renew(): Promise<void> {
    const held = [...this.#o.sessions()].filter((s) => s.holdsLease);
    if (held.length === 0) return;
    const sent = performance.now();
    let renewed: Map<string, Lease | undefined>;
    try {
      renewed = await this.#o.leases.renewLeases(
        held.map((s) => ({ shardId: s.shardId, counter: s.counter })),
        { timeoutMs: Math.floor(this.#o.leaseDurationMs * SESSION_TIMING.deadlineMarginFraction) },
      );
    } catch (error) {
      this.#o.report(error);
      for (const session of held) session.renewFailed();
      return;
    }
    for (const session of held) {
      const lease = renewed.get(session.shardId);
      if (lease === undefined) session.renewRefused();
      else session.renewed(lease, sent);
    }
  }
}
