/**
 * Worker supervision: up to `workerThreads` threads running `@shardline/shard-worker/worker` tasks, one
 * long-lived task per shard and several per thread. Each thread is a one-thread piscina pool, so that
 * this class places the readers (on the thread holding the fewest) and can start threads as readers
 * come: with `threads: 'on-demand'` a thread starts only once every running one holds
 * `readersPerThread` readers (a host reading 4 shards pays for one thread's start and memory, not 4).
 *
 * Two channels per reader. The data port carries what is ordered with the records: batches and the
 * reader's reports out, credit, revoke and acks in (and a `handlerModule`'s batch messages, which must
 * stay in order with the batches they answer). The control port carries the request/answer calls, over
 * comlink (`openShardReaderControl`): `stop(reason)`, answered with the reader's outcome. A
 * reader is stopped that way, never by terminating its thread (that would kill its neighbours). A task that resolves is a reader that finished (ended, failed, stopped);
 * a task that rejects is a thread that died under it: a crash. piscina replaces dead threads by
 * itself; the coordinator restarts the crashed shards from their checkpoints, and the {@link CrashGuard}
 * keeps a shard that crashes its thread again and again from restarting forever.
 */

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, receiveMessageOnPort } from 'node:worker_threads';
import type { CoordinatorMessage, Logger, WorkerMessage } from '@shardline/common';
import {
  ErrorCodes,
  PROTOCOL_VERSION,
  parseWorkerMessage,
  ShardlineError,
  serializeError,
} from '@shardline/common';
import type {
  FirstAnswer,
  FirstFetcher,
  ShardReaderOutcome,
  ShardReaderTask,
  ShardReaderTaskOptions,
} from '@shardline/shard-worker';
import { openShardReaderControl } from '@shardline/shard-worker';
import { Piscina } from 'piscina';
import type { ModuleCoordinatorMessage, ModuleWorkerMessage } from './module-protocol.js';
import { isModuleWorkerMessage } from './module-protocol.js';
import type { ModuleTaskSettings } from './module-worker.js';

export const SUPERVISOR_DEFAULTS = Object.freeze({
  /** Readers per thread: each is mostly waiting on I/O, so a thread holds many. */
  concurrentTasksPerWorker: 256,
  /** A shard whose thread crashed this many times within `crashWindowMs` is not restarted again. */
  maxCrashes: 3,
  crashWindowMs: 60_000,
  /**
   * At most this many readers get their first answer fetched on the main thread while no worker thread
   * is up (see {@link SupervisorOptions.firstFetch}): at 200 shards, 200 such calls would cost the main
   * thread most of a second at start-up; the others start on the threads as before.
   */
  maxFirstFetches: 16,
  /**
   * `threads: 'on-demand'`: readers a thread holds before the next one starts. One thread keeps 4 shards
   * at Kinesis' 2 MiB/s read limit each with room to spare (about 0.4 of a core for 100-byte records;
   * BENCHMARKS.md, Consumer-bound).
   */
  readersPerThread: 4,
});

/** How a reader task finished: its outcome, or the crash of its thread. */
export type ReaderExit =
  | { kind: 'finished'; outcome: ShardReaderOutcome }
  | { kind: 'crashed'; error: ShardlineError };

/** One running reader, as the coordinator drives it. */
export interface ReaderHandle {
  readonly shardId: string;
  /** Sends a credit, revoke, ack or module message to the reader. Ignored once the reader is gone. */
  send(message: CoordinatorMessage | ModuleCoordinatorMessage): void;
  /** Asks the reader to stop, over its control port (idempotent); `exited` resolves once it has. */
  stop(reason: string): void;
  /**
   * Resolves once the task settled and every message the reader sent was received: batches are never
   * lost behind the outcome.
   */
  readonly exited: Promise<ReaderExit>;
}

export interface SupervisorOptions {
  /** Most threads. */
  workerThreads: number;
  /**
   * `'all'`: every thread from the start (a `handlerModule`'s handlers need the cores at once);
   * `'on-demand'`: the first with the first reader, another whenever every running thread holds
   * `readersPerThread` readers. Threads never stop before {@link Supervisor.close}.
   * @defaultValue 'all'
   */
  threads?: 'all' | 'on-demand';
  /** @defaultValue SUPERVISOR_DEFAULTS.readersPerThread */
  readersPerThread?: number;
  logger: Logger;
  /** @defaultValue SUPERVISOR_DEFAULTS.concurrentTasksPerWorker */
  concurrentTasksPerWorker?: number;
  /**
   * `handlerModule` delivery: tasks run the coordinator's module worker entry, which runs the reader
   * and the user's handler in the same thread.
   */
  module?: ModuleTaskSettings;
  /** @internal tests: the worker file the pool runs instead (a tiny task that plays a reader). */
  filename?: string;
  /**
   * Fetches a reader's first GetRecords answer on this thread, for the readers started before any
   * worker thread was up: their tasks go to the pool with that answer once it came, instead of waiting
   * for the thread to start before their first call. Polling readers only; closed once a thread is up.
   * @defaultValue undefined (never)
   */
  firstFetch?: FirstFetcher;
}

