/**
 * `startCoordinator()`: one coordinator per host. It owns every decision (which shards exist, which
 * this host reads, when a child may start); worker threads only read.
 *
 * Loops, all on this thread:
 * - shard sync: ListShards at start, every `shardSyncIntervalMs` and at once when a shard ends;
 *   `ensureLeases` for every shard listed;
 * - lease tick, every `leaseRenewIntervalMs`: renew held leases first (never waiting on user code),
 *   then heartbeat, plan (Allocator) and acquire; a refused renew stops that shard's reader at once,
 *   and records are handed out only before a local deadline derived from the last good renew.
 */

import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { SerializedError, ShardPosition, ShardRecord, WorkerMessage } from '@shardline/common';
import {
  assertNever,
  createKinesisClient,
  deserializeError,
  ErrorCodes,
  isKinesisClient,
  PROTOCOL_VERSION,
  SHARD_END,
  ShardlineError,
  serializeError,
} from '@shardline/common';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import { Allocator } from './allocator.js';
import { ShardCheckpointer } from './checkpointer.js';
import { DeadLetterQueue } from './dead-letter.js';
import { Delivery } from './delivery.js';
import type {
  CoordinatorEventListener,
  CoordinatorEventMap,
  CoordinatorEventName,
  CoordinatorEventSource,
  LeaseLostReason,
  LeaseReleasedReason,
  StartPosition,
} from './events.js';
import { CoordinatorEvents } from './events.js';
import { ensureStreamConsumer } from './fan-out.js';
import { MemoryLeaseManager } from './leases/memory.js';
import { RedisLeaseManager } from './leases/redis.js';
import type { Checkpoint, HostInfo, Lease, LeaseManager } from './leases/types.js';
import { CoordinatorMetrics, type CoordinatorMetricsSnapshot } from './metrics.js';
import type { ModuleCoordinatorMessage, ModuleWorkerMessage } from './module-protocol.js';
import type { CoordinatorOptions, RecordBatch, ResolvedCoordinatorOptions } from './options.js';
import { resolveCoordinatorOptions } from './options.js';
import { listShardsApi, ShardDiscovery } from './shard-discovery.js';
import { CrashGuard, type ReaderExit, type ReaderHandle, Supervisor } from './supervisor.js';
import { Topology } from './topology.js';

/** A shard as `status()` shows it. */
export interface ShardStatus {
  shardId: string;
  state: 'reading' | 'leased-elsewhere' | 'available' | 'waiting-for-parent' | 'ended' | 'failing';
  owner?: string;
  /** `'SHARD_END'`, a sequence number, or `<sequenceNumber>:<subSequenceNumber>`. */
  checkpoint?: string;
  parentShardIds: string[];
  childShardIds: string[];
  millisBehindLatest?: number;
  /** Records handed to the handler or the iterator by this host since it started. */
  recordsDelivered: number;
  /** Throttled GetRecords calls on this host since it started. */
  throttled: number;
  /** ISO time of the last GetRecords response. */
  lastFetchAt?: string;
  thread?: number;
}

/** `coordinator.status()`: plain, JSON-serialisable. */
export interface CoordinatorStatus {
  hostId: string;
  group: string;
  stream: string;
  state: 'starting' | 'running' | 'stopping' | 'stopped';
  shards: ShardStatus[];
  hosts: Array<{ hostId: string; shards: number; lastSeenAt: string }>;
  resharding: boolean;
  bufferedRecords: number;
}

/** What `startCoordinator()` resolves with. */
export interface Coordinator<T = unknown> extends AsyncIterable<RecordBatch<T>>, CoordinatorEventSource {
  readonly hostId: string;
  /**
   * Graceful: stop fetching, finish the batches in flight, write final checkpoints, release leases.
   * Idempotent. In iterator mode the batch in hand counts once the loop asks for the next one or
   * leaves: call stop() after the loop, or abort the `signal` from inside it.
   */
  stop(): Promise<void>;
  status(): CoordinatorStatus;
}

const COORDINATOR_TIMING = Object.freeze({
  /** Part of the remaining lease time kept as margin before the local deadline. */
  deadlineMarginFraction: 0.2,
  /** A shard whose reader failed fatally is retried after this long. */
  failedReaderCooldownMs: 30_000,
});

