/**
 * The consumer's Prometheus metrics (`startCoordinator({ metrics: { registry } })`), named after the
 * KCL's CloudWatch metrics where they mean the same thing (see the README's Metrics section).
 *
 * Every update is fed by what the coordinator already receives: its own events (leases, processed
 * batches, checkpoints, handler failures) and the readers' messages (`fetched`, `throttled`, the
 * `handlerModule` worker's `module-done`), never by reader internals, so any reader that speaks the
 * worker protocol is measured the same way. Updates cost one counter increment per batch or message,
 * nothing per record. State gauges (leases held, buffered records, lag per shard) are read from the
 * coordinator when the registry is scraped, so a stopped coordinator leaves no stale series.
 *
 * Metrics are shared through the registry (see `@shardline/common`'s metrics protocol): several
 * coordinators of one process are told apart by their `stream` and `group` labels. Counters are never
 * removed (Prometheus counters only grow; a restarted coordinator of the same stream and group
 * continues them).
 */

import type { MetricsRegistry, SourcedGauge, WorkerMessage } from '@shardline/common';
import { addGaugeSource, collectGaugeSources, sharedMetric } from '@shardline/common';
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { CoordinatorEvents } from './events.js';
import type { ModuleWorkerMessage } from './module-protocol.js';

/** The consumer's metric names. */
export const COORDINATOR_METRIC_NAMES = Object.freeze({
  recordsProcessed: 'shardline_records_processed_total',
  bytesProcessed: 'shardline_bytes_processed_total',
  behindLatest: 'shardline_behind_latest_seconds',
  currentLeases: 'shardline_current_leases',
  leasesTaken: 'shardline_leases_taken_total',
  leasesLost: 'shardline_leases_lost_total',
  leasesReleased: 'shardline_leases_released_total',
  getRecordsThrottled: 'shardline_get_records_throttled_total',
  expiredIterators: 'shardline_expired_iterators_total',
  handlerDuration: 'shardline_handler_duration_seconds',
  handlerFailures: 'shardline_handler_failures_total',
  deadLetteredRecords: 'shardline_dead_lettered_records_total',
  recordsExpired: 'shardline_records_expired_total',
  checkpointsWritten: 'shardline_checkpoints_written_total',
  bufferedRecords: 'shardline_buffered_records',
  workerCrashes: 'shardline_worker_crashes_total',
});

/** Buckets of `shardline_handler_duration_seconds`: 1 ms to 1 min (handlers may do real I/O). */
export const HANDLER_DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
]);

const BASE = ['stream', 'group'] as const;

/** The coordinator's state, read at each scrape. */
export interface CoordinatorMetricsSnapshot {
  /** Leases this host holds. */
  leases: number;
  /** Records received from readers and not processed yet. */
  bufferedRecords: number;
  /** The shards this host reads, with the MillisBehindLatest of their latest GetRecords (if any yet). */
  shards: Iterable<{ shardId: string; millisBehindLatest: number | undefined }>;
}

/** The gauges' snapshot from a coordinator's sessions (holding a lease, reading) and their figures. */
export function metricsSnapshot(
  sessions: Iterable<{ shardId: string; holdsLease: boolean; state: string }>,
  stats: ReadonlyMap<string, { millisBehindLatest?: number }>,
  bufferedRecords: number,
): CoordinatorMetricsSnapshot {
  let leases = 0;
  const shards: Array<{ shardId: string; millisBehindLatest: number | undefined }> = [];
  for (const session of sessions) {
    if (!session.holdsLease) continue;
    leases++;
    if (session.state === 'reading') {
      shards.push({
        shardId: session.shardId,
        millisBehindLatest: stats.get(session.shardId)?.millisBehindLatest,
      });
    }
  }
  return { leases, bufferedRecords, shards };
}

export interface CoordinatorMetricsOptions {
  registry: MetricsRegistry;
  stream: string;
  group: string;
  /** Where the lease, batch, checkpoint and failure events come from. */
  events: Pick<CoordinatorEvents, 'on'>;
  /** Called at each scrape (must be cheap and must not throw). */
  snapshot: () => CoordinatorMetricsSnapshot;
}

