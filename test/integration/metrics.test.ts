/**
 * Prometheus metrics end to end on kinesalite behind a FaultProxy, with one real prom-client Registry
 * shared by the producer and the coordinator: the Producer writes N records (some entries failed by a
 * partial-failure rule), startCoordinator reads them (some GetRecords throttled, one iterator expired),
 * in handler mode and in handlerModule mode; the registry's values must match what happened, counted
 * independently (records, payload bytes, batch.processed events, the proxy's injected faults).
 */
import { fileURLToPath } from 'node:url';
import type { Coordinator, CoordinatorOptions } from '@shardline/coordinator';
import { COORDINATOR_METRIC_NAMES as C, startCoordinator } from '@shardline/coordinator';
import { PRODUCER_METRIC_NAMES as P, Producer } from '@shardline/producer';
import { FaultProxy, type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { seededRandom } from '../support/random.js';
import { type Item, keyedItems } from './coordinator-helpers.js';

const handlerModule = fileURLToPath(new URL('./fixtures/handler-module.mjs', import.meta.url));

type Labels = Record<string, string>;
interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

async function samples(registry: Registry, name: string): Promise<Sample[]> {
  const metric = registry.getSingleMetric(name);
  if (metric === undefined) expect.fail(`metric ${name} is not registered`);
  return (await metric.get()).values as Sample[];
}

function has(sample: Sample, labels: Labels): boolean {
  return Object.entries(labels).every(([k, v]) => sample.labels[k] === v);
}

/** Sum of the plain samples (no histogram series) carrying `labels`. */
async function total(registry: Registry, name: string, labels: Labels): Promise<number> {
  return (await samples(registry, name))
    .filter((s) => s.metricName === undefined && has(s, labels))
    .reduce((n, s) => n + s.value, 0);
}

async function histogram(registry: Registry, name: string, labels: Labels) {
  const all = (await samples(registry, name)).filter((s) => has(s, labels));
  return {
    count: all.find((s) => s.metricName === `${name}_count`)?.value ?? 0,
    sum: all.find((s) => s.metricName === `${name}_sum`)?.value ?? 0,
  };
}

/** Polls an async condition; fails with `describe()` after `timeoutMs`. */
async function until(
  condition: () => Promise<boolean>,
  describe: () => Promise<string>,
  timeoutMs = 45_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) expect.fail(`timed out after ${timeoutMs} ms: ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const utf8 = (s: string) => Buffer.byteLength(s, 'utf8');

describe('Prometheus metrics (kinesalite behind a FaultProxy, one shared Registry)', function () {
  this.timeout(90_000);
  let kinesis: LocalKinesis;
  let proxy: FaultProxy;
  const running: Coordinator[] = [];
  const producers: Producer[] = [];
  let streamNo = 0;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  beforeEach(async () => {
    proxy = await FaultProxy.start({ target: kinesis.endpoint, random: seededRandom(11) });
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
    await Promise.all(producers.splice(0).map((p) => p.close()));
    await proxy?.stop();
  });

  after(async () => {
    await kinesis?.stop();
  });

  const viaProxy = () => ({ ...kinesis.clientConfig, endpoint: proxy.endpoint });

  async function newStream(shards: number): Promise<string> {
    const name = `metrics-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards });
    return name;
  }

  /** Writes `items` with a Producer that has metrics on; resolves once every put() did. */
  async function produce(stream: string, items: readonly Item[], registry: Registry): Promise<void> {
    const producer = new Producer<Item>({
      streamName: stream,
      kinesis: viaProxy(),
      lingerMs: 20,
      retry: { backoffMs: { initial: 10, max: 100 } },
      metrics: { registry },
    });
    producers.push(producer as Producer);
    await Promise.all(items.map((item) => producer.put(item, { partitionKey: item.k })));
    await producer.close();
  }

  async function consume(options: Partial<CoordinatorOptions<Item>> & { streamName: string; group: string }) {
    const coordinator = await startCoordinator<Item>({
      kinesis: viaProxy(),
      idleFetchIntervalMs: 100,
      workerThreads: 2,
      maxRecordsPerFetch: 40,
      ...options,
    } as CoordinatorOptions<Item>);
    running.push(coordinator as Coordinator);
    return coordinator;
  }

  it('handler mode: producer and consumer counters match the records, bytes, batches and injected faults', async () => {
    const shards = 3;
    const stream = await newStream(shards);
    const group = 'metrics-handler';
    const items = keyedItems(600, 30);
    const registry = new Registry();

    // Producer: about a fifth of the entries of the first 3 PutRecords calls fail (throttled).
    proxy.addRule({ operation: 'PutRecords', times: 3, action: { type: 'partial-failure', fraction: 0.2 } });
    await produce(stream, items, registry);
    const s = { stream };
    const failedEntries = proxy.counters.injectedEntries;
    expect(failedEntries, 'entries the proxy failed').to.be.greaterThan(0);
    expect(await total(registry, P.recordsPut, s)).to.equal(items.length);
    expect(await total(registry, P.kinesisRecordsPut, s)).to.equal(items.length);
    expect(await total(registry, P.bytesPut, s)).to.equal(
      items.reduce((n, item) => n + utf8(JSON.stringify(item)) + utf8(item.k), 0),
    );
    expect(await total(registry, P.throttledEntries, s)).to.equal(failedEntries);
    expect(await total(registry, P.recordsRetried, s)).to.equal(failedEntries);
    expect(await total(registry, P.recordsFailed, s)).to.equal(0);
    expect(await total(registry, P.putRequests, s)).to.equal(proxy.counters.requests.PutRecords);
    expect((await histogram(registry, P.putRequestDuration, s)).count).to.equal(
      proxy.counters.requests.PutRecords,
    );
    expect(await samples(registry, P.bufferedRecords), 'a closed producer leaves no gauge').to.deep.equal([]);

    // Consumer: 4 GetRecords calls throttled, then one iterator expired.
    proxy.addRule({
      operation: 'GetRecords',
      streamName: stream,
      times: 4,
      action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
    });
    proxy.addRule({
      operation: 'GetRecords',
      streamName: stream,
      times: 1,
      action: { type: 'error', error: 'ExpiredIteratorException' },
    });
    const received: Item[] = [];
    let batches = 0;
    const c = await consume({
      streamName: stream,
      group,
      metrics: { registry },
      handler: (batch) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('batch.processed', () => batches++);
    const g = { stream, group };
    const payloadBytes = items.reduce((n, item) => n + utf8(JSON.stringify(item)), 0);
    await until(
      async () =>
        (await total(registry, C.recordsProcessed, g)) === items.length &&
        (await total(registry, C.bytesProcessed, g)) === payloadBytes &&
        (await samples(registry, C.behindLatest)).filter((x) => has(x, g)).length === shards &&
        (await total(registry, C.expiredIterators, g)) === 1,
      async () => `received ${received.length} of ${items.length}; ${await registry.metrics()}`,
    );
    expect(received).to.have.length(items.length);
    expect(await total(registry, C.currentLeases, g)).to.equal(shards);
    expect(await total(registry, C.leasesTaken, g)).to.be.at.least(shards);
    expect(await total(registry, C.leasesLost, g)).to.equal(0);
    const handlerTime = await histogram(registry, C.handlerDuration, g);
    expect(batches).to.be.greaterThan(shards);
    expect(handlerTime.count).to.equal(batches);
    const injected = proxy.counters.injected;
    expect(injected.ProvisionedThroughputExceededException).to.equal(4);
    expect(await total(registry, C.getRecordsThrottled, g)).to.equal(4);
    expect(await total(registry, C.expiredIterators, g)).to.equal(injected.ExpiredIteratorException);
    expect(await total(registry, C.handlerFailures, g)).to.equal(0);
    const lag = (await samples(registry, C.behindLatest)).filter((x) => has(x, g));
    expect(lag.map((x) => x.labels.shard_id).sort()).to.deep.equal(
      (await kinesis.listShards(stream)).map((x) => x.ShardId).sort(),
    );
    for (const x of lag) expect(x.value).to.be.at.least(0);

    await c.stop();
    // Stopped: its gauges are gone, its counters stay; the final checkpoints and releases are counted.
    expect(await total(registry, C.currentLeases, g)).to.equal(0);
    expect((await samples(registry, C.currentLeases)).filter((x) => has(x, g))).to.deep.equal([]);
    expect((await samples(registry, C.behindLatest)).filter((x) => has(x, g))).to.deep.equal([]);
    expect(await total(registry, C.leasesReleased, { ...g, reason: 'stop' })).to.equal(shards);
    expect(await total(registry, C.checkpointsWritten, g)).to.be.at.least(shards);
    expect(await total(registry, C.recordsProcessed, g)).to.equal(items.length);
  });

  it('handlerModule: handler time is measured in the worker thread and carried back; failures counted', async () => {
    const shards = 2;
    const stream = await newStream(shards);
    const group = 'metrics-module';
    const items: Array<Item & { poison?: boolean; slowMs?: number }> = keyedItems(300, 20);
    items[100] = { ...items[100]!, poison: true };
    items[200] = { ...items[200]!, slowMs: 60 };
    const registry = new Registry();
    await produce(stream, items, registry);
    expect(await total(registry, P.recordsPut, { stream })).to.equal(items.length);

    let batches = 0;
    const actions: string[] = [];
    const c = await consume({
      streamName: stream,
      group,
      handlerModule,
      metrics: { registry },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 0, backoffMs: { initial: 10, max: 10 }, then: 'skip' },
    });
    c.on('batch.processed', () => batches++);
    c.on('handler.failed', (e) => actions.push(e.action));
    const g = { stream, group };
    const payloadBytes = items.reduce((n, item) => n + utf8(JSON.stringify(item)), 0);
    // Every record but the poison one is processed; the bytes of every batch count (the skipped
    // record's batch was processed past it).
    await until(
      async () =>
        (await total(registry, C.recordsProcessed, g)) === items.length - 1 &&
        (await total(registry, C.bytesProcessed, g)) === payloadBytes,
      async () => `${batches} batches; ${await registry.metrics()}`,
    );
    const handlerTime = await histogram(registry, C.handlerDuration, g);
    expect(handlerTime.count).to.equal(batches);
    expect(handlerTime.sum, 'the slow batch took 60 ms in its worker').to.be.at.least(0.06);
    expect(await total(registry, C.handlerFailures, { ...g, action: 'skip' })).to.equal(1);
    expect(await total(registry, C.handlerFailures, g)).to.equal(actions.length);
    expect(await total(registry, C.currentLeases, g)).to.equal(shards);
    expect(await total(registry, C.leasesTaken, g)).to.be.at.least(shards);
    await c.stop();
    expect((await samples(registry, C.currentLeases)).filter((x) => has(x, g))).to.deep.equal([]);
  });
});
