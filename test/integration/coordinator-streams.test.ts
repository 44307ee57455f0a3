/**
 * Several streams in one coordinator (`streams`, `addStream()`, `removeStream()`) on kinesalite: two
 * streams with the same shard ids on Redis leases, a stream added at run time and released to another
 * host that resumes from its checkpoints, a removal that deletes the stream's leases, and KCL's
 * multi-stream lease keys in a DynamoDB table (dynalite). Every test counts the records per stream.
 */

import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import { type DynamoDBClient, ScanCommand } from '@aws-sdk/client-dynamodb';
import { DescribeStreamSummaryCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import type { Coordinator, CoordinatorOptions, RecordBatch } from '@shardline/coordinator';
import { startCoordinator } from '@shardline/coordinator';
import {
  type LocalDynamoDb,
  type LocalKinesis,
  startLocalDynamoDb,
  startLocalKinesis,
  type TestRedis,
  useTestRedis,
} from '@shardline/testing';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { expectExactlyOnceInOrder, type Item, keyedItems, putItems, waitFor } from './coordinator-helpers.js';

const handlerModule = fileURLToPath(new URL('./fixtures/handler-module.mjs', import.meta.url));

describe('startCoordinator: several streams in one coordinator (kinesalite)', function () {
  this.timeout(30_000);
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  let redis: TestRedis;
  const running: Coordinator[] = [];
  let streamNo = 0;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
    client = kinesis.client();
  });

  after(async () => {
    client?.destroy();
    await kinesis?.stop();
  });

  beforeEach(async () => {
    redis = await useTestRedis('coordinator-streams');
  });

  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
    await redis.cleanup();
  });

  async function stream(shards = 2): Promise<string> {
    const name = `streams-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards });
    return name;
  }

  /** Received items per stream, as the batches name it. */
  function collector(): {
    received: Map<string, Item[]>;
    handler: (batch: RecordBatch<Item>) => void;
    of(name: string): Item[];
  } {
    const received = new Map<string, Item[]>();
    const of = (name: string) => {
      let list = received.get(name);
      if (list === undefined) {
        list = [];
        received.set(name, list);
      }
      return list;
    };
    return {
      received,
      of,
      handler: (batch) => of(batch.streamName).push(...batch.records.map((r) => r.data)),
    };
  }

  async function start(
    options: Partial<CoordinatorOptions<Item>> & { group: string },
  ): Promise<Coordinator<Item>> {
    const coordinator = await startCoordinator<Item>({
      kinesis: kinesis.clientConfig,
      leases: { redis: redis.url, keyPrefix: redis.keyPrefix },
      leaseDurationMs: 3_000,
      idleFetchIntervalMs: 100,
      idleFetchMaxIntervalMs: 100,
      workerThreads: 1,
      checkpoint: { intervalMs: 100 },
      ...options,
    } as CoordinatorOptions<Item>);
    running.push(coordinator as Coordinator);
    return coordinator;
  }

  async function redisKeys(pattern: string): Promise<string[]> {
    const r = redis.client();
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, found] = await r.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== '0');
    return keys.sort();
  }

  it('two streams with the same shard ids, one coordinator: every record of each once, in order per key, batches and events naming their stream', async () => {
    const [a, b] = [await stream(2), await stream(2)];
    const itemsA = keyedItems(300, 20);
    const itemsB = keyedItems(200, 20);
    await Promise.all([putItems(client, a, itemsA), putItems(client, b, itemsB)]);
    const c = collector();
    const acquired: string[] = [];
    const registry = new Registry();
    const coordinator = await start({
      group: 'two',
      streams: [{ streamName: a }, { streamName: b }],
      handler: c.handler,
      metrics: { registry },
    });
    coordinator.on('lease.acquired', (e) => acquired.push(`${e.streamName}/${e.shardId}`));
    await waitFor(
      () => c.of(a).length >= itemsA.length && c.of(b).length >= itemsB.length,
      () => `received ${c.of(a).length}/${itemsA.length} of ${a}, ${c.of(b).length}/${itemsB.length} of ${b}`,
    );
    expect([...c.received.keys()].sort()).to.deep.equal([a, b].sort());
    expectExactlyOnceInOrder(c.of(a), itemsA);
    expectExactlyOnceInOrder(c.of(b), itemsB);
    const shardIds = ['shardId-000000000000', 'shardId-000000000001'];
    expect(acquired.sort()).to.deep.equal(
      [...shardIds.map((s) => `${a}/${s}`), ...shardIds.map((s) => `${b}/${s}`)].sort(),
    );

    const status = coordinator.status();
    expect(status.stream).to.equal(`${a},${b}`);
    expect(status.streams.map((s) => [s.streamName, s.shards, s.reading])).to.deep.equal([
      [a, 2, 2],
      [b, 2, 2],
    ]);
    expect(status.shards.map((s) => `${s.streamName}/${s.shardId}`).sort()).to.deep.equal(acquired.sort());
    // Metrics keep their names, each stream's series under its own `stream` label.
    const metric = registry.getSingleMetric('shardline_records_processed_total');
    const values = ((await metric?.get())?.values ?? []) as Array<{
      value: number;
      labels: Record<string, unknown>;
    }>;
    const processed = (name: string) =>
      values
        .filter((v) => v.labels.stream === name && v.labels.group === 'two')
        .reduce((n, v) => n + v.value, 0);
    expect([processed(a), processed(b)]).to.deep.equal([itemsA.length, itemsB.length]);
    // Each stream's leases live under its own {group:stream} namespace: same shard ids, no collision.
    for (const name of [a, b]) {
      expect(await redisKeys(`${redis.keyPrefix}:{two:${name}}:lease:*`)).to.deep.equal(
        shardIds.map((s) => `${redis.keyPrefix}:{two:${name}}:lease:${s}`),
      );
    }
  });

  it('single-stream options: same Redis keys as before, batches/events/status name the one stream; addStream adds a second', async () => {
    const [one, two] = [await stream(1), await stream(1)];
    const items = keyedItems(50, 5);
    await Promise.all([putItems(client, one, items), putItems(client, two, items)]);
    const c = collector();
    const events: string[] = [];
    const coordinator = await start({ group: 'single', streamName: one, handler: c.handler });
    coordinator.on('checkpoint', (e) => events.push(e.streamName));
    await waitFor(
      () => c.of(one).length >= items.length,
      () => `received ${c.of(one).length}/${items.length}`,
    );
    expectExactlyOnceInOrder(c.of(one), items);
    const status = coordinator.status();
    expect(status.stream).to.equal(one);
    expect(status.streams.map((s) => s.streamName)).to.deep.equal([one]);
    expect(status.shards.map((s) => s.streamName)).to.deep.equal([one]);
    expect(await redisKeys(`${redis.keyPrefix}:*:lease:*`)).to.deep.equal([
      `${redis.keyPrefix}:{single:${one}}:lease:shardId-000000000000`,
    ]);
    await coordinator.addStream({ streamName: two });
    await waitFor(
      () => c.of(two).length >= items.length && events.includes(two),
      () => `received ${c.of(two).length}/${items.length} of ${two}`,
    );
    expectExactlyOnceInOrder(c.of(two), items);
    expect([...new Set(events)].sort()).to.deep.equal([one, two].sort());
    expect(coordinator.status().streams.map((s) => s.streamName)).to.deep.equal([one, two]);
  });

  it('addStream at run time, removeStream(release): another host resumes the stream from its checkpoints, nothing lost or repeated', async () => {
    const name = await stream(2);
    const first = keyedItems(150, 10);
    await putItems(client, name, first);
    const c1 = collector();
    const h1 = await start({ group: 'move', hostId: 'h1', streams: [], handler: c1.handler });
    expect(h1.status().streams).to.deep.equal([]);
    await h1.addStream({ streamName: name });
    const added = await h1.addStream({ streamName: name }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(added).to.have.property('code', 'ERR_INVALID_OPTION');
    expect(String((added as Error).message)).to.contain('stream.streamName');
    const missing = await h1.addStream({ streamName: `no-such-${process.pid}` }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(missing).to.have.property('code', 'ERR_NOT_FOUND');
    await waitFor(
      () => c1.of(name).length >= first.length,
      () => `h1 received ${c1.of(name).length}/${first.length}`,
    );

    const result = await h1.removeStream(name);
    expect(result).to.deep.equal({ streamName: name, released: 2, deleted: 0, heldElsewhere: 0 });
    expect(h1.status().streams).to.deep.equal([]);
    const kept = await redisKeys(`${redis.keyPrefix}:{move:${name}}:lease:*`);
    expect(kept).to.have.length(2);

    const next = new Map<string, number>();
    keyedItems(150, 10, next); // the indexes `first` used
    const second = keyedItems(100, 10, next);
    await putItems(client, name, second);
    const c2 = collector();
    await start({ group: 'move', hostId: 'h2', streams: [{ streamName: name }], handler: c2.handler });
    await waitFor(
      () => c2.of(name).length >= second.length,
      () => `h2 received ${c2.of(name).length}/${second.length}`,
    );
    // h1 read `first` and checkpointed it when it let go; h2 starts after it: no duplicates allowed here.
    expectExactlyOnceInOrder(c1.of(name), first);
    expectExactlyOnceInOrder(c2.of(name), second);
    expectExactlyOnceInOrder([...c1.of(name), ...c2.of(name)], [...first, ...second]);
  });

  it('removeStream(delete) deletes its leases and checkpoints; after stop(), addStream and removeStream reject with ERR_CLOSED', async () => {
    const [keep, drop] = [await stream(1), await stream(2)];
    const items = keyedItems(100, 10);
    await Promise.all([putItems(client, keep, items), putItems(client, drop, items)]);
    const c = collector();
    const coordinator = await start({
      group: 'del',
      streams: [{ streamName: keep }, { streamName: drop, initialPosition: 'TRIM_HORIZON' }],
      handler: c.handler,
    });
    await waitFor(
      () => c.of(keep).length >= items.length && c.of(drop).length >= items.length,
      () => `received ${c.of(keep).length} of ${keep}, ${c.of(drop).length} of ${drop}`,
    );
    expectExactlyOnceInOrder(c.of(keep), items);
    expectExactlyOnceInOrder(c.of(drop), items);
    expect(await redisKeys(`${redis.keyPrefix}:{del:${drop}}:lease:*`)).to.have.length(2);
    const unknown = await coordinator.removeStream('nope').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(unknown).to.have.property('code', 'ERR_INVALID_OPTION');

    expect(await coordinator.removeStream(drop, { leases: 'delete' })).to.deep.equal({
      streamName: drop,
      released: 2,
      deleted: 2,
      heldElsewhere: 0,
    });
    expect(await redisKeys(`${redis.keyPrefix}:{del:${drop}}:lease:*`)).to.deep.equal([]);
    expect(await redisKeys(`${redis.keyPrefix}:{del:${drop}}:shards`)).to.deep.equal([]);
    // The other stream reads on.
    expect(await redisKeys(`${redis.keyPrefix}:{del:${keep}}:lease:*`)).to.have.length(1);
    const more = keyedItems(20, 5, new Map(keyedItems(100, 10).map((x) => [x.k, 10])));
    await putItems(client, keep, more);
    await waitFor(
      () => c.of(keep).length >= items.length + more.length,
      () => `received ${c.of(keep).length}/${items.length + more.length} of ${keep}`,
    );
    expectExactlyOnceInOrder(c.of(keep), [...items, ...more]);
    expect(c.of(drop)).to.have.length(items.length);

    await coordinator.stop();
    for (const call of [
      () => coordinator.addStream({ streamName: drop }),
      () => coordinator.removeStream(keep),
    ]) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).to.have.property('code', 'ERR_CLOSED');
    }
  });

  it('iterator mode: removeStream from inside the loop (not awaited there) ends that stream; the others read on', async () => {
    const [a, b] = [await stream(1), await stream(1)];
    const items = keyedItems(60, 6);
    await Promise.all([putItems(client, a, items), putItems(client, b, items)]);
    const coordinator = await start({
      group: 'iter',
      leases: {},
      streams: [{ streamName: a }, { streamName: b }],
    });
    const c = collector();
    let removal: Promise<unknown> | undefined;
    for await (const batch of coordinator) {
      c.of(batch.streamName).push(...batch.records.map((r) => r.data));
      if (batch.streamName === b && removal === undefined) removal = coordinator.removeStream(b);
      if (c.of(a).length >= items.length && removal !== undefined) break;
    }
    const result = (await removal) as { released: number };
    expect(result).to.include({ streamName: b, released: 1, deleted: 0 });
    expectExactlyOnceInOrder(c.of(a), items);
    expect(c.of(b).length).to.be.greaterThan(0);
    expect(coordinator.status().streams.map((s) => s.streamName)).to.deep.equal([a]);
  });

  it('handlerModule: batches built in the worker threads name their stream', async () => {
    const [a, b] = [await stream(1), await stream(1)];
    const items = keyedItems(80, 8);
    await Promise.all([putItems(client, a, items), putItems(client, b, items)]);
    const channel = new BroadcastChannel('shardline-handler-module-test');
    const c = collector();
    channel.onmessage = (event) => {
      const { streamName, items: got } = (event as MessageEvent).data as {
        streamName: string;
        items: Item[];
      };
      c.of(streamName).push(...got);
    };
    try {
      await start({ group: 'module', streams: [{ streamName: a }, { streamName: b }], handlerModule });
      await waitFor(
        () => c.of(a).length >= items.length && c.of(b).length >= items.length,
        () => `received ${c.of(a).length} of ${a}, ${c.of(b).length} of ${b} (${[...c.received.keys()]})`,
      );
      expect([...c.received.keys()].sort()).to.deep.equal([a, b].sort());
      expectExactlyOnceInOrder(c.of(a), items);
      expectExactlyOnceInOrder(c.of(b), items);
    } finally {
      channel.close();
    }
  });

  describe('DynamoDB leases (dynalite)', () => {
    let db: LocalDynamoDb;
    let raw: DynamoDBClient;

    before(async () => {
      db = await startLocalDynamoDb();
      raw = db.client();
    });

    after(async () => {
      raw?.destroy();
      await db?.stop();
    });

    it("keys each stream's leases as KCL's multi-stream leases: account:streamName:creationEpoch:shardId", async () => {
      const [a, b] = [await stream(2), await stream(1)];
      const items = keyedItems(120, 12);
      await Promise.all([putItems(client, a, items), putItems(client, b, items)]);
      const tableName = `streams-${process.pid}`;
      const c = collector();
      const coordinator = await start({
        group: 'ddb',
        streams: [{ streamName: a }, { streamName: b }],
        leases: { dynamodb: { tableName, createTable: true, ...db.clientConfig } },
        handler: c.handler,
      });
      await waitFor(
        () => c.of(a).length >= items.length && c.of(b).length >= items.length,
        () => `received ${c.of(a).length} of ${a}, ${c.of(b).length} of ${b}`,
      );
      expectExactlyOnceInOrder(c.of(a), items);
      expectExactlyOnceInOrder(c.of(b), items);
      await coordinator.stop(); // final checkpoints

      const expected: string[] = [];
      for (const [name, shards] of [
        [a, 2],
        [b, 1],
      ] as const) {
        const summary = (await client.send(new DescribeStreamSummaryCommand({ StreamName: name })))
          .StreamDescriptionSummary!;
        const account = summary.StreamARN!.split(':')[4]!;
        const streamId = `${account}:${name}:${Math.floor(summary.StreamCreationTimestamp!.getTime() / 1000)}`;
        for (let i = 0; i < shards; i++) expected.push(`${streamId}:shardId-00000000000${i}`);
      }
      const out = await raw.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }));
      const items2 = out.Items ?? [];
      expect(items2.map((item) => item.leaseKey?.S).sort()).to.deep.equal(expected.sort());
      for (const item of items2) {
        const key = item.leaseKey!.S!;
        const shardId = key.slice(key.lastIndexOf(':') + 1);
        expect(item.shardId?.S).to.equal(shardId);
        expect(item.streamName?.S).to.equal(key.slice(0, key.lastIndexOf(':')));
        expect(item.streamName?.S).to.match(/^\d+:streams-\d+-\d+:\d+$/);
        expect(item.checkpoint?.S).to.match(/^\d+$/);
      }
    });
  });
});
