/**
 * One shard, one owner, through real parts (kinesalite, the real Redis, worker threads): the lease
 * deadline holds against a partitioned Redis, a stop keeps its leases until its handlers finish, a
 * handoff is not held up by a retry sleep, a crash before the first batch at LATEST loses nothing,
 * `initialPosition` applies to shards whose parents are long gone, and leases of gone shards are
 * cleaned up once nothing needs them (on Redis and on DynamoDB leases).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import type { Coordinator, CoordinatorOptions } from '@shardline/coordinator';
import {
  DynamoDbLeaseManager,
  type LeaseManager,
  MemoryLeaseManager,
  MemoryLeaseStore,
  RedisLeaseManager,
  startCoordinator,
} from '@shardline/coordinator';
import {
  type LocalDynamoDb,
  type LocalKinesis,
  startLocalDynamoDb,
  startLocalKinesis,
  startTcpFaultProxy,
  type TestRedis,
  useTestRedis,
} from '@shardline/testing';
import { expect } from 'chai';
import {
  expectExactlyOnceInOrder,
  type Item,
  keyedItems,
  putItems,
  readingShards,
  waitFor,
} from './coordinator-helpers.js';

const encoder = new TextEncoder();

describe('lease safety (kinesalite, worker threads)', function () {
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

  async function stream(shards: number): Promise<string> {
    const name = `safety-${process.pid}-${streamNo++}`;
    await kinesis.createStream(name, { shards });
    return name;
  }

  async function start<T = Item>(
    options: Partial<CoordinatorOptions<T>> & { streamName: string; group: string },
  ) {
    const coordinator = await startCoordinator<T>({
      kinesis: kinesis.clientConfig,
      idleFetchIntervalMs: 100,
      workerThreads: 1,
      checkpoint: { intervalMs: 100 },
      ...options,
    } as CoordinatorOptions<T>);
    running.push(coordinator as Coordinator);
    return coordinator;
  }

  describe('with Redis leases', () => {
    let redis: TestRedis;
    beforeEach(async () => {
      redis = await useTestRedis('lease-safety');
    });
    afterEach(async () => {
      await Promise.all(running.splice(0).map((c) => c.stop()));
      await redis.cleanup();
    });

    it('Redis partitioned (a hung connection): no handler call or retry past the local deadline, the lease given up within its duration', async () => {
      const LEASE_MS = 3_000;
      const name = await stream(1);
      await putItems(client, name, keyedItems(20, 4));
      const proxy = await startTcpFaultProxy({ target: redis.url });
      try {
        const calls: number[] = [];
        const lost: number[] = [];
        const c = await start({
          streamName: name,
          group: 'partitioned',
          leases: { redis: proxy.clientUrl(redis.url), keyPrefix: redis.keyPrefix },
          leaseDurationMs: LEASE_MS,
          // The handler keeps failing: the shard is retried all the time (the case a deadline checked
          // only when a batch starts lets through).
          onHandlerError: { retries: Number.POSITIVE_INFINITY, backoffMs: { initial: 50, max: 50 } },
          handler: () => {
            calls.push(Date.now());
            throw new Error('always');
          },
        });
        c.on('lease.lost', () => lost.push(Date.now()));
        await waitFor(
          () => calls.length >= 5,
          () => `${calls.length} handler calls`,
        );
        const partitionedAt = Date.now();
        proxy.blackhole();
        await waitFor(
          () => lost.length > 0,
          () => 'lease.lost',
          LEASE_MS + 5_000,
        );
        const late = calls.filter((t) => t > partitionedAt + LEASE_MS * 0.8);
        console.log(
          `      partitioned: last handler call ${Math.max(...calls) - partitionedAt} ms in, lease given up ${lost[0]! - partitionedAt} ms in`,
        );
        expect(late, 'handler calls past the deadline').to.deep.equal([]);
        expect(lost[0]! - partitionedAt, 'lease given up by its own timer').to.be.at.most(LEASE_MS + 500);
        proxy.heal();
      } finally {
        await Promise.all(running.splice(0).map((c) => c.stop()));
        await proxy.stop();
      }
    });
  });

  for (const store of ['redis', 'dynamodb'] as const) {
    describe(`with ${store === 'redis' ? 'Redis' : 'DynamoDB'} leases: gone shards`, () => {
      let redis: TestRedis | undefined;
      let db: LocalDynamoDb | undefined;
      beforeEach(async () => {
        if (store === 'redis') redis = await useTestRedis('lease-safety');
        else db = await startLocalDynamoDb();
      });
      afterEach(async () => {
        await Promise.all(running.splice(0).map((c) => c.stop()));
        await redis?.cleanup();
        await db?.stop();
      });

      function leaseOptions(): NonNullable<CoordinatorOptions<unknown>['leases']> {
        return db === undefined
          ? { redis: redis!.url, keyPrefix: redis!.keyPrefix }
          : { dynamodb: { tableName: 'cleanup-leases', createTable: true, ...db.clientConfig } };
      }

      function seederFor(name: string): LeaseManager {
        return db === undefined
          ? new RedisLeaseManager({
              redis: redis!.url,
              group: 'cleanup',
              stream: name,
              hostId: 'seeder',
              keyPrefix: redis!.keyPrefix,
            })
          : new DynamoDbLeaseManager({
              tableName: 'cleanup-leases',
              createTable: true,
              ...db.clientConfig,
              hostId: 'seeder',
            });
      }

      it('leases of shards gone from the stream are removed once nothing needs them; a gone parent stays while its child has no checkpoint', async () => {
        const name = await stream(1);
        const [shard] = (await kinesis.listShards(name)).map((s) => s.ShardId!);
        const seeder = seederFor(name);
        try {
          // Two shards long gone from the stream: one nobody needs, one the live shard names as its parent.
          await seeder.ensureLeases([
            { shardId: 'shardId-000000000090', parentShardIds: [] },
            { shardId: 'shardId-000000000091', parentShardIds: [], childShardIds: [shard!] },
            { shardId: shard!, parentShardIds: ['shardId-000000000091'] },
          ]);
          const ids = async () => (await seeder.listLeases()).map((l) => l.shardId).sort();
          let leases: string[] = await ids();
          const c = await start({
            streamName: name,
            group: 'cleanup',
            leases: leaseOptions(),
            leaseDurationMs: 3_000,
            shardSyncIntervalMs: 1_000,
            leaseCleanupDelayMs: 0,
            handler: () => undefined,
          });
          await waitFor(
            () => !leases.includes('shardId-000000000090'),
            () => `leases: ${leases}`,
            15_000,
            200,
            async () => {
              leases = await ids();
            },
          );
          // The child has read nothing yet, so has no checkpoint: its parent's lease is kept.
          expect(leases).to.deep.equal(['shardId-000000000091', shard].sort());
          await putItems(client, name, keyedItems(10, 2));
          await waitFor(
            () => leases.length === 1,
            () => `leases: ${leases}`,
            15_000,
            200,
            async () => {
              leases = await ids();
            },
          );
          expect(leases).to.deep.equal([shard]);
          expect(readingShards(c)).to.deep.equal([shard]);
        } finally {
          await seeder.close();
        }
      });
    });
  }

  it('stop() with a handler slower than the lease: the lease is renewed until the handler finished, no other host reads the shard meanwhile', async () => {
    const LEASE_MS = 2_000;
    const name = await stream(1);
    const items = keyedItems(10, 2);
    await putItems(client, name, items);
    const store = new MemoryLeaseStore();
    let handlerEnd = 0;
    const a = await start({
      streamName: name,
      group: 'slow-stop',
      hostId: 'a',
      leases: { store },
      leaseDurationMs: LEASE_MS,
      handler: async () => {
        await new Promise((resolve) => setTimeout(resolve, 3 * LEASE_MS));
        handlerEnd = Date.now();
      },
    });
    await waitFor(
      () => readingShards(a).length === 1 && a.status().bufferedRecords > 0,
      () => JSON.stringify(a.status().shards),
    );
    const stopping = a.stop();
    // What b must deliver: records put after a's batch in hand (which a finishes and checkpoints).
    const more = keyedItems(10, 2, new Map(items.map((x) => [x.k, x.i + 1])));
    await putItems(client, name, more);
    const seenByB: Array<{ t: number; item: Item }> = [];
    const b = await start({
      streamName: name,
      group: 'slow-stop',
      hostId: 'b',
      leases: { store },
      leaseDurationMs: LEASE_MS,
      handler: (batch) => {
        for (const r of batch.records) seenByB.push({ t: Date.now(), item: r.data });
      },
    });
    await stopping;
    expect(handlerEnd, 'the slow handler finished').to.be.greaterThan(0);
    await waitFor(
      () => seenByB.length >= more.length,
      () => `b delivered ${seenByB.length} of ${more.length}`,
      10_000,
    );
    expect(seenByB[0]!.t, 'host b delivered only after host a was done').to.be.at.least(handlerEnd);
    expectExactlyOnceInOrder(
      seenByB.map((x) => x.item),
      more,
    );
    await b.stop();
  });

  it('a handoff while the shard waits out a long retry backoff: the lane closes at once and the lease is handed over, not lost', async () => {
    const LEASE_MS = 3_000;
    const name = await stream(2);
    await putItems(client, name, keyedItems(40, 8));
    const store = new MemoryLeaseStore();
    const aEvents: string[] = [];
    const a = await start({
      streamName: name,
      group: 'handoff-backoff',
      hostId: 'a',
      leases: { store },
      leaseDurationMs: LEASE_MS,
      onHandlerError: { retries: Number.POSITIVE_INFINITY, backoffMs: { initial: 30_000, max: 30_000 } },
      handler: () => {
        throw new Error('a cannot process anything');
      },
    });
    a.on('lease.released', (e) => aEvents.push(`released ${e.shardId} ${e.reason}`));
    a.on('lease.lost', (e) => aEvents.push(`lost ${e.shardId} ${e.reason}`));
    await waitFor(
      () => readingShards(a).length === 2,
      () => JSON.stringify(readingShards(a)),
    );
    const received: Item[] = [];
    const joinedAt = Date.now();
    const b = await start({
      streamName: name,
      group: 'handoff-backoff',
      hostId: 'b',
      leases: { store },
      leaseDurationMs: LEASE_MS,
      handler: (batch) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    await waitFor(
      () => aEvents.some((e) => e.endsWith('handoff')),
      () => aEvents.join('; '),
      4 * LEASE_MS,
    );
    const handedAt = Date.now();
    await waitFor(
      () => received.length > 0,
      () => 'b delivering the shard handed over',
      10_000,
    );
    console.log(`      handed over ${handedAt - joinedAt} ms after the second host joined`);
    expect(
      aEvents.filter((e) => e.startsWith('lost')),
      'no lease lost',
    ).to.deep.equal([]);
    expect(handedAt - joinedAt, 'well before the 30 s backoff ran out').to.be.below(20_000);
    await b.stop();
  });

  it("a worker crash before the first batch at 'LATEST': what arrived meanwhile is read after the restart", async () => {
    const name = await stream(1);
    const c = await start({
      streamName: name,
      group: 'latest-crash',
      initialPosition: 'LATEST',
      // A long idle pause after the first (empty) GetRecords: the records and the crash fall into it.
      idleFetchIntervalMs: 5_000,
      handler: (batch) => {
        for (const r of batch.records) received.push(r.data);
      },
    });
    const received: Item[] = [];
    const crashed: boolean[] = [];
    c.on('worker.crashed', (e) => crashed.push(e.respawned));
    await waitFor(
      () => c.status().shards[0]?.lastFetchAt !== undefined,
      () => JSON.stringify(c.status().shards),
    );
    const items = keyedItems(30, 3);
    await putItems(client, name, items);
    await (c as unknown as { terminateWorkerThread(i: number): Promise<number> }).terminateWorkerThread(0);
    await waitFor(
      () => crashed.length > 0,
      () => 'worker.crashed',
    );
    expect(crashed).to.deep.equal([true]);
    await waitFor(
      () => received.length >= items.length,
      () => `received ${received.length} of ${items.length}`,
      20_000,
    );
    expectExactlyOnceInOrder(received, items);
  });

  describe('initialPosition for a shard whose parents are gone from the stream', () => {
    /**
     * An HTTP proxy in front of kinesalite that adds a parent long gone from the stream
     * (`shardId-000000000099`) to every shard of its ListShards answers: a stream resharded beyond
     * its retention, which the emulators cannot produce.
     */
    async function withGoneParent(): Promise<{ endpoint: string; close(): Promise<void> }> {
      const upstream = new URL(String(kinesis.clientConfig.endpoint));
      const server = http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          const forward = http.request(
            {
              host: upstream.hostname,
              port: upstream.port,
              path: req.url,
              method: req.method,
              headers: req.headers,
            },
            (answer) => {
              const parts: Buffer[] = [];
              answer.on('data', (c: Buffer) => parts.push(c));
              answer.on('end', () => {
                let out = Buffer.concat(parts);
                if (
                  String(req.headers['x-amz-target']).endsWith('.ListShards') &&
                  answer.statusCode === 200
                ) {
                  const json = JSON.parse(out.toString()) as { Shards: Array<Record<string, unknown>> };
                  for (const shard of json.Shards) shard.ParentShardId = 'shardId-000000000099';
                  out = Buffer.from(JSON.stringify(json));
                }
                const headers: http.OutgoingHttpHeaders = { ...answer.headers, 'content-length': out.length };
                delete headers['x-amz-crc32'];
                res.writeHead(answer.statusCode ?? 500, headers);
                res.end(out);
              });
            },
          );
          forward.on('error', () => res.destroy());
          forward.end(body);
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      return {
        endpoint: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise<void>((resolve) => {
            server.closeAllConnections();
            server.close(() => resolve());
          }),
      };
    }

    async function putBefore(name: string): Promise<Item[]> {
      const old = keyedItems(20, 4).map((x) => ({ ...x, k: `old-${x.k}` }));
      const out = await client.send(
        new PutRecordsCommand({
          StreamName: name,
          Records: old.map((x) => ({ Data: encoder.encode(JSON.stringify(x)), PartitionKey: x.k })),
        }),
      );
      expect(out.FailedRecordCount ?? 0).to.equal(0);
      return old;
    }

    it("is a root: 'LATEST' applies (only records put after the start), not TRIM_HORIZON", async () => {
      const name = await stream(2);
      await putBefore(name);
      const proxy = await withGoneParent();
      try {
        const received: Item[] = [];
        const c = await start({
          streamName: name,
          group: 'gone-parent',
          kinesis: { ...kinesis.clientConfig, endpoint: proxy.endpoint },
          initialPosition: 'LATEST',
          handler: (batch) => {
            for (const r of batch.records) received.push(r.data);
          },
        });
        await waitFor(
          () => c.status().shards.every((s) => s.lastFetchAt !== undefined),
          () => JSON.stringify(c.status().shards),
        );
        expect(c.status().shards.map((s) => s.parentShardIds)).to.deep.equal([
          ['shardId-000000000099'],
          ['shardId-000000000099'],
        ]);
        const fresh = keyedItems(20, 4);
        await putItems(client, name, fresh);
        await waitFor(
          () => received.length >= fresh.length,
          () => `received ${received.length}`,
        );
        await c.stop();
        expectExactlyOnceInOrder(received, fresh);
      } finally {
        await proxy.close();
      }
    });

    it('a parent the group has a lease for (it was reading it) is not: the child starts at TRIM_HORIZON', async () => {
      const name = await stream(2);
      const old = await putBefore(name);
      const proxy = await withGoneParent();
      const store = new MemoryLeaseStore();
      const group = 'known-parent';
      const seeder = new MemoryLeaseManager({
        hostId: 'seeder',
        leaseDurationMs: 10_000,
        store,
        namespace: `${group}:${name}`,
      });
      await seeder.ensureLeases([{ shardId: 'shardId-000000000099', parentShardIds: [] }]);
      try {
        const received: Item[] = [];
        const c = await start({
          streamName: name,
          group,
          leases: { store },
          kinesis: { ...kinesis.clientConfig, endpoint: proxy.endpoint },
          initialPosition: 'LATEST',
          handler: (batch) => {
            for (const r of batch.records) received.push(r.data);
          },
        });
        await waitFor(
          () => received.length >= old.length,
          () => `received ${received.length} of ${old.length}`,
        );
        await c.stop();
        expectExactlyOnceInOrder(received, old);
      } finally {
        await proxy.close();
      }
    });
  });
});
