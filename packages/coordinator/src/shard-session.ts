/**
 * ShardSession: one shard's life on this host, from the lease acquired to the lease let go. It owns the
 * lease (counter, local deadline), the reader, the checkpointer, the delivery lane and the reader's
 * credit account, and is the only place that decides what happens to them. Its states and the
 * transitions between them are {@link TRANSITIONS}; every change goes through {@link ShardSession.#to},
 * which refuses any other.
 *
 * The lease deadline is a timer: from the last good renew (timed from when it was *sent*), records are
 * handed out until `sent + remaining * (1 - margin)` and not after; the lane pauses the moment it
 * passes (handler calls, retries, isolated records, iterator offers all wait at the lane's gate) and
 * resumes after a good renew. At `sent + remaining`, the latest the lease can still be ours, the lease
 * is lost. A host cut off from the lease store therefore stops before another host can take its shards.
 *
 * The lease is renewed (by the coordinator's renewal loop) in every state that holds it, `releasing`
 * included: a handler still finishing at shutdown or handoff keeps its lease until it is released.
 *
 * Longer than our usual 450 lines on purpose: every transition and what it does to the lease, reader,
 * checkpointer and lane is kept in this one file, so that the whole life can be read (and checked against
 * the table) in one place. The parts that are not transitions live beside it: the deadline timer
 * (lease-clock.ts), start positions (reader-start.ts) and the reader wiring (reader-run.ts).
 */

import type { ShardPosition } from '@shardline/common';
import {
  assertNever,
  deserializeError,
  ErrorCodes,
  SHARD_END,
  ShardlineError,
  serializeError,
  sleep,
} from '@shardline/common';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import { ShardCheckpointer } from './checkpointer.js';
import type { LeaseLostReason, LeaseReleasedReason } from './events.js';
import { LEASE_CLOCK_DEFAULTS, LeaseClock } from './lease-clock.js';
import { READER_START_DEFAULTS, type ReaderStart, ReaderStarts, startedEvent } from './reader-start.js';

export type { ReaderStart } from './reader-start.js';

import type { Lease, LeaseFailure, LeaseManager } from './leases/types.js';
import type { InitialPosition } from './options.js';
import { ReaderRun, type ReaderRunDeps, type RunOwner } from './reader-run.js';
import { formatCheckpoint } from './status.js';
import type { CrashGuard, ReaderExit } from './supervisor.js';

export type { ShardStats } from './reader-run.js';

/**
 * - `starting`: the lease was acquired; the reader is not started yet.
 * - `reading`: the reader fetches, the lane delivers.
 * - `restarting`: the reader's thread crashed; the lane is cleared, then a new reader resumes where
 *   processing got to.
 * - `ending`: the reader reached the shard end; the lane delivers what is left, then SHARD_END is
 *   written and the lease released.
 * - `releasing`: giving the lease back (stop, handoff, over capacity, failure): nothing new is handed
 *   out, the batch in hand finishes, the checkpoint is written, the lease released.
 * - `lost`: the lease is gone or may be: nothing more is handed out or written; the reader stops.
 * - terminal: `ended` (SHARD_END written, released), `released`, `failed` (released after a failure),
 *   `closed` (after `lost`).
 */
export type ShardSessionState =
  | 'starting'
  | 'reading'
  | 'restarting'
  | 'ending'
  | 'releasing'
  | 'lost'
  | 'ended'
  | 'released'
  | 'failed'
  | 'closed';

/** The allowed transitions: `from -> to[]`. Anything else is a bug, refused. */
export const TRANSITIONS: Readonly<Record<ShardSessionState, readonly ShardSessionState[]>> = Object.freeze({
  starting: ['reading', 'releasing', 'lost'],
  reading: ['restarting', 'ending', 'releasing', 'lost'],
  restarting: ['reading', 'releasing', 'lost'],
  ending: ['ended', 'releasing', 'lost'],
  releasing: ['released', 'failed', 'lost'],
  lost: ['closed'],
  ended: [],
  released: [],
  failed: [],
  closed: [],
});

const TERMINAL: ReadonlySet<ShardSessionState> = new Set(['ended', 'released', 'failed', 'closed']);

export const SESSION_TIMING = Object.freeze({
  /** Part of the remaining lease time kept as margin before the local deadline (see LeaseClock). */
  deadlineMarginFraction: LEASE_CLOCK_DEFAULTS.deadlineMarginFraction,
  /** How far before a LATEST start a restarted reader resumes (skew between host and Kinesis clocks). */
  latestSkewMarginMs: READER_START_DEFAULTS.latestSkewMarginMs,
  /** Backoff of SHARD_END writes that failed (the store unreachable): the lease is kept meanwhile. */
  endRetryBackoffMs: Object.freeze({ initial: 100, max: 5_000 }),
});

