/**
 * Retry with capped exponential backoff and full jitter, and an abortable sleep.
 */

import { classifyAwsError, ErrorCodes, ShardlineError, ShardlineOptionError } from './errors.js';

/** Exponential backoff bounds. */
export interface BackoffMs {
  /** Upper bound of the first delay, in milliseconds. */
  initial: number;
  /** Upper bound of any delay, in milliseconds. */
  max: number;
  /**
   * Growth of the upper bound per attempt.
   * @defaultValue 2
   */
  multiplier?: number;
}

/** Largest delay `setTimeout` takes as is; longer waits are chained (a larger value would fire after 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Full jitter, as in the AWS Architecture Blog's "Exponential Backoff And Jitter":
 * `random() * min(max, initial * multiplier ** attempt)`. `attempt` starts at 0 (the delay after the
 * first failure). Full jitter spreads retries of many clients (or many shards) that failed together,
 * which a plain exponential delay would keep in lockstep.
 *
 * @param random - a source of numbers in [0, 1); `Math.random` by default, inject one for tests.
 */
export function backoffDelay(
  attempt: number,
  backoff: BackoffMs,
  random: () => number = Math.random,
): number {
  const multiplier = backoff.multiplier ?? 2;
  // 0 * Infinity is NaN: a zero initial delay stays zero however many attempts.
  const grown = backoff.initial === 0 ? 0 : backoff.initial * multiplier ** attempt;
  const cap = Math.min(backoff.max, grown);
  return random() * cap;
}

/** The `ERR_ABORTED` error for an aborted `signal` (cause: `signal.reason`). */
export function abortError(signal: AbortSignal): ShardlineError {
  return new ShardlineError(ErrorCodes.ABORTED, 'aborted', { cause: signal.reason });
}

/**
 * Resolves after `ms` milliseconds; rejects with a {@link ShardlineError} of code `ERR_ABORTED`
 * (cause: `signal.reason`) as soon as `signal` aborts, or at once if it already has.
 *
 * `Infinity` waits until the signal aborts. The timer is not unref'd: a pending retry or rate-limit
 * wait keeps the process alive, as the work it delays would. Abort the signal to end the wait early
 * (for example on stop).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0) {
    return Promise.reject(new ShardlineOptionError('sleep.ms', `must be a number >= 0 (got ${String(ms)})`));
  }
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise<void>((resolve, reject) => {
    let remaining = ms;
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const arm = () => {
      const step = Math.min(remaining, MAX_TIMER_MS);
      remaining -= step;
      timer = setTimeout(() => {
        if (remaining > 0) {
          arm();
          return;
        }
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, step);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    arm();
  });
}

/** Options of {@link retry}. */
export interface RetryOptions {
  /** Retries after the first attempt: 0 runs `fn` once. May be `Infinity`. */
  retries: number;
  backoffMs: BackoffMs;
  /**
   * Source of jitter in [0, 1).
   * @defaultValue Math.random
   */
  random?: () => number;
  /**
   * Waits between attempts; injectable for tests.
   * @defaultValue {@link sleep}
   */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Aborting stops retrying: the pending wait (or the next one) rejects with `ERR_ABORTED`. */
  signal?: AbortSignal;
  /**
   * Whether the failure of attempt `attempt` (0-based) may be retried.
   * @defaultValue {@link isRetriable}: throttling, expired iterators, 5xx and network errors, and any
   * error whose own `retriable` is true.
   */
  shouldRetry?: (error: unknown, attempt: number) => boolean;
  /** Called before each wait. An exception thrown here ends the retries and rejects with it. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/** Passed to each attempt. */
export interface RetryContext {
  /** 0 for the first call, 1 for the first retry, ... */
  attempt: number;
  /** Stops retrying at once: `retry()` rejects with `error`, whatever `shouldRetry` says. */
  bail(error: unknown): never;
}

/**
 * The default retry decision. A {@link ShardlineError} and any AWS SDK or network error are judged by
 * {@link classifyAwsError} (by the root cause's name, status and system code); another object that
 * carries a boolean `retriable` (for example an error from another copy of this package) is taken at
 * its word. Anything else is not retried.
 */
export function isRetriable(error: unknown): boolean {
  if (error instanceof ShardlineError) return classifyAwsError(error).retriable;
  const own = (error as { retriable?: unknown } | null | undefined)?.retriable;
  if (typeof own === 'boolean') return own;
  return classifyAwsError(error).retriable;
}

function checkDelay(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ShardlineOptionError(
      option,
      `must be a finite number of milliseconds >= 0 (got ${String(value)})`,
    );
  }
  return value;
}

