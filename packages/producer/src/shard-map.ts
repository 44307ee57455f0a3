/**
 * The producer's shard map: the stream's limits (DescribeStreamSummary, once, before the first listing),
 * the open shards from ListShards (all pages), the queue and pacing state of each, the routing of records
 * to them, and the refreshes (initial, periodic, after a misrouted record, after a gap). The predicted
 * shard only groups and paces: Kinesis routes by hash key itself, so a stale map never loses or misplaces
 * a record; it only mis-paces until the map is refreshed. On an `AUTO` stream Kinesis picks the shard:
 * records go to the shard queues in turn, and an answer's shard never counts as misrouted.
 */
// Time comes from the global `performance` (not an import from node:perf_hooks) so that fake timers
// installed by tests drive the refresh timers here as they do elsewhere in the producer.
import type { KinesisClient, Shard } from '@aws-sdk/client-kinesis';
import {
  isRetriable,
  type Logger,
  listAllShards,
  partitionKeyToHashKey,
  RateLimiter,
  retry,
  type ShardlineError,
  ShardlineOptionError,
  ShardRouter,
  type StreamLimits,
} from '@shardline/common';
import type { RecordBuffer } from './buffer.js';
import { Deque } from './deque.js';
import type { ProducerEmitter, RefreshReason } from './events.js';
import type { ResolvedProducerOptions } from './options.js';
import { checkRecordSize, describeCallError, type PendingRecord, ShardState } from './records.js';
import { readStreamLimits } from './stream-summary.js';

/** Least time between two refreshes caused by misrouted records, so a burst of them costs one ListShards. */
const MISROUTE_REFRESH_MIN_MS = 1_000;
/** Wait before retrying a shard map that could not be used (a gap or an overlap mid-resharding). */
const BAD_MAP_RETRY_MS = 250;

export interface ShardMapDeps {
  options: ResolvedProducerOptions<unknown>;
  client: KinesisClient;
  /** Aborts ListShards calls and their retries. */
  signal: AbortSignal;
  logger: Logger;
  events: ProducerEmitter;
  buffer: RecordBuffer;
  /** The map changed and records moved: something may be sendable. */
  changed(): void;
}

