/**
 * startCoordinator behind a FaultProxy (kinesalite upstream): throttling, a burst of 500s, dropped
 * connections and an expired iterator. Every record arrives once and in order; throttles are counted in
 * status; a throttled shard does not hold the others back.
 */
import type { RecordBatch } from '@shardline/coordinator';
import { startCoordinator } from '@shardline/coordinator';
import { FaultProxy, type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { seededRandom } from '../support/random.js';
import { expectExactlyOnceInOrder, type Item, keyedItems, putItems, waitFor } from './coordinator-helpers.js';

describe('startCoordinator behind a FaultProxy (kinesalite)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  let proxy: FaultProxy;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  beforeEach(async () => {
    proxy = await FaultProxy.start({ target: kinesis.endpoint, random: seededRandom(7) });
  });

  afterEach(async () => {
    await proxy?.stop();
  });

  after(async () => {
    await kinesis?.stop();
  });

  async function streamOf(name: string, count: number): Promise<Item[]> {
    await kinesis.createStream(name, { shards: 4 });
    const items = keyedItems(count, 40);
    await putItems(kinesis.client(), name, items);
    return items;
  }

  it('30% of GetRecords throttled, a burst of 500s, dropped connections, an expired iterator: all delivered once, throttles counted', async () => {
    const stream = `faults-${process.pid}`;
    const items = await streamOf(stream, 800);
    proxy.addRule({
      operation: 'GetRecords',
      probability: 0.3,
      action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
    });
    proxy.addRule({ operation: 'GetRecords', times: 5, action: { type: 'error', error: 'InternalFailure' } });
    proxy.addRule({ operation: 'GetRecords', times: 2, action: { type: 'reset' } });
    proxy.addRule({
      operation: 'GetRecords',
      times: 1,
      action: { type: 'error', error: 'ExpiredIteratorException' },
    });

    const received: Item[] = [];
    let throttledEvents = 0;
    const c = await startCoordinator<Item>({
      streamName: stream,
      group: 'faults',
      kinesis: { ...kinesis.clientConfig, endpoint: proxy.endpoint },
      idleFetchIntervalMs: 100,
      workerThreads: 2,
      maxRecordsPerFetch: 50,
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('throttled', () => throttledEvents++);
    try {
      await waitFor(
        () => received.length >= items.length,
        () => `${received.length} of ${items.length}`,
        45_000,
      );
      const injected = proxy.counters.injected;
      expect(injected.InternalFailure).to.equal(5);
      expect(injected.ExpiredIteratorException).to.equal(1);
      expect(proxy.counters.resets).to.equal(2);
      const throttled = c.status().shards.reduce((n, s) => n + s.throttled, 0);
      expect(throttled).to.be.greaterThan(0);
      expect(throttled).to.equal(injected.ProvisionedThroughputExceededException);
      expect(throttledEvents).to.equal(throttled);
    } finally {
      await c.stop();
    }
    expectExactlyOnceInOrder(received, items);
  });

  it('a shard throttled on every call does not hold the other shards back', async () => {
    const stream = `faults-one-${process.pid}`;
    const items = await streamOf(stream, 400);
    const shards = await kinesis.listShards(stream);
    const stuck = shards[0]!.ShardId!;
    const rule = proxy.addRule({
      operation: 'GetRecords',
      shardId: stuck,
      action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
    });
    const received: Array<Item & { shardId: string }> = [];
    const c = await startCoordinator<Item>({
      streamName: stream,
      group: 'faults-one',
      kinesis: { ...kinesis.clientConfig, endpoint: proxy.endpoint },
      idleFetchIntervalMs: 100,
      workerThreads: 1,
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) received.push({ ...r.data, shardId: batch.shardId });
      },
    });
    try {
      await waitFor(
        () => {
          const status = c.status().shards;
          const others = status.filter((s) => s.shardId !== stuck);
          return (
            others.every((s) => s.millisBehindLatest === 0 && s.recordsDelivered > 0) &&
            status.find((s) => s.shardId === stuck)!.throttled >= 2
          );
        },
        () => JSON.stringify(c.status().shards),
      );
      expect(received.filter((r) => r.shardId === stuck)).to.have.length(0);
      rule.remove();
      await waitFor(
        () => received.length >= items.length,
        () => `${received.length} of ${items.length}`,
      );
    } finally {
      await c.stop();
    }
    expectExactlyOnceInOrder(
      received.map(({ k, i }) => ({ k, i })),
      items,
    );
  });
});