/** Why a shard stopped here after a failure (shown by `status()`). */
export interface ShardFailure {
  /** `handler`: `onHandlerError.then: 'stop-shard'`; `reader`: a fatal reader error; `crashes`: too many thread crashes. */
  reason: 'handler' | 'reader' | 'crashes';
  error: ShardlineError;
  /** For `handler`: the record it stopped at (the checkpoint is just before it). */
  position?: ShardPosition;
}

export interface ShardSessionDeps<T> extends ReaderRunDeps<T> {
  hostId: string;
  leaseDurationMs: number;
  leases: LeaseManager;
  checkpoint: Readonly<{ mode: 'auto' | 'manual'; intervalMs: number }>;
  crashGuard: CrashGuard;
  /** Where a shard that is a root of the group's shard graph starts without checkpoint. */
  initialPosition: InitialPosition;
  /** The reader task options for a start. */
  readerOptions(start: ReaderStart): ShardReaderTaskOptions;
  /** Children a reader learnt at shard end. */
  noteChildren(childShardIds: readonly string[]): void;
  /** Whether the coordinator is stopping (a crashed reader is not restarted then). */
  stopping(): boolean;
  /** Reports an error the session survived (logged and emitted as `error`). */
  report(error: unknown, message: string): void;
  /** The shard stops here after a failure (before its lease is released). */
  failed(failure: ShardFailure): void;
}

export class ShardSession<T = unknown> {
  readonly shardId: string;
  /** The lease counter (fencing token) this session holds the lease with. */
  readonly counter: number;
  readonly #d: ShardSessionDeps<T>;
  readonly #checkpointer: ShardCheckpointer;
  readonly #starts: ReaderStarts;
  readonly #done: Promise<void>;
  #resolveDone!: () => void;
  #state: ShardSessionState = 'starting';
  #run: ReaderRun<T> | undefined;
  #failure: ShardFailure | undefined;
  readonly #clock: LeaseClock;
  /** Whether the lease clock lets records be handed out now. */
  #open = true;
  /** The release call was sent: renewals stop (a renew racing it would look like a loss). */
  #releaseSent = false;
  /** What this session's reader runs report to it. */
  readonly #owner: RunOwner;

