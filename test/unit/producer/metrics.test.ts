import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ErrorCodes, type ShardlineError, silentLogger } from '@shardline/common';
import { PRODUCER_METRIC_NAMES as N, Producer, type ProducerOptions } from '@shardline/producer';
import { expect } from 'chai';
import { Counter, Registry } from 'prom-client';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';
import { COORDINATOR_METRIC_NAMES, CoordinatorMetrics } from '../../../packages/coordinator/src/metrics.js';
import { evenShards, StubKinesis } from './stub-kinesis.js';

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) throw new Error(`metric ${name} is not registered`);
  return (await metric.get()).values as Sample[];
}

/** The plain sample (not a histogram bucket/sum/count) of `stream`. */
async function value(registry: Registry, name: string, stream: string): Promise<number | undefined> {
  return (await samples(registry, name)).find((s) => s.metricName === undefined && s.labels.stream === stream)
    ?.value;
}

async function count(registry: Registry, name: string, stream: string): Promise<number | undefined> {
  return (await samples(registry, name)).find(
    (s) => s.metricName === `${name}_count` && s.labels.stream === stream,
  )?.value;
}

describe('producer metrics', () => {
  const producers: Producer<unknown>[] = [];
  let stub: StubKinesis;

  beforeEach(() => {
    stub = new StubKinesis(evenShards(2));
  });

  afterEach(async () => {
    for (const producer of producers.splice(0)) await producer.close();
  });

  function make(registry: Registry, options: Partial<ProducerOptions> = {}): Producer<unknown> {
    const producer = new Producer({
      streamName: 'orders',
      kinesis: stub as unknown as KinesisClient,
      shardRefreshIntervalMs: 0,
      lingerMs: 0,
      rateLimitPerShard: false,
      retry: { retries: 1, backoffMs: { initial: 1, max: 1 } },
      metrics: { registry },
      ...options,
    });
    producers.push(producer);
    return producer;
  }

  it('registers every metric with its type and the stream label', async () => {
    const registry = new Registry();
    make(registry);
    const json = await registry.getMetricsAsJSON();
    expect(Object.fromEntries(json.map((m) => [m.name, m.type]))).to.deep.equal({
      [N.recordsPut]: 'counter',
      [N.bytesPut]: 'counter',
      [N.kinesisRecordsPut]: 'counter',
      [N.putRequests]: 'counter',
      [N.putRequestDuration]: 'histogram',
      [N.recordsRetried]: 'counter',
      [N.recordsFailed]: 'counter',
      [N.throttledEntries]: 'counter',
      [N.bufferedRecords]: 'gauge',
    });
    for (const name of Object.values(N)) {
      expect(name).to.match(/^shardline_producer_[a-z_]+$/);
      expect(
        (registry.getSingleMetric(name) as unknown as { labelNames: string[] }).labelNames,
      ).to.deep.equal(['stream']);
    }
  });

  it('counts records, bytes (data + key), entries, requests, retries, throttled entries and failures', async () => {
    const registry = new Registry();
    // Call 0: the entry of key 'k-1' is throttled, then again on its retry (call 1): out of retries.
    stub.onPut = (input, _call, s) =>
      s.succeed(input, (i) =>
        input.Records?.[i]?.PartitionKey === 'k-1' ? 'ProvisionedThroughputExceededException' : undefined,
      );
    const producer = make(registry, { codec: 'string' });
    const results = await Promise.allSettled([
      producer.put('hello', { partitionKey: 'k-0' }),
      producer.put('throttled', { partitionKey: 'k-1' }),
      producer.put('wörld', { partitionKey: 'k-2' }),
    ]);
    expect(results.map((r) => r.status)).to.deep.equal(['fulfilled', 'rejected', 'fulfilled']);
    const acked = Buffer.byteLength('hello') + 3 + Buffer.byteLength('wörld') + 3;
    expect(await value(registry, N.recordsPut, 'orders')).to.equal(2);
    expect(await value(registry, N.bytesPut, 'orders')).to.equal(acked);
    expect(await value(registry, N.kinesisRecordsPut, 'orders')).to.equal(2);
    expect(await value(registry, N.throttledEntries, 'orders')).to.equal(2);
    expect(await value(registry, N.recordsRetried, 'orders')).to.equal(1);
    expect(await value(registry, N.recordsFailed, 'orders')).to.equal(1);
    expect(await value(registry, N.putRequests, 'orders')).to.equal(stub.puts.length);
    expect(await count(registry, N.putRequestDuration, 'orders')).to.equal(stub.puts.length);
    expect(stub.puts.length).to.be.at.least(2);
  });

  it('counts the user records of an aggregate, and one Kinesis record for it', async () => {
    const registry = new Registry();
    stub = new StubKinesis(evenShards(1));
    const producer = make(registry, { aggregate: true, codec: 'string' });
    await Promise.all([0, 1, 2, 3].map((i) => producer.put(`item-${i}`, { partitionKey: `key-${i}` })));
    expect(await value(registry, N.recordsPut, 'orders')).to.equal(4);
    expect(await value(registry, N.kinesisRecordsPut, 'orders')).to.equal(stub.written.length);
    expect(stub.written.length).to.be.below(4);
    expect(await value(registry, N.bytesPut, 'orders')).to.equal(4 * ('item-0'.length + 'key-0'.length));
  });

  it('reads the buffered records at each scrape and drops them when the producer closes', async () => {
    const registry = new Registry();
    let release: (() => void) | undefined;
    stub.onPut = (input, _call, s) =>
      new Promise((resolve) => {
        release = () => resolve(s.succeed(input));
      });
    const producer = make(registry);
    const puts = [producer.put({ a: 1 }), producer.put({ a: 2 }), producer.put({ a: 3 })];
    expect(await value(registry, N.bufferedRecords, 'orders')).to.equal(3);
    while (release === undefined) await new Promise((resolve) => setImmediate(resolve));
    release();
    await Promise.all(puts);
    expect(await value(registry, N.bufferedRecords, 'orders')).to.equal(0);
    await producer.close();
    expect(await samples(registry, N.bufferedRecords)).to.deep.equal([]);
    expect(await value(registry, N.recordsPut, 'orders')).to.equal(3);
  });

  it('shares one registry between producers and with a coordinator', async () => {
    const registry = new Registry();
    const first = make(registry);
    const second = make(registry, { streamName: 'payments' });
    const third = make(registry);
    const events = new CoordinatorEvents(silentLogger);
    const consumer = new CoordinatorMetrics({
      registry,
      stream: 'orders',
      group: 'g',
      events,
      snapshot: () => ({ leases: 0, bufferedRecords: 0, shards: [] }),
    });
    await Promise.all([first.put(1), first.put(2), second.put(3), third.put(4)]);
    expect(await value(registry, N.recordsPut, 'orders')).to.equal(3);
    expect(await value(registry, N.recordsPut, 'payments')).to.equal(1);
    expect(registry.getSingleMetric(COORDINATOR_METRIC_NAMES.recordsProcessed)).to.not.equal(undefined);
    expect((await registry.getMetricsAsJSON()).length).to.equal(
      Object.keys(N).length + Object.keys(COORDINATOR_METRIC_NAMES).length,
    );
    // Two producers of one stream: their buffered gauges add up; closing one leaves the other's.
    expect((await samples(registry, N.bufferedRecords)).map((s) => s.labels.stream).sort()).to.deep.equal([
      'orders',
      'payments',
    ]);
    await second.close();
    expect((await samples(registry, N.bufferedRecords)).map((s) => s.labels.stream)).to.deep.equal([
      'orders',
    ]);
    consumer.close();
  });

  it('validates metrics like the coordinator, and refuses a clashing metric naming metrics.registry', () => {
    const error = (options: Partial<ProducerOptions>): ShardlineError => {
      try {
        make(new Registry(), options);
      } catch (e) {
        return e as ShardlineError;
      }
      throw new Error('no error thrown');
    };
    for (const metrics of [null, 'x', { registry: {} }, { registry: { registerMetric() {} } }]) {
      const e = error({ metrics: metrics as never });
      expect(e.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(e.message).to.match(/^metrics(\.registry)? must be/);
    }
    expect(error({ metrics: { registry: new Registry(), extra: 1 } as never }).message).to.match(
      /^metrics\.extra is not/,
    );
    const clashing = new Registry();
    new Counter({ name: N.recordsPut, help: 'x', labelNames: ['topic'], registers: [clashing] });
    const e = error({ metrics: { registry: clashing } });
    expect(e.code).to.equal(ErrorCodes.INVALID_OPTION);
    expect(e.message).to.match(
      /^metrics\.registry already holds a metric 'shardline_producer_records_put_total'/,
    );
  });
});
