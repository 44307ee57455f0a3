/**
 * handlerModule delivery on kinesalite: the handler runs inside the shard worker threads; records are
 * delivered once and in order per key, positions are checkpointed by the coordinator, and failures
 * follow onHandlerError as on the coordinator thread.
 */
import { fileURLToPath } from 'node:url';
import { BroadcastChannel, threadId } from 'node:worker_threads';
import type { Coordinator, CoordinatorOptions } from '@shardline/coordinator';
import { MemoryLeaseStore, startCoordinator } from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { expectExactlyOnceInOrder, type Item, keyedItems, putItems, waitFor } from './coordinator-helpers.js';

const handlerModule = fileURLToPath(new URL('./fixtures/handler-module.mjs', import.meta.url));

interface Report {
  shardId: string;
  items: Array<Item & { poison?: boolean; checkpoint?: boolean }>;
  threadId: number;
}

describe('startCoordinator with handlerModule (kinesalite)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  let channel: BroadcastChannel;
  let reports: Report[];
  const running: Coordinator[] = [];
  let streamNo = 0;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  beforeEach(() => {
    reports = [];
    channel = new BroadcastChannel('shardline-handler-module-test');
    channel.onmessage = (event) => reports.push((event as unknown as { data: Report }).data);
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
    channel.close();
  });

  after(async () => {
    await kinesis?.stop();
  });

  const handled = () => reports.flatMap((r) => r.items);

  async function start(options: Partial<CoordinatorOptions> & { streamName: string }) {
    const coordinator = await startCoordinator({
      group: 'module',
      kinesis: kinesis.clientConfig,
      handlerModule,
      idleFetchIntervalMs: 100,
      workerThreads: 2,
      checkpoint: { intervalMs: 100 },
      ...options,
    } as CoordinatorOptions);
    running.push(coordinator);
    return coordinator;
  }

  it('runs the handler in the worker threads: every record once, in order per key; a restart resumes', async () => {
    const name = `module-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards: 4 });
    const next = new Map<string, number>();
    const first = keyedItems(800, 40, next);
    await putItems(kinesis.client(), name, first);
    const store = new MemoryLeaseStore();
    let processedEvents = 0;
    const c = await start({ streamName: name, leases: { store } });
    c.on('batch.processed', (e) => {
      processedEvents += e.records;
    });
    await waitFor(
      () => handled().length >= first.length,
      () => `${handled().length} of ${first.length}`,
    );
    const threads = new Set(reports.map((r) => r.threadId));
    expect(threads.has(threadId), 'ran on the main thread').to.equal(false);
    // 4 shards on workerThreads 2: the readers are spread over both threads, not queued on the first.
    expect(threads.size, 'worker threads used').to.equal(2);
    const placed = c.status().shards.map((x) => x.thread);
    expect([...new Set(placed)].sort(), `status() threads ${JSON.stringify(placed)}`).to.deep.equal([0, 1]);
    await waitFor(
      () => processedEvents >= first.length,
      () => `${processedEvents}`,
    );
    const status = c.status();
    expect(status.shards.reduce((n, s) => n + s.recordsDelivered, 0)).to.equal(first.length);
    expect(status.bufferedRecords).to.equal(0);
    await c.stop();
    expectExactlyOnceInOrder(handled(), first);

    const more = keyedItems(80, 40, next);
    await putItems(kinesis.client(), name, more);
    reports = [];
    const c2 = await start({ streamName: name, leases: { store } });
    await waitFor(
      () => handled().length >= more.length,
      () => `${handled().length} of ${more.length}`,
    );
    await waitFor(
      () => c2.status().shards.every((s) => s.millisBehindLatest === 0),
      () => 'caught up',
    );
    expectExactlyOnceInOrder(handled(), more);
  });

  it("a handler that keeps throwing: retried in the worker, then 'stop-shard' on the coordinator", async () => {
    const name = `module-${process.pid}-${streamNo++}`;
    const { shards } = await kinesis.createStream(name, { shards: 1 });
    const items = [
      { k: 'a', i: 0 },
      { k: 'a', i: 1, poison: true },
      { k: 'a', i: 2 },
    ];
    await putItems(kinesis.client(), name, items);
    const failures: string[] = [];
    const c = await start({
      streamName: name,
      maxRecordsPerFetch: 1,
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 1, backoffMs: { initial: 10, max: 20 }, then: 'stop-shard' },
    });
    c.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.error.code}`));
    // The shard shows 'failing' at once; its final checkpoint (after record 0) is written just after.
    await waitFor(
      () => c.status().shards[0]!.state === 'failing' && c.status().shards[0]!.checkpoint !== undefined,
      () => JSON.stringify(c.status().shards),
    );
    expect(failures).to.deep.equal(['retry:1:ERR_HANDLER', 'stop-shard:2:ERR_HANDLER']);
    expect(handled().map((x) => x.i)).to.deep.equal([0]);
    const checkpoint = c.status().shards[0]!.checkpoint;
    expect(checkpoint).to.be.a('string');
    expect(c.status().shards[0]!.shardId).to.equal(shards[0]!.ShardId);
  });

  it('stop() while the module processes slowly: the batches in flight finish and are checkpointed', async () => {
    const name = `module-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards: 2 });
    const items = keyedItems(300, 10).map((x) => ({ ...x, slowMs: 50 }));
    await putItems(kinesis.client(), name, items);
    const store = new MemoryLeaseStore();
    let peak = 0;
    const c = await start({
      streamName: name,
      leases: { store },
      maxRecordsPerFetch: 10,
      maxBufferedRecords: 40,
    });
    const sampler = setInterval(() => {
      peak = Math.max(peak, c.status().bufferedRecords);
    }, 5);
    try {
      await waitFor(
        () => handled().length >= 60,
        () => `${handled().length}`,
      );
      await c.stop();
    } finally {
      clearInterval(sampler);
    }
    expect(peak).to.be.greaterThan(0);
    expect(peak, 'buffered records').to.be.at.most(40 + 2 * 10);
    const before = handled().length;
    expect(before).to.be.lessThan(items.length);
    const c2 = await start({ streamName: name, leases: { store }, maxRecordsPerFetch: 100 });
    await waitFor(
      () => handled().length >= items.length,
      () => `${handled().length} of ${items.length}`,
    );
    await c2.stop();
    expectExactlyOnceInOrder(
      handled().map(({ k, i }) => ({ k, i })),
      items.map(({ k, i }) => ({ k, i })),
    );
  });

  it('a module without a default export function: the shard reports ERR_INVALID_OPTION and is left alone', async () => {
    const name = `module-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards: 1 });
    const errors: string[] = [];
    const c = await start({
      streamName: name,
      handlerModule: 'data:text/javascript,export const notAHandler = 1;',
    });
    c.on('error', (e) => errors.push(e.error.code));
    await waitFor(
      () => c.status().shards[0]!.state === 'failing',
      () => JSON.stringify(c.status().shards),
    );
    expect(errors).to.deep.equal(['ERR_INVALID_OPTION']);
    expect(c.status().state).to.equal('running');
  });

  it('manual checkpoints from inside the module reach the lease store; a restart resumes after them', async () => {
    const name = `module-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards: 1 });
    const items = [
      { k: 'a', i: 0 },
      { k: 'a', i: 1, checkpoint: true },
      { k: 'a', i: 2 },
    ];
    await putItems(kinesis.client(), name, items);
    const store = new MemoryLeaseStore();
    const checkpoints: string[] = [];
    const c = await start({ streamName: name, leases: { store }, checkpoint: { mode: 'manual' } });
    c.on('checkpoint', (e) => checkpoints.push(e.sequenceNumber));
    await waitFor(
      () => handled().length >= 3,
      () => `${handled().length}`,
    );
    await waitFor(
      () => checkpoints.length === 1,
      () => `${checkpoints}`,
    );
    await c.stop();
    expect(checkpoints).to.have.length(1);
    reports = [];
    const c2 = await start({ streamName: name, leases: { store }, checkpoint: { mode: 'manual' } });
    await waitFor(
      () => handled().length >= 1,
      () => `${handled().length}`,
    );
    await waitFor(
      () => c2.status().shards.every((s) => s.millisBehindLatest === 0),
      () => 'caught up',
    );
    expect(handled().map((x) => x.i)).to.deep.equal([2]);
  });
});