  /**
   * @param lease the lease as acquired; `sentAt` is performance.now() when the acquire was sent.
   * @param isRoot whether the shard starts at the initial position without checkpoint (no parent known
   *   to the group or present in the stream), rather than at TRIM_HORIZON after its parents.
   */
  constructor(lease: Lease, sentAt: number, isRoot: boolean, deps: ShardSessionDeps<T>) {
    this.shardId = lease.shardId;
    this.counter = lease.counter;
    this.#owner = {
      shardId: lease.shardId,
      processed: (position) => this.#checkpointer.processed(position),
      checkpoint: (position) => this.#checkpointer.write(position),
      failed: (error, position) =>
        this.#fail(
          position === undefined ? { reason: 'handler', error } : { reason: 'handler', error, position },
        ),
      noteChildren: (children) => this.#d.noteChildren(children),
    };
    this.#d = deps;
    // Acquired before (counter above 1) and no checkpoint: an earlier owner may have read at LATEST.
    this.#starts = new ReaderStarts(
      isRoot,
      deps.initialPosition,
      lease.counter > 1 ? lease.firstAcquiredAtMs : undefined,
    );
    this.#done = new Promise((resolve) => {
      this.#resolveDone = resolve;
    });
    this.#checkpointer = new ShardCheckpointer({
      shardId: lease.shardId,
      counter: lease.counter,
      leases: deps.leases,
      mode: deps.checkpoint.mode,
      intervalMs: deps.checkpoint.intervalMs,
      events: deps.events,
      logger: deps.logger,
      initial: lease.checkpoint === SHARD_END ? undefined : lease.checkpoint,
      onLeaseLost: () => this.#lose('fenced'),
    });
    this.#clock = new LeaseClock(lease, sentAt, {
      leaseDurationMs: deps.leaseDurationMs,
      deliver: (open) => {
        if (this.holdsLease) this.#deliver(open);
      },
      expired: () => this.#lose('expired'),
    });
    const payload: { shardId: string; counter: number; checkpoint?: string } = {
      shardId: this.shardId,
      counter: this.counter,
    };
    const formatted = formatCheckpoint(lease.checkpoint);
    if (formatted !== undefined) payload.checkpoint = formatted;
    deps.events.emit('lease.acquired', payload);
  }

  get state(): ShardSessionState {
    return this.#state;
  }

  /** Whether the lease is to be renewed now. */
  get holdsLease(): boolean {
    return !TERMINAL.has(this.#state) && this.#state !== 'lost' && !this.#releaseSent;
  }

  /** Whether the session is over. */
  get terminal(): boolean {
    return TERMINAL.has(this.#state);
  }

  /** Why the shard stopped here, when it did after a failure. */
  get failure(): ShardFailure | undefined {
    return this.#failure;
  }

  /** The checkpoint as last written (or found in the lease). */
  get checkpoint(): Lease['checkpoint'] {
    return this.#checkpointer.checkpoint;
  }

  /** Resolves once the session is terminal. */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Starts reading. */
  start(): void {
    if (this.#state !== 'starting') return;
    this.#startReader();
    this.#to('reading');
    this.#clock.start();
  }

  // ---- the lease ------------------------------------------------------------------------------------

  /** A renew (sent at `sentAt`, performance.now()) succeeded. */
  renewed(lease: Lease, sentAt: number): void {
    if (!this.holdsLease) return;
    this.#clock.renewed(lease, sentAt);
    if (lease.handoffTo !== undefined && lease.handoffTo !== this.#d.hostId) this.release('handoff');
  }

  /** The store refused the renew: another host holds the lease, or it expired. */
  renewRefused(): void {
    if (this.holdsLease) this.#lose('fenced');
  }

  /** A renew failed without an answer (the caller reports it): the lease is kept until its local deadline. */
  renewFailed(): void {
    if (this.holdsLease && !this.#clock.open) this.#lose('renew-failed');
  }

  /** Gives the lease back: the batch in hand finishes, the checkpoint is written, the lease released. */
  release(reason: Exclude<LeaseReleasedReason, 'shard-end' | 'failed'>): void {
    if (this.#state === 'starting' || this.#state === 'reading' || this.#state === 'restarting') {
      this.#release(reason);
    } else if (this.#state === 'ending' && reason === 'stop') {
      // Queued batches are dropped: SHARD_END is written by whoever reads the shard next.
      this.#release(reason);
    }
  }

  /** Delivery follows the lease clock: open before the deadline, paused after. */
  #deliver(open: boolean): void {
    const changed = open !== this.#open;
    this.#open = open;
    const run = this.#run;
    // handlerModule: the worker is sent every new deadline, not only the changes.
    if (run !== undefined && (changed || run.lane === undefined)) this.#applyDeadline(run);
  }

  #applyDeadline(run: ReaderRun<T>): void {
    run.deliverUntil(this.#open, this.#clock.deadlineEpochMs);
  }

  // ---- transitions ----------------------------------------------------------------------------------

  #to(next: ShardSessionState): void {
    const from = this.#state;
    if (!TRANSITIONS[from].includes(next)) {
      throw new ShardlineError(
        ErrorCodes.INTERNAL,
        `shard session ${this.shardId}: no transition from '${from}' to '${next}'`,
      );
    }
    this.#state = next;
    this.#d.logger.debug({ shardId: this.shardId, from, to: next }, 'shard session');
    if (TERMINAL.has(next)) {
      this.#clock.stop();
      this.#resolveDone();
    }
  }

  /** The lease is gone (or may be): stop handing out records and reading at once; no checkpoint. */
  #lose(reason: LeaseLostReason): void {
    if (TERMINAL.has(this.#state) || this.#state === 'lost' || this.#releaseSent) return;
    this.#to('lost');
    this.#clock.stop();
    this.#checkpointer.close();
    const run = this.#run;
    run?.deliverUntil(false, 0);
    this.#d.logger.warn({ shardId: this.shardId, reason }, 'lease lost');
    this.#d.events.emit('lease.lost', { shardId: this.shardId, counter: this.counter, reason });
    void this.#settle(async () => {
      await run?.wind('lease-lost');
      await run?.exited;
      run?.close();
      this.#to('closed');
    });
  }

  #release(reason: LeaseReleasedReason): void {
    this.#to('releasing');
    const run = this.#run;
    void this.#settle(async () => {
      // The batch in hand finishes (with handlerModule it is in the worker: its progress arrives first).
      await run?.wind(reason);
      if (this.#state !== 'releasing') return;
      await this.#checkpointer.flush().catch(() => undefined);
      if (this.#state !== 'releasing') return;
      await this.#releaseLease(reason);
      await run?.exited;
      run?.close();
      this.#to(reason === 'failed' ? 'failed' : 'released');
    });
  }

  async #releaseLease(reason: LeaseReleasedReason): Promise<void> {
    this.#releaseSent = true;
    this.#clock.stop();
    this.#checkpointer.close();
    const failure = this.#failure;
    const note: LeaseFailure | undefined =
      failure === undefined
        ? undefined
        : {
            hostId: this.#d.hostId,
            reason: failure.reason,
            code: failure.error.code,
            message: failure.error.message,
            atMs: Date.now(),
            ...failure.position,
          };
    try {
      if (await this.#d.leases.release(this.shardId, this.counter, note)) {
        this.#d.events.emit('lease.released', { shardId: this.shardId, counter: this.counter, reason });
      }
    } catch (error) {
      // The lease runs out on its own; nobody else could have taken it meanwhile.
      this.#d.report(error, 'lease release failed');
    }
  }

  /** Stops the shard after a failure; `status()` shows why. */
  #fail(failure: ShardFailure): void {
    this.#failure = failure;
    this.#d.failed(failure);
    this.#d.logger.warn(
      {
        shardId: this.shardId,
        reason: failure.reason,
        err: serializeError(failure.error),
        ...failure.position,
      },
      'shard stopped after a failure',
    );
    if (this.#state === 'reading' || this.#state === 'restarting' || this.#state === 'ending') {
      this.#release('failed');
    }
  }

  /** The reader read the shard to its end: deliver what is left, write SHARD_END, release. */
  #end(childShardIds: readonly string[]): void {
    this.#to('ending');
    this.#d.noteChildren(childShardIds);
    const run = this.#run!;
    void this.#settle(async () => {
      // With handlerModule the worker drained its lane before its reader's outcome came.
      if (run.lane !== undefined && !(await run.lane.drained())) return;
      if (this.#state !== 'ending') return;
      run.close();
      for (let attempt = 0; this.#state === 'ending'; attempt++) {
        let written: boolean;
        try {
          written = await this.#checkpointer.end();
        } catch (error) {
          // ERR_LEASE_LOST has made the session lost already; anything else is retried, lease kept.
          if ((error as ShardlineError).code !== ErrorCodes.LEASE_LOST) {
            await sleep(
              Math.min(
                SESSION_TIMING.endRetryBackoffMs.max,
                SESSION_TIMING.endRetryBackoffMs.initial * 2 ** attempt,
              ),
            );
          }
          continue;
        }
        if (!written || this.#state !== 'ending') return;
        await this.#releaseLease('shard-end');
        this.#to('ended');
        this.#d.events.emit('shard.ended', { shardId: this.shardId, childShardIds: [...childShardIds] });
        return;
      }
    });
  }

  /** Runs a transition's asynchronous part; a bug in it is reported, never left unhandled. */
  async #settle(work: () => Promise<void>): Promise<void> {
    try {
      await work();
    } catch (error) {
      this.#d.report(error, 'shard session failed');
    }
  }

  // ---- the reader ----------------------------------------------------------------------------------

  #startReader(): void {
    const start = this.#starts.next(this.#checkpointer.resumeFrom);
    const run = new ReaderRun<T>(this.#owner, this.#d, this.#d.readerOptions(start));
    this.#run = run;
    this.#applyDeadline(run);
    this.#d.events.emit('shard.started', startedEvent(this.shardId, start));
    void run.exited
      .then((exit) => this.#onExit(run, exit))
      .catch((error: unknown) => this.#d.report(error, 'handling the end of a reader failed'));
  }

  #onExit(run: ReaderRun<T>, exit: ReaderExit): void {
    if (run !== this.#run || this.#state !== 'reading') return; // the flow under way handles it
    if (exit.kind === 'crashed') {
      this.#crashed(run, exit.error);
      return;
    }
    const { outcome } = exit;
    switch (outcome.state) {
      case 'ended':
        this.#end(outcome.childShardIds ?? []);
        return;
      case 'failed':
        this.#fail({
          reason: 'reader',
          error:
            outcome.error === undefined
              ? new ShardlineError(ErrorCodes.INTERNAL, `the reader of ${this.shardId} failed`)
              : deserializeError(outcome.error),
        });
        return;
      case 'stopped':
        this.#release('stop');
        return;
      default:
        assertNever(outcome.state);
    }
  }

  #crashed(run: ReaderRun<T>, error: ShardlineError): void {
    const restart = !this.#d.stopping() && this.#d.crashGuard.crashed(this.shardId);
    this.#d.logger.error(
      { shardId: this.shardId, err: serializeError(error), restart },
      'worker thread crashed',
    );
    this.#d.events.emit('worker.crashed', {
      thread: this.#d.stats.thread ?? -1,
      error,
      shardIds: [this.shardId],
      respawned: restart,
    });
    if (!restart) {
      this.#fail({ reason: 'crashes', error });
      return;
    }
    this.#to('restarting');
    void this.#settle(async () => {
      // The lease is still ours: resume where processing got to (batches queued here are read again).
      await run.lane?.close();
      run.close();
      if (this.#state !== 'restarting') return;
      if (this.#d.stopping()) {
        this.#release('stop');
        return;
      }
      this.#startReader();
      this.#to('reading');
    });
  }
}
