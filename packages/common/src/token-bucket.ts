/**
 * Token buckets that pace calls to Kinesis' per-shard limits (GetRecords: 5 calls/s and 2 MiB/s;
 * writes: 1,000 records/s and 1 MiB/s).
 */

import { ShardlineOptionError } from './errors.js';
import { abortError, sleep as defaultSleep } from './retry.js';

/** Milliseconds from a monotonic source. */
export type Clock = () => number;

/** The default clock. Looked up at each call so that fake timers installed later still apply. */
const performanceClock: Clock = () => performance.now();

/**
 * Tokens are kept in thousandths (token x ms / s): with an integer rate and integer clock steps every
 * refill and take is integer arithmetic, so a wait of exactly `delayMs(n)` always makes `n` available,
 * with no floating-point shortfall that would cost one more timer tick.
 */
const SCALE = 1_000;

export interface TokenBucketOptions {
  /** Tokens added per second. A finite number > 0. */
  ratePerSec: number;
  /**
   * Most tokens the bucket holds: the burst allowed after a quiet period.
   * @defaultValue ratePerSec (one second's worth)
   */
  capacity?: number;
  /**
   * Monotonic milliseconds.
   * @defaultValue performance.now
   */
  clock?: Clock;
  /**
   * Tokens at construction; at most `capacity`, may be negative (starting in debt).
   * @defaultValue capacity (full)
   */
  initial?: number;
}

function positive(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ShardlineOptionError(option, `must be a finite number > 0 (got ${String(value)})`);
  }
  return value;
}

function amount(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ShardlineOptionError(option, `must be a finite number >= 0 (got ${String(value)})`);
  }
  return value;
}

/**
 * A token bucket that may go into debt.
 *
 * - `tryTake(n)` / `take(n)` need `min(n, capacity)` tokens: a request larger than the whole bucket
 *   waits until the bucket is full, then takes `n`, leaving a debt of `n - capacity` that later
 *   requests wait out. The long-run rate holds and an oversized request never waits forever.
 * - `consume(n)` takes `n` at once whatever the balance: for costs learnt after the fact, such as the
 *   size of a GetRecords response. A 10 MiB response on a full 2 MiB/s bucket leaves 8 MiB of debt,
 *   so the next `take(0)` waits 4 s (5 s of budget in all), as Kinesis itself would throttle.
 * - `take(0)` / `delayMs(0)` wait only for any debt to be paid.
 *
 * Not fair between concurrent `take()` callers: whichever wakes first when tokens are there wins.
 */
export class TokenBucket {
  #rate = 0;
  #capacity = 0;
  #tokens: number;
  #last: number;
  readonly #clock: Clock;

