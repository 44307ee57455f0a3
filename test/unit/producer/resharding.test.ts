/**
 * Per-key order with `maxInFlightPerShard: 1` when the shard map changes while a call is in flight: the
 * exact interleaving (a call held on the parent, the split or merge seen by a refresh, later records of
 * the same keys already moved to the children, then the held call answered) driven with fake time and a
 * held stub answer.
 */
import type { KinesisClient, PutRecordsCommandInput, PutRecordsCommandOutput } from '@aws-sdk/client-kinesis';
import { partitionKeyToHashKey } from '@shardline/common';
import { Producer, type ProducerEvents, type ProducerOptions, type PutReceipt } from '@shardline/producer';
import { expect } from 'chai';
import sinon from 'sinon';
import { awsError, evenShards, mergeShards, StubKinesis, splitShard } from './stub-kinesis.js';

let clock: sinon.SinonFakeTimers;
let stub: StubKinesis;
const producers: Producer<unknown>[] = [];
/** The held call of the running test, answered in afterEach if a failed test left it open. */
let current: Held | undefined;

interface Item {
  k: string;
  i: number;
}

const PARENT = 'shardId-000000000000';
const NEIGHBOUR = 'shardId-000000000001';
const KEYS = Array.from({ length: 8 }, (_, i) => `k${i}`);

function ordered(options: Partial<ProducerOptions<Item>> = {}): Producer<Item> {
  const producer = new Producer<Item>({
    streamName: 'test',
    kinesis: stub as unknown as KinesisClient,
    lingerMs: 0,
    maxInFlightPerShard: 1,
    rateLimitPerShard: false,
    shardRefreshIntervalMs: 1_000,
    retry: { backoffMs: { initial: 1, max: 1 } },
    ...options,
  });
  producers.push(producer as Producer<unknown>);
  return producer;
}

/** How the held call ends: its entries written where the stub routes them now, failed one by one, or the whole call failed. */
type Outcome = 'written' | 'entries failed' | 'call failed';

interface Held {
  input: PutRecordsCommandInput | undefined;
  answered: boolean;
  answer(outcome: Outcome): void;
}

/** Holds the first PutRecords call until the test answers it; later calls are written at once. */
function holdFirstCall(): Held {
  let release: ((outcome: Outcome) => void) | undefined;
  const held: Held = {
    input: undefined,
    answered: false,
    answer: (outcome) => {
      held.answered = true;
      release!(outcome);
    },
  };
  current = held;
  stub.onPut = (input, call, s) => {
    if (call !== 0) return s.succeed(input);
    held.input = input;
    return new Promise<PutRecordsCommandOutput>((resolve, reject) => {
      release = (outcome) => {
        if (outcome === 'written') resolve(s.succeed(input));
        else if (outcome === 'entries failed') resolve(s.succeed(input, () => 'InternalFailure'));
        else reject(awsError('InternalFailure', 'boom', 500));
      };
    });
  };
  return held;
}

function putAll(producer: Producer<Item>, n: number, keys = KEYS): Promise<PutReceipt>[] {
  return Array.from({ length: n }, (_, i) => {
    const k = keys[i % keys.length]!;
    return producer.put({ k, i }, { partitionKey: k });
  });
}

/** Every item 0..n-1 written exactly once, in put order per key, each receipt naming its write. */
function checkWritten(receipts: PutReceipt[], n: number): void {
  const seen = new Map<number, (typeof stub.written)[number]>();
  const last = new Map<string, number>();
  for (const w of stub.written) {
    const item = JSON.parse(new TextDecoder().decode(w.data)) as Item;
    expect(seen.has(item.i), `item ${item.i} written twice`).to.equal(false);
    seen.set(item.i, w);
    expect(item.i, `order of key ${item.k}`).to.be.greaterThan(last.get(item.k) ?? -1);
    last.set(item.k, item.i);
  }
  expect(seen.size).to.equal(n);
  for (let i = 0; i < n; i++) {
    const w = seen.get(i)!;
    expect(receipts[i], `receipt of item ${i}`).to.deep.equal({
      shardId: w.shardId,
      sequenceNumber: w.sequenceNumber,
    });
  }
}

