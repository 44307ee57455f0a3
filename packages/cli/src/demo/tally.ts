/**
 * The demo's bookkeeping: what was produced and what the consumer saw, and whether each key's records
 * arrived in order.
 */

/** The payload of every demo record. */
export interface DemoItem {
  key: string;
  seq: number;
}

/** Counts the records a consumer delivers, per key, telling redeliveries from reordering. */
export class DeliveryTally {
  /** Per key: the highest seq delivered so far, and every seq seen (to recognise a redelivery). */
  readonly #keys = new Map<string, { last: number; seen: Set<number> }>();
  #unique = 0;
  #duplicates = 0;
  #outOfOrder = 0;
  #invalid = 0;
  readonly #examples: string[] = [];

  /** Records one delivered item. */
  add(item: unknown): void {
    const valid =
      typeof item === 'object' &&
      item !== null &&
      typeof (item as DemoItem).key === 'string' &&
      Number.isSafeInteger((item as DemoItem).seq);
    if (!valid) {
      this.#invalid++;
      return;
    }
    const { key, seq } = item as DemoItem;
    let entry = this.#keys.get(key);
    if (entry === undefined) {
      entry = { last: -1, seen: new Set() };
      this.#keys.set(key, entry);
    }
    if (entry.seen.has(seq)) {
      // At-least-once delivery may replay records after a lease moves: counted, not an order break.
      this.#duplicates++;
      return;
    }
    entry.seen.add(seq);
    this.#unique++;
    if (seq < entry.last) {
      this.#outOfOrder++;
      if (this.#examples.length < 5) this.#examples.push(`${key}: seq ${seq} after ${entry.last}`);
    } else {
      entry.last = seq;
    }
  }

  get unique(): number {
    return this.#unique;
  }

  get duplicates(): number {
    return this.#duplicates;
  }

  get outOfOrder(): number {
    return this.#outOfOrder;
  }

  /** Deliveries that were not demo records (none expected). */
  get invalid(): number {
    return this.#invalid;
  }

  get keys(): number {
    return this.#keys.size;
  }

  /** A few of the order breaks, for the failure message. */
  get examples(): readonly string[] {
    return this.#examples;
  }
}
