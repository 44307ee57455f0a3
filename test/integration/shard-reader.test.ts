/**
 * ShardReader against a real local Kinesis, in-process (one MessageChannel per shard), with a small
 * stand-in for the coordinator that grants credit, collects batches and acks them.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { type KinesisClient, PutRecordsCommand, type Shard } from '@aws-sdk/client-kinesis';
import type { WorkerMessage } from '@shardline/common';
import {
  aggregate,
  batchSize,
  batchToRecords,
  codecs,
  createKinesisClient,
  PROTOCOL_VERSION,
  parseWorkerMessage,
} from '@shardline/common';
import type { ShardReaderOptions } from '@shardline/shard-worker';
import { kinesisGetRecordsClient, ShardReader } from '@shardline/shard-worker';
import {
  FaultProxy,
  type LocalKinesis,
  type LocalKinesisEngine,
  startLocalKinesis,
} from '@shardline/testing';
import { expect } from 'chai';
import { seededRandom } from '../support/random.js';

const PER_SHARD = 500;
const encoder = new TextEncoder();
let streamCounter = 0;
const uniqueStream = (prefix: string) => `${prefix}-${process.pid}-${++streamCounter}`;

interface Item {
  shard: number;
  i: number;
}

/** Writes PER_SHARD items to each shard (routed by ExplicitHashKey), plain or KPL-aggregated. */
async function produce(
  client: KinesisClient,
  stream: string,
  shards: Shard[],
  aggregated: boolean,
): Promise<void> {
  await Promise.all(
    shards.map(async (shard, s) => {
      const hashKey = shard.HashKeyRange!.StartingHashKey!;
      const items = Array.from({ length: PER_SHARD }, (_, i) =>
        encoder.encode(JSON.stringify({ shard: s, i })),
      );
      const chunks = aggregated
        ? Array.from({ length: PER_SHARD / 50 }, (_, c) =>
            aggregate(
              items.slice(c * 50, c * 50 + 50).map((data, i) => ({ partitionKey: `k-${s}-${i % 7}`, data })),
            ).map((a) => a.data),
          ).flat()
        : items;
      if (aggregated) expect(chunks).to.have.length(PER_SHARD / 50);
      for (let start = 0; start < chunks.length; start += 500) {
        const out = await client.send(
          new PutRecordsCommand({
            StreamName: stream,
            Records: chunks.slice(start, start + 500).map((Data, i) => ({
              Data,
              PartitionKey: `k-${s}-${i}`,
              ExplicitHashKey: hashKey,
            })),
          }),
        );
        expect(out.FailedRecordCount ?? 0).to.equal(0);
      }
    }),
  );
}

/** Stands in for the coordinator: credit window per shard, ack + re-grant per batch. */
class MiniCoordinator {
  readonly items = new Map<string, Item[]>();
  readonly positions = new Map<string, Array<[string, number | undefined]>>();
  readonly throttled = new Map<string, number>();
  readonly errors: Array<{ shardId: string; code: string; fatal: boolean }> = [];
  readonly ends = new Map<string, string[] | undefined>();
  readonly poison: string[] = [];
  readonly ports: MessagePort[] = [];
  #waiters = new Set<() => void>();

  /** A channel for `shardId`: returns the reader's port; grants `window` records of credit. */
  channel(shardId: string, window = 100): MessagePort {
    const { port1, port2 } = new MessageChannel();
    this.ports.push(port1, port2);
    this.items.set(shardId, []);
    this.positions.set(shardId, []);
    port1.on('message', (data) => {
      const message: WorkerMessage = parseWorkerMessage(data);
      this.#on(shardId, port1, message);
      for (const wake of this.#waiters) wake();
    });
    port1.postMessage({ v: PROTOCOL_VERSION, type: 'credit', records: window, bytes: 64 * 1024 * 1024 });
    return port2;
  }

  #on(shardId: string, port: MessagePort, message: WorkerMessage): void {
    switch (message.type) {
      case 'batch': {
        for (const r of batchToRecords<Item>(message, codecs.json)) {
          if (!r.ok) {
            this.poison.push(r.error.code);
            continue;
          }
          this.items.get(shardId)!.push(r.record.data);
          this.positions.get(shardId)!.push([r.record.sequenceNumber, r.record.subSequenceNumber]);
        }
        port.postMessage({ v: PROTOCOL_VERSION, type: 'ack', batchId: message.batchId });
        port.postMessage({
          v: PROTOCOL_VERSION,
          type: 'credit',
          records: batchSize(message),
          bytes: message.bytes,
        });
        break;
      }
      case 'throttled':
        this.throttled.set(shardId, (this.throttled.get(shardId) ?? 0) + message.count);
        break;
      case 'error':
        this.errors.push({ shardId, code: message.error.code, fatal: message.fatal });
        break;
      case 'shard-end':
        this.ends.set(shardId, message.childShardIds);
        break;
      case 'fetched':
      case 'log':
        break;
    }
  }

