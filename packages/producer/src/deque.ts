/**
 * A growable ring buffer: O(1) push and shift at both ends. The producer's queues take a record at the
 * tail and hand it out (or put a failed one back) at the head; `Array.prototype.shift` would make a
 * large backlog quadratic.
 */
export class Deque<T> {
  #items: Array<T | undefined>;
  #head = 0;
  #length = 0;

  constructor(capacity = 16) {
    this.#items = new Array<T | undefined>(capacity);
  }

  get length(): number {
    return this.#length;
  }

  /** The item at position `i` from the head (0 = head); undefined beyond the end. */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.#length) return undefined;
    return this.#items[(this.#head + i) % this.#items.length];
  }

  peek(): T | undefined {
    return this.#length === 0 ? undefined : this.#items[this.#head];
  }

  push(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#length) % this.#items.length] = item;
    this.#length++;
  }

  unshift(item: T): void {
    if (this.#length === this.#items.length) this.#grow();
    this.#head = (this.#head - 1 + this.#items.length) % this.#items.length;
    this.#items[this.#head] = item;
    this.#length++;
  }

  shift(): T | undefined {
    if (this.#length === 0) return undefined;
    const item = this.#items[this.#head];
    // Cleared so a settled record is not kept alive by the buffer.
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) % this.#items.length;
    this.#length--;
    return item;
  }

  /** Removes and returns every item, head first. */
  drain(): T[] {
    const out: T[] = new Array<T>(this.#length);
    for (let i = 0; i < out.length; i++) out[i] = this.shift() as T;
    return out;
  }

  #grow(): void {
    const old = this.#items;
    const next = new Array<T | undefined>(Math.max(16, old.length * 2));
    for (let i = 0; i < this.#length; i++) next[i] = old[(this.#head + i) % old.length];
    this.#items = next;
    this.#head = 0;
  }
}