function onRefresh(producer: Producer<Item>): Array<ProducerEvents['shards.refreshed']> {
  const events: Array<ProducerEvents['shards.refreshed']> = [];
  producer.on('shards.refreshed', (e) => events.push(e));
  return events;
}

async function settle(receipts: Promise<PutReceipt>[]): Promise<PutReceipt[]> {
  const all = Promise.all(receipts);
  await clock.tickAsync(1_000);
  return all;
}

describe('producer (unit, fake time): resharding with maxInFlightPerShard: 1', () => {
  beforeEach(() => {
    clock = sinon.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    });
    stub = new StubKinesis(evenShards(1));
  });

  afterEach(async () => {
    if (current?.input !== undefined && !current.answered) current.answer('written');
    current = undefined;
    for (const p of producers.splice(0)) {
      let closed = false;
      const closing = p.close().then(() => {
        closed = true;
      });
      // Ticks rather than runAllAsync: the periodic refresh interval runs until close() clears it.
      for (let i = 0; i < 100 && !closed; i++) await clock.tickAsync(100);
      await closing;
    }
    clock.restore();
  });

  it('the test keys hash to both halves of the split parent', () => {
    const mid = ((1n << 128n) - 1n) / 2n;
    const low = KEYS.filter((k) => partitionKeyToHashKey(k) <= mid);
    expect(low.length).to.be.within(1, KEYS.length - 1);
  });

  for (const outcome of ['written', 'entries failed', 'call failed'] as const) {
    it(`split while a call is in flight (${outcome}): the children wait for it; per-key order kept`, async () => {
      const held = holdFirstCall();
      const producer = ordered();
      const refreshes = onRefresh(producer);
      const n = 40;
      const receipts = putAll(producer, n);
      await clock.tickAsync(0);
      expect(stub.puts).to.have.length(1);
      expect(held.input!.Records, 'one entry per key in ordered mode').to.have.length(KEYS.length);

      stub.shards = splitShard(stub.shards, PARENT);
      await clock.tickAsync(1_000);
      expect(refreshes.at(-1)).to.deep.include({
        removed: [PARENT],
        added: [`${PARENT}a`, `${PARENT}b`],
        reason: 'periodic',
      });
      // The parent's queued records (later records of the held keys) now sit on the children: sending
      // them before the held call is answered could put them ahead of it.
      expect(stub.puts, "no call for the parent's children while its call is in flight").to.have.length(1);
      expect(producer.status().queuedRecords).to.equal(n - KEYS.length);

      held.answer(outcome);
      const all = await settle(receipts);
      checkWritten(all, n);
      expect(all.every((r) => r.shardId !== PARENT)).to.equal(true);
      if (outcome !== 'written') {
        const resent = stub.puts[1]!.Records!.map((r) => r.PartitionKey);
        expect(new Set(resent), 'the failed records go first, to the children').to.deep.equal(new Set(KEYS));
      }
    });
  }

  it('merge while a call to both parents is in flight: the child waits for it; per-key order kept', async () => {
    stub = new StubKinesis(evenShards(2));
    const held = holdFirstCall();
    const producer = ordered();
    const refreshes = onRefresh(producer);
    const n = 40;
    const receipts = putAll(producer, n);
    await clock.tickAsync(0);
    expect(stub.puts).to.have.length(1);
    expect(held.input!.Records, 'entries of both parents').to.have.length(KEYS.length);

    stub.shards = mergeShards(stub.shards, PARENT, NEIGHBOUR, 'shardId-merged');
    await clock.tickAsync(1_000);
    expect(refreshes.at(-1)).to.deep.include({ removed: [PARENT, NEIGHBOUR], added: ['shardId-merged'] });
    expect(stub.puts, 'no call for the merged child while its parents are in flight').to.have.length(1);

    held.answer('entries failed');
    const all = await settle(receipts);
    checkWritten(all, n);
    expect(new Set(all.map((r) => r.shardId))).to.deep.equal(new Set(['shardId-merged']));
  });

  it('a refresh showing a gap: records failed on the parent go back ahead of their key-mates waiting for a shard', async () => {
    stub = new StubKinesis(evenShards(2));
    const held = holdFirstCall();
    const producer = ordered();
    const n = 40;
    const receipts = putAll(producer, n);
    await clock.tickAsync(0);
    expect(held.input!.Records).to.have.length(KEYS.length);
    stub.shards = splitShard(stub.shards, PARENT);
    const missing = stub.shards.find((s) => s.ShardId === `${PARENT}b`)!;
    const start = BigInt(missing.HashKeyRange!.StartingHashKey!);
    const end = BigInt(missing.HashKeyRange!.EndingHashKey!);
    const inGap = KEYS.filter((k) => partitionKeyToHashKey(k) >= start && partitionKeyToHashKey(k) <= end);
    expect(inGap, 'keys whose shard the listing misses').to.not.have.length(0);
    // Mid-resharding the listing shows the closed parent and only one child: the other half has no shard
    // (Kinesis itself routes there all along).
    stub.listed = stub.shards.filter((s) => s !== missing);
    await clock.tickAsync(1_000);
    expect(producer.status().shards).to.equal(2);
    held.answer('entries failed');
    await clock.tickAsync(600);
    expect(
      stub.written.filter((w) => inGap.includes(w.partitionKey)),
      'nothing of the gap is sent while the map has a gap',
    ).to.have.length(0);
    stub.listed = undefined;
    const all = await settle(receipts);
    checkWritten(all, n);
    expect(new Set(all.map((r) => r.shardId))).to.deep.equal(
      new Set([`${PARENT}a`, `${PARENT}b`, NEIGHBOUR]),
    );
  });

  it('a shard the resharding did not touch keeps sending while a closed neighbour is in flight', async () => {
    stub = new StubKinesis(evenShards(2));
    const mid = ((1n << 128n) - 1n) / 2n;
    const low = KEYS.filter((k) => partitionKeyToHashKey(k) <= mid);
    const high = KEYS.filter((k) => partitionKeyToHashKey(k) > mid);
    const held = holdFirstCall();
    const producer = ordered();
    const first = putAll(producer, 10, low);
    await clock.tickAsync(0);
    expect(stub.puts).to.have.length(1);
    stub.shards = splitShard(stub.shards, PARENT);
    await clock.tickAsync(1_000);
    expect(stub.puts).to.have.length(1);
    const second = high.map((k, j) => producer.put({ k, i: 10 + j }, { partitionKey: k }));
    await clock.tickAsync(0);
    expect(stub.puts, 'the untouched shard sends at once').to.have.length(2);
    expect(stub.puts[1]!.Records!.map((r) => r.PartitionKey)).to.deep.equal(high);
    held.answer('written');
    checkWritten(await settle([...first, ...second]), 10 + high.length);
  });
});