export class ShardMap {
  readonly #deps: ShardMapDeps;
  /** Ordered mode asked for (`maxInFlightPerShard: 1`); not kept on an `AUTO` stream. */
  readonly #orderedOption: boolean;
  #limits: StreamLimits | undefined;
  /** Set when the producer cannot write to this stream as configured: every record rejects with it. */
  #fatal: ShardlineError | undefined;
  /** `AUTO` streams: the next shard queue in turn. */
  #turn = 0;
  #router: ShardRouter | undefined;
  #shards = new Map<string, ShardState>();
  #list: ShardState[] = [];
  readonly #unrouted = new Deque<PendingRecord>();
  /** Ordered mode: shards gone from the map with calls still in flight; they hold the shards they overlap. */
  #draining: ShardState[] = [];
  #refreshing: Promise<void> | undefined;
  #refreshAgain: RefreshReason | undefined;
  #lastMisrouteRefresh = Number.NEGATIVE_INFINITY;
  #refreshTimer: NodeJS.Timeout | undefined;
  #badMapTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(deps: ShardMapDeps) {
    this.#deps = deps;
    this.#orderedOption = deps.options.maxInFlightPerShard === 1;
  }

  /** The stream's limits, once read (before the first shard map). */
  get limits(): StreamLimits | undefined {
    return this.#limits;
  }

  /** Why no record can be written (aggregate: true on an `AUTO` stream), or undefined. */
  get fatal(): ShardlineError | undefined {
    return this.#fatal;
  }

  /** Kinesis picks the shard (RecordDistributionStrategy AUTO). */
  get auto(): boolean {
    return this.#limits?.distribution === 'AUTO';
  }

  /** Ordered mode in force: asked for, and the stream places records by key. */
  get #ordered(): boolean {
    return this.#orderedOption && !this.auto;
  }

  /** Whether a shard map was loaded (nothing can be sent before). */
  get loaded(): boolean {
    return this.#router !== undefined;
  }

  /** The open shards in hash-key order; a new array each time the map changes. */
  get list(): readonly ShardState[] {
    return this.#list;
  }

  /** Puts an accepted record in its shard queue (tail, or head for a retry), or keeps it for a later map. */
  route(record: PendingRecord, front: boolean): void {
    if (this.#fatal !== undefined || (!record.sizeChecked && this.#limits !== undefined)) {
      const error = this.#fatal ?? checkRecordSize(record, this.#limits);
      if (error !== undefined) {
        this.#reject([record], error);
        return;
      }
    }
    const router = this.#router;
    if (router === undefined) {
      this.#unroute(record, front);
      this.#ensureLoaded();
      return;
    }
    let shard: ShardState | undefined;
    if (this.#list.length === 1) {
      shard = this.#list[0];
    } else if (this.auto) {
      // Kinesis ignores the keys: spreading the records in turn keeps the shards' pacing even.
      shard = this.#list[this.#turn++ % this.#list.length];
    } else {
      try {
        record.hashKey ??= partitionKeyToHashKey(record.partitionKey);
        shard = this.#shards.get(router.shardForHashKey(record.hashKey));
      } catch (error) {
        // A gap in the shard map (mid-resharding): wait for a refresh.
        this.#deps.logger.debug(
          { err: error },
          'producer: no open shard for a record; refreshing the shard map',
        );
        this.#unroute(record, front);
        this.#scheduleBadMapRefresh('gap');
        return;
      }
    }
    if (shard === undefined) {
      this.#unroute(record, front);
      this.#scheduleBadMapRefresh('gap');
      return;
    }
    if (front) shard.queue.unshift(record);
    else shard.queue.push(record);
    shard.queuedBytes += record.bytes;
  }

  /** A record was acknowledged on another shard than predicted: the map is stale (at most one refresh a second). */
  misrouted(): void {
    if (this.auto) return;
    if (performance.now() - this.#lastMisrouteRefresh >= MISROUTE_REFRESH_MIN_MS) {
      this.#lastMisrouteRefresh = performance.now();
      void this.refresh('misrouted');
    }
  }

  /**
   * A call carrying entries of these shards was answered (their inFlight already counted down). A closed
   * shard with nothing in flight any more releases the shards it held. The answer's failed records are
   * re-queued right after this, before the next pump: they go to the head of the shards this releases.
   */
  callEnded(shards: readonly ShardState[]): void {
    if (this.#draining.length === 0) return;
    let drained = false;
    for (const shard of shards) {
      if (!shard.open && shard.inFlight === 0 && this.#draining.includes(shard)) {
        this.#draining = this.#draining.filter((d) => d !== shard);
        drained = true;
      }
    }
    if (drained) this.#updateHolds();
  }

  refresh(reason: RefreshReason): Promise<void> {
    if (this.#refreshing !== undefined) {
      this.#refreshAgain ??= reason;
      return this.#refreshing;
    }
    this.#refreshing = this.#load(reason).finally(() => {
      this.#refreshing = undefined;
      let again = this.#refreshAgain;
      this.#refreshAgain = undefined;
      // Records admitted while a failed first load was rejecting the others still need a shard map.
      if (again === undefined && this.#router === undefined && this.#unrouted.length > 0) again = 'initial';
      if (again !== undefined && !this.#stopped) void this.refresh(again);
    });
    return this.#refreshing;
  }

  /** No more refreshes; timers cleared. */
  stop(): void {
    this.#stopped = true;
    if (this.#refreshTimer !== undefined) clearInterval(this.#refreshTimer);
    if (this.#badMapTimer !== undefined) clearTimeout(this.#badMapTimer);
    this.#refreshTimer = undefined;
    this.#badMapTimer = undefined;
  }

  /** Removes and returns every queued record: those waiting for a map, then each shard's. */
  drain(): PendingRecord[] {
    const out = this.#unrouted.drain();
    for (const shard of this.#list) out.push(...shard.queue.drain());
    return out;
  }

  /**
   * Keeps a record until a shard map can place it. A retry goes to the head (its key-mates that arrived
   * meanwhile are behind it); retries are handed over last first, so they keep their order.
   */
  #unroute(record: PendingRecord, front: boolean): void {
    if (front) this.#unrouted.unshift(record);
    else this.#unrouted.push(record);
  }

  #ensureLoaded(): void {
    if (this.#router === undefined && this.#refreshing === undefined && !this.#stopped) {
      void this.refresh('initial');
    }
  }

  #scheduleBadMapRefresh(reason: 'gap'): void {
    if (this.#badMapTimer !== undefined || this.#stopped) return;
    this.#badMapTimer = setTimeout(() => {
      this.#badMapTimer = undefined;
      void this.refresh(reason);
    }, BAD_MAP_RETRY_MS);
  }

  async #load(reason: RefreshReason): Promise<void> {
    const { options, logger, events } = this.#deps;
    let open: Shard[];
    try {
      if (this.#limits === undefined) {
        const limits = await readStreamLimits(this.#deps);
        if (this.#stopped) return;
        this.#useLimits(limits);
        if (this.#fatal !== undefined) return;
      }
      open = await retry(() => this.#listOpenShards(), {
        retries: options.retry.retries,
        backoffMs: options.retry.backoffMs,
        signal: this.#deps.signal,
        shouldRetry: isRetriable,
        onRetry: (error, attempt, delayMs) =>
          logger.warn({ err: error, attempt, delayMs }, 'producer: ListShards failed; retrying'),
      });
    } catch (error) {
      if (this.#stopped) return;
      const failure = describeCallError(options, error, 'ListShards');
      if (this.#router === undefined) {
        // Nothing can be sent without a shard map: the waiting records fail now, not after endless retries.
        this.#reject(this.#unrouted.drain(), failure);
      } else {
        logger.warn({ err: failure }, 'producer: shard map refresh failed; keeping the current one');
        events.emit('error', { error: failure, records: 0 });
      }
      return;
    }
    if (this.#stopped) return;
    let router: ShardRouter;
    try {
      router = new ShardRouter(
        open.map((s) => ({
          shardId: s.ShardId!,
          startingHashKey: s.HashKeyRange!.StartingHashKey!,
          endingHashKey: s.HashKeyRange!.EndingHashKey!,
        })),
      );
    } catch (error) {
      // Mid-resharding a listing can show overlapping or no open shards: look again shortly.
      logger.debug({ err: error }, 'producer: unusable shard map; retrying');
      this.#scheduleBadMapRefresh('gap');
      return;
    }
    this.#apply(router, open, reason);
  }

  /** Applies the stream's limits: the records waiting for them are checked when they are routed. */
  #useLimits(limits: StreamLimits): void {
    const { options, logger } = this.#deps;
    this.#limits = limits;
    if (limits.distribution !== 'AUTO') return;
    if (options.aggregate) {
      const stream = options.streamArn ?? options.streamName;
      // Refused rather than sent plain: KCL readers drop KPL aggregates on AUTO streams, so a consumer
      // of this stream could lose them silently, and a silent switch would change what consumers receive.
      this.#fatal = new ShardlineOptionError(
        'aggregate',
        `must be false for stream '${stream}': its RecordDistributionStrategy is AUTO, where Kinesis picks ` +
          'the shard and KCL consumers drop KPL aggregates (send plain records, or use a framed codec)',
      );
      logger.error({ err: this.#fatal }, 'producer: aggregate: true on an AUTO stream; records rejected');
      this.#reject(this.#unrouted.drain(), this.#fatal);
      return;
    }
    if (this.#orderedOption) {
      logger.warn(
        { stream: options.streamArn ?? options.streamName },
        'producer: the stream distributes records itself (AUTO): maxInFlightPerShard: 1 limits concurrency ' +
          'but keeps no per-key order',
      );
    }
  }

  /** Rejects records accepted and queued (not in flight), and reports the error (even for none). */
  #reject(records: PendingRecord[], error: ShardlineError): void {
    const { buffer, events } = this.#deps;
    for (const record of records) buffer.unqueue(record);
    const rejected = buffer.rejectMany(records, error);
    events.emit('error', { error, records: rejected });
  }

  async #listOpenShards(): Promise<Shard[]> {
    const { options, client, signal } = this.#deps;
    const shards = await listAllShards(
      client,
      options.streamArn !== undefined
        ? { streamArn: options.streamArn, signal }
        : { streamName: options.streamName, signal },
    );
    // No ShardFilter: kinesalite ignores it, so closed shards are filtered here for both engines.
    return shards.filter((shard) => shard.SequenceNumberRange?.EndingSequenceNumber === undefined);
  }

  #apply(router: ShardRouter, open: Shard[], reason: RefreshReason): void {
    const { options, logger, events } = this.#deps;
    const limits = options.rateLimitPerShard;
    const paced = Number.isFinite(limits.records) || Number.isFinite(limits.bytes);
    const next = new Map<string, ShardState>();
    const added: string[] = [];
    for (const shard of open) {
      const id = shard.ShardId!;
      let state = this.#shards.get(id);
      if (state === undefined) {
        added.push(id);
        state = new ShardState(
          id,
          BigInt(shard.HashKeyRange!.StartingHashKey!),
          BigInt(shard.HashKeyRange!.EndingHashKey!),
          paced ? new RateLimiter({ recordsPerSec: limits.records, bytesPerSec: limits.bytes }) : undefined,
        );
      }
      next.set(id, state);
    }
    const removed: ShardState[] = [];
    for (const [id, state] of this.#shards) if (!next.has(id)) removed.push(state);
    this.#router = router;
    this.#shards = next;
    this.#list = router.shardIds.map((id) => next.get(id)!);
    // Records queued for closed shards, then those that had no shard: in order, to their new shards.
    for (const state of removed) {
      state.open = false;
      state.queuedBytes = 0;
      for (const record of state.queue.drain()) this.route(record, false);
      // Ordered mode: a closed shard's call in flight may still fail, and its records then go to the head
      // of the shards that took over its range. Until it is answered those shards send nothing, or a
      // later record of a key could reach Kinesis before an earlier one that is retried.
      if (this.#ordered && state.inFlight > 0) this.#draining.push(state);
    }
    this.#updateHolds();
    for (const record of this.#unrouted.drain()) this.route(record, false);
    if (this.#refreshTimer === undefined && options.shardRefreshIntervalMs > 0 && !this.#stopped) {
      this.#refreshTimer = setInterval(() => void this.refresh('periodic'), options.shardRefreshIntervalMs);
      this.#refreshTimer.unref();
    }
    logger.debug({ reason, shards: this.#list.length }, 'producer: shard map loaded');
    events.emit('shards.refreshed', {
      shardIds: router.shardIds,
      added,
      removed: removed.map((s) => s.id),
      reason,
    });
    this.#deps.changed();
  }

  /** Marks the open shards overlapping a closed shard that still has a call in flight (ordered mode). */
  #updateHolds(): void {
    const draining = this.#draining;
    for (const shard of this.#list) {
      shard.held = draining.some((d) => d.start <= shard.end && shard.start <= d.end);
    }
  }
}
