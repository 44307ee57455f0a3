/**
 * One stream of a coordinator: its shard discovery, shard graph, allocation, lease store view,
 * checkpoints and shard sessions, and the three loops of that stream (renewal, the lease tick, shard
 * sync; see coordinator.ts). The worker pool, the credit ledger, the iterator, the dead-letter queue,
 * the Kinesis client and the host id are the coordinator's, shared by every stream.
 */

import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { DescribeStreamSummaryCommand } from '@aws-sdk/client-kinesis';
import { ErrorCodes, ShardlineError, serializeError } from '@shardline/common';
import { Allocator } from './allocator.js';
import type { DeadLetterQueue } from './dead-letter.js';
import type { BatchIterator } from './delivery/batch-iterator.js';
import type { CreditLedger } from './delivery/credit-ledger.js';
import { FailurePolicy } from './delivery/failure-policy.js';
import { processTracing } from './delivery/tracing.js';
import { CoordinatorEvents, type HostEvents, reportedError } from './events.js';
import { ensureStreamConsumer } from './fan-out.js';
import { LeaseRenewal } from './lease-renewal.js';
import { createLeaseManager } from './leases/create.js';
import { GoneLeases } from './leases/gone-leases.js';
import type { Checkpoint, HostInfo, Lease, LeaseManager } from './leases/types.js';
import { CoordinatorMetrics, metricsSnapshot } from './metrics.js';
import type { ResolvedCoordinatorOptions, ResolvedStreamSpec } from './options.js';
import { executePlan } from './plan-execution.js';
import { SessionFactory, warnIfUnheard } from './session-factory.js';
import { listShardsApi, ShardDiscovery } from './shard-discovery.js';
import type { ShardSession } from './shard-session.js';
import { buildStatus, type CoordinatorStatus, type RecordedFailure } from './status.js';
import { CrashGuard, type Supervisor } from './supervisor.js';
import { Topology } from './topology.js';

const RUNTIME_TIMING = Object.freeze({
  /** A shard whose reader failed fatally is retried after this long. */
  failedReaderCooldownMs: 30_000,
});

/** What a stream's runtime shares with the coordinator. */
export interface StreamRuntimeShared<T> {
  hostEvents: HostEvents;
  client: KinesisClient;
  supervisor: Supervisor;
  ledger: CreditLedger;
  iterator: BatchIterator<T> | undefined;
  deadLetter: DeadLetterQueue | undefined;
  /** This stream's allocation target (the ledger expects the streams' sum). */
  expect(runtime: StreamRuntime<T>, count: number): void;
  /** Leases this stream may hold: the host's maxShardConsumers minus those of its other streams. */
  capacity(runtime: StreamRuntime<T>): number;
}

/**
 * The options of one stream's runtime: the coordinator's, with this stream's name, ARN, initial
 * position and fan-out, and (DynamoDB, multi-stream) the KCL stream identifier.
 */
export function streamOptions<T>(
  o: ResolvedCoordinatorOptions<T>,
  spec: ResolvedStreamSpec,
  streamId: string | undefined,
): ResolvedCoordinatorOptions<T> {
  const leases =
    streamId === undefined || o.leases.dynamodb === undefined
      ? o.leases
      : Object.freeze({ ...o.leases, dynamodb: Object.freeze({ ...o.leases.dynamodb, streamId }) });
  return Object.freeze({
    ...o,
    streamName: spec.streamName,
    streamArn: spec.streamArn,
    stream: spec.stream,
    streams: Object.freeze([spec]),
    initialPosition: spec.initialPosition,
    fanOut: spec.fanOut,
    leases,
  });
}

/**
 * The KCL 3.x multi-stream identifier of a stream, `account:streamName:creationEpoch` (the account
 * from its ARN, the creation time in epoch seconds), from DescribeStreamSummary.
 */
