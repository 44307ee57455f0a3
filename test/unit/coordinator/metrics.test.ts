import { ErrorCodes, PROTOCOL_VERSION, ShardlineError, silentLogger } from '@shardline/common';
import { expect } from 'chai';
import { Counter, Gauge, Registry } from 'prom-client';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';
import {
  CoordinatorMetrics,
  type CoordinatorMetricsSnapshot,
  HANDLER_DURATION_BUCKETS_SECONDS,
  COORDINATOR_METRIC_NAMES as N,
} from '../../../packages/coordinator/src/metrics.js';

type Labels = Record<string, string | number>;
interface Sample {
  value: number;
  labels: Labels;
  metricName?: string;
}

/** Every sample of a metric, as a scrape would read it (collect callbacks run). */
async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`metric ${name} is not registered`);
  return (await metric.get()).values as Sample[];
}

function matches(sample: Sample, labels: Labels): boolean {
  return Object.entries(labels).every(([k, v]) => sample.labels[k] === v);
}

/** The value of the sample with exactly these labels (undefined when there is none). */
async function value(registry: Registry, name: string, labels: Labels): Promise<number | undefined> {
  const found = (await samples(registry, name)).filter(
    (s) => s.metricName === undefined && Object.keys(s.labels).length === Object.keys(labels).length,
  );
  return found.find((s) => matches(s, labels))?.value;
}

/** A histogram's `_count` for these labels. */
async function histogramCount(registry: Registry, name: string, labels: Labels): Promise<number | undefined> {
  const found = (await samples(registry, name)).find(
    (s) => s.metricName === `${name}_count` && matches(s, labels),
  );
  return found?.value;
}

function setup(
  registry: Registry,
  labels: { stream: string; group: string },
  snapshot: CoordinatorMetricsSnapshot = { leases: 0, bufferedRecords: 0, shards: [] },
) {
  const events = new CoordinatorEvents(silentLogger);
  const state = { snapshot };
  const metrics = new CoordinatorMetrics({
    registry,
    ...labels,
    events,
    snapshot: () => state.snapshot,
  });
  return { events, metrics, state };
}

const A = { stream: 'orders', group: 'billing' };
const B = { stream: 'orders', group: 'audit' };