  count(shardId: string): number {
    return this.items.get(shardId)?.length ?? 0;
  }

  async waitFor(what: string, condition: () => boolean, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, 100);
        this.#waiters.add(wake);
      });
    }
  }

  close(): void {
    for (const port of this.ports) port.close();
  }
}

/** Every shard delivered 0..PER_SHARD-1 exactly once, in order; positions strictly increasing. */
function expectExactlyOnceInOrder(coordinator: MiniCoordinator, shardIds: string[]): void {
  shardIds.forEach((shardId, s) => {
    const items = coordinator.items.get(shardId)!;
    expect(
      items.every((item) => item.shard === s),
      `${shardId} holds only its own records`,
    ).to.equal(true);
    expect(
      items.map((item) => item.i),
      `${shardId}: every record once, in order`,
    ).to.deep.equal(Array.from({ length: PER_SHARD }, (_, i) => i));
    const positions = coordinator.positions.get(shardId)!;
    for (let k = 1; k < positions.length; k++) {
      const [a, as] = positions[k - 1]!;
      const [b, bs] = positions[k]!;
      const increasing = BigInt(b) > BigInt(a) || (a === b && (bs ?? -1) > (as ?? -1));
      if (!increasing) expect.fail(`${shardId}: position ${b}/${bs} does not follow ${a}/${as}`);
    }
  });
}