describe('producer (unit, fake time): close() during a shard-map refresh', () => {
  beforeEach(() => {
    clock = sinon.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    });
    stub = new StubKinesis(evenShards(1));
  });
  afterEach(() => {
    clock.restore();
  });

  it('ends a refresh that is retrying a failing ListShards: nothing is called after close()', async () => {
    const producer = new Producer<Item>({
      streamName: 'test',
      kinesis: stub as unknown as KinesisClient,
      lingerMs: 0,
      shardRefreshIntervalMs: 1_000,
      retry: { backoffMs: { initial: 100, max: 1_000 } },
    });
    const receipt = producer.put({ k: 'a', i: 0 }, { partitionKey: 'a' });
    await clock.tickAsync(0);
    await receipt;
    // The endpoint goes away (the emulator stopped, say): the periodic refresh retries, forever by default.
    stub.listShardsError = awsError('InternalFailure', 'connect ECONNREFUSED', 500);
    await clock.tickAsync(1_500);
    const before = stub.listShardsCalls.length;
    expect(before, 'the periodic refresh is retrying').to.be.greaterThan(1);
    await producer.close();
    await clock.tickAsync(60_000);
    expect(stub.listShardsCalls.length, 'ListShards calls after close()').to.equal(before);
    expect(clock.countTimers(), 'timers left behind').to.equal(0);
  });
});
