/**
 * A lease's local deadline as a timer, on this host's monotonic clock. From a good renew (timed from
 * when it was *sent*, which precedes the store's execution), records may be handed out until
 * `sent + remaining * (1 - margin)`; between that deadline and `sent + remaining` (the latest the lease
 * can still be ours, whatever the offset between the clocks) delivery pauses; past it the lease is lost.
 * The margin covers clock rate drift and scheduling delays, so a host cut off from the lease store stops
 * before another host can take its shards.
 */

import type { Lease } from './leases/types.js';

export const LEASE_CLOCK_DEFAULTS = Object.freeze({
  /** Part of the remaining lease time kept as margin before the local deadline. */
  deadlineMarginFraction: 0.2,
});

export interface LeaseClockOptions {
  /** What a lease lasts when the store does not say how long it has left. */
  leaseDurationMs: number;
  /** Delivery may go on (false: past the deadline). Called on every change, and on every good renew. */
  deliver(open: boolean): void;
  /** The lease's whole time ran out without a good renew. */
  expired(): void;
}

export class LeaseClock {
  readonly #o: LeaseClockOptions;
  #deadline = 0;
  #expiry = 0;
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  /** `lease` as acquired, the acquire sent at `sentAt` (performance.now()). Not running yet. */
  constructor(lease: Lease, sentAt: number, options: LeaseClockOptions) {
    this.#o = options;
    this.#set(lease, sentAt);
  }

  /** performance.now() past which nothing is handed out. */
  get deadline(): number {
    return this.#deadline;
  }

  /** Whether records may be handed out now. */
  get open(): boolean {
    return performance.now() < this.#deadline;
  }

  /** Epoch ms of the deadline (threads do not share a monotonic clock). */
  get deadlineEpochMs(): number {
    return Date.now() + (this.#deadline - performance.now());
  }

  start(): void {
    this.#running = true;
    this.#schedule();
  }

  /** A renew sent at `sentAt` succeeded with `lease`. */
  renewed(lease: Lease, sentAt: number): void {
    this.#set(lease, sentAt);
    if (this.#running) this.#schedule();
  }

  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #set(lease: Lease, sentAt: number): void {
    const remaining =
      lease.expiresAtMs !== undefined && lease.readAtMs !== undefined
        ? lease.expiresAtMs - lease.readAtMs
        : this.#o.leaseDurationMs;
    this.#deadline = sentAt + remaining * (1 - LEASE_CLOCK_DEFAULTS.deadlineMarginFraction);
    this.#expiry = sentAt + remaining;
  }

  /** Opens or pauses delivery by the deadline, and arms the timer for the next change. */
  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (!this.#running) return;
    const now = performance.now();
    if (now < this.#deadline) {
      this.#o.deliver(true);
      this.#timer = setTimeout(() => this.#schedule(), this.#deadline - now);
    } else if (now < this.#expiry) {
      this.#o.deliver(false);
      this.#timer = setTimeout(() => this.#schedule(), this.#expiry - now);
    } else {
      this.#running = false;
      this.#o.expired();
    }
  }
}