/** One thread: a one-thread piscina pool, and the readers placed on it. */
interface PoolThread {
  readonly pool: Piscina;
  readers: number;
}

/** The worker pool. */
export class Supervisor {
  readonly #threads: PoolThread[] = [];
  readonly #maxThreads: number;
  readonly #readersPerThread: number;
  readonly #filename: string;
  readonly #concurrentTasksPerWorker: number;
  readonly #logger: Logger;
  readonly #module: ModuleTaskSettings | undefined;
  readonly #firstFetch: SupervisorOptions['firstFetch'];
  /** A reader has reported from a worker thread: the threads are up, readers start on them at once. */
  #warm = false;
  /** First fetches under way: the fetcher's client is closed once the threads are up and none is. */
  #firstInFlight = 0;
  /** First fetches started (at most SUPERVISOR_DEFAULTS.maxFirstFetches). */
  #firstStarted = 0;
  #closed = false;

  constructor(options: SupervisorOptions) {
    this.#logger = options.logger;
    this.#module = options.module;
    this.#firstFetch = options.firstFetch;
    const filename =
      options.filename ??
      (options.module !== undefined
        ? fileURLToPath(new URL('./module-worker.js', import.meta.url))
        : createRequire(import.meta.url).resolve('@shardline/shard-worker/worker'));
    this.#filename = filename;
    this.#maxThreads = options.workerThreads;
    this.#readersPerThread = options.readersPerThread ?? SUPERVISOR_DEFAULTS.readersPerThread;
    this.#concurrentTasksPerWorker =
      options.concurrentTasksPerWorker ?? SUPERVISOR_DEFAULTS.concurrentTasksPerWorker;
    if ((options.threads ?? 'all') === 'all') {
      while (this.#threads.length < this.#maxThreads) this.#addThread();
    }
  }

  #addThread(): PoolThread {
    const pool = new Piscina({
      filename: this.#filename,
      // One thread, replaced by piscina if it dies; readers are placed on it by this class.
      minThreads: 1,
      maxThreads: 1,
      concurrentTasksPerWorker: this.#concurrentTasksPerWorker,
      // Reader tasks live as long as their lease: never time them out, never let the thread go.
      idleTimeout: Number.POSITIVE_INFINITY,
    });
    // A thread error with no task on it has nowhere else to go.
    pool.on('error', (error: unknown) =>
      this.#logger.error({ err: serializeError(error) }, 'shard worker thread error'),
    );
    const thread: PoolThread = { pool, readers: 0 };
    this.#threads.push(thread);
    return thread;
  }

