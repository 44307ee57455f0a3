/**
 * Iterator delivery (`for await (const batch of coordinator)`): batches of different shards interleave,
 * one shard's come one at a time and in order.
 *
 * - Asking for the next batch marks the one in hand processed.
 * - Leaving the loop (`break`, `return`, or an exception in its body: JavaScript calls `return()` in
 *   every case and cannot tell them apart) does NOT count the batch in hand, unless `batch.checkpoint()`
 *   covered all of it: it goes back to the front of its shard's line, handed out again by the next
 *   loop, or dropped by `stop()` (and then delivered again after the checkpoint by whoever reads the
 *   shard next). So a failure in the loop body never checkpoints past the batch that failed.
 * - `next()` hands out only batches of lanes open right now: a lane paused at its lease deadline keeps
 *   its batch until it resumes (after a good renew) or halts (the batch is withdrawn).
 */

import type { RecordBatch } from '../options.js';
import type { BuiltBatch, Lane } from './lane.js';

interface Offer<T> {
  lane: Lane<T>;
  built: BuiltBatch<T>;
  settle(processed: boolean): void;
}

export class BatchIterator<T = unknown> implements AsyncIterator<RecordBatch<T>> {
  #ready: Offer<T>[] = [];
  #held: Offer<T> | undefined;
  #waiters: Array<(result: IteratorResult<RecordBatch<T>>) => void> = [];
  #ended = false;

  /** Whether a batch is in the user's hands. */
  get holding(): boolean {
    return this.#held !== undefined;
  }

  /**
   * Offers a lane's batch; resolves true once the user asked for the next batch after it (processed),
   * false when it was withdrawn or the iterator ended before that.
   */
  offer(lane: Lane<T>, built: BuiltBatch<T>): Promise<boolean> {
    if (this.#ended) return Promise.resolve(false);
    return new Promise((settle) => {
      this.#ready.push({ lane, built, settle });
      this.#serve();
    });
  }

  next(): Promise<IteratorResult<RecordBatch<T>>> {
    const held = this.#held;
    this.#held = undefined;
    held?.settle(true);
    if (this.#ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#serve();
    });
  }

  /** Leaving the loop: see the module notes. The iterator can be iterated again. */
  return(): Promise<IteratorResult<RecordBatch<T>>> {
    const held = this.#held;
    this.#held = undefined;
    if (held !== undefined) {
      if (held.built.checkpointedToEnd()) held.settle(true);
      else if (held.lane.halted || this.#ended) held.settle(false);
      else this.#ready.unshift(held);
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** A lane resumed: its offer may be handed out now. */
  wake(): void {
    this.#serve();
  }

  /** A lane halted: its offer not taken yet is withdrawn. */
  withdraw(lane: Lane<T>): void {
    const keep: Offer<T>[] = [];
    for (const offer of this.#ready) {
      if (offer.lane === lane) offer.settle(false);
      else keep.push(offer);
    }
    this.#ready = keep;
  }

  /** Graceful stop: offers not taken are withdrawn and the loop ends; the batch in hand stays in hand. */
  end(): void {
    this.#ended = true;
    for (const offer of this.#ready.splice(0)) offer.settle(false);
    for (const waiter of this.#waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  #serve(): void {
    while (this.#waiters.length > 0 && this.#held === undefined) {
      const at = this.#ready.findIndex((offer) => offer.lane.deliverable());
      if (at === -1) return;
      const [offer] = this.#ready.splice(at, 1);
      this.#held = offer!;
      this.#waiters.shift()!({ value: offer!.built.batch, done: false });
    }
  }
}