type Base = (typeof BASE)[number];

function counter<L extends string>(
  registry: MetricsRegistry,
  name: string,
  help: string,
  labelNames: readonly L[],
): Counter<L> {
  return sharedMetric(
    registry,
    { name, type: 'counter', labelNames },
    () => new Counter<L>({ name, help, labelNames, registers: [registry as unknown as Registry] }),
  );
}

function sourcedGauge<L extends string>(
  registry: MetricsRegistry,
  name: string,
  help: string,
  labelNames: readonly L[],
): Gauge<L> {
  return sharedMetric(
    registry,
    { name, type: 'gauge', labelNames },
    () =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers: [registry as unknown as Registry],
        collect() {
          collectGaugeSources(this as unknown as SourcedGauge);
        },
      }),
  );
}

/** One coordinator's metrics; {@link close} when it stops. */
export class CoordinatorMetrics {
  readonly #labels: Readonly<Record<Base, string>>;
  readonly #recordsProcessed: Counter<Base>;
  readonly #bytesProcessed: Counter<Base>;
  readonly #leasesTaken: Counter<Base>;
  readonly #leasesLost: Counter<Base | 'reason'>;
  readonly #leasesReleased: Counter<Base | 'reason'>;
  readonly #throttled: Counter<Base>;
  readonly #expiredIterators: Counter<Base>;
  readonly #handlerDuration: Histogram<Base>;
  readonly #handlerFailures: Counter<Base | 'action'>;
  readonly #deadLettered: Counter<Base>;
  readonly #recordsExpired: Counter<Base | 'action'>;
  readonly #checkpoints: Counter<Base>;
  readonly #workerCrashes: Counter<Base>;
  readonly #cleanup: Array<() => void> = [];

