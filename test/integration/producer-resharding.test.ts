/**
 * Producer with `maxInFlightPerShard: 1` across a SplitShard / MergeShards made while a call to the parent
 * is in flight, on kinesis-mock: later records of the held keys reach the children's queues through a
 * shard-map refresh before the held call is answered (written, or every entry failed by the FaultProxy
 * and re-routed), and per-key order must still hold when the stream is read parent before children.
 *
 * kinesis-mock, like Kinesis, never fails an entry because its predicted shard closed: it routes by hash
 * key to the open child. So the held call's entries land on the children (or fail by the proxy's rule), and
 * only the producer's holding of the children keeps them ahead of their key-mates.
 */
import {
  KinesisClient,
  MergeShardsCommand,
  type PutRecordsCommandInput,
  SplitShardCommand,
} from '@aws-sdk/client-kinesis';
import { Producer, type PutReceipt } from '@shardline/producer';
import { FaultProxy, type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { checkReadBack, type Item, readStream } from './producer-helpers.js';

let streamCounter = 0;
const nextStream = (prefix: string) => `${prefix}-${process.pid}-${++streamCounter}`;
const KEYS = 16;

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

/**
 * A gate in the client's middleware: `holdNext()` makes the next PutRecords wait before it is sent until
 * `release()`. Counts the PutRecords calls that went past it while one was held.
 */
class PutRecordsGate {
  #armed = false;
  #release: (() => void) | undefined;
  held: PutRecordsCommandInput | undefined;
  passedWhileHeld = 0;
  othersInFlight = 0;

  constructor(client: KinesisClient) {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName !== 'PutRecordsCommand') return next(args);
        if (this.#armed) {
          this.#armed = false;
          this.held = args.input as PutRecordsCommandInput;
          await new Promise<void>((resolve) => {
            this.#release = resolve;
          });
          return next(args);
        }
        if (this.#release !== undefined) this.passedWhileHeld++;
        this.othersInFlight++;
        try {
          return await next(args);
        } finally {
          this.othersInFlight--;
        }
      },
      { step: 'initialize', name: 'testPutRecordsGate', priority: 'high' },
    );
  }

  holdNext(): void {
    this.#armed = true;
  }

  release(): void {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }
}

describe('producer against kinesis-mock: resharding with maxInFlightPerShard: 1', function () {
  this.timeout(90_000);
  let kinesis: LocalKinesis;
  let direct: KinesisClient;
  const cleanup: Array<() => Promise<unknown> | unknown> = [];

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesis-mock' });
    direct = kinesis.client();
  });
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  after(async () => {
    await kinesis?.stop();
  });

  const cases = [
    ['split', 'written'],
    ['split', 'failed'],
    ['merge', 'written'],
    ['merge', 'failed'],
  ] as const;
  for (const [resharding, outcome] of cases) {
    it(`${resharding} while a call to the parent is held, then ${outcome}: every record once, per-key order kept`, async () => {
      const stream = nextStream(`pre${resharding}`);
      const created = await kinesis.createStream(stream, { shards: resharding === 'split' ? 1 : 2 });
      const parents = created.shards.map((s) => s.ShardId!);
      const proxy = await FaultProxy.start({ target: kinesis.endpoint });
      cleanup.push(() => proxy.stop());
      // The producer retries by itself; with a client of its own it sets maxAttempts: 1 too.
      const client = new KinesisClient({ ...proxy.clientConfig(kinesis.clientConfig), maxAttempts: 1 });
      cleanup.push(() => client.destroy());
      const gate = new PutRecordsGate(client);
      const producer = new Producer<Item>({
        streamName: stream,
        kinesis: client,
        lingerMs: 0,
        maxInFlightPerShard: 1,
        rateLimitPerShard: false,
        shardRefreshIntervalMs: 200,
        retry: { backoffMs: { initial: 5, max: 50 } },
      });
      cleanup.push(() => producer.close());
      // A failed assertion must not leave the held call (and so close()) waiting forever.
      cleanup.push(() => gate.release());
      let parentsGone = false;
      producer.on('shards.refreshed', (e) => {
        if (parents.every((id) => e.removed.includes(id))) parentsGone = true;
      });
      let retried = 0;
      producer.on('retry', (e) => {
        retried += e.records;
      });

      const receipts: Array<Promise<PutReceipt>> = [];
      let i = 0;
      const putSome = (count: number) => {
        for (let j = 0; j < count; j++, i++) {
          const k = `k${i % KEYS}`;
          receipts.push(producer.put({ k, i }, { partitionKey: k }));
        }
      };
      // Warm-up: the shard map is loaded and every key has records on the parent(s).
      putSome(200);
      await producer.flush();
      const beforeResharding = receipts.length;

      gate.holdNext();
      putSome(300);
      await waitFor(() => gate.held !== undefined, 'the held PutRecords');
      expect(gate.held!.Records, 'one record per key per call in ordered mode').to.have.length(KEYS);
      const heldItems = new Set(
        gate.held!.Records!.map((r) => (JSON.parse(Buffer.from(r.Data!).toString('utf8')) as Item).i),
      );

      if (resharding === 'split') {
        const parent = created.shards[0]!;
        const start = BigInt(parent.HashKeyRange!.StartingHashKey!);
        const end = BigInt(parent.HashKeyRange!.EndingHashKey!);
        await direct.send(
          new SplitShardCommand({
            StreamName: stream,
            ShardToSplit: parent.ShardId!,
            NewStartingHashKey: ((start + end) / 2n).toString(),
          }),
        );
      } else {
        await direct.send(
          new MergeShardsCommand({
            StreamName: stream,
            ShardToMerge: parents[0]!,
            AdjacentShardToMerge: parents[1]!,
          }),
        );
      }
      await kinesis.waitForStreamActive(stream);
      await waitFor(() => parentsGone, 'a shard-map refresh without the parent(s)');
      // The refresh moved the parents' queued records (later records of the held keys) to the children.
      // A producer that sends them now does so in microtasks after the refresh: 100 ms is ample margin.
      await delay(100);
      await waitFor(() => gate.othersInFlight === 0, 'calls that went past the gate to finish');
      const passedWhileHeld = gate.passedWhileHeld;

      if (outcome === 'failed') {
        proxy.addRule({
          operation: 'PutRecords',
          action: { type: 'partial-failure', fraction: 1, errorCode: 'InternalFailure' },
          times: 1,
        });
      }
      gate.release();
      putSome(300);
      const all = await Promise.all(receipts);

      const shards = await kinesis.listShards(stream);
      const order = shards.map((s) => s.ShardId!);
      for (const s of shards) {
        for (const p of [s.ParentShardId, s.AdjacentParentShardId]) {
          if (p !== undefined)
            expect(order.indexOf(p), 'parents read first').to.be.lessThan(order.indexOf(s.ShardId!));
        }
      }
      checkReadBack(await readStream(kinesis, direct, stream), all, all.length);
      const late = all.slice(beforeResharding);
      expect(
        late.filter((r) => parents.includes(r.shardId)),
        'records put after the held call went to the children',
      ).to.have.length(0);
      for (const item of heldItems) expect(parents).to.not.include(all[item]!.shardId);
      expect(passedWhileHeld, 'calls sent while the parent call was held').to.equal(0);
      if (outcome === 'failed') {
        expect(proxy.counters.injectedEntries).to.equal(KEYS);
        expect(retried).to.equal(KEYS);
      } else {
        expect(retried).to.equal(0);
      }
    });
  }
});
