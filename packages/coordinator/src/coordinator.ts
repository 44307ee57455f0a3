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
  createKinesisClient,
  ErrorCodes,
  isKinesisClient,
  ShardlineError,
  serializeError,
} from '@shardline/common';
import { firstFetcher } from '@shardline/shard-worker';
import { Allocator } from './allocator.js';
import { DeadLetterQueue } from './dead-letter.js';
import { BatchIterator } from './delivery/batch-iterator.js';
import { CreditLedger } from './delivery/credit-ledger.js';
import { FailurePolicy } from './delivery/failure-policy.js';
import { processTracing } from './delivery/tracing.js';
import type { CoordinatorEventListener, CoordinatorEventName, CoordinatorEventSource } from './events.js';
import { CoordinatorEvents } from './events.js';
import { ensureStreamConsumer } from './fan-out.js';
import { LeaseRenewal } from './lease-renewal.js';
import { createLeaseManager } from './leases/create.js';
import { GoneLeases } from './leases/gone-leases.js';
import type { Checkpoint, HostInfo, Lease, LeaseManager } from './leases/types.js';
import { CoordinatorMetrics, metricsSnapshot } from './metrics.js';
import type { CoordinatorOptions, RecordBatch, ResolvedCoordinatorOptions } from './options.js';
import { resolveCoordinatorOptions } from './options.js';
import { executePlan } from './plan-execution.js';
import { moduleTaskSettings, SessionFactory, warnIfUnheard } from './session-factory.js';
import { listShardsApi, ShardDiscovery } from './shard-discovery.js';
import type { ShardSession } from './shard-session.js';
import { buildStatus, type CoordinatorStatus, type RecordedFailure } from './status.js';
import { CrashGuard, Supervisor } from './supervisor.js';
import { Topology } from './topology.js';

export type { CoordinatorStatus, ShardFailureStatus, ShardStatus } from './status.js';

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
}

const COORDINATOR_TIMING = Object.freeze({
  /** A shard whose reader failed fatally is retried after this long. */
  failedReaderCooldownMs: 30_000,
});

class CoordinatorImpl<T> implements Coordinator<T> {
  readonly #o: ResolvedCoordinatorOptions<T>;
  readonly #events: CoordinatorEvents;
  readonly #client: KinesisClient;
  readonly #ownsClient: boolean;
  readonly #discovery: ShardDiscovery;
  readonly #leases: LeaseManager;
  readonly #topology = new Topology();
  readonly #allocator: Allocator;
  readonly #supervisor: Supervisor;
  readonly #ledger: CreditLedger;
  readonly #factory: SessionFactory<T>;
  readonly #iterator: BatchIterator<T> | undefined;
  readonly #deadLetter: DeadLetterQueue | undefined;
  readonly #metrics: CoordinatorMetrics | undefined;
  readonly #abort = new AbortController();
  readonly #sessions = new Map<string, ShardSession<T>>();
  /** Shards stopped here after a failure: not taken again by this host ('reader' ones until cooled down). */
  readonly #failed = new Map<string, RecordedFailure>();
  #state: CoordinatorStatus['state'] = 'starting';
  #leaseSnapshot: Lease[] = [];
  #snapshotNow = 0;
  /** Checkpoints of leases this host let go since the last snapshot (the snapshot may predate them). */
  readonly #letGo = new Map<string, Checkpoint>();
  #hostsSnapshot: HostInfo[] = [];
  readonly #goneLeases: GoneLeases;
  #tickTimer: NodeJS.Timeout | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  readonly #renewal: LeaseRenewal;
  #ticking: Promise<void> | undefined;
  #tickAgain = false;
  #syncing: Promise<void> | undefined;
  #lastWarning: string | undefined;
  #stopping: Promise<void> | undefined;
  readonly #onAbort = () => void this.stop();

