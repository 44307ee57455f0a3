/**
 * startCoordinator policies on kinesalite: maxShardConsumers, handler failures (retries, then the
 * failing batch isolated record by record) and poison records (stop-shard, skip, dead-letter), a
 * graceful stop during a slow handler with bounded memory, and Redis leases.
 */
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { type Codec, KPL_MAGIC } from '@shardline/common';
import type { Coordinator, CoordinatorOptions, RecordBatch } from '@shardline/coordinator';
import {
  MemoryLeaseManager,
  MemoryLeaseStore,
  RedisLeaseManager,
  readLeaseGroup,
  startCoordinator,
} from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis, type TestRedis, useTestRedis } from '@shardline/testing';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import {
  expectExactlyOnceInOrder,
  type Item,
  keyedItems,
  readingShards,
  waitFor,
} from './coordinator-helpers.js';

const encoder = new TextEncoder();

describe('startCoordinator policies (kinesalite)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  const running: Coordinator[] = [];
  let streamNo = 0;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
    client = kinesis.client();
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
  });

  after(async () => {
    await kinesis?.stop();
  });

  /** A stream with `perShard` items on each shard (keys `s<shard>-k<n>`), put in order. */
  async function streamWith(shardCount: number, perShard: number) {
    const name = `policies-${process.pid}-${streamNo++}`;
    const { shards } = await kinesis.createStream(name, { shards: shardCount });
    const items = new Map<string, Item[]>();
    for (const [s, shard] of shards.entries()) {
      const list = keyedItems(perShard, 5).map((x) => ({ k: `s${s}-${x.k}`, i: x.i }));
      items.set(shard.ShardId!, list);
      await putRaw(
        name,
        list.map((x) => encoder.encode(JSON.stringify(x))),
        shard.HashKeyRange!.StartingHashKey!,
      );
    }
    return {
      name,
      shardIds: shards.map((s) => s.ShardId!),
      items,
      hashKeys: shards.map((s) => s.HashKeyRange!.StartingHashKey!),
    };
  }

  async function putRaw(streamName: string, payloads: Uint8Array[], explicitHashKey: string): Promise<void> {
    const out = await client.send(
      new PutRecordsCommand({
        StreamName: streamName,
        Records: payloads.map((Data, n) => ({
          Data,
          PartitionKey: `p${n}`,
          ExplicitHashKey: explicitHashKey,
        })),
      }),
    );
    expect(out.FailedRecordCount ?? 0).to.equal(0);
  }

  async function start<T = Item>(options: Partial<CoordinatorOptions<T>> & { streamName: string }) {
    const coordinator = await startCoordinator<T>({
      group: 'policies',
      kinesis: kinesis.clientConfig,
      idleFetchIntervalMs: 100,
      workerThreads: 2,
      checkpoint: { intervalMs: 100 },
      ...options,
    } as CoordinatorOptions<T>);
    running.push(coordinator as Coordinator);
    return coordinator;
  }

  it('maxShardConsumers: 2 on 4 shards: exactly 2 read, the rest show available, a capacity warning', async () => {
    const s = await streamWith(4, 50);
    const byShard = new Map<string, number>();
    const c = await start({
      streamName: s.name,
      maxShardConsumers: 2,
      handler: (batch: RecordBatch<Item>) => {
        byShard.set(batch.shardId, (byShard.get(batch.shardId) ?? 0) + batch.records.length);
      },
    });
    const warnings: string[] = [];
    const acquired: string[] = [];
    c.on('warning', (w) => warnings.push(w.code));
    c.on('lease.acquired', (e) => acquired.push(e.shardId));
    // Counted from the start: a shard's last checkpoint may be written before all 100 records are in
    // (the other shard's records can come later than the 100 ms checkpoint interval).
    let ticks = 0;
    c.on('checkpoint', () => ticks++);
    await waitFor(
      () => [...byShard.values()].reduce((a, b) => a + b, 0) >= 100,
      () => JSON.stringify([...byShard]),
    );
    // Both reading shards checkpointed their last records: still exactly two.
    await waitFor(
      () => ticks >= 2,
      () => 'checkpoints',
    );
    const status = c.status();
    expect(status.shards.filter((x) => x.state === 'reading')).to.have.length(2);
    expect(status.shards.filter((x) => x.state === 'available')).to.have.length(2);
    expect(warnings).to.deep.equal(['insufficient-capacity']);
    // A handler-mode coordinator cannot also be iterated.
    expect(() => c[Symbol.asyncIterator]())
      .to.throw(/cannot also be iterated/)
      .with.property('code', 'ERR_INVALID_OPTION');
    expect(acquired.sort()).to.deep.equal(
      status.shards.filter((x) => x.state === 'reading').map((x) => x.shardId),
    );
    expect(byShard.size).to.equal(2);
    expect([...byShard.values()]).to.deep.equal([50, 50]);
    expect(status.shards.filter((x) => x.recordsDelivered > 0).map((x) => x.state)).to.deep.equal([
      'reading',
      'reading',
    ]);
  });

  it("a handler that keeps failing on one record: retried, isolated, then 'stop-shard' just before that record", async () => {
    const s = await streamWith(2, 40);
    const poisonShard = s.shardIds[0]!;
    const poison = s.items.get(poisonShard)![17]!;
    const received: Array<Item & { sequenceNumber: string }> = [];
    const failures: Array<{ action: string; attempt: number; code: string; records: number }> = [];
    const c = await start({
      streamName: s.name,
      maxRecordsPerFetch: 10,
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 2, backoffMs: { initial: 10, max: 20 }, then: 'stop-shard' },
      handler: (batch: RecordBatch<Item>) => {
        if (batch.records.some((r) => r.data.k === poison.k && r.data.i === poison.i)) {
          throw new Error('poison');
        }
        for (const r of batch.records) received.push({ ...r.data, sequenceNumber: r.sequenceNumber });
      },
    });
    c.on('handler.failed', (e) =>
      failures.push({ action: e.action, attempt: e.attempt, code: e.error.code, records: e.records }),
    );
    await waitFor(
      () => c.status().shards.find((x) => x.shardId === poisonShard)?.state === 'failing',
      () => JSON.stringify(c.status().shards),
    );
    // The poison record's batch (10 records): three attempts, then each record alone until the poison one.
    expect(failures).to.deep.equal([
      { action: 'retry', attempt: 1, code: 'ERR_HANDLER', records: 10 },
      { action: 'retry', attempt: 2, code: 'ERR_HANDLER', records: 10 },
      { action: 'isolate', attempt: 3, code: 'ERR_HANDLER', records: 10 },
      { action: 'stop-shard', attempt: 4, code: 'ERR_HANDLER', records: 1 },
    ]);
    // The other shard is read to the end; the failing one stopped just before its poison record.
    const other = s.items.get(s.shardIds[1]!)!;
    await waitFor(
      () => received.filter((x) => x.k.startsWith('s1-')).length >= other.length,
      () => `${received.length}`,
    );
    const fromPoisonShard = received.filter((x) => x.k.startsWith('s0-'));
    // Every record before the poison one, its own batch's included, exactly once and in order.
    expect(fromPoisonShard.map((x) => ({ k: x.k, i: x.i }))).to.deep.equal(
      s.items.get(poisonShard)!.slice(0, 17),
    );
    const lastGood = fromPoisonShard[fromPoisonShard.length - 1]!.sequenceNumber;
    await waitFor(
      () => c.status().shards.find((x) => x.shardId === poisonShard)!.checkpoint === lastGood,
      () => `${JSON.stringify(c.status().shards)} expected checkpoint ${lastGood}`,
    );
    const status = c.status().shards.find((x) => x.shardId === poisonShard)!;
    expect(status.state).to.equal('failing');
    expect(status.owner).to.equal(undefined);
  });

  it("'skip' isolates a failing batch: only the poison record is skipped, the shard reads on", async () => {
    const s = await streamWith(1, 40);
    const poison = s.items.get(s.shardIds[0]!)![5]!;
    const received: Item[] = [];
    const actions: string[] = [];
    const c = await start({
      streamName: s.name,
      maxRecordsPerFetch: 10,
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 1, backoffMs: { initial: 10, max: 20 }, then: 'skip' },
      handler: (batch: RecordBatch<Item>) => {
        if (batch.records.some((r) => r.data.k === poison.k && r.data.i === poison.i))
          throw new Error('poison');
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('handler.failed', (e) => actions.push(`${e.action}:${e.records}`));
    const all = s.items.get(s.shardIds[0]!)!;
    await waitFor(
      () => received.some((x) => x.k === all[all.length - 1]!.k && x.i === all[all.length - 1]!.i),
      () => `${received.length}`,
    );
    expect(actions).to.deep.equal(['retry:10', 'isolate:10', 'skip:1']);
    // Every other record exactly once, in order: the rest of the poison record's batch too.
    expect(received).to.deep.equal(all.filter((x) => x !== poison));
    expect(c.status().shards[0]!.recordsDelivered).to.equal(all.length - 1);
    expect(c.status().shards[0]!.state).to.equal('reading');
  });

  for (const then of ['skip', 'stop-shard'] as const) {
    it(`a malformed KPL aggregate and undecodable JSON follow onHandlerError.then '${then}' without crashing`, async () => {
      const name = `policies-${process.pid}-${streamNo++}`;
      const { shards } = await kinesis.createStream(name, { shards: 2 });
      const hashKey = shards[0]!.HashKeyRange!.StartingHashKey!;
      const good = (i: number) => encoder.encode(JSON.stringify({ k: 'g', i }));
      const badKpl = new Uint8Array([
        ...KPL_MAGIC,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        16,
        17,
        18,
        19,
        20,
      ]);
      const badJson = encoder.encode('{not json');
      await putRaw(name, [good(0), good(1), badKpl, good(2), badJson, good(3)], hashKey);
      const otherItems = Array.from({ length: 20 }, (_, i) => encoder.encode(JSON.stringify({ k: 'o', i })));
      await putRaw(name, otherItems, shards[1]!.HashKeyRange!.StartingHashKey!);

      const received: Item[] = [];
      const failures: Array<{ code: string; action: string; records: number }> = [];
      const c = await start({
        streamName: name,
        onHandlerError: { retries: 5, backoffMs: { initial: 10, max: 20 }, then },
        handler: (batch: RecordBatch<Item>) => {
          for (const r of batch.records) received.push(r.data);
        },
      });
      c.on('handler.failed', (e) =>
        failures.push({ code: e.error.code, action: e.action, records: e.records }),
      );
      await waitFor(
        () =>
          received.filter((x) => x.k === 'o').length >= 20 && failures.length >= (then === 'skip' ? 2 : 1),
        () => `${received.length} ${JSON.stringify(failures)}`,
      );
      const ofFirst = received.filter((x) => x.k === 'g').map((x) => x.i);
      if (then === 'skip') {
        await waitFor(
          () => received.filter((x) => x.k === 'g').length >= 4,
          () => JSON.stringify(received),
        );
        expect(received.filter((x) => x.k === 'g').map((x) => x.i)).to.deep.equal([0, 1, 2, 3]);
        expect(failures).to.deep.equal([
          { code: 'ERR_KPL_MALFORMED', action: 'skip', records: 1 },
          { code: 'ERR_CODEC', action: 'skip', records: 1 },
        ]);
      } else {
        expect(ofFirst).to.deep.equal([0, 1]);
        expect(failures).to.deep.equal([{ code: 'ERR_KPL_MALFORMED', action: 'stop-shard', records: 1 }]);
        expect(c.status().shards.find((x) => x.shardId === shards[0]!.ShardId)!.state).to.equal('failing');
      }
      expect(c.status().state).to.equal('running');
    });
  }

  it('stop() during a slow handler finishes the batch in flight and checkpoints it; memory stays bounded', async () => {
    const s = await streamWith(2, 300);
    const store = new MemoryLeaseStore();
    const maxBufferedRecords = 40;
    const maxRecordsPerFetch = 10;
    const received: Item[] = [];
    let inFlight = 0;
    let finishedInFlight = 0;
    let stopCalled = false;
    let peak = 0;
    const c = await start({
      streamName: s.name,
      group: 'slow',
      leases: { store },
      maxBufferedRecords,
      maxRecordsPerFetch,
      handler: async (batch: RecordBatch<Item>) => {
        inFlight++;
        await new Promise((resolve) => setTimeout(resolve, 100));
        for (const r of batch.records) received.push(r.data);
        inFlight--;
        if (stopCalled) finishedInFlight++;
      },
    });
    const sampler = setInterval(() => {
      peak = Math.max(peak, c.status().bufferedRecords);
    }, 5);
    try {
      await waitFor(
        () => received.length >= 100 && inFlight === 2,
        () => `${received.length} in flight ${inFlight}`,
      );
      stopCalled = true;
      await c.stop();
    } finally {
      clearInterval(sampler);
    }
    expect(inFlight).to.equal(0);
    expect(finishedInFlight, 'batches that were in flight at stop() finished').to.equal(2);
    expect(peak).to.be.greaterThan(0);
    expect(peak, 'buffered records').to.be.at.most(maxBufferedRecords + 2 * maxRecordsPerFetch);

    // A restart resumes right after the last processed record of each shard: nothing twice, nothing lost.
    const again: Item[] = [];
    const c2 = await start({
      streamName: s.name,
      group: 'slow',
      leases: { store },
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) again.push(r.data);
      },
    });
    await waitFor(
      () => received.length + again.length >= 600,
      () => `${received.length} + ${again.length}`,
    );
    await c2.stop();
    expectExactlyOnceInOrder([...received, ...again], [...s.items.values()].flat());
  });

  it('maxBufferedBytes bounds what a host holds of large records, whatever maxBufferedRecords allows; nothing lost', async () => {
    // 2 shards x 120 records of about 4 KiB: 960 KiB waiting, a 64 KiB byte budget, records unbounded; the
    // handler (10 records per 500 ms) is slower than the reads (5 calls/s of 10), so records pile up.
    const name = `policies-${process.pid}-${streamNo++}`;
    const { shards } = await kinesis.createStream(name, { shards: 2 });
    const pad = 'x'.repeat(4_000);
    const expected: Item[] = [];
    for (const [n, shard] of shards.entries()) {
      const list = keyedItems(120, 3).map((x) => ({ k: `s${n}-${x.k}`, i: x.i }));
      expected.push(...list);
      await putRaw(
        name,
        list.map((x) => encoder.encode(JSON.stringify({ ...x, pad }))),
        shard.HashKeyRange!.StartingHashKey!,
      );
    }
    const maxBufferedBytes = 64 * 1024;
    const maxRecordsPerFetch = 10;
    const received: Item[] = [];
    let peakBytes = 0;
    let peakRecords = 0;
    const c = await start<Item & { pad: string }>({
      streamName: name,
      group: 'bytes',
      maxBufferedRecords: 100_000,
      maxBufferedBytes,
      maxRecordsPerFetch,
      handler: async (batch) => {
        await new Promise((resolve) => setTimeout(resolve, 500));
        for (const r of batch.records) received.push({ k: r.data.k, i: r.data.i });
      },
    });
    const sampler = setInterval(() => {
      const st = c.status();
      peakBytes = Math.max(peakBytes, st.bufferedBytes);
      peakRecords = Math.max(peakRecords, st.bufferedRecords);
    }, 5);
    try {
      await waitFor(
        () => received.length >= expected.length,
        () => `${received.length} of ${expected.length}`,
      );
    } finally {
      clearInterval(sampler);
    }
    expect(peakBytes, 'bytes held at some point').to.be.greaterThan(0);
    // The budget plus at most one response per reader (its size is known only once it came).
    const oneResponse = maxRecordsPerFetch * 4_100;
    expect(peakBytes, 'buffered bytes').to.be.at.most(maxBufferedBytes + 2 * oneResponse);
    expect(peakRecords, 'the byte budget, not the record budget, bound it').to.be.below(40);
    expect(c.status().bufferedBytes).to.equal(0);
    expectExactlyOnceInOrder(received, expected);
  });

  it('a crashed worker thread: its shards resume from where processing got to on a new thread', async () => {
    const s = await streamWith(2, 300);
    const received: Item[] = [];
    const crashes: Array<{ shardIds: string[]; respawned: boolean; code: string; thread: number }> = [];
    const c = await start({
      streamName: s.name,
      workerThreads: 1,
      maxRecordsPerFetch: 20,
      handler: async (batch: RecordBatch<Item>) => {
        await new Promise((resolve) => setTimeout(resolve, 10));
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('worker.crashed', (e) =>
      crashes.push({ shardIds: e.shardIds, respawned: e.respawned, code: e.error.code, thread: e.thread }),
    );
    await waitFor(
      () => received.length >= 100,
      () => `${received.length}`,
    );
    expect(
      c.status().shards.map((x) => x.thread),
      'status() names the thread of each reader',
    ).to.deep.equal([0, 0]);
    // Not part of the public API: the coordinator object exposes it for this test only.
    await (c as unknown as { terminateWorkerThread(index: number): Promise<number> }).terminateWorkerThread(
      0,
    );
    await waitFor(
      () => received.length >= 600,
      () => `${received.length} crashes ${JSON.stringify(crashes)}`,
    );
    expect(crashes.map((x) => x.shardIds[0]).sort()).to.deep.equal([...s.shardIds].sort());
    expect(crashes.every((x) => x.respawned && x.code === 'ERR_WORKER_CRASHED' && x.thread === 0)).to.equal(
      true,
    );
    expect(readingShards(c)).to.have.length(2);
    expectExactlyOnceInOrder(received, [...s.items.values()].flat());
  });

  it('a lease taken over by another host: the reader stops at once (lease.lost), status shows leased-elsewhere', async () => {
    const s = await streamWith(1, 20);
    let offsetMs = 0;
    const store = new MemoryLeaseStore({ clock: () => Date.now() + offsetMs });
    const received: Item[] = [];
    const lost: string[] = [];
    const c = await start({
      streamName: s.name,
      group: 'fenced',
      leases: { store },
      leaseDurationMs: 2_000,
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('lease.lost', (e) => lost.push(`${e.shardId}:${e.reason}`));
    await waitFor(
      () => received.length >= 20,
      () => `${received.length}`,
    );
    // The store's clock jumps past the lease: another host takes it before this one renews.
    offsetMs = 5_000;
    const thief = new MemoryLeaseManager({
      hostId: 'thief',
      leaseDurationMs: 60_000,
      store,
      namespace: `fenced:${s.name}`,
    });
    expect(await thief.acquire(s.shardIds[0]!)).to.not.equal(undefined);
    await thief.heartbeat(1);
    await waitFor(
      () => lost.length > 0 && c.status().shards[0]!.state === 'leased-elsewhere',
      () => JSON.stringify({ lost, status: c.status().shards }),
    );
    expect(lost).to.deep.equal([`${s.shardIds[0]}:fenced`]);
    expect(c.status().shards[0]!.owner).to.equal('thief');
    await thief.close();
  });

  it('aborting the signal stops the coordinator gracefully and releases its leases', async () => {
    const s = await streamWith(2, 10);
    const store = new MemoryLeaseStore();
    const controller = new AbortController();
    const released: string[] = [];
    let received = 0;
    const c = await start({
      streamName: s.name,
      group: 'abort',
      leases: { store },
      signal: controller.signal,
      handler: (batch: RecordBatch<Item>) => {
        received += batch.records.length;
      },
    });
    c.on('lease.released', (e) => released.push(e.reason));
    await waitFor(
      () => received >= 20,
      () => `${received}`,
    );
    controller.abort();
    await waitFor(
      () => c.status().state === 'stopped',
      () => c.status().state,
    );
    expect(released).to.deep.equal(['stop', 'stop']);
    const inspect = new MemoryLeaseManager({
      hostId: 'x',
      leaseDurationMs: 1_000,
      store,
      namespace: `abort:${s.name}`,
    });
    const leases = await inspect.listLeases();
    expect(leases.map((l) => l.owner)).to.deep.equal([undefined, undefined]);
    expect(leases.every((l) => l.checkpoint !== undefined)).to.equal(true);
  });

  it('a custom Codec (which cannot cross threads) decodes on the coordinator thread; its errors are poison records', async () => {
    const name = `policies-${process.pid}-${streamNo++}`;
    const { shards } = await kinesis.createStream(name, { shards: 1 });
    const decoder = new TextDecoder();
    const upper: Codec<string> = {
      name: 'upper',
      framed: false,
      encode: (items) => items.map((x) => encoder.encode(x)),
      encodeItem: (x) => encoder.encode(x),
      decode: (payload) => {
        const text = decoder.decode(payload);
        if (text === 'bad') throw new Error('cannot decode bad');
        return [text.toUpperCase()];
      },
    };
    await putRaw(
      name,
      ['a', 'b', 'bad', 'c'].map((x) => encoder.encode(x)),
      shards[0]!.HashKeyRange!.StartingHashKey!,
    );
    const received: string[] = [];
    const failures: string[] = [];
    const c = await start<string>({
      streamName: name,
      codec: upper,
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { then: 'skip' },
      handler: (batch: RecordBatch<string>) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    c.on('handler.failed', (e) => failures.push(`${e.error.code}:${e.action}`));
    await waitFor(
      () => received.length >= 3,
      () => JSON.stringify(received),
    );
    expect(received).to.deep.equal(['A', 'B', 'C']);
    expect(failures).to.deep.equal(['ERR_CODEC:skip']);
  });

  it('jsonl: several items per Kinesis record; a checkpoint in the middle of a record resumes right after it', async () => {
    const name = `policies-${process.pid}-${streamNo++}`;
    const { shards } = await kinesis.createStream(name, { shards: 1 });
    const items = Array.from({ length: 50 }, (_, i) => ({ k: 'j', i }));
    const payloads = Array.from({ length: 10 }, (_, r) =>
      encoder.encode(
        items
          .slice(r * 5, r * 5 + 5)
          .map((x) => JSON.stringify(x))
          .join('\n'),
      ),
    );
    await putRaw(name, payloads, shards[0]!.HashKeyRange!.StartingHashKey!);
    const store = new MemoryLeaseStore();
    const first: Array<{ i: number; sub: number | undefined }> = [];
    const c = await start<Item>({
      streamName: name,
      codec: 'jsonl',
      leases: { store },
      checkpoint: { mode: 'manual' },
    });
    for await (const batch of c) {
      for (const r of batch.records) first.push({ i: r.data.i, sub: r.subSequenceNumber });
      if (first.length >= 50) {
        // Item 7 is the third item (sub-sequence 2) of the second record.
        await batch.checkpoint(batch.records.find((r) => r.data.i === 7));
        break;
      }
    }
    await c.stop();
    expect(first.map((x) => x.i)).to.deep.equal(items.map((x) => x.i));
    expect(first.slice(5, 10).map((x) => x.sub)).to.deep.equal([0, 1, 2, 3, 4]);

    const again: number[] = [];
    const c2 = await start<Item>({
      streamName: name,
      codec: 'jsonl',
      leases: { store },
      checkpoint: { mode: 'manual' },
    });
    for await (const batch of c2) {
      for (const r of batch.records) again.push(r.data.i);
      if (again.length >= 42) break;
    }
    await c2.stop();
    expect(again).to.deep.equal(items.slice(8).map((x) => x.i));
  });

  describe('with Redis leases', () => {
    let redis: TestRedis;

    before(async () => {
      redis = await useTestRedis('coordinator');
    });

    after(async () => {
      await redis?.cleanup();
    });

    it("an undecodable record stops its shard ('stop-shard' default) and is never silent: a process warning without listeners, status and the lease say where and why", async () => {
      const name = `policies-${process.pid}-${streamNo++}`;
      const { shards } = await kinesis.createStream(name, { shards: 1 });
      const shardId = shards[0]!.ShardId!;
      const hashKey = shards[0]!.HashKeyRange!.StartingHashKey!;
      await putRaw(
        name,
        [encoder.encode('{"k":"a","i":0}'), encoder.encode('{not json'), encoder.encode('{"k":"a","i":2}')],
        hashKey,
      );
      const warnings: Array<Error & { code?: string }> = [];
      const onWarning = (warning: Error & { code?: string }) => {
        if (warning.code === 'SHARDLINE_SHARD_STOPPED') warnings.push(warning);
      };
      process.on('warning', onWarning);
      try {
        // No logger, no listener: what a newcomer runs.
        const c = await start({
          streamName: name,
          group: 'unheard',
          leases: { redis: redis.url, keyPrefix: redis.keyPrefix },
          handler: () => undefined,
        });
        await waitFor(
          () => warnings.length > 0 && c.status().shards[0]?.state === 'failing',
          () => JSON.stringify(c.status().shards),
        );
        const out = await client.send(
          new GetShardIteratorCommand({
            StreamName: name,
            ShardId: shardId,
            ShardIteratorType: 'TRIM_HORIZON',
          }),
        );
        const records = (await client.send(new GetRecordsCommand({ ShardIterator: out.ShardIterator! })))
          .Records!;
        const poisonSeq = records[1]!.SequenceNumber!;
        expect(warnings[0]!.message).to.include(shardId).and.include(poisonSeq).and.include('ERR_CODEC');
        const status = c.status().shards[0]!;
        expect(status.failure).to.deep.include({
          reason: 'handler',
          code: 'ERR_CODEC',
          sequenceNumber: poisonSeq,
        });
        expect(status.checkpoint).to.equal(records[0]!.SequenceNumber);
        // Tools reading Redis see it too (the lease was released with a note).
        const group = await readLeaseGroup({
          redis: redis.url,
          group: 'unheard',
          stream: name,
          keyPrefix: redis.keyPrefix,
        });
        expect(group.shards[0]!.state).to.equal('failed');
        expect(group.shards[0]!.failure).to.deep.include({
          reason: 'handler',
          code: 'ERR_CODEC',
          sequenceNumber: poisonSeq,
          hostId: c.hostId,
        });
      } finally {
        process.off('warning', onWarning);
      }
    });

    for (const mode of ['handler', 'handlerModule'] as const) {
      it(`'dead-letter' (${mode}): only the record that fails alone and the poison record become BullMQ jobs, the rest is handled once`, async () => {
        const name = `policies-${process.pid}-${streamNo++}`;
        const { shards } = await kinesis.createStream(name, { shards: 1 });
        const hashKey = shards[0]!.HashKeyRange!.StartingHashKey!;
        const item = (i: number, extra: Record<string, unknown> = {}) =>
          encoder.encode(JSON.stringify({ k: 'd', i, ...extra }));
        const badKpl = new Uint8Array([...KPL_MAGIC, ...Array.from({ length: 24 }, (_, n) => n)]);
        // One batch: [0, 1 (throws), 2] go to the handler together, the malformed aggregate splits it.
        await putRaw(name, [item(0), item(1, { poison: true }), item(2), badKpl, item(3)], hashKey);
        const queueName = `dlq-${process.pid}-${mode}`;
        const received: number[] = [];
        const actions: string[] = [];
        // The handler module reports what it handled over this channel (see fixtures/handler-module.mjs).
        const channel = new BroadcastChannel('shardline-handler-module-test');
        channel.onmessage = (event) => {
          for (const x of (event as unknown as { data: { items: Item[] } }).data.items) received.push(x.i);
        };
        const options: Partial<CoordinatorOptions<Item>> =
          mode === 'handler'
            ? {
                handler: (batch: RecordBatch<Item & { poison?: boolean }>) => {
                  if (batch.records.some((r) => r.data.poison === true)) throw new Error('poison item');
                  for (const r of batch.records) received.push(r.data.i);
                },
              }
            : { handlerModule: fileURLToPath(new URL('./fixtures/handler-module.mjs', import.meta.url)) };
        const c = await start({
          streamName: name,
          group: `dlq-${mode}`,
          // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
          onHandlerError: { retries: 1, backoffMs: { initial: 10, max: 20 }, then: 'dead-letter' },
          deadLetter: { queue: queueName, connection: redis.url },
          ...options,
        });
        c.on('handler.failed', (e) => actions.push(`${e.action}:${e.error.code}:${e.records}`));
        const inspect = new Queue(queueName, {
          connection: redis.client({ maxRetriesPerRequest: null }) as never,
        });
        try {
          await waitFor(
            () => actions.length >= 4,
            () => JSON.stringify(actions),
          );
          await waitFor(
            // Items 0, 2 and 3 handled: the shard moved past both dead-lettered records.
            () => c.status().shards[0]!.recordsDelivered >= 3 && received.length >= 3,
            () => JSON.stringify({ shards: c.status().shards, received }),
          );
          expect(actions).to.deep.equal([
            'retry:ERR_HANDLER:3',
            'isolate:ERR_HANDLER:3',
            'dead-letter:ERR_HANDLER:1',
            'dead-letter:ERR_KPL_MALFORMED:1',
          ]);
          // Each good record once, in order (the failed attempts of [0, 1, 2] handled nothing).
          expect(received).to.deep.equal([0, 2, 3]);
          expect(c.status().shards[0]!.recordsDelivered).to.equal(3);
          const jobs = (await inspect.getJobs(['waiting'])).map((j) => j.data as Record<string, unknown>);
          jobs.sort((a, b) => String(a.sequenceNumber).localeCompare(String(b.sequenceNumber)));
          expect(jobs).to.have.length(2);
          expect(jobs[0]).to.include({
            group: `dlq-${mode}`,
            stream: name,
            dataEncoding: 'json',
            // Two attempts of the batch, then one alone.
            attempts: 3,
          });
          expect(jobs[0]!.data).to.deep.equal({ k: 'd', i: 1, poison: true });
          expect((jobs[0]!.error as { code: string }).code).to.equal('ERR_HANDLER');
          expect(jobs[1]).to.include({ dataEncoding: 'base64', attempts: 1 });
          expect(Buffer.from(jobs[1]!.data as string, 'base64')).to.deep.equal(Buffer.from(badKpl));
          expect((jobs[1]!.error as { code: string }).code).to.equal('ERR_KPL_MALFORMED');
          expect(c.status().shards[0]!.state).to.equal('reading');
        } finally {
          channel.close();
          await inspect.obliterate({ force: true });
          await inspect.close();
        }
      });
    }

    it('reads, checkpoints and releases through RedisLeaseManager; a restart resumes from Redis', async () => {
      const s = await streamWith(2, 50);
      const received: Item[] = [];
      const leases = { redis: redis.url, keyPrefix: redis.keyPrefix };
      const c = await start({
        streamName: s.name,
        group: 'redis',
        leases,
        handler: (batch: RecordBatch<Item>) => {
          for (const r of batch.records) received.push(r.data);
        },
      });
      await waitFor(
        () => received.length >= 100,
        () => `${received.length}`,
      );
      expect(readingShards(c)).to.have.length(2);
      expect(c.status().hosts.map((h) => h.hostId)).to.deep.equal([c.hostId]);
      await c.stop();

      const inspect = new RedisLeaseManager({
        redis: redis.url,
        keyPrefix: redis.keyPrefix,
        group: 'redis',
        stream: s.name,
        hostId: 'inspector',
      });
      try {
        const stored = await inspect.listLeases();
        expect(stored.map((l) => l.owner)).to.deep.equal([undefined, undefined]);
        expect(stored.every((l) => l.checkpoint !== undefined)).to.equal(true);
      } finally {
        await inspect.close();
      }

      const more = keyedItems(10, 5).map((x) => ({ k: `s0-${x.k}`, i: x.i + 1_000 }));
      await putRaw(
        s.name,
        more.map((x) => encoder.encode(JSON.stringify(x))),
        s.hashKeys[0]!,
      );
      const again: Item[] = [];
      const c2 = await start({
        streamName: s.name,
        group: 'redis',
        leases,
        handler: (batch: RecordBatch<Item>) => {
          for (const r of batch.records) again.push(r.data);
        },
      });
      await waitFor(
        () => again.length >= more.length,
        () => `${again.length}`,
      );
      await waitFor(
        () => c2.status().shards.every((x) => x.millisBehindLatest === 0),
        () => 'caught up',
      );
      expectExactlyOnceInOrder(again, more);
    });
  });
});