describe('coordinator metrics', () => {
  it('registers every metric with its type and the stream/group labels', async () => {
    const registry = new Registry();
    setup(registry, A);
    const json = await registry.getMetricsAsJSON();
    const types = Object.fromEntries(json.map((m) => [m.name, m.type]));
    expect(types).to.deep.equal({
      [N.recordsProcessed]: 'counter',
      [N.bytesProcessed]: 'counter',
      [N.behindLatest]: 'gauge',
      [N.currentLeases]: 'gauge',
      [N.leasesTaken]: 'counter',
      [N.leasesLost]: 'counter',
      [N.leasesReleased]: 'counter',
      [N.getRecordsThrottled]: 'counter',
      [N.expiredIterators]: 'counter',
      [N.handlerDuration]: 'histogram',
      [N.handlerFailures]: 'counter',
      [N.deadLetteredRecords]: 'counter',
      [N.recordsExpired]: 'counter',
      [N.checkpointsWritten]: 'counter',
      [N.bufferedRecords]: 'gauge',
      [N.workerCrashes]: 'counter',
    });
    for (const name of Object.values(N)) {
      expect(name, name).to.match(/^shardline_[a-z_]+$/);
      const metric = registry.getSingleMetric(name) as unknown as { labelNames: string[] };
      expect(metric.labelNames, name).to.include.members(['stream', 'group']);
    }
    expect(
      (registry.getSingleMetric(N.behindLatest) as unknown as { labelNames: string[] }).labelNames,
    ).to.include('shard_id');
  });

  it('counts processed batches, records and handler time from batch.processed events', async () => {
    const registry = new Registry();
    const { events } = setup(registry, A);
    events.emit('batch.processed', { shardId: 's-0', records: 10, durationMs: 3 });
    events.emit('batch.processed', { shardId: 's-1', records: 5, durationMs: 2_000 });
    events.emit('batch.processed', { shardId: 's-1', records: 0, durationMs: 1 });
    expect(await value(registry, N.recordsProcessed, A)).to.equal(15);
    expect(await histogramCount(registry, N.handlerDuration, A)).to.equal(3);
    const sum = (await samples(registry, N.handlerDuration)).find(
      (s) => s.metricName === `${N.handlerDuration}_sum`,
    );
    expect(sum?.value).to.be.closeTo(2.004, 1e-9);
    // 3 ms falls in the 5 ms bucket, 2 s in the 2.5 s bucket.
    const bucket = async (le: number) =>
      (await samples(registry, N.handlerDuration)).find(
        (s) => s.metricName === `${N.handlerDuration}_bucket` && s.labels.le === le,
      )?.value;
    expect(await bucket(0.001)).to.equal(1);
    expect(await bucket(0.005)).to.equal(2);
    expect(await bucket(2.5)).to.equal(3);
    expect(HANDLER_DURATION_BUCKETS_SECONDS.at(-1)).to.equal(60);
  });

  it('counts leases taken, lost and released (by reason), checkpoints, failures and crashes', async () => {
    const registry = new Registry();
    const { events } = setup(registry, A);
    events.emit('lease.acquired', { shardId: 's-0', counter: 1 });
    events.emit('lease.acquired', { shardId: 's-1', counter: 1 });
    events.emit('lease.lost', { shardId: 's-0', counter: 1, reason: 'fenced' });
    events.emit('lease.released', { shardId: 's-1', counter: 1, reason: 'handoff' });
    events.emit('lease.released', { shardId: 's-2', counter: 4, reason: 'handoff' });
    events.emit('lease.released', { shardId: 's-3', counter: 1, reason: 'stop' });
    events.emit('checkpoint', { shardId: 's-1', sequenceNumber: '1', counter: 1 });
    events.emit('checkpoint', { shardId: 's-1', sequenceNumber: 'SHARD_END', counter: 1 });
    const error = new ShardlineError(ErrorCodes.HANDLER, 'boom');
    events.emit('handler.failed', { shardId: 's-1', error, attempt: 1, action: 'retry', records: 3 });
    events.emit('handler.failed', { shardId: 's-1', error, attempt: 2, action: 'retry', records: 3 });
    events.emit('handler.failed', { shardId: 's-1', error, attempt: 3, action: 'dead-letter', records: 1 });
    events.emit('worker.crashed', { thread: 0, error, shardIds: ['s-1'], respawned: true });
    expect(await value(registry, N.leasesTaken, A)).to.equal(2);
    expect(await value(registry, N.leasesLost, { ...A, reason: 'fenced' })).to.equal(1);
    expect(await value(registry, N.leasesReleased, { ...A, reason: 'handoff' })).to.equal(2);
    expect(await value(registry, N.leasesReleased, { ...A, reason: 'stop' })).to.equal(1);
    expect(await value(registry, N.checkpointsWritten, A)).to.equal(2);
    expect(await value(registry, N.handlerFailures, { ...A, action: 'retry' })).to.equal(2);
    expect(await value(registry, N.handlerFailures, { ...A, action: 'dead-letter' })).to.equal(1);
    expect(await value(registry, N.workerCrashes, A)).to.equal(1);
  });

  it('counts throttled calls, expired iterators and processed bytes from the readers’ messages', async () => {
    const registry = new Registry();
    const { metrics } = setup(registry, A);
    const v = PROTOCOL_VERSION;
    metrics.onMessage({ v, type: 'throttled', shardId: 's-0', delayMs: 100, count: 1 });
    metrics.onMessage({ v, type: 'throttled', shardId: 's-1', delayMs: 200, count: 2 });
    metrics.onMessage({ v, type: 'fetched', shardId: 's-0', lastFetchAtMs: 1, records: 0, bytes: 0 });
    metrics.onMessage({
      v,
      type: 'fetched',
      shardId: 's-0',
      lastFetchAtMs: 2,
      records: 1,
      bytes: 10,
      expiredIterators: 2,
    });
    metrics.onMessage({ v, type: 'module-done', batchId: 0, records: 3, bytes: 300, completed: true });
    metrics.onMessage({ v, type: 'log', level: 'info', message: 'ignored' });
    metrics.batchDone(45);
    metrics.batchDone(0);
    metrics.deadLettered(4);
    expect(await value(registry, N.getRecordsThrottled, A)).to.equal(3);
    expect(await value(registry, N.expiredIterators, A)).to.equal(2);
    expect(await value(registry, N.bytesProcessed, A)).to.equal(345);
    expect(await value(registry, N.deadLetteredRecords, A)).to.equal(4);
  });

  it('reads leases, buffered records and lag per shard (in seconds) from the coordinator at each scrape', async () => {
    const registry = new Registry();
    const { state } = setup(registry, A, {
      leases: 2,
      bufferedRecords: 120,
      shards: [
        { shardId: 's-0', millisBehindLatest: 1_500 },
        { shardId: 's-1', millisBehindLatest: undefined },
      ],
    });
    expect(await value(registry, N.currentLeases, A)).to.equal(2);
    expect(await value(registry, N.bufferedRecords, A)).to.equal(120);
    expect(await samples(registry, N.behindLatest)).to.deep.equal([
      { value: 1.5, labels: { ...A, shard_id: 's-0' } },
    ]);
    // The next scrape sees the new state, and a shard no longer read here disappears.
    state.snapshot = { leases: 1, bufferedRecords: 0, shards: [{ shardId: 's-1', millisBehindLatest: 0 }] };
    expect(await value(registry, N.currentLeases, A)).to.equal(1);
    expect(await value(registry, N.bufferedRecords, A)).to.equal(0);
    expect(await samples(registry, N.behindLatest)).to.deep.equal([
      { value: 0, labels: { ...A, shard_id: 's-1' } },
    ]);
  });

  it('shares one registry between coordinators: one metric per name, told apart by labels', async () => {
    const registry = new Registry();
    const a = setup(registry, A, {
      leases: 3,
      bufferedRecords: 0,
      shards: [{ shardId: 's-0', millisBehindLatest: 10 }],
    });
    const b = setup(registry, B, {
      leases: 1,
      bufferedRecords: 0,
      shards: [{ shardId: 's-0', millisBehindLatest: 20 }],
    });
    // A third of A's stream and group (e.g. two hosts in one process): its gauges add up with A's.
    const a2 = setup(registry, A, {
      leases: 2,
      bufferedRecords: 0,
      shards: [{ shardId: 's-1', millisBehindLatest: 30 }],
    });
    expect((await registry.getMetricsAsJSON()).map((m) => m.name)).to.have.length(Object.keys(N).length);
    a.events.emit('batch.processed', { shardId: 's-0', records: 7, durationMs: 1 });
    a2.events.emit('batch.processed', { shardId: 's-1', records: 1, durationMs: 1 });
    b.events.emit('batch.processed', { shardId: 's-0', records: 2, durationMs: 1 });
    expect(await value(registry, N.recordsProcessed, A)).to.equal(8);
    expect(await value(registry, N.recordsProcessed, B)).to.equal(2);
    expect(await value(registry, N.currentLeases, A)).to.equal(5);
    expect(await value(registry, N.currentLeases, B)).to.equal(1);
    expect(await samples(registry, N.behindLatest)).to.have.deep.members([
      { value: 0.01, labels: { ...A, shard_id: 's-0' } },
      { value: 0.02, labels: { ...B, shard_id: 's-0' } },
      { value: 0.03, labels: { ...A, shard_id: 's-1' } },
    ]);
  });

  it('close() drops that coordinator’s gauge values and stops counting; counters and the others stay', async () => {
    const registry = new Registry();
    const a = setup(registry, A, {
      leases: 3,
      bufferedRecords: 9,
      shards: [{ shardId: 's-0', millisBehindLatest: 10 }],
    });
    const b = setup(registry, B, {
      leases: 1,
      bufferedRecords: 2,
      shards: [{ shardId: 's-1', millisBehindLatest: 20 }],
    });
    a.events.emit('batch.processed', { shardId: 's-0', records: 7, durationMs: 1 });
    a.metrics.close();
    a.metrics.close();
    a.events.emit('batch.processed', { shardId: 's-0', records: 100, durationMs: 1 });
    a.events.emit('lease.acquired', { shardId: 's-0', counter: 2 });
    expect(await value(registry, N.currentLeases, A)).to.equal(undefined);
    expect(await value(registry, N.bufferedRecords, A)).to.equal(undefined);
    expect(await samples(registry, N.behindLatest)).to.deep.equal([
      { value: 0.02, labels: { ...B, shard_id: 's-1' } },
    ]);
    expect(await value(registry, N.currentLeases, B)).to.equal(1);
    expect(await value(registry, N.recordsProcessed, A)).to.equal(7);
    expect(await value(registry, N.leasesTaken, A)).to.equal(undefined);
    // A new coordinator of the same stream and group continues the counters.
    const again = setup(registry, A);
    again.events.emit('batch.processed', { shardId: 's-0', records: 3, durationMs: 1 });
    expect(await value(registry, N.recordsProcessed, A)).to.equal(10);
    b.metrics.close();
    again.metrics.close();
    expect(await samples(registry, N.currentLeases)).to.deep.equal([]);
  });

  it('a coordinator whose state cannot be read shows no gauge values and does not fail the scrape', async () => {
    const registry = new Registry();
    setup(registry, B, { leases: 1, bufferedRecords: 0, shards: [] });
    const events = new CoordinatorEvents(silentLogger);
    new CoordinatorMetrics({
      registry,
      ...A,
      events,
      snapshot: () => {
        throw new Error('half-built');
      },
    });
    const text = await registry.metrics();
    expect(text).to.include('shardline_current_leases{stream="orders",group="audit"} 1');
    expect(text).to.not.include('group="billing"');
  });

  it('refuses a registry that holds a metric of the same name it cannot use, naming metrics.registry', () => {
    const wrongType = new Registry();
    new Gauge({
      name: N.recordsProcessed,
      help: 'x',
      labelNames: ['stream', 'group'],
      registers: [wrongType],
    });
    const wrongLabels = new Registry();
    new Counter({ name: N.leasesTaken, help: 'x', labelNames: ['stream'], registers: [wrongLabels] });
    for (const registry of [wrongType, wrongLabels]) {
      let thrown: unknown;
      try {
        setup(registry, A);
      } catch (error) {
        thrown = error;
      }
      expect(thrown).to.be.instanceOf(ShardlineError);
      const e = thrown as ShardlineError;
      expect(e.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(e.message).to.match(/^metrics\.registry already holds a metric 'shardline_/);
    }
  });
});
