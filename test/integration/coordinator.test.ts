/**
 * startCoordinator() on one host with in-memory leases, against kinesis-mock: every record delivered
 * exactly once and in order per key, in handler and iterator mode, with plain and KPL-aggregated
 * input; checkpoints (auto and manual) and initial positions.
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { RecordBatch } from '@shardline/coordinator';
import { MemoryLeaseStore, startCoordinator } from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import {
  coordinatorStarter,
  expectExactlyOnceInOrder,
  type Item,
  keyedItems,
  putAggregated,
  putItems,
  readingShards,
  waitFor,
} from './coordinator-helpers.js';

const FAST = {
  idleFetchIntervalMs: 100,
  workerThreads: 2,
  checkpoint: { mode: 'auto' as const, intervalMs: 100 },
};

describe('startCoordinator (kinesis-mock, one host, memory leases)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  const coordinators = coordinatorStarter(() => ({
    streamName: stream,
    kinesis: kinesis.clientConfig,
    ...FAST,
  }));
  const stream = `coord-${process.pid}`;
  const first = keyedItems(2_000, 40);
  /** Per-key counters and every item put so far, in put order. */
  const next = new Map<string, number>();
  const produced: Item[] = [];
  async function put(count: number, keys: number): Promise<Item[]> {
    const items = keyedItems(count, keys, next);
    await putItems(client, stream, items);
    produced.push(...items);
    return items;
  }

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesis-mock' });
    client = kinesis.client();
    await kinesis.createStream(stream, { shards: 4 });
    for (const item of first) next.set(item.k, item.i + 1);
    await putItems(client, stream, first);
    produced.push(...first);
  });

  afterEach(async () => {
    await coordinators.stopAll();
  });

  after(async () => {
    await kinesis?.stop();
  });

  const { start } = coordinators;

  it('handler mode: 2,000 keyed records over 4 shards, each once, in order per key; a restart delivers only new records', async () => {
    const store = new MemoryLeaseStore();
    const received: Item[] = [];
    const checkpoints: string[] = [];
    const c = await start({
      group: 'handler',
      leases: { store },
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('checkpoint', (e) => checkpoints.push(e.shardId));
    await waitFor(
      () => received.length >= first.length,
      () => `${received.length} of ${first.length}`,
    );
    expect(readingShards(c)).to.have.length(4);
    const status = c.status();
    expect(JSON.parse(JSON.stringify(status))).to.deep.equal(status);
    expect(status).to.include({ group: 'handler', stream, state: 'running', resharding: false });
    expect(status.shards.reduce((n, s) => n + s.recordsDelivered, 0)).to.equal(first.length);
    await c.stop();
    expect(c.status().state).to.equal('stopped');
    expect(new Set(checkpoints).size, 'a checkpoint per shard').to.equal(4);
    expectExactlyOnceInOrder(received, first);

    // Restart with the same store: nothing before the checkpoints comes again.
    const more = await put(200, 40);
    const again: Item[] = [];
    const c2 = await start({
      group: 'handler',
      leases: { store },
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) again.push(r.data);
      },
    });
    await waitFor(
      () => again.length >= more.length,
      () => `${again.length} of ${more.length}`,
    );
    // Idle fetches would have shown any replay by now; give them a moment to be sure.
    await waitFor(
      () => c2.status().shards.every((s) => s.lastFetchAt !== undefined && s.millisBehindLatest === 0),
      () => JSON.stringify(c2.status().shards),
    );
    await c2.stop();
    expectExactlyOnceInOrder(again, more);
  });

  it('iterator mode: every record once, in order per key; a batch checkpointed before break counts, stop() checkpoints', async () => {
    const store = new MemoryLeaseStore();
    const all = [...produced];
    const received: Item[] = [];
    const c = await start({ group: 'iterator', leases: { store } });
    for await (const batch of c) {
      for (const r of batch.records) received.push(r.data);
      if (received.length >= all.length) {
        // Leaving the loop does not count the batch in hand by itself (see the next test).
        await batch.checkpoint();
        break;
      }
    }
    await c.stop();
    expectExactlyOnceInOrder(received, all);

    // Restart: everything was checkpointed, so only new records arrive.
    const more = await put(40, 40);
    const again: Item[] = [];
    const c2 = await start({ group: 'iterator', leases: { store } });
    for await (const batch of c2) {
      for (const r of batch.records) again.push(r.data);
      if (again.length >= more.length) {
        await batch.checkpoint();
        break;
      }
    }
    await c2.stop();
    expectExactlyOnceInOrder(again, more);
  });

  it('iterator mode: an exception in the loop body does not count the batch in hand: stop() and a restart deliver it again', async () => {
    const store = new MemoryLeaseStore();
    const all = [...produced];
    // A first run processes everything: the group's checkpoints are at the end of each shard.
    const c0 = await start({ group: 'iterator-throw', leases: { store } });
    const seen: Item[] = [];
    for await (const batch of c0) {
      for (const r of batch.records) seen.push(r.data);
      if (seen.length >= all.length) {
        await batch.checkpoint();
        break;
      }
    }
    await c0.stop();
    const more = await put(200, 40);
    const c = await start({ group: 'iterator-throw', leases: { store } });
    const processed: Item[] = [];
    let failed: RecordBatch<Item> | undefined;
    const boom = new Error('processing failed');
    try {
      for await (const batch of c) {
        if (processed.length >= 40) {
          failed = batch;
          throw boom;
        }
        for (const r of batch.records) processed.push(r.data);
      }
    } catch (error) {
      expect(error).to.equal(boom);
    }
    expect(failed, 'a batch failed in the loop').to.not.equal(undefined);
    await c.stop();
    // The failed batch was not checkpointed: a restart delivers it again (and everything after it).
    const failedItems = failed!.records.map((r) => `${r.data.k}/${r.data.i}`);
    const again: Item[] = [];
    const c2 = await start({ group: 'iterator-throw', leases: { store } });
    const want = more.length - processed.length;
    for await (const batch of c2) {
      for (const r of batch.records) again.push(r.data);
      if (new Set(again.map((x) => `${x.k}/${x.i}`)).size >= want) {
        await batch.checkpoint();
        break;
      }
    }
    await c2.stop();
    const redelivered = new Set(again.map((x) => `${x.k}/${x.i}`));
    for (const id of failedItems)
      expect(redelivered.has(id), `${id} of the failed batch delivered again`).to.equal(true);
    // Nothing lost: what the failing run processed plus what the restart delivered covers every record.
    const union = new Set([...processed.map((x) => `${x.k}/${x.i}`), ...redelivered]);
    const missing = more.filter((x) => !union.has(`${x.k}/${x.i}`)).map((x) => `${x.k}/${x.i}`);
    expect(missing, 'records lost').to.deep.equal([]);
  });

  it('manual checkpoints: only batch.checkpoint() writes; a restart resumes after the last one', async () => {
    const store = new MemoryLeaseStore();
    const all = [...produced];
    const received: Item[] = [];
    const checkpointed: Item[] = [];
    const c = await start({
      group: 'manual',
      leases: { store },
      checkpoint: { mode: 'manual' },
      maxRecordsPerFetch: 100,
    });
    let writes = 0;
    c.on('checkpoint', () => writes++);
    // Checkpoint the first batch of each shard only, part way (upTo), then nothing more.
    const done = new Set<string>();
    for await (const batch of c) {
      for (const r of batch.records) received.push(r.data);
      if (!done.has(batch.shardId)) {
        done.add(batch.shardId);
        const upTo = batch.records[Math.floor(batch.records.length / 2)]!;
        await batch.checkpoint(upTo);
        checkpointed.push(...batch.records.slice(0, batch.records.indexOf(upTo) + 1).map((r) => r.data));
      }
      if (received.length >= all.length) break;
    }
    await c.stop();
    expect(writes).to.equal(4);
    expectExactlyOnceInOrder(received, all);

    const again: Item[] = [];
    const c2 = await start({ group: 'manual', leases: { store }, checkpoint: { mode: 'manual' } });
    const expected = all.filter((x) => !checkpointed.some((y) => y.k === x.k && y.i === x.i));
    for await (const batch of c2) {
      for (const r of batch.records) again.push(r.data);
      if (again.length >= expected.length) break;
    }
    await c2.stop();
    expectExactlyOnceInOrder(again, expected);
  });

  it("initialPosition 'LATEST' reads only what arrives after the start; { timestamp } from that time", async () => {
    const latest: Item[] = [];
    const c = await start({
      group: 'latest',
      initialPosition: 'LATEST',
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) latest.push(r.data);
      },
    });
    await waitFor(
      () => c.status().shards.every((s) => s.lastFetchAt !== undefined),
      () => 'first fetches',
    );
    const since = new Date();
    const fresh = await put(80, 8);
    await waitFor(
      () => latest.length >= fresh.length,
      () => `${latest.length} of ${fresh.length}`,
    );
    expectExactlyOnceInOrder(latest, fresh);

    const timed: Item[] = [];
    await start({
      group: 'timestamp',
      initialPosition: { timestamp: new Date(since.getTime() - 1) },
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) timed.push(r.data);
      },
    });
    await waitFor(
      () => timed.length >= fresh.length,
      () => `${timed.length} of ${fresh.length}`,
    );
    expectExactlyOnceInOrder(timed, fresh);
  });
});

