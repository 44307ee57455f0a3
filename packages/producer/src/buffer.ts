/**
 * The producer's accounting of records: admission under `maxBufferedRecords` (put() waits FIFO for room),
 * the counts of records queued and not in flight, settling each record's promise, and `flush()`'s epochs.
 */
// Time comes from the global `performance` (not an import from node:perf_hooks) so that fake timers
// installed by tests drive lingering as they do in the rest of the producer.
import type { ShardlineError } from '@shardline/common';
import { Deque } from './deque.js';
import { type PendingRecord, type PutReceipt, RecordState } from './records.js';

export interface RecordBufferHooks {
  /** An accepted record goes to its shard queue (or waits for the shard map). */
  route(record: PendingRecord): void;
  /** Something may be sendable now. */
  schedulePump(): void;
}

interface FlushWaiter {
  epoch: number;
  resolve: () => void;
}

export class RecordBuffer {
  /** Accepted records not in flight (in shard queues or waiting for the shard map), and their bytes. */
  queued = 0;
  queuedBytes = 0;

  readonly #maxBuffered: number;
  readonly #hooks: RecordBufferHooks;
  readonly #waiting = new Deque<PendingRecord>();
  #buffered = 0;
  #epoch = 0;
  readonly #epochCounts = new Map<number, number>();
  #flushWaiters: FlushWaiter[] = [];
  #stopped = false;

  constructor(maxBufferedRecords: number, hooks: RecordBufferHooks) {
    this.#maxBuffered = maxBufferedRecords;
    this.#hooks = hooks;
  }

  /** Records accepted and not settled yet. */
  get buffered(): number {
    return this.#buffered;
  }

  /** `put()` calls waiting for room. */
  get waitingPuts(): number {
    return this.#waiting.length;
  }

  /** No room: no more records can join a batch, so lingering only delays the ones queued. */
  get full(): boolean {
    return this.#buffered >= this.#maxBuffered;
  }

  get flushPending(): boolean {
    return this.#flushWaiters.length > 0;
  }

  /** Counts the record for flush() and admits it, or queues it for room. Returns true if admitted. */
  submit(record: PendingRecord): boolean {
    record.epoch = this.#epoch;
    this.#epochCounts.set(record.epoch, (this.#epochCounts.get(record.epoch) ?? 0) + 1);
    if (this.#waiting.length > 0 || this.#buffered >= this.#maxBuffered) {
      this.#waiting.push(record);
      this.#hooks.schedulePump();
      return false;
    }
    this.#admit(record);
    return true;
  }

  /** Resolves when every record submitted before the call is settled. */
  flush(): Promise<void> {
    const epoch = this.#epoch++;
    if (this.#settledThrough(epoch)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.#flushWaiters.push({ epoch, resolve });
      this.#hooks.schedulePump();
    });
  }

  /** A record leaves the queues (sent, or rejected before it could be). */
  unqueue(record: PendingRecord): void {
    this.queued--;
    this.queuedBytes -= record.bytes;
  }

  /** A record comes back to the queues (a retry). */
  requeue(record: PendingRecord): void {
    this.queued++;
    this.queuedBytes += record.bytes;
  }

  settle(record: PendingRecord, receipt: PutReceipt | undefined, error?: unknown): void {
    if (record.state === RecordState.Settled) return;
    if (record.state === RecordState.Accepted) this.#buffered--;
    record.state = RecordState.Settled;
    const left = (this.#epochCounts.get(record.epoch) ?? 1) - 1;
    if (left === 0) this.#epochCounts.delete(record.epoch);
    else this.#epochCounts.set(record.epoch, left);
    if (receipt !== undefined) record.resolve(receipt);
    else record.reject(error);
    while (this.#waiting.length > 0 && this.#buffered < this.#maxBuffered && !this.#stopped) {
      this.#admit(this.#waiting.shift()!);
    }
    if (left === 0 && this.#flushWaiters.length > 0) this.releaseFlushWaiters();
  }

  /** Rejects the records not settled yet; returns how many. */
  rejectMany(records: Iterable<PendingRecord>, error: ShardlineError): number {
    let n = 0;
    for (const record of records) {
      if (record.state === RecordState.Settled) continue;
      n++;
      this.settle(record, undefined, error);
    }
    return n;
  }

  releaseFlushWaiters(): void {
    const still: FlushWaiter[] = [];
    for (const waiter of this.#flushWaiters) {
      if (this.#settledThrough(waiter.epoch)) waiter.resolve();
      else still.push(waiter);
    }
    this.#flushWaiters = still;
  }

  /** Admits nothing more from now on. */
  stop(): void {
    this.#stopped = true;
  }

  /** Removes and returns the records waiting for room, oldest first. */
  drainWaiting(): PendingRecord[] {
    return this.#waiting.drain();
  }

  #admit(record: PendingRecord): void {
    record.state = RecordState.Accepted;
    this.#buffered++;
    record.enqueuedAt = performance.now();
    this.queued++;
    this.queuedBytes += record.bytes;
    this.#hooks.route(record);
    this.#hooks.schedulePump();
    const accepted = record.onAccepted;
    if (accepted !== undefined) {
      record.onAccepted = undefined;
      accepted();
    }
  }

  /** Whether every record of epochs <= `epoch` is settled. Map keys are epochs in increasing order. */
  #settledThrough(epoch: number): boolean {
    for (const key of this.#epochCounts.keys()) return key > epoch;
    return true;
  }
}
