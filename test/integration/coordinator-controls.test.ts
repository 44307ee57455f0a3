// biome-ignore-all lint/suspicious/noThenProperty: onHandlerError.then is the API option name (a string, never a thenable)
/**
 * The Lambda-style handler controls on kinesalite: `maxRecordAgeMs`, the partial-batch answer (handler
 * and handlerModule) and per-shard `parallelism`. Each test counts the records, checks per-key order,
 * and restarts on the same lease store to check what was checkpointed: nothing lost, duplicates only
 * where the checkpoint allows them.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import type { Coordinator, CoordinatorOptions, RecordBatch } from '@shardline/coordinator';
import { MemoryLeaseStore, startCoordinator } from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import {
  expectExactlyOnceInOrder,
  expectPerKeyOrder,
  type Item,
  keyedItems,
  putItems,
  waitFor,
} from './coordinator-helpers.js';

const handlerModule = fileURLToPath(new URL('./fixtures/handler-module.mjs', import.meta.url));

type Marked = Item & { failOnce?: boolean };

describe('startCoordinator handler controls (kinesalite)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  const running: Coordinator[] = [];
  let streamNo = 0;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
  });

  after(async () => {
    await kinesis?.stop();
  });

  async function stream(shards = 1): Promise<string> {
    const name = `controls-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards });
    return name;
  }

  async function start<T = Item>(options: Partial<CoordinatorOptions<T>> & { streamName: string }) {
    const coordinator = await startCoordinator<T>({
      group: 'controls',
      kinesis: kinesis.clientConfig,
      idleFetchIntervalMs: 100,
      idleFetchMaxIntervalMs: 100,
      workerThreads: 1,
      checkpoint: { intervalMs: 100 },
      ...options,
    } as CoordinatorOptions<T>);
    running.push(coordinator as Coordinator);
    return coordinator;
  }

  /** Puts `items` and waits until every one is older than `maxAgeMs` (by its arrival time). */
  async function putAged(streamName: string, items: Item[], maxAgeMs: number): Promise<void> {
    await putItems(kinesis.client(), streamName, items);
    // Their arrival times are before this instant: waiting past maxAgeMs from it ages them all.
    const putDone = Date.now();
    await delay(maxAgeMs + 300 - (Date.now() - putDone));
  }

  /** A handler recording every item it handled. */
  function recorder() {
    const handled: Item[] = [];
    return { handled, handler: (b: RecordBatch<Item>) => void handled.push(...b.records.map((r) => r.data)) };
  }

  it('maxRecordAgeMs: older records are skipped (counted, evented) and checkpointed; fresh ones delivered', async () => {
    const name = await stream();
    const next = new Map<string, number>();
    const old = keyedItems(120, 6, next);
    const maxRecordAgeMs = 1_500;
    await putAged(name, old, maxRecordAgeMs);
    const store = new MemoryLeaseStore();
    const { handled, handler } = recorder();
    let expired = 0;
    const c = await start<Item>({
      streamName: name,
      leases: { store },
      handler,
      maxRecordAgeMs,
      onHandlerError: { then: 'skip' },
    });
    c.on('record.expired', (e) => {
      expect(e.action).to.equal('skip');
      expect(e.ageMs).to.be.above(maxRecordAgeMs);
      expired += e.records;
    });
    await waitFor(
      () => expired >= old.length,
      () => `${expired} of ${old.length} expired`,
    );
    // Fresh records, put while it runs, are handed out at once (well within the age).
    const fresh = keyedItems(60, 6, next);
    await putItems(kinesis.client(), name, fresh);
    await waitFor(
      () => handled.length >= fresh.length,
      () => `${handled.length} of ${fresh.length}`,
    );
    expect(c.status().shards[0]!.recordsExpired).to.equal(old.length);
    expect(c.status().shards[0]!.recordsDelivered).to.equal(fresh.length);
    await c.stop();
    expect(expired).to.equal(old.length);
    expectExactlyOnceInOrder(handled, fresh);

    // The expired records counted as processed: a restart delivers neither them nor the fresh ones.
    const more = keyedItems(30, 6, next);
    await putItems(kinesis.client(), name, more);
    const again = recorder();
    const c2 = await start<Item>({ streamName: name, leases: { store }, handler: again.handler });
    await waitFor(
      () => again.handled.length >= more.length,
      () => `${again.handled.length} of ${more.length}`,
    );
    await waitFor(
      () => c2.status().shards.every((s) => s.millisBehindLatest === 0),
      () => 'caught up',
    );
    expectExactlyOnceInOrder(again.handled, more);
  });

  it('maxRecordAgeMs with a handlerModule: expired in the worker, evented and counted on the coordinator', async () => {
    const name = await stream();
    const next = new Map<string, number>();
    const old = keyedItems(50, 5, next);
    await putAged(name, old, 1_500);
    const reports: Array<{ items: Item[] }> = [];
    const channel = new BroadcastChannel('shardline-handler-module-test');
    channel.onmessage = (event) => reports.push((event as unknown as { data: { items: Item[] } }).data);
    try {
      let expired = 0;
      const c = await start({
        streamName: name,
        handlerModule,
        maxRecordAgeMs: 1_500,
        onHandlerError: { then: 'skip' },
      });
      c.on('record.expired', (e) => {
        expired += e.records;
      });
      await waitFor(
        () => expired >= old.length,
        () => `${expired} of ${old.length} expired`,
      );
      const fresh = keyedItems(20, 5, next);
      await putItems(kinesis.client(), name, fresh);
      const handled = () => reports.flatMap((r) => r.items);
      await waitFor(
        () => handled().length >= fresh.length,
        () => `${handled().length} of ${fresh.length}`,
      );
      expect(c.status().shards[0]!.recordsExpired).to.equal(old.length);
      await c.stop();
      expect(expired).to.equal(old.length);
      expectExactlyOnceInOrder(handled(), fresh);
    } finally {
      channel.close();
    }
  });

  it('a partial-batch answer: records before the failed one are processed once, the rest retried in order', async () => {
    const name = await stream();
    const next = new Map<string, number>();
    const items: Marked[] = keyedItems(300, 5, next).map((x, n) =>
      n % 37 === 20 ? { ...x, failOnce: true } : x,
    );
    await putItems(kinesis.client(), name, items);
    const store = new MemoryLeaseStore();
    const handled: Marked[] = [];
    const failedOnce = new Set<string>();
    let answers = 0;
    let retries = 0;
    const c = await start<Marked>({
      streamName: name,
      leases: { store },
      maxRecordsPerFetch: 100,
      onHandlerError: { retries: 5, backoffMs: { initial: 10, max: 50 } },
      handler: (b) => {
        for (const record of b.records) {
          const id = `${record.data.k}/${record.data.i}`;
          if (record.data.failOnce === true && !failedOnce.has(id)) {
            failedOnce.add(id);
            answers++;
            return { failedAt: record };
          }
          handled.push(record.data);
        }
        return undefined;
      },
    });
    c.on('handler.failed', (e) => {
      if (e.action === 'retry') retries++;
    });
    await waitFor(
      () => handled.length >= items.length,
      () => `${handled.length} of ${items.length}`,
    );
    await c.stop();
    expect(answers).to.equal(items.filter((x) => x.failOnce === true).length);
    expect(retries).to.equal(answers);
    // Nothing before a failed record was handed out again: every item exactly once, in order.
    expectExactlyOnceInOrder(handled, items);

    const more = keyedItems(20, 5, next);
    await putItems(kinesis.client(), name, more);
    const again = recorder();
    await start<Item>({ streamName: name, leases: { store }, handler: again.handler });
    await waitFor(
      () => again.handled.length >= more.length,
      () => `${again.handled.length} of ${more.length}`,
    );
    await delay(300); // a redelivery of old records would arrive with the first fetch, before these
    expectExactlyOnceInOrder(again.handled, more);
  });

  it('a partial-batch answer from a handlerModule: the same, in the worker thread', async () => {
    const name = await stream();
    const items: Marked[] = keyedItems(200, 4).map((x, n) => (n % 41 === 7 ? { ...x, failOnce: true } : x));
    await putItems(kinesis.client(), name, items);
    const reports: Array<{ items: Marked[] }> = [];
    const channel = new BroadcastChannel('shardline-handler-module-test');
    channel.onmessage = (event) => reports.push((event as unknown as { data: { items: Marked[] } }).data);
    try {
      let retries = 0;
      const c = await start({
        streamName: name,
        handlerModule,
        maxRecordsPerFetch: 100,
        onHandlerError: { retries: 5, backoffMs: { initial: 10, max: 50 } },
      });
      c.on('handler.failed', (e) => {
        if (e.action === 'retry') retries++;
      });
      const handled = () => reports.flatMap((r) => r.items);
      await waitFor(
        () => handled().length >= items.length,
        () => `${handled().length} of ${items.length}`,
      );
      await c.stop();
      expect(retries).to.equal(items.filter((x) => x.failOnce === true).length);
      expectExactlyOnceInOrder(handled(), items);
    } finally {
      channel.close();
    }
  });

  it("parallelism: concurrent calls, per-key order; a 'stop-shard' in one key group checkpoints before its record", async () => {
    const name = await stream();
    const items = keyedItems(600, 24);
    await putItems(kinesis.client(), name, items);
    const store = new MemoryLeaseStore();
    const seqOf = new Map<string, bigint>();
    const runs: Item[][] = [[], []];
    const poison = 'key-5/9';
    let inFlight = 0;
    let maxInFlight = 0;
    const handlerFor = (run: Item[], fail: boolean) => async (b: RecordBatch<Item>) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      try {
        await delay(20);
        if (fail && b.records.some((r) => `${r.data.k}/${r.data.i}` === poison)) throw new Error('poison');
        for (const r of b.records) {
          seqOf.set(`${r.data.k}/${r.data.i}`, BigInt(r.sequenceNumber));
          run.push(r.data);
        }
      } finally {
        inFlight--;
      }
    };
    const options = { streamName: name, leases: { store }, maxRecordsPerFetch: 60, parallelism: 4 };
    const c = await start<Item>({
      ...options,
      onHandlerError: { retries: 0, then: 'stop-shard' },
      handler: handlerFor(runs[0]!, true),
    });
    let stops = 0;
    c.on('handler.failed', (e) => {
      if (e.action === 'stop-shard') stops++;
    });
    await waitFor(
      () => c.status().shards[0]!.state === 'failing',
      () => `${runs[0]!.length} handled, ${c.status().shards[0]!.state}`,
    );
    const failure = c.status().shards[0]!.failure!;
    await c.stop();
    expect(stops).to.equal(1);
    const checkpoint = BigInt(c.status().shards[0]!.checkpoint!);
    expect(maxInFlight, 'concurrent handler calls on one shard').to.be.within(2, 4);
    expectPerKeyOrder(runs[0]!);
    const first = new Set(runs[0]!.map((x) => `${x.k}/${x.i}`));
    expect(first.has(poison)).to.equal(false);
    // The shard stopped at the poison record and its checkpoint is before it, although other key
    // groups had processed records after it.
    const failedAt = BigInt(failure.sequenceNumber!);
    expect(checkpoint < failedAt, `checkpoint ${checkpoint} before ${failedAt}`).to.equal(true);
    const ahead = runs[0]!.filter((x) => seqOf.get(`${x.k}/${x.i}`)! > failedAt);
    expect(ahead.length, 'records of other groups processed past the failed one').to.be.above(0);

    const c2 = await start<Item>({ ...options, handler: handlerFor(runs[1]!, false) });
    await waitFor(
      () => new Set([...first, ...runs[1]!.map((x) => `${x.k}/${x.i}`)]).size >= items.length,
      () => `${runs[0]!.length} + ${runs[1]!.length} handled`,
    );
    await waitFor(
      () => c2.status().shards.every((s) => s.millisBehindLatest === 0),
      () => 'caught up',
    );
    expectPerKeyOrder(runs[1]!);
    // Handed out again: only records past the checkpoint (the poison one, and what other groups had
    // processed ahead of it); nothing at or before the checkpoint.
    expect(runs[1]!.every((x) => seqOf.get(`${x.k}/${x.i}`)! > checkpoint)).to.equal(true);
    const duplicates = runs[1]!.filter((x) => first.has(`${x.k}/${x.i}`));
    expect(duplicates.length).to.be.at.least(ahead.length);
    expect(duplicates.length).to.be.below(60 * 2);
    const union = [...runs[0]!, ...runs[1]!.filter((x) => !first.has(`${x.k}/${x.i}`))];
    expect(union.length).to.equal(items.length);
    expect(new Set(union.map((x) => `${x.k}/${x.i}`)).size).to.equal(items.length);
  });

  it('parallelism with a handlerModule: concurrent calls in the worker, each key in order', async () => {
    const name = await stream();
    const items = keyedItems(300, 16).map((x) => ({ ...x, slowMs: 10 }));
    await putItems(kinesis.client(), name, items);
    const reports: Array<{ items: Item[]; concurrent: number }> = [];
    const channel = new BroadcastChannel('shardline-handler-module-test');
    channel.onmessage = (event) =>
      reports.push((event as unknown as { data: { items: Item[]; concurrent: number } }).data);
    try {
      const c = await start({ streamName: name, handlerModule, maxRecordsPerFetch: 50, parallelism: 4 });
      const handled = () => reports.flatMap((r) => r.items);
      await waitFor(
        () => handled().length >= items.length,
        () => `${handled().length} of ${items.length}`,
      );
      await c.stop();
      expect(Math.max(...reports.map((r) => r.concurrent))).to.be.within(2, 4);
      expectExactlyOnceInOrder(
        handled().map((x) => ({ k: x.k, i: x.i })),
        items.map((x) => ({ k: x.k, i: x.i })),
      );
    } finally {
      channel.close();
    }
  });
});