describe('startCoordinator with KPL-aggregated input (kinesis-mock)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesis-mock' });
  });

  after(async () => {
    await kinesis?.stop();
  });

  it('deaggregates: 2,000 records in aggregates of 25, each once, in order, in handler and iterator mode', async () => {
    const stream = `coord-kpl-${process.pid}`;
    await kinesis.createStream(stream, { shards: 4 });
    const client = kinesis.client();
    const items = keyedItems(2_000, 40);
    const puts = await putAggregated(client, stream, items, 25);
    expect(puts).to.equal(80);

    const handled: Item[] = [];
    const subSequences = new Set<number>();
    const c = await startCoordinator<Item>({
      streamName: stream,
      group: 'kpl-handler',
      kinesis: kinesis.clientConfig,
      ...FAST,
      handler: (batch) => {
        for (const r of batch.records) {
          handled.push(r.data);
          if (r.subSequenceNumber !== undefined) subSequences.add(r.subSequenceNumber);
        }
      },
    });
    try {
      await waitFor(
        () => handled.length >= items.length,
        () => `${handled.length} of ${items.length}`,
      );
    } finally {
      await c.stop();
    }
    expectExactlyOnceInOrder(handled, items);
    expect([...subSequences].sort((a, b) => a - b)).to.deep.equal(Array.from({ length: 25 }, (_, i) => i));

    const iterated: Item[] = [];
    const c2 = await startCoordinator<Item>({
      streamName: stream,
      group: 'kpl-iterator',
      kinesis: kinesis.clientConfig,
      ...FAST,
    });
    for await (const batch of c2) {
      for (const r of batch.records) iterated.push(r.data);
      if (iterated.length >= items.length) break;
    }
    await c2.stop();
    expectExactlyOnceInOrder(iterated, items);
  });

  it('aggregates far larger than maxBufferedRecords overdraw the credit without stalling the reader', async () => {
    const stream = `coord-kpl-big-${process.pid}`;
    await kinesis.createStream(stream, { shards: 1 });
    const client = kinesis.client();
    const next = new Map<string, number>();
    const first = keyedItems(2_000, 4, next);
    // 4 keys x 500 records in aggregates of 250: one GetRecords answer holds 160 times the credit.
    expect(await putAggregated(client, stream, first, 250)).to.equal(8);
    const handled: Item[] = [];
    const c = await startCoordinator<Item>({
      streamName: stream,
      group: 'kpl-big',
      kinesis: kinesis.clientConfig,
      ...FAST,
      maxBufferedRecords: 50,
      handler: (batch) => {
        for (const r of batch.records) handled.push(r.data);
      },
    });
    try {
      await waitFor(
        () => handled.length >= first.length,
        () => `${handled.length} of ${first.length}`,
      );
      // The reader fetches again after that overdraft: records put now arrive too.
      const second = keyedItems(1_000, 4, next);
      await putAggregated(client, stream, second, 250);
      await waitFor(
        () => handled.length >= first.length + second.length,
        () => `${handled.length} of ${first.length + second.length}`,
      );
      expectExactlyOnceInOrder(handled, [...first, ...second]);
    } finally {
      await c.stop();
    }
  });
});
