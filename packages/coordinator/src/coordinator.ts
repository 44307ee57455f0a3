/**
 * `startCoordinator()`: one coordinator per host. It owns every decision (which shards exist, which
 * this host reads, when a child may start); worker threads only read. One shard's life on this host is
 * a {@link ShardSession}; the coordinator wires them and runs three loops, all on this thread:
 *
 * - renewal, every `leaseRenewIntervalMs`: every lease held, in one call bounded below the sessions'
 *   deadline margin; never waits on user code, on planning or on shard sync, and goes on during stop
 *   until the last lease is released;
 * - the lease tick, every `leaseRenewIntervalMs`: heartbeat, read the leases and hosts, plan
 *   (Allocator), acquire, release, ask for handoffs, delete the leases of shards long gone;
 * - shard sync: ListShards at start, every `shardSyncIntervalMs` and at once when a shard ends.
 */

import type { KinesisClient } from '@aws-sdk/client-kinesis';
import {
  classifyAwsError,
  createKinesisClient,
  ErrorCodes,
  isKinesisClient,
  ShardlineError,
  ShardlineOptionError,
  serializeError,
} from '@shardline/common';
import { firstFetcher } from '@shardline/shard-worker';
import { DeadLetterQueue } from './dead-letter.js';
import { BatchIterator } from './delivery/batch-iterator.js';
import { CreditLedger } from './delivery/credit-ledger.js';
import type { CoordinatorEventListener, CoordinatorEventName, CoordinatorEventSource } from './events.js';
import { HostEvents, reportedError } from './events.js';
import type {
  CoordinatorOptions,
  RecordBatch,
  RemovedStream,
  RemoveStreamOptions,
  ResolvedCoordinatorOptions,
  ResolvedStreamSpec,
  StreamSpec,
} from './options.js';
import { resolveCoordinatorOptions, resolveStreamSpec } from './options.js';
import { moduleTaskSettings } from './session-factory.js';
import type { CoordinatorStatus } from './status.js';
import { kclStreamId, StreamRuntime, type StreamRuntimeShared, streamOptions } from './stream-runtime.js';
import { Supervisor } from './supervisor.js';

export type { CoordinatorStatus, ShardFailureStatus, ShardStatus, StreamStatus } from './status.js';

/** What `startCoordinator()` resolves with. */
export interface Coordinator<T = unknown> extends AsyncIterable<RecordBatch<T>>, CoordinatorEventSource {
  readonly hostId: string;
  /**
   * Graceful: stop fetching, finish the batches in flight (their leases are renewed meanwhile), write
   * final checkpoints, release leases. Idempotent. In iterator mode the batch in hand counts once the
   * loop asks for the next one; leaving the loop does not count it unless `batch.checkpoint()` covered
   * it: call stop() after the loop, or abort the `signal` from inside it.
   */
  stop(): Promise<void>;
  status(): CoordinatorStatus;
  /**
   * Starts tracking another stream (`{ streamName | streamArn, initialPosition?, fanOut? }`), sharing
   * the worker pool, buffer budget and host id; resolves once its shards were listed and its leases
   * created (readers start in the background). With a single-stream coordinator (`streamName` /
   * `streamArn`), the added stream's leases are kept per stream as with `streams`.
   *
   * @throws ShardlineOptionError for an invalid spec or a stream tracked already; the discovery error
   * (e.g. `ERR_NOT_FOUND`) for a stream that cannot be listed; ERR_CLOSED once stopping.
   */
  addStream(spec: StreamSpec): Promise<void>;
  /**
   * Stops tracking a stream: its readers stop with a final checkpoint and release their leases
   * (`leases: 'release'`, the default, keeps the checkpoints so another host or a later `addStream()`
   * resumes), or then also deletes its leases and checkpoints (`'delete'`; leases another host holds
   * are left alone and counted in `heldElsewhere`).
   *
   * @throws ShardlineOptionError for a stream not tracked; ERR_CLOSED once stopping.
   */
  removeStream(streamName: string, options?: RemoveStreamOptions): Promise<RemovedStream>;
}

