/**
 * Checkpoints of one shard held by this host: written only through `LeaseManager.checkpoint` with the
 * lease counter (so a host whose lease moved cannot write), one write at a time, never backwards.
 *
 * Auto mode: a processed position is written at most every `intervalMs` (debounced: the first
 * processed batch after a write arms the timer), and at once by {@link ShardCheckpointer.flush} (stop,
 * handoff, shard end). Manual mode: only {@link ShardCheckpointer.write} (the user's
 * `batch.checkpoint()`) and shard end write.
 */

import type { Logger, ShardPosition } from '@shardline/common';
import { ErrorCodes, SHARD_END, ShardlineError, serializeError } from '@shardline/common';
import type { CoordinatorEvents } from './events.js';
import type { Checkpoint, LeaseManager } from './leases/types.js';

/** Orders positions: by sequence number, then sub-sequence; a whole record comes after its items. */
export function comparePositions(a: ShardPosition, b: ShardPosition): number {
  if (a.sequenceNumber !== b.sequenceNumber) {
    const x = BigInt(a.sequenceNumber);
    const y = BigInt(b.sequenceNumber);
    return x < y ? -1 : 1;
  }
  const sa = a.subSequenceNumber ?? Number.POSITIVE_INFINITY;
  const sb = b.subSequenceNumber ?? Number.POSITIVE_INFINITY;
  return sa === sb ? 0 : sa < sb ? -1 : 1;
}

export interface ShardCheckpointerOptions {
  shardId: string;
  /** The lease counter this host acquired the lease with (fencing token). */
  counter: number;
  leases: LeaseManager;
  mode: 'auto' | 'manual';
  intervalMs: number;
  events: CoordinatorEvents;
  logger: Logger;
  /** The checkpoint the lease had when acquired: nothing at or before it is written again. */
  initial: ShardPosition | undefined;
  /** Called when the store refuses a write because the lease moved (ERR_LEASE_LOST). */
  onLeaseLost(error: ShardlineError): void;
}

export class ShardCheckpointer {
  readonly shardId: string;
  readonly #o: ShardCheckpointerOptions;
  /** Last position processed (auto mode writes it). */
  #processed: ShardPosition | undefined;
  /** Last position written (or found in the lease). */
  #written: Checkpoint | undefined;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: ShardCheckpointerOptions) {
    this.#o = options;
    this.shardId = options.shardId;
    this.#written = options.initial;
  }

  /** The checkpoint as last written (for status). */
  get checkpoint(): Checkpoint | undefined {
    return this.#written;
  }

  /** Where processing got to: where a restarted reader of this host resumes. */
  get resumeFrom(): ShardPosition | undefined {
    if (this.#processed !== undefined) return this.#processed;
    return this.#written === SHARD_END ? undefined : this.#written;
  }

  /** Records a processed position; auto mode writes it within `intervalMs`. */
  processed(position: ShardPosition): void {
    if (this.#processed !== undefined && comparePositions(position, this.#processed) <= 0) return;
    this.#processed = { ...position };
    if (this.#o.mode !== 'auto' || this.#closed || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.flush().catch(() => {
        // Reported by #write; the next processed batch or the final flush tries again.
      });
    }, this.#o.intervalMs);
  }

  /** Auto mode: writes the processed position now (no-op in manual mode or when nothing is new). */
  flush(): Promise<void> {
    this.#clearTimer();
    if (this.#o.mode !== 'auto') return this.#chain;
    return this.#enqueue(() => this.#processed);
  }

  /**
   * Writes `position` now (manual checkpoints; allowed in auto mode too).
   * @throws ShardlineError ERR_LEASE_LOST once this host let the lease go or lost it.
   */
  write(position: ShardPosition): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new ShardlineError(
          ErrorCodes.LEASE_LOST,
          `cannot checkpoint shard ${this.shardId}: this host no longer holds its lease`,
          { details: { shardId: this.shardId, counter: this.#o.counter } },
        ),
      );
    }
    return this.#enqueue(() => position);
  }

  /**
   * Writes SHARD_END: the shard was read to its end and every batch processed. Resolves true once
   * SHARD_END is the checkpoint in the store (written now or before), false when this checkpointer was
   * closed first (the lease was lost or let go: SHARD_END was not written). Rejects when the write
   * failed (ERR_LEASE_LOST once the lease moved).
   */
  async end(): Promise<boolean> {
    this.#clearTimer();
    await this.#enqueue(() => SHARD_END);
    return this.#written === SHARD_END;
  }

  /** No more writes (lease lost or released); pending timers are cancelled. */
  close(): void {
    this.#closed = true;
    this.#clearTimer();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #enqueue(what: () => Checkpoint | undefined): Promise<void> {
    const next = this.#chain.then(() => this.#write(what()));
    // The chain continues after a failure; the caller sees it.
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #write(value: Checkpoint | undefined): Promise<void> {
    if (value === undefined || this.#closed) return;
    const written = this.#written;
    if (written === SHARD_END) return;
    if (value !== SHARD_END && written !== undefined && comparePositions(value, written) <= 0) return;
    const { shardId, counter } = this.#o;
    try {
      await this.#o.leases.checkpoint(shardId, counter, value);
    } catch (error) {
      const e =
        error instanceof ShardlineError
          ? error
          : new ShardlineError(ErrorCodes.INTERNAL, `checkpoint of ${shardId} failed`, { cause: error });
      if (e.code === ErrorCodes.LEASE_LOST) {
        this.close();
        this.#o.onLeaseLost(e);
      } else {
        this.#o.logger.warn({ shardId, err: serializeError(e) }, 'checkpoint failed');
        this.#o.events.emit('error', { error: e, shardId });
      }
      throw e;
    }
    this.#written = value === SHARD_END ? SHARD_END : { ...value };
    const payload: { shardId: string; sequenceNumber: string; subSequenceNumber?: number; counter: number } =
      value === SHARD_END
        ? { shardId, sequenceNumber: SHARD_END, counter }
        : { shardId, sequenceNumber: value.sequenceNumber, counter };
    if (value !== SHARD_END && value.subSequenceNumber !== undefined) {
      payload.subSequenceNumber = value.subSequenceNumber;
    }
    this.#o.events.emit('checkpoint', payload);
  }
}