  constructor(o: ResolvedCoordinatorOptions<T>) {
    this.#o = o;
    this.#events = new CoordinatorEvents(o.logger);
    // First: a registry holding a clashing metric throws here, before anything is opened.
    this.#metrics =
      o.metrics === undefined
        ? undefined
        : new CoordinatorMetrics({
            registry: o.metrics.registry,
            stream: o.stream,
            group: o.group,
            events: this.#events,
            snapshot: () =>
              metricsSnapshot(this.#sessions.values(), this.#factory.stats, this.#ledger.bufferedRecords),
          });
    this.#ownsClient = !isKinesisClient(o.kinesis);
    this.#client = isKinesisClient(o.kinesis) ? (o.kinesis as KinesisClient) : createKinesisClient(o.kinesis);
    const stream: { streamName?: string; streamArn?: string } = {};
    if (o.streamName !== undefined) stream.streamName = o.streamName;
    if (o.streamArn !== undefined) stream.streamArn = o.streamArn;
    this.#discovery = new ShardDiscovery({ api: listShardsApi(this.#client), ...stream, logger: o.logger });
    this.#leases = createLeaseManager(o);
    this.#goneLeases = new GoneLeases({
      leases: this.#leases,
      delayMs: o.leaseCleanupDelayMs,
      logger: o.logger,
      report: (error, shardId) => this.#report(error, 'removing the lease of a gone shard failed', shardId),
    });
    this.#renewal = new LeaseRenewal({
      leases: this.#leases,
      leaseDurationMs: o.leaseDurationMs,
      intervalMs: o.leaseRenewIntervalMs,
      sessions: () => this.#sessions.values() as Iterable<ShardSession<unknown>>,
      report: (error) => this.#report(error, 'lease renewal failed'),
    });
    this.#allocator = new Allocator({ hostId: o.hostId, maxShardConsumers: o.maxShardConsumers });
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
    this.#factory = new SessionFactory<T>({
      options: o,
      leases: this.#leases,
      events: this.#events,
      metrics: this.#metrics,
      ledger: this.#ledger,
      policy: new FailurePolicy({
        onHandlerError: o.onHandlerError,
        maxRecordAgeMs: o.maxRecordAgeMs,
        expired: (shardId, records) => this.#factory.countExpired(shardId, records),
        events: this.#events,
        logger: o.logger,
        deadLetter: (shardId, records, error, attempts) =>
          this.#factory.sendDeadLetter(shardId, records, error, attempts),
        tracing: processTracing(o),
      }),
      iterator: this.#iterator,
      supervisor: this.#supervisor,
      crashGuard: new CrashGuard(),
      deadLetter: this.#deadLetter,
    });
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
   * Initial sync; throws (after cleaning up) when the stream cannot be listed. The first allocation
   * runs right after startCoordinator() resolves, so listeners added then see every event.
   */
  async start(): Promise<void> {
    try {
      if (this.#o.fanOut !== undefined) {
        const consumer = await ensureStreamConsumer(this.#client, {
          streamName: this.#o.streamName,
          streamArn: this.#o.streamArn,
          consumerName: this.#o.fanOut.consumerName,
          timeoutMs: this.#o.fanOut.registrationTimeoutMs,
          logger: this.#o.logger,
          signal: this.#abort.signal,
        });
        this.#factory.consumerArn = consumer.consumerArn;
      }
      await this.#sync(true);
    } catch (error) {
      await this.stop().catch(() => undefined);
      throw error;
    }
    this.#state = 'running';
    setImmediate(() => {
      if (this.#stopping === undefined) void this.#tick();
    });
    const interval = this.#o.leaseRenewIntervalMs;
    this.#renewal.start();
    this.#tickTimer = setInterval(() => void this.#tick(), interval);
    this.#syncTimer = setInterval(() => void this.#syncAndTick(), this.#o.shardSyncIntervalMs);
    const signal = this.#o.signal;
    if (signal !== undefined) {
      if (signal.aborted) void this.stop();
      else signal.addEventListener('abort', this.#onAbort, { once: true });
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
    return buildStatus({
      hostId: this.#o.hostId,
      group: this.#o.group,
      stream: this.#o.stream,
      state: this.#state,
      topology: this.#topology,
      leases: this.#leaseSnapshot,
      leasesReadAtMs: this.#snapshotNow,
      hosts: this.#hostsSnapshot,
      sessions: this.#sessions as ReadonlyMap<string, ShardSession<unknown>>,
      stats: this.#factory.stats,
      letGo: this.#letGo,
      failed: this.#failed,
      bufferedRecords: this.#ledger.bufferedRecords,
      bufferedBytes: this.#ledger.bufferedBytes,
    });
  }

  // ---- shard sync ----------------------------------------------------------------------------------

  #sync(initial = false): Promise<void> {
    this.#syncing ??= (async () => {
      try {
        const shards = await this.#discovery.list(this.#abort.signal);
        if (this.#stopping !== undefined && !initial) return;
        this.#topology.update(shards);
        this.#goneLeases.noteListing(this.#leaseSnapshot, this.#topology);
        await this.#leases.ensureLeases(this.#topology.leaseSeeds());
      } catch (error) {
        if (initial) throw error;
        if (this.#stopping !== undefined) return;
        this.#report(error, 'shard sync failed');
      } finally {
        this.#syncing = undefined;
      }
    })();
    return this.#syncing;
  }

  async #syncAndTick(): Promise<void> {
    await this.#sync();
    await this.#tick();
  }

  // ---- lease tick ----------------------------------------------------------------------------------

  #tick(): Promise<void> {
    if (this.#ticking !== undefined) {
      this.#tickAgain = true;
      return this.#ticking;
    }
    this.#ticking = (async () => {
      try {
        do {
          this.#tickAgain = false;
          await this.#tickOnce();
        } while (this.#tickAgain && this.#stopping === undefined);
      } catch (error) {
        if (this.#stopping === undefined) this.#report(error, 'lease tick failed');
      } finally {
        this.#ticking = undefined;
      }
    })();
    return this.#ticking;
  }

  async #tickOnce(): Promise<void> {
    if (this.#stopping !== undefined) return;
    const reading = () => [...this.#sessions.values()].filter((s) => s.state === 'reading').length;
    await this.#leases.heartbeat(reading());
    const [leases, hosts, now] = await Promise.all([
      this.#leases.listLeases(),
      this.#leases.liveHosts(),
      this.#leases.now(),
    ]);
    this.#leaseSnapshot = leases;
    this.#letGo.clear();
    this.#hostsSnapshot = hosts;
    this.#snapshotNow = now;
    if (this.#stopping !== undefined) return;

    const exclude = new Set<string>();
    for (const [id, failure] of this.#failed) {
      if (
        failure.reason === 'reader' &&
        failure.atMs + COORDINATOR_TIMING.failedReaderCooldownMs <= Date.now()
      ) {
        this.#failed.delete(id);
      } else exclude.add(id);
    }
    // Shards still being let go here are not taken again until that finished.
    for (const [id, session] of this.#sessions) if (session.state !== 'reading') exclude.add(id);
    const plan = this.#allocator.plan({ leases, topology: this.#topology, liveHosts: hosts, now, exclude });

    if (plan.warning?.message !== this.#lastWarning) {
      this.#lastWarning = plan.warning?.message;
      if (plan.warning !== undefined) {
        const { code, message, ...details } = plan.warning;
        this.#o.logger.warn(details, message);
        this.#events.emit('warning', { code, message, details: { ...details } });
      }
    }
    this.#ledger.expect(Math.max(plan.target, reading() + plan.acquire.length));
    for (const shardId of plan.release) this.#sessions.get(shardId)?.release('over-capacity');
    for (const { shardId } of plan.handOver) this.#sessions.get(shardId)?.release('handoff');

    await executePlan(plan, {
      hostId: this.#o.hostId,
      leases: this.#leases,
      has: (shardId) => this.#sessions.has(shardId),
      stopping: () => this.#stopping !== undefined,
      begin: (lease, sent) => this.#begin(lease, sent),
      report: (error, message, shardId) => this.#report(error, message, shardId),
    });
    if (this.#stopping !== undefined) return;
    await this.#goneLeases.remove(leases, this.#topology, now, () => this.#stopping !== undefined);
  }

  // ---- sessions ------------------------------------------------------------------------------------

  #begin(lease: Lease, sent: number): void {
    const { shardId } = lease;
    const known = new Set(this.#leaseSnapshot.map((l) => l.shardId));
    const session = this.#factory.create(lease, sent, this.#topology.isRoot(shardId, known), {
      noteChildren: (children) => this.#topology.noteChildren(shardId, children),
      stopping: () => this.#stopping !== undefined,
      report: (error, message) => this.#report(error, message, shardId),
      failed: (failure) => {
        // status() shows it at once; this host does not take it again ('reader' failures: after a cooldown).
        if (this.#stopping === undefined) this.#failed.set(shardId, { ...failure, atMs: Date.now() });
        warnIfUnheard(this.#o, this.#events, shardId, failure);
      },
    });
    this.#sessions.set(shardId, session);
    this.#failed.delete(shardId);
    session.start();
    void session.done.then(() => this.#sessionDone(session));
  }

  #sessionDone(session: ShardSession<T>): void {
    const { shardId } = session;
    if (this.#sessions.get(shardId) === session) this.#sessions.delete(shardId);
    const checkpoint = session.checkpoint;
    if (checkpoint !== undefined) this.#letGo.set(shardId, checkpoint);
    if (session.state === 'ended' && this.#stopping === undefined) void this.#syncAndTick();
  }

  // ---- stop ----------------------------------------------------------------------------------------

  async #stop(): Promise<void> {
    if (this.#state !== 'stopped') this.#state = 'stopping';
    clearInterval(this.#tickTimer);
    clearInterval(this.#syncTimer);
    this.#o.signal?.removeEventListener('abort', this.#onAbort);
    this.#abort.abort();
    await this.#ticking;
    await this.#syncing;
    // Offers not taken are withdrawn and the loop ends; the batch in hand finishes.
    this.#iterator?.end();
    for (const session of this.#sessions.values()) session.release('stop');
    // Renewal goes on until every lease is released (or lost).
    await Promise.all([...this.#sessions.values()].map((session) => session.done));
    await this.#renewal.stop();
    try {
      await this.#supervisor.close();
    } catch (error) {
      this.#report(error, 'worker pool shutdown failed');
    }
    await this.#leases.close().catch((error: unknown) => this.#report(error, 'lease manager close failed'));
    await this.#deadLetter?.close();
    if (this.#ownsClient) this.#client.destroy();
    this.#state = 'stopped';
    this.#metrics?.close();
    this.#events.clear();
  }

  #report(error: unknown, message: string, shardId?: string): void {
    const e =
      error instanceof ShardlineError
        ? error
        : new ShardlineError(
            ErrorCodes.INTERNAL,
            `${message}: ${String((error as Error)?.message ?? error)}`,
            {
              cause: error,
            },
          );
    this.#o.logger.warn({ shardId, err: serializeError(e) }, message);
    this.#events.emit('error', shardId === undefined ? { error: e } : { error: e, shardId });
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