interface ShardStats {
  /** Pool index of the thread running the shard's reader (the latest one). */
  thread?: number;
  recordsDelivered: number;
  throttled: number;
  lastFetchAtMs?: number;
  millisBehindLatest?: number;
}

interface ActiveShard {
  shardId: string;
  counter: number;
  reader: ReaderHandle;
  checkpointer: ShardCheckpointer;
  /** performance.now() past which no record of this shard is handed out. */
  deadline: number;
  state: 'reading' | 'ending' | 'releasing' | 'lost';
  /** Resolves once the shard is fully let go (reader exited, lease released or lost). */
  done: Promise<void> | undefined;
}

function formatCheckpoint(c: Checkpoint | undefined): string | undefined {
  if (c === undefined) return undefined;
  if (c === SHARD_END) return SHARD_END;
  return c.subSequenceNumber === undefined ? c.sequenceNumber : `${c.sequenceNumber}:${c.subSequenceNumber}`;
}

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
  readonly #delivery: Delivery<T>;
  readonly #deadLetter: DeadLetterQueue | undefined;
  readonly #metrics: CoordinatorMetrics | undefined;
  readonly #crashGuard = new CrashGuard();
  readonly #abort = new AbortController();
  readonly #active = new Map<string, ActiveShard>();
  readonly #stats = new Map<string, ShardStats>();
  /** Shards stopped here after handler failures: not taken again by this host. */
  readonly #failing = new Set<string>();
  /** Shards whose reader failed fatally: performance.now() until which they are not taken again. */
  readonly #cooldown = new Map<string, number>();
  #state: CoordinatorStatus['state'] = 'starting';
  #leaseSnapshot: Lease[] = [];
  /** Checkpoints of leases this host let go since the last snapshot (the snapshot may predate them). */
  readonly #letGoCheckpoints = new Map<string, Checkpoint>();
  #hostsSnapshot: HostInfo[] = [];
  #snapshotNow = 0;
  #tickTimer: NodeJS.Timeout | undefined;
  #syncTimer: NodeJS.Timeout | undefined;
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
    this.#delivery = new Delivery<T>({
      mode: o.delivery === 'handler' ? 'handler' : 'iterator',
      handler: o.handler,
      codec: o.codec,
      maxBufferedRecords: o.maxBufferedRecords,
      onHandlerError: o.onHandlerError,
      events: this.#events,
      logger: o.logger,
      deadLetter: (shardId, records, error, attempts) =>
        this.#sendDeadLetter(shardId, records, error, attempts),
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
    if (this.#o.delivery !== 'iterator') {
      throw new ShardlineError(
        ErrorCodes.INVALID_OPTION,
        `this coordinator delivers to its ${this.#o.delivery === 'handler' ? 'handler' : 'handlerModule'}: it cannot also be iterated (start it without handler and handlerModule to use for await)`,
      );
    }
    const delivery = this.#delivery;
    return { next: () => delivery.next(), return: () => delivery.return() };
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
    this.#tickTimer = setInterval(() => void this.#tick(), this.#o.leaseRenewIntervalMs);
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
    const leases = new Map(this.#leaseSnapshot.map((l) => [l.shardId, l]));
    const checkpointOf = (id: string): Checkpoint | undefined =>
      this.#active.get(id)?.checkpointer.checkpoint ??
      this.#letGoCheckpoints.get(id) ??
      leases.get(id)?.checkpoint;
    const shards: ShardStatus[] = this.#topology.shardIds().map((shardId) => {
      const lease = leases.get(shardId);
      const active = this.#active.get(shardId);
      const stats = this.#stats.get(shardId);
      const checkpoint = checkpointOf(shardId);
      const phase = this.#topology.phase(shardId, checkpointOf);
      const heldElsewhere =
        lease?.owner !== undefined &&
        lease.owner !== this.#o.hostId &&
        (lease.expiresAtMs ?? 0) > this.#snapshotNow;
      let state: ShardStatus['state'];
      if (this.#failing.has(shardId) || this.#cooldown.has(shardId)) state = 'failing';
      else if (active !== undefined && active.state !== 'lost') state = 'reading';
      else if (phase === 'ended') state = 'ended';
      else if (heldElsewhere) state = 'leased-elsewhere';
      else if (phase === 'waiting-for-parent') state = 'waiting-for-parent';
      else state = 'available';
      const entry: ShardStatus = {
        shardId,
        state,
        parentShardIds: this.#topology.parentsOf(shardId),
        childShardIds: this.#topology.childrenOf(shardId),
        recordsDelivered: stats?.recordsDelivered ?? 0,
        throttled: stats?.throttled ?? 0,
      };
      const owner = state === 'reading' ? this.#o.hostId : heldElsewhere ? lease?.owner : undefined;
      if (owner !== undefined) entry.owner = owner;
      const formatted = formatCheckpoint(checkpoint);
      if (formatted !== undefined) entry.checkpoint = formatted;
      if (stats?.millisBehindLatest !== undefined) entry.millisBehindLatest = stats.millisBehindLatest;
      if (stats?.lastFetchAtMs !== undefined) entry.lastFetchAt = new Date(stats.lastFetchAtMs).toISOString();
      if (state === 'reading' && stats?.thread !== undefined) entry.thread = stats.thread;
      return entry;
    });
    return {
      hostId: this.#o.hostId,
      group: this.#o.group,
      stream: this.#o.stream,
      state: this.#state,
      shards,
      hosts: this.#hostsSnapshot.map((h) => ({
        hostId: h.hostId,
        shards: h.shards,
        lastSeenAt: new Date(h.lastSeenAtMs).toISOString(),
      })),
      resharding: this.#topology.resharding(checkpointOf),
      bufferedRecords: this.#delivery.bufferedRecords,
    };
  }

  // ---- shard sync ----------------------------------------------------------------------------------

  #sync(initial = false): Promise<void> {
    this.#syncing ??= (async () => {
      try {
        const shards = await this.#discovery.list(this.#abort.signal);
        if (this.#stopping !== undefined && !initial) return;
        this.#topology.update(shards);
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
        this.#report(error, 'lease tick failed');
      } finally {
        this.#ticking = undefined;
      }
    })();
    return this.#ticking;
  }

  async #tickOnce(): Promise<void> {
    await this.#renewAll();
    if (this.#stopping !== undefined) return;
    const held = [...this.#active.values()].filter((a) => a.state === 'reading').length;
    await this.#leases.heartbeat(held);
    const [leases, hosts, now] = await Promise.all([
      this.#leases.listLeases(),
      this.#leases.liveHosts(),
      this.#leases.now(),
    ]);
    this.#leaseSnapshot = leases;
    this.#letGoCheckpoints.clear();
    this.#hostsSnapshot = hosts;
    this.#snapshotNow = now;
    if (this.#stopping !== undefined) return;

    const nowMono = performance.now();
    for (const [id, until] of this.#cooldown) if (until <= nowMono) this.#cooldown.delete(id);
    const exclude = new Set<string>([...this.#failing, ...this.#cooldown.keys()]);
    // Shards still being let go here are not taken again until that finished.
    for (const [id, active] of this.#active) if (active.state !== 'reading') exclude.add(id);
    const plan = this.#allocator.plan({ leases, topology: this.#topology, liveHosts: hosts, now, exclude });

    if (plan.warning?.message !== this.#lastWarning) {
      this.#lastWarning = plan.warning?.message;
      if (plan.warning !== undefined) {
        const { code, message, ...details } = plan.warning;
        this.#o.logger.warn(details, message);
        this.#events.emit('warning', { code, message, details: { ...details } });
      }
    }
    const reading = [...this.#active.values()].filter((x) => x.state === 'reading').length;
    this.#delivery.expectLanes(Math.max(plan.target, reading + plan.acquire.length));
    for (const shardId of plan.release) {
      const active = this.#active.get(shardId);
      if (active?.state === 'reading') void this.#letGo(active, 'over-capacity');
    }
    for (const { shardId } of plan.handOver) {
      const active = this.#active.get(shardId);
      if (active?.state === 'reading') void this.#letGo(active, 'handoff');
    }

    const candidates = [...plan.acquire];
    const spares = [...plan.spares];
    while (candidates.length > 0) {
      if (this.#stopping !== undefined) return;
      const shardId = candidates.shift()!;
      if (this.#active.has(shardId)) continue;
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
  }

  #deadlineFrom(sent: number, lease: Lease): number {
    const remaining =
      lease.expiresAtMs !== undefined && lease.readAtMs !== undefined
        ? lease.expiresAtMs - lease.readAtMs
        : this.#o.leaseDurationMs;
    return sent + remaining - remaining * COORDINATOR_TIMING.deadlineMarginFraction;
  }

  async #renewAll(): Promise<void> {
    // Shards finishing a batch before release are renewed too: a slow handler must not cost a lease.
    const reading = [...this.#active.values()].filter((a) => a.state !== 'lost');
    await Promise.all(
      reading.map(async (active) => {
        const sent = performance.now();
        let lease: Lease | undefined;
        try {
          lease = await this.#leases.renew(active.shardId, active.counter);
        } catch (error) {
          if (active.state === 'lost') return;
          if (performance.now() >= active.deadline) this.#lose(active, 'renew-failed');
          else this.#report(error, 'lease renewal failed', active.shardId);
          return;
        }
        if (active.state === 'lost') return;
        if (lease === undefined) {
          this.#lose(active, 'fenced');
          return;
        }
        active.deadline = this.#deadlineFrom(sent, lease);
        this.#delivery.resume(active.shardId);
        this.#sendDeadline(active);
        if (
          active.state === 'reading' &&
          lease.handoffTo !== undefined &&
          lease.handoffTo !== this.#o.hostId
        ) {
          void this.#letGo(active, 'handoff');
        }
      }),
    );
  }

  // ---- one shard's life ----------------------------------------------------------------------------

  #begin(lease: Lease, sent: number): void {
    const shardId = lease.shardId;
    const initial = lease.checkpoint === SHARD_END ? undefined : lease.checkpoint;
    const checkpointer = new ShardCheckpointer({
      shardId,
      counter: lease.counter,
      leases: this.#leases,
      mode: this.#o.checkpoint.mode,
      intervalMs: this.#o.checkpoint.intervalMs,
      events: this.#events,
      logger: this.#o.logger,
      initial,
      onLeaseLost: () => {
        const active = this.#active.get(shardId);
        if (active?.checkpointer === checkpointer && active.state !== 'lost') this.#lose(active, 'fenced');
      },
    });
    const active: ActiveShard = {
      shardId,
      counter: lease.counter,
      checkpointer,
      deadline: this.#deadlineFrom(sent, lease),
      state: 'reading',
      done: undefined,
      reader: undefined as unknown as ReaderHandle,
    };
    this.#active.set(shardId, active);
    this.#failing.delete(shardId);
    const payload: { shardId: string; counter: number; checkpoint?: string } = {
      shardId,
      counter: lease.counter,
    };
    const formatted = formatCheckpoint(lease.checkpoint);
    if (formatted !== undefined) payload.checkpoint = formatted;
    this.#events.emit('lease.acquired', payload);
    this.#startReader(active, initial);
  }

  #startReader(active: ActiveShard, checkpoint: ShardPosition | undefined): void {
    const { shardId } = active;
    const o = this.#o;
    const hasParents = this.#topology.parentsOf(shardId).length > 0;
    const initialPosition = hasParents ? 'TRIM_HORIZON' : o.initialPosition;
    const options: ShardReaderTaskOptions = {
      shardId,
      initialPosition,
      maxRecordsPerFetch: o.maxRecordsPerFetch,
      fetchRatePerShard: o.fetchRatePerShard,
      idleFetchIntervalMs: o.idleFetchIntervalMs,
      // A custom Codec cannot cross threads: the worker sends raw bytes and it decodes here.
      codec: o.codecName ?? 'raw',
      encoding: o.codecName === undefined ? 'bytes' : o.codecName === 'raw' ? 'bytes' : 'decoded',
      kinesis: o.workerKinesisConfig,
    };
    if (o.streamName !== undefined) options.streamName = o.streamName;
    if (o.streamArn !== undefined) options.streamArn = o.streamArn;
    if (checkpoint !== undefined) options.checkpoint = { ...checkpoint };
    if (this.#consumerArn !== undefined && o.fanOut !== undefined) {
      const { transport, subscriptionRenewMs } = o.fanOut;
      options.fanOut = { consumerArn: this.#consumerArn, transport, subscriptionRenewMs };
    }
    const stats = this.#statsOf(shardId);
    const reader = this.#supervisor.start(options, (message) => this.#onMessage(active, message));
    active.reader = reader;
    this.#delivery.open(shardId, {
      send: (message) => reader.send(message),
      processed: (position, records) => {
        stats.recordsDelivered += records;
        active.checkpointer.processed(position);
      },
      checkpoint: (position) => active.checkpointer.write(position),
      done: (bytes) => this.#metrics?.batchDone(bytes),
      failed: (error) => this.#shardFailed(active, error),
      canDeliver: () => active.state !== 'lost' && performance.now() < active.deadline,
    });
    const position: StartPosition =
      checkpoint !== undefined
        ? checkpoint.subSequenceNumber === undefined
          ? 'AFTER_SEQUENCE_NUMBER'
          : 'AT_SEQUENCE_NUMBER'
        : typeof initialPosition === 'string'
          ? initialPosition
          : 'AT_TIMESTAMP';
    const started: {
      shardId: string;
      position: StartPosition;
      sequenceNumber?: string;
      subSequenceNumber?: number;
    } = { shardId, position };
    if (checkpoint !== undefined) {
      started.sequenceNumber = checkpoint.sequenceNumber;
      if (checkpoint.subSequenceNumber !== undefined)
        started.subSequenceNumber = checkpoint.subSequenceNumber;
    }
    this.#events.emit('shard.started', started);
    this.#sendDeadline(active);
    void reader.exited
      .then((exit) => this.#onExit(active, reader, exit))
      .catch((error: unknown) => this.#report(error, 'handling the end of a reader failed', shardId));
  }

  /** Answers a request of a `handlerModule` worker once `work` settled. */
  #answer(active: ActiveShard, id: number, work: Promise<void>): void {
    const answer = (error?: unknown) => {
      const result: ModuleCoordinatorMessage = { v: PROTOCOL_VERSION, type: 'module-result', id };
      if (error !== undefined) result.error = serializeError(error);
      active.reader.send(result);
    };
    work.then(() => answer(), answer);
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

  /** `onHandlerError.then: 'stop-shard'` applied to the shard. */
  #shardFailed(active: ActiveShard, error: ShardlineError): void {
    this.#failing.add(active.shardId);
    this.#o.logger.warn(
      { shardId: active.shardId, err: serializeError(error) },
      'shard stopped after handler failures',
    );
    if (active.state === 'reading') void this.#letGo(active, 'failed');
  }

  /** `handlerModule` delivery: tells the worker until when it may hand out records (the lease deadline). */
  #sendDeadline(active: ActiveShard): void {
    if (this.#o.delivery !== 'handler-module') return;
    const epochMs = active.state === 'lost' ? 0 : Date.now() + (active.deadline - performance.now());
    active.reader.send({ v: PROTOCOL_VERSION, type: 'module-deadline', epochMs });
  }

  /** For the metrics' gauges, at each scrape. */
  #metricsSnapshot(): CoordinatorMetricsSnapshot {
    let leases = 0;
    const shards: Array<{ shardId: string; millisBehindLatest: number | undefined }> = [];
    for (const active of this.#active.values()) {
      if (active.state === 'lost') continue;
      leases++;
      if (active.state === 'reading') {
        shards.push({
          shardId: active.shardId,
          millisBehindLatest: this.#stats.get(active.shardId)?.millisBehindLatest,
        });
      }
    }
    return { leases, bufferedRecords: this.#delivery.bufferedRecords, shards };
  }

  #statsOf(shardId: string): ShardStats {
    let stats = this.#stats.get(shardId);
    if (stats === undefined) {
      stats = { recordsDelivered: 0, throttled: 0 };
      this.#stats.set(shardId, stats);
    }
    return stats;
  }

  #onMessage(active: ActiveShard, message: WorkerMessage | ModuleWorkerMessage): void {
    const { shardId } = active;
    this.#metrics?.onMessage(message);
    switch (message.type) {
      case 'started': {
        const thread = this.#supervisor.threadIndex(message.threadId);
        if (thread !== undefined) this.#statsOf(shardId).thread = thread;
        return;
      }
      case 'module-batch':
        this.#delivery.charge(shardId, message.records, message.bytes);
        return;
      case 'module-done':
        this.#delivery.settle(shardId, message.records, message.bytes);
        return;
      case 'module-progress':
        this.#statsOf(shardId).recordsDelivered += message.delivered;
        active.checkpointer.processed(message.position);
        return;
      case 'module-failed':
        this.#shardFailed(active, deserializeError(message.error));
        return;
      case 'module-checkpoint':
        this.#answer(active, message.id, active.checkpointer.write(message.position));
        return;
      case 'module-dead-letter': {
        const send = this.#sendDeadLetter(
          shardId,
          message.records as ShardRecord<unknown>[],
          deserializeError(message.error),
          message.attempts,
        );
        this.#answer(active, message.id, send);
        return;
      }
      case 'module-event':
        if (message.event === 'handler.failed') {
          const payload = message.payload as unknown as CoordinatorEventMap['handler.failed'];
          this.#events.emit('handler.failed', {
            ...payload,
            error: deserializeError(payload.error as unknown as SerializedError),
          });
        } else {
          this.#events.emit(
            'batch.processed',
            message.payload as unknown as CoordinatorEventMap['batch.processed'],
          );
        }
        return;
      case 'batch':
        this.#delivery.push(shardId, message);
        return;
      case 'fetched': {
        const stats = this.#statsOf(shardId);
        stats.lastFetchAtMs = message.lastFetchAtMs;
        if (message.millisBehindLatest !== undefined) stats.millisBehindLatest = message.millisBehindLatest;
        return;
      }
      case 'throttled':
        this.#statsOf(shardId).throttled += message.count;
        this.#events.emit('throttled', { shardId, delayMs: message.delayMs });
        return;
      case 'error': {
        const error = deserializeError(message.error);
        if (message.fatal) {
          this.#o.logger.error({ shardId, err: message.error }, 'shard reader failed');
          this.#events.emit('error', { error, shardId });
        } else this.#o.logger.debug({ shardId, err: message.error }, 'shard reader retrying after an error');
        return;
      }
      case 'log': {
        const fields = { ...message.fields, shardId };
        this.#o.logger[message.level](fields, message.message);
        return;
      }
      case 'shard-end':
        if (message.childShardIds !== undefined) this.#topology.noteChildren(shardId, message.childShardIds);
        return;
      default:
        assertNever(message);
    }
  }

  async #onExit(active: ActiveShard, reader: ReaderHandle, exit: ReaderExit): Promise<void> {
    if (this.#active.get(active.shardId) !== active || active.reader !== reader) return;
    if (active.state !== 'reading') return; // let go deliberately: #letGo / #lose finish the job
    const { shardId } = active;
    if (exit.kind === 'crashed') {
      const restart = this.#stopping === undefined && this.#crashGuard.crashed(shardId);
      this.#o.logger.error({ shardId, err: serializeError(exit.error), restart }, 'worker thread crashed');
      this.#events.emit('worker.crashed', {
        thread: this.#stats.get(shardId)?.thread ?? -1,
        error: exit.error,
        shardIds: [shardId],
        respawned: restart,
      });
      if (!restart) {
        if (this.#stopping === undefined) this.#failing.add(shardId);
        await this.#letGo(active, 'failed');
        return;
      }
      // The lease is still ours: resume where processing got to (batches queued here are read again).
      await this.#delivery.close(shardId);
      if (active.state !== 'reading' || this.#stopping !== undefined) return;
      this.#startReader(active, active.checkpointer.resumeFrom);
      return;
    }
    const { outcome } = exit;
    switch (outcome.state) {
      case 'ended':
        await this.#endShard(active, outcome.childShardIds ?? []);
        return;
      case 'failed':
        this.#cooldown.set(shardId, performance.now() + COORDINATOR_TIMING.failedReaderCooldownMs);
        await this.#letGo(active, 'failed');
        return;
      case 'stopped':
        await this.#letGo(active, 'stop');
        return;
      default:
        assertNever(outcome.state);
    }
  }

  async #endShard(active: ActiveShard, childShardIds: string[]): Promise<void> {
    const { shardId } = active;
    active.state = 'ending';
    const work = (async () => {
      await this.#delivery.drained(shardId);
      // A failed batch (stop-shard), a lost lease or a stop that dropped queued batches leaves the
      // shard unfinished: no SHARD_END.
      if (this.#failing.has(shardId) || (active.state as ActiveShard['state']) === 'lost') {
        await this.#finishLetGo(active, 'failed');
        return;
      }
      if (this.#stopping !== undefined) {
        await this.#finishLetGo(active, 'stop');
        return;
      }
      await this.#delivery.close(shardId);
      try {
        await active.checkpointer.end();
      } catch {
        await this.#finishLetGo(active, 'failed');
        return;
      }
      this.#topology.noteChildren(shardId, childShardIds);
      await this.#release(active, 'shard-end');
      this.#events.emit('shard.ended', { shardId, childShardIds: this.#topology.childrenOf(shardId) });
      this.#active.delete(shardId);
      if (this.#stopping === undefined) void this.#syncAndTick();
    })();
    active.done = work;
    await work;
  }

  /** Stops the reader, finishes the batch in flight, checkpoints (auto), releases the lease. */
  #letGo(active: ActiveShard, reason: LeaseReleasedReason): Promise<void> {
    if (active.done !== undefined) return active.done;
    active.state = 'releasing';
    active.done = this.#finishLetGo(active, reason);
    return active.done;
  }

  async #finishLetGo(active: ActiveShard, reason: LeaseReleasedReason): Promise<void> {
    active.state = active.state === 'lost' ? 'lost' : 'releasing';
    active.reader.stop(reason);
    await this.#delivery.close(active.shardId);
    // With handlerModule the batch in flight is in the worker: its progress arrives before the exit.
    if (this.#o.delivery === 'handler-module') await active.reader.exited;
    if ((active.state as ActiveShard['state']) !== 'lost') {
      await active.checkpointer.flush().catch(() => undefined);
      await this.#release(active, reason);
    }
    await active.reader.exited;
    if (this.#active.get(active.shardId) === active) this.#active.delete(active.shardId);
  }

  async #release(active: ActiveShard, reason: LeaseReleasedReason): Promise<void> {
    active.checkpointer.close();
    const checkpoint = active.checkpointer.checkpoint;
    if (checkpoint !== undefined) this.#letGoCheckpoints.set(active.shardId, checkpoint);
    try {
      const released = await this.#leases.release(active.shardId, active.counter);
      if (released)
        this.#events.emit('lease.released', { shardId: active.shardId, counter: active.counter, reason });
    } catch (error) {
      // The lease runs out on its own; nobody else could have taken it meanwhile.
      this.#report(error, 'lease release failed', active.shardId);
    }
  }

  /** The lease is gone (or may be): stop handing out records and reading at once, no checkpoint. */
  #lose(active: ActiveShard, reason: LeaseLostReason): void {
    if (active.state === 'lost') return;
    active.state = 'lost';
    active.checkpointer.close();
    active.reader.stop('lease-lost');
    this.#sendDeadline(active);
    this.#o.logger.warn({ shardId: active.shardId, reason }, 'lease lost');
    this.#events.emit('lease.lost', { shardId: active.shardId, counter: active.counter, reason });
    active.done ??= (async () => {
      await this.#delivery.close(active.shardId);
      await active.reader.exited;
      if (this.#active.get(active.shardId) === active) this.#active.delete(active.shardId);
    })();
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
    this.#delivery.stopping();
    await Promise.all(
      [...this.#active.values()].map((active) =>
        active.state === 'reading' ? this.#letGo(active, 'stop') : (active.done ?? Promise.resolve()),
      ),
    );
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
