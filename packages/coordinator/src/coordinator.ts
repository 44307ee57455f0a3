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
import type { ShardRecord } from '@shardline/common';
import {
  createKinesisClient,
  ErrorCodes,
  isKinesisClient,
  SHARD_END,
  ShardlineError,
  serializeError,
  silentLogger,
} from '@shardline/common';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import { Allocator } from './allocator.js';
import { DeadLetterQueue } from './dead-letter.js';
import { BatchIterator } from './delivery/batch-iterator.js';
import { CreditLedger } from './delivery/credit-ledger.js';
import { FailurePolicy } from './delivery/failure-policy.js';
import { Lane } from './delivery/lane.js';
import type { CoordinatorEventListener, CoordinatorEventName, CoordinatorEventSource } from './events.js';
import { CoordinatorEvents } from './events.js';
import { ensureStreamConsumer } from './fan-out.js';
import { MemoryLeaseManager } from './leases/memory.js';
import { RedisLeaseManager } from './leases/redis.js';
import type { Checkpoint, HostInfo, Lease, LeaseManager } from './leases/types.js';
import { CoordinatorMetrics, type CoordinatorMetricsSnapshot } from './metrics.js';
import type { CoordinatorOptions, RecordBatch, ResolvedCoordinatorOptions } from './options.js';
import { resolveCoordinatorOptions } from './options.js';
import { listShardsApi, ShardDiscovery } from './shard-discovery.js';
import {
  type ReaderStart,
  SESSION_TIMING,
  type ShardFailure,
  ShardSession,
  type ShardStats,
} from './shard-session.js';
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
  /** A lease gone from the stream is deleted only after this many complete listings without it. */
  minListingsAbsent: 2,
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
  readonly #policy: FailurePolicy;
  readonly #iterator: BatchIterator<T> | undefined;
  readonly #deadLetter: DeadLetterQueue | undefined;
  readonly #metrics: CoordinatorMetrics | undefined;
  readonly #crashGuard = new CrashGuard();
  readonly #abort = new AbortController();
  readonly #sessions = new Map<string, ShardSession<T>>();
  readonly #stats = new Map<string, ShardStats>();
  /** Shards stopped here after a failure: not taken again by this host ('reader' ones until cooled down). */
  readonly #failed = new Map<string, RecordedFailure>();
  #state: CoordinatorStatus['state'] = 'starting';
  #leaseSnapshot: Lease[] = [];
  #snapshotNow = 0;
  /** Checkpoints of leases this host let go since the last snapshot (the snapshot may predate them). */
  readonly #letGo = new Map<string, Checkpoint>();
  #hostsSnapshot: HostInfo[] = [];
  /** Leases of shards absent from complete listings: since when (ms), and in how many listings. */
  readonly #absent = new Map<string, { sinceMs: number; listings: number }>();
  #renewTimer: NodeJS.Timeout | undefined;
  #tickTimer: NodeJS.Timeout | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> | undefined;
  #ticking: Promise<void> | undefined;
  #tickAgain = false;
  #syncing: Promise<void> | undefined;
  #lastWarning: string | undefined;
  #stopping: Promise<void> | undefined;
  readonly #onAbort = () => void this.stop();
  /** Enhanced fan-out: the registered consumer the readers subscribe as (undefined: polling). */
  #consumerArn: string | undefined;

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
            snapshot: () => this.#metricsSnapshot(),
          });
    this.#ownsClient = !isKinesisClient(o.kinesis);
    this.#client = isKinesisClient(o.kinesis) ? (o.kinesis as KinesisClient) : createKinesisClient(o.kinesis);
    const stream: { streamName?: string; streamArn?: string } = {};
    if (o.streamName !== undefined) stream.streamName = o.streamName;
    if (o.streamArn !== undefined) stream.streamArn = o.streamArn;
    this.#discovery = new ShardDiscovery({ api: listShardsApi(this.#client), ...stream, logger: o.logger });
    this.#leases =
      o.leases.redis !== undefined
        ? new RedisLeaseManager({
            redis: o.leases.redis,
            group: o.group,
            stream: o.stream,
            hostId: o.hostId,
            leaseDurationMs: o.leaseDurationMs,
            keyPrefix: o.leases.keyPrefix,
            logger: o.logger,
          })
        : new MemoryLeaseManager({
            hostId: o.hostId,
            leaseDurationMs: o.leaseDurationMs,
            ...(o.leases.store === undefined ? {} : { store: o.leases.store }),
            namespace: `${o.group}:${o.stream}`,
          });
    this.#allocator = new Allocator({ hostId: o.hostId, maxShardConsumers: o.maxShardConsumers });
    this.#supervisor = new Supervisor({
      workerThreads: o.workerThreads,
      logger: o.logger,
      ...(o.handlerModule === undefined
        ? {}
        : { module: { url: o.handlerModule, onHandlerError: o.onHandlerError } }),
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
    this.#policy = new FailurePolicy({
      onHandlerError: o.onHandlerError,
      events: this.#events,
      logger: o.logger,
      deadLetter: (shardId, records, error, attempts) =>
        this.#sendDeadLetter(shardId, records, error, attempts),
    });
    if (o.delivery === 'iterator') this.#iterator = new BatchIterator<T>();
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
        this.#consumerArn = consumer.consumerArn;
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
    this.#renewTimer = setInterval(() => void this.#renewRound(), interval);
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
      stats: this.#stats,
      letGo: this.#letGo,
      failed: this.#failed,
      bufferedRecords: this.#ledger.bufferedRecords,
    });
  }

  // ---- shard sync ----------------------------------------------------------------------------------

  #sync(initial = false): Promise<void> {
    this.#syncing ??= (async () => {
      try {
        const shards = await this.#discovery.list(this.#abort.signal);
        if (this.#stopping !== undefined && !initial) return;
        this.#topology.update(shards);
        this.#noteAbsentLeases();
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

  // ---- renewal -------------------------------------------------------------------------------------

  /** One renewal round for every lease held; one round at a time, each bounded below the margin. */
  #renewRound(): Promise<void> {
    this.#renewing ??= (async () => {
      const held = [...this.#sessions.values()].filter((s) => s.holdsLease);
      if (held.length === 0) return;
      const sent = performance.now();
      let renewed: Map<string, Lease | undefined>;
      try {
        renewed = await this.#leases.renewLeases(
          held.map((s) => ({ shardId: s.shardId, counter: s.counter })),
          { timeoutMs: Math.floor(this.#o.leaseDurationMs * SESSION_TIMING.deadlineMarginFraction) },
        );
      } catch (error) {
        if (this.#sessions.size > 0) this.#report(error, 'lease renewal failed');
        for (const session of held) session.renewFailed();
        return;
      }
      for (const session of held) {
        const lease = renewed.get(session.shardId);
        if (lease === undefined) session.renewRefused();
        else session.renewed(lease, sent);
      }
    })().finally(() => {
      this.#renewing = undefined;
    });
    return this.#renewing;
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

    const nowMono = performance.now();
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

    const candidates = [...plan.acquire];
    const spares = [...plan.spares];
    while (candidates.length > 0) {
      if (this.#stopping !== undefined) return;
      const shardId = candidates.shift()!;
      if (this.#sessions.has(shardId)) continue;
      const sent = performance.now();
      const lease = await this.#leases.acquire(shardId);
      if (this.#stopping !== undefined) {
        if (lease !== undefined) await this.#leases.release(shardId, lease.counter).catch(() => false);
        return;
      }
      if (lease === undefined) {
        // Another host won it: try the next candidate instead.
        const spare = spares.shift();
        if (spare !== undefined) candidates.push(spare);
        continue;
      }
      if (lease.checkpoint === SHARD_END) {
        await this.#leases.release(shardId, lease.counter).catch(() => false);
        continue;
      }
      this.#begin(lease, sent);
    }
    await Promise.all(
      plan.requestHandoffs.map(({ shardId }) =>
        this.#leases.requestHandoff(shardId, this.#o.hostId).catch((error: unknown) => {
          this.#report(error, 'handoff request failed', shardId);
          return false;
        }),
      ),
    );
    await this.#removeGoneLeases(leases, now, nowMono);
  }

  // ---- leases of shards gone from the stream -------------------------------------------------------

  /** After a complete listing: which leases' shards it does not show any more. */
  #noteAbsentLeases(): void {
    const known = new Set(this.#leaseSnapshot.map((l) => l.shardId));
    for (const id of [...this.#absent.keys()])
      if (!known.has(id) || this.#topology.has(id)) this.#absent.delete(id);
    for (const id of known) {
      if (this.#topology.has(id)) continue;
      const seen = this.#absent.get(id);
      if (seen === undefined) this.#absent.set(id, { sinceMs: performance.now(), listings: 1 });
      else seen.listings++;
    }
  }

  /**
   * Deletes the leases of shards gone from the stream for `leaseCleanupDelayMs`, that nobody holds and
   * that no lease of the group needs any more: a child present in the stream without a checkpoint still
   * needs its parents' leases (they tell it to start at TRIM_HORIZON rather than at the initial position).
   */
  async #removeGoneLeases(leases: readonly Lease[], now: number, nowMono: number): Promise<void> {
    const byId = new Map(leases.map((l) => [l.shardId, l]));
    const needed = new Set<string>();
    for (const lease of leases) {
      if (!this.#topology.has(lease.shardId) || lease.checkpoint !== undefined) continue;
      for (const parent of [...lease.parentShardIds, ...this.#topology.parentsOf(lease.shardId)])
        needed.add(parent);
    }
    for (const [shardId, absent] of this.#absent) {
      const lease = byId.get(shardId);
      if (
        lease === undefined ||
        needed.has(shardId) ||
        absent.listings < COORDINATOR_TIMING.minListingsAbsent ||
        nowMono - absent.sinceMs < this.#o.leaseCleanupDelayMs ||
        (lease.owner !== undefined && (lease.expiresAtMs ?? 0) > now)
      ) {
        continue;
      }
      if (this.#stopping !== undefined) return;
      try {
        if (await this.#leases.removeLease(shardId, lease.counter)) {
          this.#absent.delete(shardId);
          this.#o.logger.info({ shardId }, 'lease of a shard gone from the stream removed');
        }
      } catch (error) {
        this.#report(error, 'removing the lease of a gone shard failed', shardId);
      }
    }
  }

  // ---- sessions ------------------------------------------------------------------------------------

  /**
   * A root of the group's shard graph starts at `initialPosition` without checkpoint: every parent is
   * gone from the stream and unknown to the group (no lease). Otherwise the group was reading its
   * parents, and the shard starts at TRIM_HORIZON after them.
   */
  #isRoot(shardId: string): boolean {
    const known = new Set(this.#leaseSnapshot.map((l) => l.shardId));
    return this.#topology.parentsOf(shardId).every((p) => !this.#topology.has(p) && !known.has(p));
  }

  #statsOf(shardId: string): ShardStats {
    let stats = this.#stats.get(shardId);
    if (stats === undefined) {
      stats = { recordsDelivered: 0, throttled: 0 };
      this.#stats.set(shardId, stats);
    }
    return stats;
  }

  #begin(lease: Lease, sent: number): void {
    const { shardId } = lease;
    const o = this.#o;
    const iterator = this.#iterator;
    const handler = o.handler;
    const session: ShardSession<T> = new ShardSession<T>(lease, sent, this.#isRoot(shardId), {
      hostId: o.hostId,
      leaseDurationMs: o.leaseDurationMs,
      leases: this.#leases,
      events: this.#events,
      logger: o.logger,
      metrics: this.#metrics,
      checkpoint: o.checkpoint,
      ledger: this.#ledger,
      crashGuard: this.#crashGuard,
      stats: this.#statsOf(shardId),
      initialPosition: o.initialPosition,
      readerOptions: (start) => this.#readerOptions(shardId, start),
      startReader: (options, onMessage) => this.#supervisor.start(options, onMessage),
      threadIndex: (threadId) => this.#supervisor.threadIndex(threadId),
      lane:
        o.delivery === 'handler-module'
          ? undefined
          : (hooks) =>
              new Lane<T>({
                shardId,
                codec: o.codec,
                sink:
                  iterator !== undefined
                    ? { mode: 'iterator', iterator }
                    : { mode: 'handler', handler: handler! },
                policy: this.#policy,
                hooks,
                events: this.#events,
                logger: o.logger,
              }),
      deadLetter: (records, error, attempts) => this.#sendDeadLetter(shardId, records, error, attempts),
      noteChildren: (children) => this.#topology.noteChildren(shardId, children),
      stopping: () => this.#stopping !== undefined,
      report: (error, message) => this.#report(error, message, shardId),
      failed: (failure) => this.#shardFailed(shardId, failure),
    });
    this.#sessions.set(shardId, session);
    this.#failed.delete(shardId);
    session.start();
    void session.done.then(() => this.#sessionDone(session));
  }

  /**
   * A shard stops here after a failure: `status()` shows it at once (and this host does not take it
   * again, or for 'reader' failures not before a cooldown). It must never be silent: the session logs it
   * at warn, and when the logger is the default silent one and nobody listens to `handler.failed` or
   * `error`, it becomes a process warning (printed to stderr by Node unless `--no-warnings` or a
   * 'warning' listener).
   */
  #shardFailed(shardId: string, failure: ShardFailure): void {
    if (this.#stopping === undefined) this.#failed.set(shardId, { ...failure, atMs: Date.now() });
    if (this.#o.logger !== silentLogger) return;
    if (this.#events.listenerCount('handler.failed') > 0 || this.#events.listenerCount('error') > 0) return;
    const at =
      failure.position === undefined
        ? ''
        : ` at sequence number ${failure.position.sequenceNumber}${failure.position.subSequenceNumber === undefined ? '' : `:${failure.position.subSequenceNumber}`}`;
    process.emitWarning(
      `shard ${shardId} of stream ${this.#o.stream} (group ${this.#o.group}) stopped on this host${at}: ` +
        `${failure.error.code}: ${failure.error.message}. Add a 'handler.failed' listener or a logger to ` +
        "handle this yourself; onHandlerError.then 'skip' or 'dead-letter' keep the shard reading.",
      { code: 'SHARDLINE_SHARD_STOPPED', type: 'ShardlineWarning' },
    );
  }

  #sessionDone(session: ShardSession<T>): void {
    const { shardId } = session;
    if (this.#sessions.get(shardId) === session) this.#sessions.delete(shardId);
    const checkpoint = session.checkpoint;
    if (checkpoint !== undefined) this.#letGo.set(shardId, checkpoint);
    if (session.state === 'ended' && this.#stopping === undefined) void this.#syncAndTick();
  }

  #readerOptions(shardId: string, start: ReaderStart): ShardReaderTaskOptions {
    const o = this.#o;
    const options: ShardReaderTaskOptions = {
      shardId,
      initialPosition: 'initialPosition' in start ? start.initialPosition : 'TRIM_HORIZON',
      maxRecordsPerFetch: o.maxRecordsPerFetch,
      fetchRatePerShard: o.fetchRatePerShard,
      idleFetchIntervalMs: o.idleFetchIntervalMs,
      idleFetchMaxIntervalMs: o.idleFetchMaxIntervalMs,
      // A custom Codec cannot cross threads: the worker sends raw bytes and it decodes here. Built-in
      // codecs decode in the worker; those of JSON items cross as one JSON text (the shard-worker's
      // default encoding for them).
      codec: o.codecName ?? 'raw',
      ...(o.codecName === undefined ? { encoding: 'bytes' as const } : {}),
      kinesis: o.workerKinesisConfig,
    };
    if (o.streamName !== undefined) options.streamName = o.streamName;
    if (o.streamArn !== undefined) options.streamArn = o.streamArn;
    if ('checkpoint' in start) options.checkpoint = { ...start.checkpoint };
    if (this.#consumerArn !== undefined && o.fanOut !== undefined) {
      const { transport, subscriptionRenewMs } = o.fanOut;
      options.fanOut = { consumerArn: this.#consumerArn, transport, subscriptionRenewMs };
    }
    return options;
  }

  #sendDeadLetter(
    shardId: string,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ): Promise<void> {
    if (this.#deadLetter === undefined) {
      return Promise.reject(new ShardlineError(ErrorCodes.INTERNAL, 'no dead-letter queue configured'));
    }
    const sent = this.#deadLetter.send(shardId, records, error, attempts);
    return this.#metrics === undefined ? sent : sent.then(() => this.#metrics?.deadLettered(records.length));
  }

  /** For the metrics' gauges, at each scrape. */
  #metricsSnapshot(): CoordinatorMetricsSnapshot {
    let leases = 0;
    const shards: Array<{ shardId: string; millisBehindLatest: number | undefined }> = [];
    for (const session of this.#sessions.values()) {
      if (!session.holdsLease) continue;
      leases++;
      if (session.state === 'reading') {
        shards.push({
          shardId: session.shardId,
          millisBehindLatest: this.#stats.get(session.shardId)?.millisBehindLatest,
        });
      }
    }
    return { leases, bufferedRecords: this.#ledger.bufferedRecords, shards };
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
    clearInterval(this.#renewTimer);
    await this.#renewing;
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
