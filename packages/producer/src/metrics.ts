/**
 * The producer's Prometheus metrics (`new Producer({ metrics: { registry } })`), named after the KPL's
 * CloudWatch metrics where they mean the same thing (see the README's Metrics section).
 *
 * Fed by the producer's own events (`put`, `retry`, `throttled`, `error`) plus one call per PutRecords
 * request sent: one counter increment per request or event, nothing per record. The buffered-records
 * gauge is read from the producer when the registry is scraped, so a closed producer leaves no stale
 * series. Metrics are shared through the registry (see `@shardline/common`'s metrics protocol):
 * several producers of one process are told apart by their `stream` label, and add up when they write
 * to the same stream. Counters are never removed.
 */

import type { MetricsRegistry, SourcedGauge } from '@shardline/common';
import { addGaugeSource, collectGaugeSources, sharedMetric } from '@shardline/common';
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram } from 'prom-client';
import type { ProducerEventName, ProducerEvents } from './events.js';

/** The producer's metric names. */
export const PRODUCER_METRIC_NAMES = Object.freeze({
  recordsPut: 'shardline_producer_records_put_total',
  bytesPut: 'shardline_producer_bytes_put_total',
  kinesisRecordsPut: 'shardline_producer_kinesis_records_put_total',
  putRequests: 'shardline_producer_put_requests_total',
  putRequestDuration: 'shardline_producer_put_request_duration_seconds',
  recordsRetried: 'shardline_producer_records_retried_total',
  recordsFailed: 'shardline_producer_records_failed_total',
  throttledEntries: 'shardline_producer_throttled_entries_total',
  bufferedRecords: 'shardline_producer_buffered_records',
});

/** Buckets of `shardline_producer_put_request_duration_seconds`: 5 ms to 30 s. */
export const PUT_REQUEST_DURATION_BUCKETS_SECONDS: readonly number[] = Object.freeze([
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
]);

const LABELS = ['stream'] as const;
type Label = (typeof LABELS)[number];

/** What a {@link ProducerMetrics} needs from its producer. */
export interface ProducerMetricsInit {
  registry: MetricsRegistry;
  /** The stream's name (or ARN when the producer was given one). */
  stream: string;
  /** Subscribes to the producer's events; returns the unsubscribe function. */
  on<K extends ProducerEventName>(event: K, listener: (event: ProducerEvents[K]) => void): () => void;
  /** Records accepted and not settled, read at each scrape (must be cheap and must not throw). */
  bufferedRecords: () => number;
}

function counter(registry: MetricsRegistry, name: string, help: string): Counter<Label> {
  return sharedMetric(
    registry,
    { name, type: 'counter', labelNames: LABELS },
    () =>
      new Counter<Label>({ name, help, labelNames: LABELS, registers: [registry as unknown as Registry] }),
  );
}

/** One producer's metrics; {@link close} when it closes. */
export class ProducerMetrics {
  readonly #labels: Readonly<Record<Label, string>>;
  readonly #putRequests: Counter<Label>;
  readonly #cleanup: Array<() => void> = [];

  /** @throws ShardlineOptionError (`metrics.registry`) when the registry holds a clashing metric. */
  constructor(o: ProducerMetricsInit) {
    const labels = Object.freeze({ stream: o.stream });
    this.#labels = labels;
    const r = o.registry;
    const N = PRODUCER_METRIC_NAMES;
    const recordsPut = counter(r, N.recordsPut, 'User records acknowledged by Kinesis (KPL UserRecordsPut)');
    const bytesPut = counter(
      r,
      N.bytesPut,
      'Bytes of the user records acknowledged: data as encoded by the codec + partition key (KPL UserRecordsDataPut)',
    );
    const kinesisRecordsPut = counter(
      r,
      N.kinesisRecordsPut,
      'Kinesis records (PutRecords entries: plain records, KPL aggregates, framed packs) acknowledged (KPL KinesisRecordsPut)',
    );
    this.#putRequests = counter(r, N.putRequests, 'PutRecords calls sent, retries included');
    const duration = sharedMetric(
      r,
      { name: N.putRequestDuration, type: 'histogram', labelNames: LABELS },
      () =>
        new Histogram<Label>({
          name: N.putRequestDuration,
          help: 'Time from sending a PutRecords call to its answer, for the calls Kinesis answered (KPL Request Time)',
          labelNames: LABELS,
          buckets: [...PUT_REQUEST_DURATION_BUCKETS_SECONDS],
          registers: [r as unknown as Registry],
        }),
    );
    const retried = counter(
      r,
      N.recordsRetried,
      'User records sent again after their entry or call failed (KPL RetriesPerRecord, summed)',
    );
    const failed = counter(
      r,
      N.recordsFailed,
      'User records rejected: out of retries or a non-retriable error (their put() rejected)',
    );
    const throttled = counter(
      r,
      N.throttledEntries,
      'PutRecords entries refused for throughput (ProvisionedThroughputExceededException, KMSThrottlingException)',
    );
    const buffered = sharedMetric(
      r,
      { name: N.bufferedRecords, type: 'gauge', labelNames: LABELS },
      () =>
        new Gauge<Label>({
          name: N.bufferedRecords,
          help: 'Records accepted and not settled yet, at most maxBufferedRecords (KPL UserRecordsPending)',
          labelNames: LABELS,
          registers: [r as unknown as Registry],
          collect() {
            collectGaugeSources(this as unknown as SourcedGauge);
          },
        }),
    );
    const bufferedRecords = o.bufferedRecords;
    this.#cleanup.push(
      addGaugeSource(buffered, () => [[labels, bufferedRecords()]]),
      o.on('put', (e) => {
        if (e.records > 0) recordsPut.inc(labels, e.records);
        if (e.acknowledgedBytes > 0) bytesPut.inc(labels, e.acknowledgedBytes);
        const entries = e.entries - e.failedEntries;
        if (entries > 0) kinesisRecordsPut.inc(labels, entries);
        duration.observe(labels, e.durationMs / 1000);
      }),
      o.on('retry', (e) => {
        if (e.records > 0) retried.inc(labels, e.records);
      }),
      o.on('error', (e) => {
        if (e.records > 0) failed.inc(labels, e.records);
      }),
      o.on('throttled', (e) => {
        if (e.entries > 0) throttled.inc(labels, e.entries);
      }),
    );
  }

  /** A PutRecords call was sent. */
  requestSent(): void {
    this.#putRequests.inc(this.#labels);
  }

  /** Stops listening and drops this producer's gauge value (counters stay). Idempotent. */
  close(): void {
    for (const remove of this.#cleanup.splice(0)) remove();
  }
}