export async function kclStreamId(
  client: KinesisClient,
  spec: ResolvedStreamSpec,
  signal?: AbortSignal,
): Promise<string> {
  const out = await client.send(
    new DescribeStreamSummaryCommand(
      spec.streamArn !== undefined ? { StreamARN: spec.streamArn } : { StreamName: spec.streamName },
    ),
    signal === undefined ? {} : { abortSignal: signal },
  );
  const summary = out.StreamDescriptionSummary;
  const arn = summary?.StreamARN ?? spec.streamArn ?? '';
  const account = arn.split(':')[4] ?? '';
  const created = summary?.StreamCreationTimestamp;
  if (summary === undefined || created === undefined || account === '') {
    throw new ShardlineError(
      ErrorCodes.INTERNAL,
      `DescribeStreamSummary of stream '${spec.stream}' gave no ARN or creation time: cannot build its KCL multi-stream lease key`,
    );
  }
  return `${account}:${spec.stream}:${Math.floor(created.getTime() / 1000)}`;
}

export class StreamRuntime<T> {
  readonly o: ResolvedCoordinatorOptions<T>;
  readonly events: CoordinatorEvents;
  readonly #shared: StreamRuntimeShared<T>;
  readonly #discovery: ShardDiscovery;
  readonly leases: LeaseManager;
  readonly #topology = new Topology();
  readonly #allocator: Allocator;
  readonly #factory: SessionFactory<T>;
  readonly #metrics: CoordinatorMetrics | undefined;
  readonly #abort = new AbortController();
  readonly sessions = new Map<string, ShardSession<T>>();
  /** Shards stopped here after a failure: not taken again by this host ('reader' ones until cooled down). */
  readonly #failed = new Map<string, RecordedFailure>();
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
  #stopping = false;
  #closed: Promise<void> | undefined;