for (const engine of ['kinesis-mock', 'kinesalite'] as LocalKinesisEngine[]) {
  describe(`ShardReader on a real local Kinesis (${engine})`, () => {
    let kinesis: LocalKinesis;
    let admin: KinesisClient;
    let coordinator: MiniCoordinator;
    let readers: ShardReader[] = [];
    const clients: KinesisClient[] = [];

    before(async () => {
      kinesis = await startLocalKinesis({ engine });
      admin = kinesis.client();
    });

    beforeEach(() => {
      coordinator = new MiniCoordinator();
      readers = [];
    });

    afterEach(async () => {
      await Promise.all(readers.map((r) => r.stop('test over')));
      coordinator.close();
      for (const c of clients.splice(0)) c.destroy();
    });

    after(async () => {
      await kinesis?.stop();
    });

    function startReaders(
      config: KinesisClientConfig,
      stream: string,
      shards: Shard[],
      options: Partial<ShardReaderOptions> = {},
      window = 100,
    ): ShardReader[] {
      // As the worker entry does: no SDK retries, the reader's backoff handles (and counts) failures.
      const client = createKinesisClient({ ...config, maxAttempts: 1 });
      clients.push(client);
      for (const shard of shards) {
        const reader = new ShardReader(
          coordinator.channel(shard.ShardId!, window),
          kinesisGetRecordsClient(client),
          {
            streamName: stream,
            shardId: shard.ShardId!,
            idleFetchIntervalMs: 200,
            ...options,
          },
        );
        reader.start();
        readers.push(reader);
      }
      return readers;
    }

    for (const aggregated of [false, true]) {
      it(`reads 4 shards x ${PER_SHARD} ${aggregated ? 'KPL-aggregated' : 'json'} records: each once, in order per shard`, async () => {
        const stream = uniqueStream(aggregated ? 'kpl' : 'json');
        const { shards } = await kinesis.createStream(stream, { shards: 4 });
        await produce(admin, stream, shards, aggregated);
        const ids = shards.map((s) => s.ShardId!);
        startReaders(kinesis.clientConfig, stream, shards);
        await coordinator.waitFor('every record', () =>
          ids.every((id) => coordinator.count(id) >= PER_SHARD),
        );
        // A little longer: nothing more may arrive (no duplicates).
        await new Promise((resolve) => setTimeout(resolve, 500));
        expectExactlyOnceInOrder(coordinator, ids);
        if (aggregated) {
          expect(coordinator.positions.get(ids[0]!)![1]![1], 'sub-sequence numbers set').to.equal(1);
        }
        expect(coordinator.errors).to.deep.equal([]);
        expect(coordinator.poison).to.deep.equal([]);
        for (const reader of readers) {
          expect(reader.status()).to.include({ recordsFetched: PER_SHARD, throttled: 0 });
          expect(reader.status().millisBehindLatest).to.equal(0);
        }
      });
    }

    if (engine === 'kinesalite') {
      it('under faults (30% throttled, a burst of 500s, a reset, an expired iterator): every record once, throttles counted, other shards flow while one is throttled', async () => {
        const stream = uniqueStream('faults');
        const { shards } = await kinesis.createStream(stream, { shards: 4 });
        await produce(admin, stream, shards, false);
        const ids = shards.map((s) => s.ShardId!);
        const [blocked, ...others] = ids as [string, ...string[]];
        const proxy = await FaultProxy.start({ target: kinesis.endpoint, random: seededRandom(7) });
        try {
          const PTE = 'ProvisionedThroughputExceededException';
          proxy.addRule({
            operation: 'GetRecords',
            times: 4,
            action: { type: 'error', error: 'InternalFailure' },
          });
          proxy.addRule({ operation: 'GetRecords', times: 1, action: { type: 'reset' } });
          const block = proxy.addRule({
            operation: 'GetRecords',
            shardId: blocked,
            action: { type: 'error', error: PTE },
          });
          proxy.addRule({ operation: 'GetRecords', probability: 0.3, action: { type: 'error', error: PTE } });

          // A window of 50 records: each shard takes 10 batches or more, so they flow side by side.
          startReaders(
            proxy.clientConfig(kinesis.clientConfig),
            stream,
            shards,
            {
              throttleBackoffMs: { initial: 50, max: 400 },
              errorBackoffMs: { initial: 50, max: 400 },
            },
            50,
          );
          // Expire the iterator of a shard once it has handed out some records.
          const expiring = others[1]!;
          await coordinator.waitFor('a first batch', () => coordinator.count(expiring) >= 100);
          const expire = proxy.addRule({
            operation: 'GetRecords',
            shardId: expiring,
            times: 1,
            action: { type: 'error', error: 'ExpiredIteratorException' },
          });

          await coordinator.waitFor('the unthrottled shards', () =>
            others.every((id) => coordinator.count(id) >= PER_SHARD),
          );
          // They finished while every GetRecords of `blocked` was refused.
          expect(block.spent).to.equal(false);
          expect(coordinator.count(blocked)).to.equal(0);
          expect(coordinator.throttled.get(blocked) ?? 0).to.be.greaterThan(3);
          expect(expire.hits).to.equal(1);

          block.remove();
          await coordinator.waitFor('the throttled shard', () => coordinator.count(blocked) >= PER_SHARD);
          await new Promise((resolve) => setTimeout(resolve, 500));
          expectExactlyOnceInOrder(coordinator, ids);

          const injected = proxy.counters.injected;
          const reported = [...coordinator.throttled.values()].reduce((a, b) => a + b, 0);
          const statusTotal = readers.reduce((a, r) => a + r.status().throttled, 0);
          expect(injected[PTE]).to.be.greaterThan(10);
          expect(reported, 'throttled messages count every throttle').to.equal(injected[PTE]);
          expect(statusTotal, 'status counts every throttle').to.equal(injected[PTE]);
          expect(proxy.counters.resets).to.equal(1);
          const transient = coordinator.errors.filter((e) => !e.fatal);
          expect(transient.length, '4 x 500 and 1 reset reported as non-fatal').to.equal(5);
          expect(coordinator.errors.filter((e) => e.fatal)).to.deep.equal([]);
          const byShard = new Map(readers.map((r) => [r.shardId, r.status()]));
          expect(byShard.get(expiring)!.iteratorRefreshes).to.equal(1);
        } finally {
          await Promise.all(readers.map((r) => r.stop('test over')));
          await proxy.stop();
        }
      });
    }

    it('reports shard end after a split (ChildShards where the engine sends them)', async () => {
      const stream = uniqueStream('split');
      const { shards } = await kinesis.createStream(stream, { shards: 1 });
      await produce(admin, stream, shards, false);
      const { SplitShardCommand } = await import('@aws-sdk/client-kinesis');
      const range = shards[0]!.HashKeyRange!;
      const middle = ((BigInt(range.StartingHashKey!) + BigInt(range.EndingHashKey!)) / 2n).toString();
      await admin.send(
        new SplitShardCommand({
          StreamName: stream,
          ShardToSplit: shards[0]!.ShardId!,
          NewStartingHashKey: middle,
        }),
      );
      await kinesis.waitForStreamActive(stream);
      const children = (await kinesis.listShards(stream))
        .filter((s) => s.ParentShardId === shards[0]!.ShardId)
        .map((s) => s.ShardId!)
        .sort();
      expect(children).to.have.length(2);
      startReaders(kinesis.clientConfig, stream, shards);
      const parent = shards[0]!.ShardId!;
      await coordinator.waitFor('shard end', () => coordinator.ends.has(parent));
      expect(coordinator.count(parent)).to.equal(PER_SHARD);
      const reported = coordinator.ends.get(parent);
      if (engine === 'kinesalite') expect(reported).to.equal(undefined);
      else expect([...(reported ?? [])].sort()).to.deep.equal(children);
      expect(await readers[0]!.finished).to.deep.include({ state: 'ended' });
    });
  });
}