  /** @throws ShardlineOptionError (`metrics.registry`) when the registry holds a clashing metric. */
  constructor(o: CoordinatorMetricsOptions) {
    const labels = Object.freeze({ stream: o.stream, group: o.group });
    this.#labels = labels;
    const r = o.registry;
    const N = COORDINATOR_METRIC_NAMES;
    this.#recordsProcessed = counter(
      r,
      N.recordsProcessed,
      'Records processed: handed to the handler (or the iterator) and processed (KCL RecordsProcessed)',
      BASE,
    );
    this.#bytesProcessed = counter(
      r,
      N.bytesProcessed,
      'Data bytes of the Kinesis records processed, as fetched (before decoding and KPL deaggregation; KCL DataBytesProcessed)',
      BASE,
    );
    this.#leasesTaken = counter(r, N.leasesTaken, 'Leases this host took (KCL TakenLeases)', BASE);
    this.#leasesLost = counter(
      r,
      N.leasesLost,
      'Leases this host lost without releasing them (fenced, renewal failed; KCL LostLeases)',
      [...BASE, 'reason'],
    );
    this.#leasesReleased = counter(
      r,
      N.leasesReleased,
      'Leases this host released (stop, handoff, shard end, over capacity, failed)',
      [...BASE, 'reason'],
    );
    this.#throttled = counter(
      r,
      N.getRecordsThrottled,
      'GetRecords calls throttled (ProvisionedThroughputExceededException)',
      BASE,
    );
    this.#expiredIterators = counter(
      r,
      N.expiredIterators,
      'Shard iterators that expired and were acquired again (KCL ExpiredIterator)',
      BASE,
    );
    this.#handlerDuration = sharedMetric(
      r,
      { name: N.handlerDuration, type: 'histogram', labelNames: BASE },
      () =>
        new Histogram<Base>({
          name: N.handlerDuration,
          help: 'Time to process one batch: the handler call (measured in the worker thread for handlerModule), or the time the iterator held it (KCL ProcessTask.Time)',
          labelNames: BASE,
          buckets: [...HANDLER_DURATION_BUCKETS_SECONDS],
          registers: [r as unknown as Registry],
        }),
    );
    this.#handlerFailures = counter(
      r,
      N.handlerFailures,
      'Handler (or decoding) failures, by what happened next: retry, isolate, stop-shard, dead-letter, skip',
      [...BASE, 'action'],
    );
    this.#deadLettered = counter(r, N.deadLetteredRecords, 'Records sent to the dead-letter queue', BASE);
    this.#recordsExpired = counter(
      r,
      N.recordsExpired,
      'Records not handed to the handler for being older than maxRecordAgeMs, by what happened instead: stop-shard, dead-letter, skip',
      [...BASE, 'action'],
    );
    this.#checkpoints = counter(r, N.checkpointsWritten, 'Checkpoints written (SHARD_END included)', BASE);
    this.#workerCrashes = counter(r, N.workerCrashes, 'Worker thread crashes seen by this host', BASE);
    const currentLeases = sourcedGauge(
      r,
      N.currentLeases,
      'Leases this host holds (KCL CurrentLeases)',
      BASE,
    );
    const buffered = sourcedGauge(
      r,
      N.bufferedRecords,
      'Records fetched and not processed yet (bounded by maxBufferedRecords)',
      BASE,
    );
    const behind = sourcedGauge(
      r,
      N.behindLatest,
      'How far the latest GetRecords of a shard read here was behind the tip of the stream, in seconds (KCL MillisBehindLatest / 1000)',
      [...BASE, 'shard_id'],
    );
    const take = o.snapshot;
    this.#cleanup.push(
      addGaugeSource(currentLeases, () => [[labels, take().leases]]),
      addGaugeSource(buffered, () => [[labels, take().bufferedRecords]]),
      addGaugeSource(behind, function* () {
        for (const { shardId, millisBehindLatest } of take().shards) {
          if (millisBehindLatest !== undefined) {
            yield [{ ...labels, shard_id: shardId }, millisBehindLatest / 1000] as const;
          }
        }
      }),
    );
    this.#subscribe(o.events);
  }

  #subscribe(events: Pick<CoordinatorEvents, 'on'>): void {
    const labels = this.#labels;
    this.#cleanup.push(
      events.on('batch.processed', (e) => {
        if (e.records > 0) this.#recordsProcessed.inc(labels, e.records);
        this.#handlerDuration.observe(labels, e.durationMs / 1000);
      }),
      events.on('lease.acquired', () => this.#leasesTaken.inc(labels)),
      events.on('lease.lost', (e) => this.#leasesLost.inc({ ...labels, reason: e.reason })),
      events.on('lease.released', (e) => this.#leasesReleased.inc({ ...labels, reason: e.reason })),
      events.on('handler.failed', (e) => this.#handlerFailures.inc({ ...labels, action: e.action })),
      events.on('checkpoint', () => this.#checkpoints.inc(labels)),
      events.on('record.expired', (e) =>
        this.#recordsExpired.inc({ ...labels, action: e.action }, e.records),
      ),
      events.on('worker.crashed', () => this.#workerCrashes.inc(labels)),
    );
  }

  /** A reader's message (the coordinator passes each one on; those without metrics are ignored). */
  onMessage(message: WorkerMessage | ModuleWorkerMessage): void {
    switch (message.type) {
      case 'throttled':
        if (message.count > 0) this.#throttled.inc(this.#labels, message.count);
        return;
      case 'fetched':
        if (message.expiredIterators !== undefined && message.expiredIterators > 0) {
          this.#expiredIterators.inc(this.#labels, message.expiredIterators);
        }
        return;
      case 'module-done':
        // handlerModule: the worker processed the batch (the same moment as batchDone below).
        if (message.completed) this.batchDone(message.bytes);
        return;
      default:
        return;
    }
  }

  /** A whole batch (of `bytes` fetched data bytes) was processed and acknowledged to its reader. */
  batchDone(bytes: number): void {
    if (bytes > 0) this.#bytesProcessed.inc(this.#labels, bytes);
  }

  /** `records` were written to the dead-letter queue. */
  deadLettered(records: number): void {
    if (records > 0) this.#deadLettered.inc(this.#labels, records);
  }

  /** Stops listening and drops this coordinator's gauge values (counters stay). Idempotent. */
  close(): void {
    for (const remove of this.#cleanup.splice(0)) remove();
  }
}