  constructor(o: ResolvedCoordinatorOptions<T>, shared: StreamRuntimeShared<T>) {
    this.o = o;
    this.#shared = shared;
    this.events = new CoordinatorEvents(o.logger, { to: shared.hostEvents, streamName: o.stream });
    // First: a registry holding a clashing metric throws here, before anything is opened.
    this.#metrics =
      o.metrics === undefined
        ? undefined
        : new CoordinatorMetrics({
            registry: o.metrics.registry,
            stream: o.stream,
            group: o.group,
            events: this.events,
            snapshot: () =>
              metricsSnapshot(this.sessions.values(), this.#factory.stats, shared.ledger.bufferedRecords),
          });
    const stream: { streamName?: string; streamArn?: string } = {};
    if (o.streamName !== undefined) stream.streamName = o.streamName;
    if (o.streamArn !== undefined) stream.streamArn = o.streamArn;
    this.#discovery = new ShardDiscovery({ api: listShardsApi(shared.client), ...stream, logger: o.logger });
    this.leases = createLeaseManager(o);
    this.#goneLeases = new GoneLeases({
      leases: this.leases,
      delayMs: o.leaseCleanupDelayMs,
      logger: o.logger,
      report: (error, shardId) => this.#report(error, 'removing the lease of a gone shard failed', shardId),
    });
    this.#renewal = new LeaseRenewal({
      leases: this.leases,
      leaseDurationMs: o.leaseDurationMs,
      intervalMs: o.leaseRenewIntervalMs,
      sessions: () => this.sessions.values() as Iterable<ShardSession<unknown>>,
      report: (error) => this.#report(error, 'lease renewal failed'),
    });
    this.#allocator = new Allocator({ hostId: o.hostId, maxShardConsumers: o.maxShardConsumers });
    this.#factory = new SessionFactory<T>({
      options: o,
      leases: this.leases,
      events: this.events,
      metrics: this.#metrics,
      // Streams may share shard ids: each stream's credit accounts are its own in the host's ledger.
      ledger: { open: (shardId, send) => shared.ledger.open(`${o.stream}/${shardId}`, send) },
      policy: new FailurePolicy({
        onHandlerError: o.onHandlerError,
        maxRecordAgeMs: o.maxRecordAgeMs,
        expired: (shardId, records) => this.#factory.countExpired(shardId, records),
        events: this.events,
        logger: o.logger,
        deadLetter: (shardId, records, error, attempts) =>
          this.#factory.sendDeadLetter(shardId, records, error, attempts),
        tracing: processTracing(o),
      }),
      iterator: shared.iterator,
      supervisor: shared.supervisor,
      crashGuard: new CrashGuard(),
      deadLetter: shared.deadLetter,
    });
  }

  get stream(): string {
    return this.o.stream;
  }

  /** Leases this stream's sessions hold now. */
  get held(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.holdsLease) n++;
    return n;
  }

  /** Registers the fan-out consumer (if any) and lists the shards; throws when the stream cannot be listed. */
  async start(): Promise<void> {
    if (this.o.fanOut !== undefined) {
      const consumer = await ensureStreamConsumer(this.#shared.client, {
        streamName: this.o.streamName,
        streamArn: this.o.streamArn,
        consumerName: this.o.fanOut.consumerName,
        timeoutMs: this.o.fanOut.registrationTimeoutMs,
        logger: this.o.logger,
        signal: this.#abort.signal,
      });
      this.#factory.consumerArn = consumer.consumerArn;
    }
    await this.#sync(true);
  }

  /** Starts the loops; the first tick runs on the next turn. */
  run(): void {
    setImmediate(() => {
      if (!this.#stopping) void this.#tick();
    });
    this.#renewal.start();
    this.#tickTimer = setInterval(() => void this.#tick(), this.o.leaseRenewIntervalMs);
    this.#syncTimer = setInterval(() => void this.#syncAndTick(), this.o.shardSyncIntervalMs);
  }

  status(state: CoordinatorStatus['state']): CoordinatorStatus {
    return buildStatus({
      hostId: this.o.hostId,
      group: this.o.group,
      stream: this.o.stream,
      state,
      topology: this.#topology,
      leases: this.#leaseSnapshot,
      leasesReadAtMs: this.#snapshotNow,
      hosts: this.#hostsSnapshot,
      sessions: this.sessions as ReadonlyMap<string, ShardSession<unknown>>,
      stats: this.#factory.stats,
      letGo: this.#letGo,
      failed: this.#failed,
      bufferedRecords: this.#shared.ledger.bufferedRecords,
      bufferedBytes: this.#shared.ledger.bufferedBytes,
    });
  }

  // ---- shard sync ----------------------------------------------------------------------------------

  #sync(initial = false): Promise<void> {
    this.#syncing ??= (async () => {
      try {
        const shards = await this.#discovery.list(this.#abort.signal);
        if (this.#stopping && !initial) return;
        this.#topology.update(shards);
        this.#goneLeases.noteListing(this.#leaseSnapshot, this.#topology);
        await this.leases.ensureLeases(this.#topology.leaseSeeds());
      } catch (error) {
        if (initial) throw error;
        if (this.#stopping) return;
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
        } while (this.#tickAgain && !this.#stopping);
      } catch (error) {
        if (!this.#stopping) this.#report(error, 'lease tick failed');
      } finally {
        this.#ticking = undefined;
      }
    })();
    return this.#ticking;
  }

  async #tickOnce(): Promise<void> {
    if (this.#stopping) return;
    const reading = () => [...this.sessions.values()].filter((s) => s.state === 'reading').length;
    await this.leases.heartbeat(reading());
    const [leases, hosts, now] = await Promise.all([
      this.leases.listLeases(),
      this.leases.liveHosts(),
      this.leases.now(),
    ]);
    this.#leaseSnapshot = leases;
    this.#letGo.clear();
    this.#hostsSnapshot = hosts;
    this.#snapshotNow = now;
    if (this.#stopping) return;

    const exclude = new Set<string>();
    for (const [id, failure] of this.#failed) {
      if (failure.reason === 'reader' && failure.atMs + RUNTIME_TIMING.failedReaderCooldownMs <= Date.now()) {
        this.#failed.delete(id);
      } else exclude.add(id);
    }
    // Shards still being let go here are not taken again until that finished.
    for (const [id, session] of this.sessions) if (session.state !== 'reading') exclude.add(id);
    const capacity = this.#shared.capacity(this);
    const plan = this.#allocator.plan({
      leases,
      topology: this.#topology,
      liveHosts: hosts,
      now,
      exclude,
      ...(capacity === this.o.maxShardConsumers ? {} : { maxShardConsumers: Math.max(0, capacity) }),
    });

    if (plan.warning?.message !== this.#lastWarning) {
      this.#lastWarning = plan.warning?.message;
      if (plan.warning !== undefined) {
        const { code, message, ...details } = plan.warning;
        this.o.logger.warn(details, message);
        this.events.emit('warning', { code, message, details: { ...details } });
      }
    }
    this.#shared.expect(this, Math.max(plan.target, reading() + plan.acquire.length));
    for (const shardId of plan.release) this.sessions.get(shardId)?.release('over-capacity');
    for (const { shardId } of plan.handOver) this.sessions.get(shardId)?.release('handoff');

    await executePlan(plan, {
      hostId: this.o.hostId,
      leases: this.leases,
      has: (shardId) => this.sessions.has(shardId),
      stopping: () => this.#stopping,
      begin: (lease, sent) => this.#begin(lease, sent),
      report: (error, message, shardId) => this.#report(error, message, shardId),
    });
    if (this.#stopping) return;
    await this.#goneLeases.remove(leases, this.#topology, now, () => this.#stopping);
  }

  // ---- sessions ------------------------------------------------------------------------------------

  #begin(lease: Lease, sent: number): void {
    const { shardId } = lease;
    const known = new Set(this.#leaseSnapshot.map((l) => l.shardId));
    const session = this.#factory.create(lease, sent, this.#topology.isRoot(shardId, known), {
      noteChildren: (children) => this.#topology.noteChildren(shardId, children),
      stopping: () => this.#stopping,
      report: (error, message) => this.#report(error, message, shardId),
      failed: (failure) => {
        // status() shows it at once; this host does not take it again ('reader' failures: after a cooldown).
        if (!this.#stopping) this.#failed.set(shardId, { ...failure, atMs: Date.now() });
        warnIfUnheard(this.o, this.#shared.hostEvents, shardId, failure);
      },
    });
    this.sessions.set(shardId, session);
    this.#failed.delete(shardId);
    session.start();
    void session.done.then(() => this.#sessionDone(session));
  }

  #sessionDone(session: ShardSession<T>): void {
    const { shardId } = session;
    if (this.sessions.get(shardId) === session) this.sessions.delete(shardId);
    const checkpoint = session.checkpoint;
    if (checkpoint !== undefined) this.#letGo.set(shardId, checkpoint);
    if (session.state === 'ended' && !this.#stopping) void this.#syncAndTick();
  }

  // ---- stop ----------------------------------------------------------------------------------------

  /** Stops the loops (no new lease is taken); the sessions go on until {@link releaseAll}. */
  async halt(): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#tickTimer);
    clearInterval(this.#syncTimer);
    this.#abort.abort();
    await this.#ticking;
    await this.#syncing;
  }

  /** Stops every reader with a final checkpoint and releases its lease; resolves to how many were held. */
  async releaseAll(): Promise<number> {
    const sessions = [...this.sessions.values()];
    const held = sessions.filter((s) => s.holdsLease).length;
    for (const session of sessions) session.release('stop');
    // Renewal goes on until every lease is released (or lost).
    await Promise.all(sessions.map((session) => session.done));
    await this.#renewal.stop();
    return held;
  }

  /**
   * Deletes every lease of the stream that no other host holds (after {@link releaseAll}).
   * Resolves to how many were deleted and how many another host holds.
   */
  async deleteLeases(): Promise<{ deleted: number; heldElsewhere: number }> {
    const [leases, now] = await Promise.all([this.leases.listLeases(), this.leases.now()]);
    let deleted = 0;
    let heldElsewhere = 0;
    for (const lease of leases) {
      if (this.#heldElsewhere(lease, now)) {
        heldElsewhere++;
        continue;
      }
      if (await this.leases.removeLease(lease.shardId, lease.counter)) deleted++;
      else heldElsewhere++;
    }
    return { deleted, heldElsewhere };
  }

  /** Leases of the stream another host holds now. */
  async countHeldElsewhere(): Promise<number> {
    const [leases, now] = await Promise.all([this.leases.listLeases(), this.leases.now()]);
    return leases.filter((l) => this.#heldElsewhere(l, now)).length;
  }

  #heldElsewhere(lease: Lease, now: number): boolean {
    return lease.owner !== undefined && lease.owner !== this.o.hostId && (lease.expiresAtMs ?? 0) > now;
  }

  /** Closes the lease store view and the metrics (after {@link releaseAll}). Idempotent. */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      await this.leases.close().catch((error: unknown) => this.#report(error, 'lease manager close failed'));
      this.#metrics?.close();
      this.events.clear();
    })();
    return this.#closed;
  }

  #report(error: unknown, message: string, shardId?: string): void {
    const e = reportedError(error, message);
    this.o.logger.warn({ shardId, err: serializeError(e) }, message);
    this.events.emit('error', shardId === undefined ? { error: e } : { error: e, shardId });
  }
}