  /** The thread for the next reader: the one holding the fewest, or a new one when all hold their share. */
  #place(): PoolThread {
    let least: PoolThread | undefined;
    for (const thread of this.#threads)
      if (least === undefined || thread.readers < least.readers) least = thread;
    if (
      least === undefined ||
      (least.readers >= this.#readersPerThread && this.#threads.length < this.#maxThreads)
    ) {
      return this.#addThread();
    }
    return least;
  }

  /** Threads alive now (for tests and status). */
  get threads(): number {
    let n = 0;
    for (const thread of this.#threads) n += thread.pool.threads.length;
    return n;
  }

  /** Readers placed on each thread, in thread order (for tests and status). */
  get readersPerThread(): number[] {
    return this.#threads.map((thread) => thread.readers);
  }

  /** The index (0 .. workerThreads - 1, in start order) of the thread whose `threadId` this is, if alive. */
  threadIndex(threadId: number): number | undefined {
    const index = this.#threads.findIndex((thread) =>
      thread.pool.threads.some((worker) => worker.threadId === threadId),
    );
    return index === -1 ? undefined : index;
  }

  /** @internal tests: terminates one thread as a crash would. */
  terminateThread(index: number): Promise<number> {
    const worker = this.#threads[index]?.pool.threads[0];
    if (worker === undefined) return Promise.resolve(0);
    return worker.terminate();
  }

  /**
   * Starts a reader task. `onMessage` receives every (validated) message of the reader, in order; a
   * message that fails validation is reported as an error message of the shard.
   */
  start(
    options: ShardReaderTaskOptions,
    onMessage: (message: WorkerMessage | ModuleWorkerMessage) => void,
  ): ReaderHandle {
    if (this.#closed) throw new ShardlineError(ErrorCodes.CLOSED, 'the worker pool is closed');
    const data = new MessageChannel();
    const control = new MessageChannel();
    const controller = openShardReaderControl(control.port1);
    const port: MessagePort = data.port1;
    let open = true;
    let stopped = false;
    const receive = (raw: unknown) => {
      if (!this.#warm && (raw as { type?: unknown } | null)?.type === 'started') {
        this.#warm = true;
        if (this.#firstInFlight === 0) this.#firstFetch?.close();
      }
      if (isModuleWorkerMessage(raw)) {
        onMessage(raw);
        return;
      }
      let message: WorkerMessage;
      try {
        message = parseWorkerMessage(raw);
      } catch (error) {
        message = {
          v: PROTOCOL_VERSION,
          type: 'error',
          shardId: options.shardId,
          error: serializeError(error),
          fatal: false,
        };
      }
      onMessage(message);
    };
    port.on('message', receive);
    const thread = this.#place();
    thread.readers++;
    const dispatch = (first: FirstAnswer | undefined): Promise<ShardReaderOutcome> => {
      const task: ShardReaderTask & { module?: ModuleTaskSettings } = {
        port: data.port2,
        controlPort: control.port2,
        options: first === undefined ? options : { ...options, first },
      };
      if (this.#module !== undefined) task.module = this.#module;
      const transferList: Array<MessagePort | ArrayBuffer> = [data.port2, control.port2];
      if (first?.body !== undefined) transferList.push(first.body.buffer as ArrayBuffer);
      return thread.pool.run(task, { transferList: transferList as never }) as Promise<ShardReaderOutcome>;
    };
    // Credit granted before the task runs (the reader's account opens right after this returns).
    let credit = 0;
    const firstAbort = new AbortController();
    const firstFetch = this.#firstFetch;
    const run =
      firstFetch === undefined ||
      this.#warm ||
      options.fanOut !== undefined ||
      this.#firstStarted++ >= SUPERVISOR_DEFAULTS.maxFirstFetches
        ? dispatch(undefined)
        : (async () => {
            await Promise.resolve();
            let first: FirstAnswer | undefined;
            if (credit > 0 && !stopped) {
              this.#firstInFlight++;
              first = await firstFetch.fetch(options, credit, firstAbort.signal).catch(() => undefined);
              if (--this.#firstInFlight === 0 && this.#warm) firstFetch.close();
            }
            if (this.#closed) {
              throw new ShardlineError(ErrorCodes.CLOSED, 'the worker pool is closed');
            }
            // Messages sent meanwhile (credit, a stop over the control port) wait in the ports' queues.
            return dispatch(stopped ? undefined : first);
          })();
    const exited = run.then(
      (outcome): ReaderExit => {
        // A message posted by the reader is in this port's queue before the task's result arrives
        // (through another channel): take what the 'message' events have not delivered yet.
        for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port))
          receive(m.message);
        port.close();
        return { kind: 'finished', outcome };
      },
      (error: unknown): ReaderExit => {
        port.close();
        return {
          kind: 'crashed',
          error: new ShardlineError(
            ErrorCodes.WORKER_CRASHED,
            `the worker thread reading ${options.shardId} failed`,
            {
              cause: error,
              retriable: true,
              details: { shardId: options.shardId },
            },
          ),
        };
      },
    );
    void exited.then(() => {
      thread.readers--;
      open = false;
      port.close();
      controller.close();
    });
    const send = (message: CoordinatorMessage | ModuleCoordinatorMessage) => {
      if (message.type === 'credit') credit += message.records;
      else if (message.type === 'revoke') credit -= message.records;
      if (open) port.postMessage(message);
    };
    return {
      shardId: options.shardId,
      send,
      stop(reason: string) {
        if (stopped || !open) return;
        stopped = true;
        firstAbort.abort();
        // The answer is the outcome, which `exited` carries too (with the crash case); a task that ended
        // first closes the port and the call is never answered, which is fine.
        controller.control.stop(reason).catch(() => undefined);
      },
      exited,
    };
  }

  /** Destroys the pool; stop every reader first (a task still running on it rejects). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#firstFetch?.close();
    await Promise.all(this.#threads.map((thread) => thread.pool.destroy()));
  }
}

/**
 * Counts crashes per shard in a sliding window: past `maxCrashes` the shard is not restarted (a
 * record or setting that kills its thread would otherwise respawn forever).
 */
export class CrashGuard {
  readonly #crashes = new Map<string, number[]>();
  readonly #max: number;
  readonly #windowMs: number;
  readonly #now: () => number;

  constructor(
    max: number = SUPERVISOR_DEFAULTS.maxCrashes,
    windowMs: number = SUPERVISOR_DEFAULTS.crashWindowMs,
    now: () => number = () => performance.now(),
  ) {
    this.#max = max;
    this.#windowMs = windowMs;
    this.#now = now;
  }

  /** Records a crash of `shardId`'s thread; true when the shard may be restarted. */
  crashed(shardId: string): boolean {
    const now = this.#now();
    const recent = (this.#crashes.get(shardId) ?? []).filter((t) => now - t < this.#windowMs);
    recent.push(now);
    this.#crashes.set(shardId, recent);
    return recent.length < this.#max;
  }
}
