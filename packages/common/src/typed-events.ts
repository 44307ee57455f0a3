/**
 * The typed, synchronous event emitter behind every Shardline `on()`: the coordinator's, the
 * producer's and the testing kit's proxies. One set of rules for all of them:
 *
 * - `on()` / `once()` return an unsubscribe function (idempotent); the same listener subscribed twice
 *   is two subscriptions.
 * - An unknown event name throws a ShardlineOptionError naming the event and listing the known ones
 *   (JavaScript callers get no compile-time check; a typo must not subscribe to nothing).
 * - Listeners are user code running in the middle of the emitter's own bookkeeping: one that throws
 *   (or returns a promise that rejects) is logged through the injected logger and skipped, never
 *   allowed to break the emitter or the other listeners.
 * - Unlike Node's EventEmitter, an `error` event with no listener is not thrown.
 */
import { ShardlineOptionError, serializeError } from './errors.js';
import type { Logger } from './logger.js';
import { silentLogger } from './logger.js';

/** A listener of `payload`; what it returns is ignored (a rejected promise is logged). */
export type TypedEventListener<P> = (payload: P) => unknown;

export interface TypedEventsOptions {
  /**
   * Where a listener that throws is reported (`error` level).
   * @defaultValue silentLogger
   */
  logger?: Logger;
  /** Who emits, as the log line's prefix (`'producer'`: "producer: a 'put' event listener threw"). */
  label?: string;
}

interface Subscription {
  listener: TypedEventListener<never>;
  once: boolean;
}

function describeName(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  try {
    return String(value);
  } catch {
    return typeof value;
  }
}

/**
 * Events of the map `M` (event name -> payload type), by name.
 *
 * ```ts
 * interface MyEvents { started: { id: string }; stopped: { id: string; reason: string } }
 * const events = new TypedEvents<MyEvents>(['started', 'stopped'], { logger, label: 'my thing' });
 * const off = events.on('started', ({ id }) => started.push(id));
 * events.emit('started', { id: 'a' });
 * off();
 * ```
 */
export class TypedEvents<M extends object> {
  /** Every event name, in the order given. */
  readonly names: readonly (keyof M & string)[];
  readonly #known: ReadonlySet<string>;
  readonly #logger: Logger;
  readonly #prefix: string;
  readonly #subscriptions = new Map<keyof M & string, Subscription[]>();

  /**
   * @param names - every event of `M`: subscribing to another name throws.
   * @throws ShardlineOptionError for an empty or non-string name list, or a logger without `error`.
   */
  constructor(names: readonly (keyof M & string)[], options: TypedEventsOptions = {}) {
    const given: unknown = names;
    if (!Array.isArray(given) || given.length === 0 || !given.every((n) => typeof n === 'string')) {
      throw new ShardlineOptionError('names', 'must be a non-empty array of event names');
    }
    const logger = options.logger ?? silentLogger;
    if (typeof logger?.error !== 'function') {
      throw new ShardlineOptionError('logger', 'must have an error(fields, message) method');
    }
    this.names = Object.freeze(names.slice());
    this.#known = new Set(names);
    this.#logger = logger;
    this.#prefix = options.label === undefined || options.label === '' ? '' : `${options.label}: `;
  }

  /**
   * Calls `listener` for every `event` until the returned function is called (idempotent).
   * @throws ShardlineOptionError for an unknown event name or a listener that is not a function.
   */
  on<E extends keyof M & string>(event: E, listener: TypedEventListener<M[E]>): () => void {
    return this.#subscribe(event, listener, false);
  }

  /** Like {@link on}, for the next `event` only; the returned function cancels it before then. */
  once<E extends keyof M & string>(event: E, listener: TypedEventListener<M[E]>): () => void {
    return this.#subscribe(event, listener, true);
  }

  /** Subscriptions to `event`, or to every event without one. */
  listenerCount(event?: keyof M & string): number {
    if (event !== undefined) return this.#subscriptions.get(event)?.length ?? 0;
    let count = 0;
    for (const list of this.#subscriptions.values()) count += list.length;
    return count;
  }

  /**
   * Calls the listeners of `event` in subscription order. Listeners added meanwhile wait for the next
   * emit; listeners removed meanwhile are skipped. Never throws.
   */
  emit<E extends keyof M & string>(event: E, payload: M[E]): void {
    const list = this.#subscriptions.get(event);
    if (list === undefined || list.length === 0) return;
    for (const subscription of [...list]) {
      if (!list.includes(subscription)) continue;
      if (subscription.once) this.#remove(event, subscription);
      let result: unknown;
      try {
        result = (subscription.listener as TypedEventListener<M[E]>)(payload);
      } catch (error) {
        this.#listenerFailed(event, error);
        continue;
      }
      if (typeof (result as PromiseLike<unknown> | null)?.then === 'function') {
        Promise.resolve(result).catch((error: unknown) => this.#listenerFailed(event, error));
      }
    }
  }

  /** Drops every listener (an owner calls it once stopped). Later subscriptions work as before. */
  clear(): void {
    this.#subscriptions.clear();
  }

  #subscribe(event: keyof M & string, listener: TypedEventListener<never>, once: boolean): () => void {
    if (typeof event !== 'string' || !this.#known.has(event)) {
      const known = this.names.map((n) => `'${n}'`);
      const expected = known.length === 1 ? known[0] : `one of ${known.join(', ')}`;
      throw new ShardlineOptionError('event', `must be ${expected} (got ${describeName(event)})`);
    }
    if (typeof listener !== 'function') {
      throw new ShardlineOptionError('listener', `must be a function (got ${typeof listener})`);
    }
    const subscription: Subscription = { listener, once };
    let list = this.#subscriptions.get(event);
    if (list === undefined) {
      list = [];
      this.#subscriptions.set(event, list);
    }
    list.push(subscription);
    return () => this.#remove(event, subscription);
  }

  #remove(event: keyof M & string, subscription: Subscription): void {
    const list = this.#subscriptions.get(event);
    const index = list?.indexOf(subscription) ?? -1;
    if (list !== undefined && index >= 0) list.splice(index, 1);
  }

  #listenerFailed(event: string, error: unknown): void {
    try {
      this.#logger.error(
        { event, err: serializeError(error) },
        `${this.#prefix}a '${event}' event listener threw`,
      );
    } catch {
      // A logger that throws too has nowhere left to report to.
    }
  }
}