  constructor(options: TokenBucketOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('tokenBucket', 'must be an object like { ratePerSec: 5 }');
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new ShardlineOptionError('tokenBucket.clock', 'must be a function returning milliseconds');
    }
    this.#clock = options.clock ?? performanceClock;
    this.#setRate(options.ratePerSec, options.capacity, 'tokenBucket');
    let initial = this.#capacity;
    if (options.initial !== undefined) {
      const value = options.initial;
      if (typeof value !== 'number' || !Number.isFinite(value) || value * SCALE > this.#capacity) {
        throw new ShardlineOptionError(
          'tokenBucket.initial',
          `must be a finite number <= capacity ${this.#capacity / SCALE} (got ${String(value)})`,
        );
      }
      initial = value * SCALE;
    }
    this.#tokens = initial;
    this.#last = this.#clock();
  }

  /** Tokens added per second. */
  get ratePerSec(): number {
    return this.#rate;
  }

  /** Most tokens the bucket holds. */
  get capacity(): number {
    return this.#capacity / SCALE;
  }

  #refill(): void {
    const now = this.#clock();
    // A clock that steps back (it should not) adds nothing; keeping the later mark avoids refilling
    // the same interval twice when it comes forward again.
    if (now > this.#last) {
      const tokens = this.#tokens + (now - this.#last) * this.#rate;
      this.#tokens = Math.min(tokens, this.#capacity);
      this.#last = now;
    }
  }

  #need(n: number): number {
    const scaled = n * SCALE;
    return Math.min(scaled, this.#capacity);
  }

  /** Tokens available now (negative while in debt). */
  available(): number {
    this.#refill();
    return this.#tokens / SCALE;
  }

  /** Takes `n` tokens if they are there (see the class notes for `n` > capacity); else takes nothing. */
  tryTake(n = 1): boolean {
    amount(n, 'tokenBucket.tryTake(n)');
    this.#refill();
    if (this.#tokens < this.#need(n)) return false;
    this.#tokens -= n * SCALE;
    return true;
  }

  /** Milliseconds until `tryTake(n)` would succeed; 0 if it would now. Takes nothing. */
  delayMs(n = 1): number {
    amount(n, 'tokenBucket.delayMs(n)');
    this.#refill();
    const missing = this.#need(n) - this.#tokens;
    return missing <= 0 ? 0 : Math.ceil(missing / this.#rate);
  }

  /** Takes `n` tokens now, going into debt if needed. */
  consume(n: number): void {
    amount(n, 'tokenBucket.consume(n)');
    this.#refill();
    this.#tokens -= n * SCALE;
  }

  /**
   * Waits until `n` tokens are available, then takes them. Rejects with `ERR_ABORTED` if `signal`
   * aborts first (taking nothing).
   */
  async take(
    n = 1,
    signal?: AbortSignal,
    sleep: (ms: number, signal?: AbortSignal) => Promise<void> = defaultSleep,
  ): Promise<void> {
    amount(n, 'tokenBucket.take(n)');
    for (;;) {
      const wait = this.delayMs(n);
      if (wait === 0) {
        // Checked here too: an abort that raced the last wake-up must not take tokens.
        if (signal?.aborted) throw abortError(signal);
        this.#tokens -= n * SCALE;
        return;
      }
      await sleep(wait, signal);
    }
  }

  /**
   * Changes the rate (and capacity), for example when a producer's share of shards changes. Tokens
   * earned so far are counted at the old rate, then capped to the new capacity.
   *
   * @param capacity - defaults to the new `ratePerSec` (one second's worth), as in the constructor.
   */
  setRate(ratePerSec: number, capacity?: number): void {
    this.#refill();
    this.#setRate(ratePerSec, capacity, 'tokenBucket.setRate');
    if (this.#tokens > this.#capacity) this.#tokens = this.#capacity;
  }

  #setRate(ratePerSec: unknown, capacity: unknown, name: string): void {
    const rate = positive(ratePerSec, `${name}.ratePerSec`);
    const cap = capacity === undefined ? rate : positive(capacity, `${name}.capacity`);
    this.#rate = rate;
    this.#capacity = cap * SCALE;
  }
}

/** Limits of a {@link RateLimiter}: each one given is a bucket; an omitted or `Infinity` one is no limit. */
export interface RateLimiterOptions {
  /** Records per second (writes: 1,000 per shard). */
  recordsPerSec?: number;
  /** Bytes per second (reads: 2 MiB per shard; writes: 1 MiB per shard). */
  bytesPerSec?: number;
  /** Calls per second (GetRecords: 5 per shard). */
  callsPerSec?: number;
  /** @defaultValue recordsPerSec */
  recordsBurst?: number;
  /** @defaultValue bytesPerSec */
  bytesBurst?: number;
  /** @defaultValue callsPerSec */
  callsBurst?: number;
  /** @defaultValue performance.now */
  clock?: Clock;
}

/**
 * Several token buckets (records, bytes, calls) checked and taken together, all or nothing.
 *
 * A shard reader waits for a call slot and for its byte debt to be paid, then, once the response
 * has told it the size, charges the bytes:
 * ```ts
 * const limiter = new RateLimiter({ callsPerSec: 5, bytesPerSec: 2 * 1024 * 1024 });
 * await limiter.take(0, 0, 1, signal);          // a call slot, and no byte debt left
 * const { Records } = await getRecords();
 * limiter.consume(0, responseBytes);            // may go into debt: later calls wait it out
 * ```
 * A producer asks how many of its queued records it may send now, and when the rest may go:
 * ```ts
 * const n = limiter.fit(sizes, start, end);     // a prefix that fits both the record and byte budgets
 * limiter.consume(n, bytesOf(n));
 * const retryInMs = limiter.delayMs(1, sizes[start + n]);
 * ```
 */
export class RateLimiter {
  readonly records: TokenBucket | undefined;
  readonly bytes: TokenBucket | undefined;
  readonly calls: TokenBucket | undefined;

  constructor(options: RateLimiterOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('rateLimiter', 'must be an object like { recordsPerSec, bytesPerSec }');
    }
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new ShardlineOptionError('rateLimiter.clock', 'must be a function returning milliseconds');
    }
    const clock = options.clock ?? performanceClock;
    this.records = bucket(
      options.recordsPerSec,
      options.recordsBurst,
      clock,
      'recordsPerSec',
      'recordsBurst',
    );
    this.bytes = bucket(options.bytesPerSec, options.bytesBurst, clock, 'bytesPerSec', 'bytesBurst');
    this.calls = bucket(options.callsPerSec, options.callsBurst, clock, 'callsPerSec', 'callsBurst');
  }

  /** Milliseconds until `records`, `bytes` and `calls` could all be taken; 0 if now. */
  delayMs(records = 0, bytes = 0, calls = 0): number {
    let wait = 0;
    if (this.records !== undefined) wait = Math.max(wait, this.records.delayMs(records));
    if (this.bytes !== undefined) wait = Math.max(wait, this.bytes.delayMs(bytes));
    if (this.calls !== undefined) wait = Math.max(wait, this.calls.delayMs(calls));
    return wait;
  }

  /** Takes all three if every bucket allows it now; else takes nothing. */
  tryTake(records = 0, bytes = 0, calls = 0): boolean {
    if (this.delayMs(records, bytes, calls) !== 0) return false;
    this.consume(records, bytes, calls);
    return true;
  }

  /** Charges all three now, going into debt where needed. */
  consume(records = 0, bytes = 0, calls = 0): void {
    this.records?.consume(records);
    this.bytes?.consume(bytes);
    this.calls?.consume(calls);
  }

  /** Waits until {@link tryTake} would succeed, then takes. Rejects with `ERR_ABORTED` on abort. */
  async take(
    records = 0,
    bytes = 0,
    calls = 0,
    signal?: AbortSignal,
    sleep: (ms: number, signal?: AbortSignal) => Promise<void> = defaultSleep,
  ): Promise<void> {
    for (;;) {
      const wait = this.delayMs(records, bytes, calls);
      if (wait === 0) {
        if (signal?.aborted) throw abortError(signal);
        this.consume(records, bytes, calls);
        return;
      }
      await sleep(wait, signal);
    }
  }

  /**
   * How many records of `sizes[start..end)` (bytes each), taken in order, fit the record and byte
   * budgets now. Takes nothing: charge what you send with {@link consume}. Returns 0 while in debt.
   * One record larger than the whole byte capacity fits alone once the bucket is full (it then leaves
   * a debt), so it is never stuck; otherwise a prefix never exceeds what the buckets hold, so a burst
   * stays within what Kinesis accepts per second.
   */
  fit(sizes: ArrayLike<number>, start = 0, end: number = sizes.length): number {
    let count = end - start;
    if (count <= 0) return 0;
    if (this.records !== undefined) {
      const available = Math.floor(this.records.available());
      if (available < count) count = Math.max(available, 0);
    }
    if (this.bytes === undefined || count === 0) return count;
    let budget = this.bytes.available();
    if (budget < 0) return 0;
    const first = sizes[start]!;
    if (first > this.bytes.capacity) return budget >= this.bytes.capacity ? 1 : 0;
    let fitted = 0;
    for (let i = start; fitted < count; i++) {
      budget -= sizes[i]!;
      // Written so that a NaN size stops the prefix instead of letting everything through.
      if (!(budget >= 0)) break;
      fitted++;
    }
    return fitted;
  }

  /** Changes the rates (and bursts) of the buckets given; a limit absent at construction cannot be added. */
  setRates(rates: {
    recordsPerSec?: number;
    bytesPerSec?: number;
    callsPerSec?: number;
    recordsBurst?: number;
    bytesBurst?: number;
    callsBurst?: number;
  }): void {
    setBucketRate(this.records, rates.recordsPerSec, rates.recordsBurst, 'recordsPerSec');
    setBucketRate(this.bytes, rates.bytesPerSec, rates.bytesBurst, 'bytesPerSec');
    setBucketRate(this.calls, rates.callsPerSec, rates.callsBurst, 'callsPerSec');
  }
}

function bucket(
  rate: number | undefined,
  burst: number | undefined,
  clock: Clock,
  rateName: string,
  burstName: string,
): TokenBucket | undefined {
  if (rate === undefined || rate === Number.POSITIVE_INFINITY) {
    if (burst !== undefined) {
      throw new ShardlineOptionError(`rateLimiter.${burstName}`, `needs rateLimiter.${rateName}`);
    }
    return undefined;
  }
  positive(rate, `rateLimiter.${rateName}`);
  if (burst !== undefined) positive(burst, `rateLimiter.${burstName}`);
  return new TokenBucket({ ratePerSec: rate, capacity: burst ?? rate, clock });
}

function setBucketRate(
  target: TokenBucket | undefined,
  rate: number | undefined,
  burst: number | undefined,
  name: string,
): void {
  if (rate === undefined && burst === undefined) return;
  if (target === undefined) {
    throw new ShardlineOptionError(
      `rateLimiter.${name}`,
      'was not limited at construction, so it cannot be set',
    );
  }
  target.setRate(rate ?? target.ratePerSec, burst);
}