/**
 * Validates retry options, naming each bad field under `name` (e.g. `retry.retries`,
 * `onHandlerError.backoffMs.max`). Each package calls this on its own options at construction, so a
 * mistake fails at startup rather than at the first error.
 */
export function validateRetryOptions(options: unknown, name = 'retry'): asserts options is RetryOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ShardlineOptionError(name, `must be an object like { retries, backoffMs: { initial, max } }`);
  }
  const o = options as Partial<Record<keyof RetryOptions, unknown>>;
  const retries = o.retries;
  if (
    typeof retries !== 'number' ||
    Number.isNaN(retries) ||
    retries < 0 ||
    (Number.isFinite(retries) && !Number.isInteger(retries))
  ) {
    throw new ShardlineOptionError(
      `${name}.retries`,
      `must be an integer >= 0 or Infinity (got ${String(retries)})`,
    );
  }
  validateBackoff(o.backoffMs, `${name}.backoffMs`);
  for (const key of ['random', 'sleep', 'shouldRetry', 'onRetry'] as const) {
    if (o[key] !== undefined && typeof o[key] !== 'function') {
      throw new ShardlineOptionError(`${name}.${key}`, `must be a function (got ${typeof o[key]})`);
    }
  }
  const signal = o.signal as { aborted?: unknown; addEventListener?: unknown } | undefined;
  if (
    signal !== undefined &&
    (typeof signal !== 'object' ||
      signal === null ||
      typeof signal.aborted !== 'boolean' ||
      typeof signal.addEventListener !== 'function')
  ) {
    throw new ShardlineOptionError(`${name}.signal`, 'must be an AbortSignal');
  }
}

/** Validates a {@link BackoffMs}, naming bad fields under `name` (e.g. `retry.backoffMs`). */
export function validateBackoff(backoff: unknown, name = 'backoffMs'): asserts backoff is BackoffMs {
  if (typeof backoff !== 'object' || backoff === null) {
    throw new ShardlineOptionError(name, `must be an object like { initial: 100, max: 10000 }`);
  }
  const b = backoff as Partial<Record<keyof BackoffMs, unknown>>;
  const initial = checkDelay(b.initial, `${name}.initial`);
  const max = checkDelay(b.max, `${name}.max`);
  if (max < initial) {
    throw new ShardlineOptionError(`${name}.max`, `must be >= ${name}.initial (got ${max} < ${initial})`);
  }
  if (
    b.multiplier !== undefined &&
    (typeof b.multiplier !== 'number' || !Number.isFinite(b.multiplier) || b.multiplier < 1)
  ) {
    throw new ShardlineOptionError(
      `${name}.multiplier`,
      `must be a finite number >= 1 (got ${String(b.multiplier)})`,
    );
  }
}

/**
 * Calls `fn` until it succeeds, `retries` retries have failed, `shouldRetry` says no, `fn` calls
 * `bail`, or `signal` aborts. Waits {@link backoffDelay}(attempt) between attempts.
 *
 * Rejects with: the last error, unchanged, when retries are exhausted or the error is not retriable;
 * the error given to `bail`; or an `ERR_ABORTED` {@link ShardlineError} (cause: `signal.reason`) when
 * aborted, even if an attempt was failing at the time (a deliberate stop is not a failure).
 */
export async function retry<T>(fn: (ctx: RetryContext) => Promise<T> | T, options: RetryOptions): Promise<T> {
  if (typeof fn !== 'function') throw new ShardlineOptionError('retry.fn', 'must be a function');
  validateRetryOptions(options);
  const { retries, backoffMs, signal, onRetry } = options;
  const random = options.random ?? Math.random;
  const wait = options.sleep ?? sleep;
  const shouldRetry = options.shouldRetry ?? isRetriable;

  let bailed: { error: unknown } | undefined;
  const bail = (error: unknown): never => {
    bailed = { error };
    throw error;
  };

  for (let attempt = 0; ; attempt++) {
    if (signal?.aborted) throw abortError(signal);
    try {
      const result = await fn({ attempt, bail });
      // fn may have caught its own bail(): the bail still wins.
      if (bailed !== undefined) throw bailed.error;
      return result;
    } catch (error) {
      if (bailed !== undefined) throw bailed.error;
      if (signal?.aborted) throw abortError(signal);
      if (attempt >= retries || !shouldRetry(error, attempt)) throw error;
      const delayMs = backoffDelay(attempt, backoffMs, random);
      onRetry?.(error, attempt, delayMs);
      await wait(delayMs, signal);
    }
  }
}