class CoordinatorImpl<T> implements Coordinator<T> {
  readonly #o: ResolvedCoordinatorOptions<T>;
  readonly #events: HostEvents;
  readonly #client: KinesisClient;
  readonly #ownsClient: boolean;
  readonly #supervisor: Supervisor;
  readonly #ledger: CreditLedger;
  readonly #iterator: BatchIterator<T> | undefined;
  readonly #deadLetter: DeadLetterQueue | undefined;
  readonly #shared: StreamRuntimeShared<T>;
  /** Every stream tracked, by name, in the order added. */
  readonly #streams = new Map<string, StreamRuntime<T>>();
  /** Streams being added or removed (their names are taken meanwhile). */
  readonly #pending = new Set<string>();
  /** removeStream() calls under way: stop() waits for them before closing the pool. */
  readonly #removals = new Set<Promise<unknown>>();
  /** Each stream's allocation target: the ledger expects their sum. */
  readonly #expected = new Map<StreamRuntime<T>, number>();
  #state: CoordinatorStatus['state'] = 'starting';
  #stopping: Promise<void> | undefined;
  readonly #onAbort = () => void this.stop();

  constructor(o: ResolvedCoordinatorOptions<T>) {
    this.#o = o;
    this.#events = new HostEvents(o.logger);
    this.#ownsClient = !isKinesisClient(o.kinesis);
    this.#client = isKinesisClient(o.kinesis) ? (o.kinesis as KinesisClient) : createKinesisClient(o.kinesis);
    this.#supervisor = new Supervisor({
      workerThreads: o.workerThreads,
      threads: o.workerThreadsStart,
      logger: o.logger,
      // The first readers' first answers are fetched on this thread while the worker threads start.
      firstFetch: firstFetcher(o.workerKinesisConfig),
      ...moduleTaskSettings(o),
    });
    if (o.deadLetter !== undefined) {
      this.#deadLetter = new DeadLetterQueue({
        queue: o.deadLetter.queue,
        connection: o.deadLetter.connection,
        group: o.group,
        stream: o.stream,
        logger: o.logger,
      });
    }
    this.#ledger = new CreditLedger({
      maxBufferedRecords: o.maxBufferedRecords,
      maxBufferedBytes: o.maxBufferedBytes,
    });
    if (o.delivery === 'iterator') this.#iterator = new BatchIterator<T>();
    this.#shared = {
      hostEvents: this.#events,
      client: this.#client,
      supervisor: this.#supervisor,
      ledger: this.#ledger,
      iterator: this.#iterator,
      deadLetter: this.#deadLetter,
      expect: (runtime, count) => {
        this.#expected.set(runtime, count);
        let sum = 0;
        for (const n of this.#expected.values()) sum += n;
        this.#ledger.expect(sum);
      },
      capacity: (runtime) => {
        let others = 0;
        for (const r of this.#streams.values()) if (r !== runtime) others += r.held;
        return this.#o.maxShardConsumers - others;
      },
    };
  }

  get hostId(): string {
    return this.#o.hostId;
  }

  on<E extends CoordinatorEventName>(event: E, listener: CoordinatorEventListener<E>): () => void {
    return this.#events.on(event, listener);
  }

  once<E extends CoordinatorEventName>(event: E, listener: CoordinatorEventListener<E>): () => void {
    return this.#events.once(event, listener);
  }

  [Symbol.asyncIterator](): AsyncIterator<RecordBatch<T>> {
    const iterator = this.#iterator;
    if (iterator === undefined) {
      throw new ShardlineError(
        ErrorCodes.INVALID_OPTION,
        `this coordinator delivers to its ${this.#o.delivery === 'handler' ? 'handler' : 'handlerModule'}: it cannot also be iterated (start it without handler and handlerModule to use for await)`,
      );
    }
    return { next: () => iterator.next(), return: () => iterator.return() };
  }

  /**
   * Initial sync of every stream; throws (after cleaning up) when one cannot be listed. The first
   * allocation runs right after startCoordinator() resolves, so listeners added then see every event.
   */
  async start(): Promise<void> {
    const runtimes: StreamRuntime<T>[] = [];
    try {
      for (const spec of this.#o.streams) {
        const runtime = await this.#open(spec, this.#o.multiStream);
        this.#streams.set(runtime.stream, runtime);
        runtimes.push(runtime);
      }
      await Promise.all(runtimes.map((runtime) => runtime.start()));
    } catch (error) {
      await this.stop().catch(() => undefined);
      throw error;
    }
    this.#state = 'running';
    for (const runtime of runtimes) runtime.run();
    const signal = this.#o.signal;
    if (signal !== undefined) {
      if (signal.aborted) void this.stop();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
    }
  }

  /** A stream's runtime (not started); multi-stream DynamoDB leases need the stream's KCL identifier first. */
  async #open(spec: ResolvedStreamSpec, multiStream: boolean): Promise<StreamRuntime<T>> {
    let streamId: string | undefined;
    if (multiStream && this.#o.leases.dynamodb !== undefined) {
      try {
        streamId = await kclStreamId(this.#client, spec);
      } catch (error) {
        throw error instanceof ShardlineError ? error : classifyAwsError(error, 'DescribeStreamSummary');
      }
    }
    return new StreamRuntime<T>(streamOptions(this.#o, spec, streamId), this.#shared);
  }

  #assertOpen(operation: string): void {
    if (this.#stopping !== undefined) {
      throw new ShardlineError(
        ErrorCodes.CLOSED,
        `coordinator of host '${this.#o.hostId}' is ${this.#state === 'stopped' ? 'stopped' : 'stopping'}: cannot ${operation}()`,
      );
    }
  }

  async addStream(spec: StreamSpec): Promise<void> {
    this.#assertOpen('addStream');
    if (!this.#o.multiStream && this.#o.leases.dynamodb !== undefined) {
      throw new ShardlineOptionError(
        'streams',
        "is needed to add streams with DynamoDB leases: a single-stream coordinator's lease table holds one stream's leases keyed by shard id; start with streams: [{ streamName }] (KCL's multi-stream lease keys)",
      );
    }
    const resolved = resolveStreamSpec(spec, 'stream', this.#o);
    const name = resolved.stream;
    if (this.#streams.has(name) || this.#pending.has(name)) {
      throw new ShardlineOptionError(
        `stream.${resolved.streamName !== undefined ? 'streamName' : 'streamArn'}`,
        `names stream '${name}', which this coordinator tracks already`,
      );
    }
    this.#pending.add(name);
    let runtime: StreamRuntime<T> | undefined;
    try {
      runtime = await this.#open(resolved, true);
      await runtime.start();
      this.#assertOpen('addStream');
    } catch (error) {
      if (runtime !== undefined) {
        await runtime.halt();
        await runtime.close();
      }
      throw error;
    } finally {
      this.#pending.delete(name);
    }
    this.#streams.set(name, runtime);
    runtime.run();
  }

  async removeStream(streamName: string, options: RemoveStreamOptions = {}): Promise<RemovedStream> {
    this.#assertOpen('removeStream');
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('options', "must be an object like { leases: 'release' }");
    }
    const mode = options.leases ?? 'release';
    if (mode !== 'release' && mode !== 'delete') {
      throw new ShardlineOptionError('options.leases', `must be 'release' or 'delete' (got ${String(mode)})`);
    }
    const runtime = typeof streamName === 'string' ? this.#streams.get(streamName) : undefined;
    if (runtime === undefined) {
      const tracked = [...this.#streams.keys()].map((n) => `'${n}'`).join(', ');
      throw new ShardlineOptionError(
        'streamName',
        `must name a stream this coordinator tracks (${tracked === '' ? 'none' : tracked}; got ${String(streamName)})`,
      );
    }
    this.#streams.delete(streamName);
    this.#pending.add(streamName);
    const removal = this.#remove(runtime, streamName, mode);
    this.#removals.add(removal);
    try {
      return await removal;
    } finally {
      this.#removals.delete(removal);
    }
  }

  async #remove(
    runtime: StreamRuntime<T>,
    streamName: string,
    mode: 'release' | 'delete',
  ): Promise<RemovedStream> {
    try {
      await runtime.halt();
      const released = await runtime.releaseAll();
      this.#expected.delete(runtime);
      this.#shared.expect(runtime, 0);
      this.#expected.delete(runtime);
      const { deleted, heldElsewhere } =
        mode === 'delete'
          ? await runtime.deleteLeases()
          : { deleted: 0, heldElsewhere: await runtime.countHeldElsewhere() };
      return { streamName, released, deleted, heldElsewhere };
    } finally {
      await runtime.close();
      this.#pending.delete(streamName);
    }
  }

  /** @internal Tests: terminates worker thread `index` as a crash would. */
  terminateWorkerThread(index: number): Promise<number> {
    return this.#supervisor.terminateThread(index);
  }

  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  status(): CoordinatorStatus {
    const parts = [...this.#streams.values()].map((runtime) => runtime.status(this.#state));
    const hosts = new Map<string, CoordinatorStatus['hosts'][number]>();
    for (const part of parts) {
      for (const h of part.hosts) {
        const seen = hosts.get(h.hostId);
        if (seen === undefined) hosts.set(h.hostId, { ...h });
        else {
          seen.shards += h.shards;
          if (h.lastSeenAt > seen.lastSeenAt) seen.lastSeenAt = h.lastSeenAt;
        }
      }
    }
    return {
      hostId: this.#o.hostId,
      group: this.#o.group,
      stream: this.#o.multiStream ? parts.map((p) => p.stream).join(',') : this.#o.stream,
      state: this.#state,
      streams: parts.flatMap((p) => p.streams),
      shards: parts.flatMap((p) => p.shards),
      hosts: [...hosts.values()],
      resharding: parts.some((p) => p.resharding),
      bufferedRecords: this.#ledger.bufferedRecords,
      bufferedBytes: this.#ledger.bufferedBytes,
    };
  }

  // ---- stop ----------------------------------------------------------------------------------------

  async #stop(): Promise<void> {
    if (this.#state !== 'stopped') this.#state = 'stopping';
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    const runtimes = [...this.#streams.values()];
    await Promise.all(runtimes.map((runtime) => runtime.halt()));
    // Offers not taken are withdrawn and the loop ends; the batch in hand finishes.
    this.#iterator?.end();
    await Promise.all(runtimes.map((runtime) => runtime.releaseAll()));
    await Promise.allSettled([...this.#removals]);
    try {
      await this.#supervisor.close();
    } catch (error) {
      this.#report(error, 'worker pool shutdown failed');
    }
    await Promise.all(runtimes.map((runtime) => runtime.close()));
    await this.#deadLetter?.close();
    if (this.#ownsClient) this.#client.destroy();
    this.#state = 'stopped';
    this.#events.clear();
  }

  #report(error: unknown, message: string): void {
    const e = reportedError(error, message);
    this.#o.logger.warn({ err: serializeError(e) }, message);
    this.#events.emit('error', { error: e });
  }
}

/**
 * Starts consuming a stream: resolves once the shards were listed and the first leases taken (readers
 * start in the background). See API.md for the options and the delivery contract.
 *
 * @throws ShardlineOptionError (`ERR_INVALID_OPTION`) naming the option for invalid options; the
 * discovery error (e.g. `ERR_NOT_FOUND`) when the stream cannot be listed.
 */
export async function startCoordinator<T = unknown>(options: CoordinatorOptions<T>): Promise<Coordinator<T>> {
  const resolved = resolveCoordinatorOptions(options);
  const coordinator = new CoordinatorImpl<T>(resolved);
  await coordinator.start();
  return coordinator;
}
