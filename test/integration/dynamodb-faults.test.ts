/**
 * DynamoDB leases under faults, through the testing kit's FaultProxy in front of dynalite (it answers
 * any awsJson call it is told to fail, DynamoDB's too): throttled writes
 * (ProvisionedThroughputExceededException, ThrottlingException) and denied calls come back as clear
 * errors naming the table and, for AccessDenied, the permission; a reply lost to a reset connection
 * (through the TCP fault proxy) does not lose the lease or the checkpoint; two coordinators, one of them
 * throttled for several lease durations, never deliver a shard at once, and every record arrives.
 */
import { GetItemCommand } from '@aws-sdk/client-dynamodb';
import type { RecordBatch } from '@shardline/coordinator';
import { DynamoDbLeaseManager, startCoordinator } from '@shardline/coordinator';
import {
  FaultProxy,
  type LocalDynamoDb,
  type LocalKinesis,
  startLocalDynamoDb,
  startLocalKinesis,
  startTcpFaultProxy,
} from '@shardline/testing';
import { expect } from 'chai';
import { rejection } from '../support/assertions.js';
import { expectExactlyOnceInOrder, type Item, Production, waitFor } from './coordinator-helpers.js';

let tables = 0;

describe('DynamoDB leases under faults (FaultProxy in front of dynalite)', function () {
  this.timeout(90_000);
  let db: LocalDynamoDb;
  let proxy: FaultProxy;
  let tableName: string;
  const managers: DynamoDbLeaseManager[] = [];

  before(async () => {
    db = await startLocalDynamoDb();
    proxy = await FaultProxy.start({ target: db.endpoint });
  });

  after(async () => {
    await proxy?.stop();
    await db?.stop();
  });

  beforeEach(() => {
    tableName = `faults-${process.pid}-${++tables}`;
    proxy.clearRules();
  });

  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.close()));
  });

  function manager(hostId: string, viaProxy: boolean, leaseDurationMs = 1_000): DynamoDbLeaseManager {
    const m = new DynamoDbLeaseManager({
      tableName,
      createTable: true,
      ...db.clientConfig,
      ...(viaProxy ? { endpoint: proxy.endpoint } : {}),
      hostId,
      leaseDurationMs,
    });
    managers.push(m);
    return m;
  }

  for (const error of ['ProvisionedThroughputExceededException', 'ThrottlingException']) {
    it(`${error} on renewals: ERR_THROTTLED naming the table; the lease ends before another host takes it`, async () => {
      const a = manager('A', true);
      const b = manager('B', false);
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      const rule = proxy.addRule({ operation: 'UpdateItem', action: { type: 'error', error } });
      let lastGood = lease;
      let failures = 0;
      // A keeps trying, as its renewal loop would; B watches and takes the lease when it can.
      let taken = await b.acquire('s0');
      while (taken === undefined) {
        const outcome = await a
          .renewLeases([{ shardId: 's0', counter: lease.counter }], { timeoutMs: 300 })
          .then(
            (renewed) => renewed.get('s0'),
            (e: { code?: string; message?: string }) => e,
          );
        if (outcome !== undefined && 'owner' in outcome) lastGood = outcome;
        else {
          failures++;
          expect((outcome as { code?: string }).code).to.be.oneOf(['ERR_THROTTLED', 'ERR_TRANSIENT']);
          expect((outcome as { message: string }).message).to.include(tableName);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        taken = await b.acquire('s0');
      }
      expect(failures).to.be.greaterThan(0);
      expect(rule.hits).to.be.greaterThan(0);
      // Never held twice: B's lease starts after A's last good renew ran out (one process, one clock).
      expect(taken.readAtMs!).to.be.at.least(lastGood.expiresAtMs!);
      rule.remove();
      expect(await a.renew('s0', lease.counter), 'fenced once B took it').to.equal(undefined);
      const direct = await rejection(
        (async () => {
          proxy.addRule({ operation: 'UpdateItem', action: { type: 'error', error }, times: 10 });
          await a.checkpoint('s0', lease.counter, { sequenceNumber: '1' });
        })(),
      );
      // Throttled on every attempt the SDK makes; should its retries outlast the call timeout, the
      // outcome is unknown instead (ERR_TRANSIENT). Either way the table is named.
      expect(direct.code, direct.message).to.be.oneOf(['ERR_THROTTLED', 'ERR_TRANSIENT']);
      expect(direct.message).to.include(`'${tableName}'`);
      if (direct.code === 'ERR_THROTTLED') expect(direct.message).to.include(error);
    });
  }

  it('a reply lost to a reset connection: the SDK retry of the checkpoint lands (fenced by the token, not the counter)', async () => {
    const tcp = await startTcpFaultProxy({ target: db.endpoint });
    const raw = db.client();
    try {
      const a = new DynamoDbLeaseManager({
        tableName,
        createTable: true,
        ...db.clientConfig,
        endpoint: tcp.clientUrl(db.endpoint),
        hostId: 'A',
      });
      managers.push(a);
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      const counter = async () =>
        Number(
          (await raw.send(new GetItemCommand({ TableName: tableName, Key: { leaseKey: { S: 's0' } } }))).Item!
            .leaseCounter!.N,
        );
      const before = await counter();
      let written = false;
      // Replies are held long enough to cut the connection after the write took effect upstream.
      tcp.delay(1_500);
      const checkpoint = a.checkpoint('s0', lease.counter, { sequenceNumber: '42', subSequenceNumber: 3 });
      await waitFor(
        () => written,
        () => 'the first attempt to take effect in dynalite',
        10_000,
        20,
        async () => {
          written = (await counter()) > before;
        },
      );
      tcp.delay(0);
      expect(tcp.reset(), 'connections reset').to.be.at.least(1);
      await checkpoint;
      expect(await counter(), 'written twice: the first attempt, then the retry').to.equal(before + 2);
      expect((await a.getLease('s0'))!.checkpoint).to.deep.equal({
        sequenceNumber: '42',
        subSequenceNumber: 3,
      });
      expect(await a.renew('s0', lease.counter), 'still the holder').to.not.equal(undefined);
    } finally {
      raw.destroy();
      await tcp.stop();
    }
  });

  it('AccessDenied names the call and the permission it needs', async () => {
    const a = manager('A', true);
    await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
    proxy.addRule({
      operation: 'Scan',
      action: { type: 'error', error: 'AccessDeniedException', status: 400 },
    });
    const error = await rejection(a.listLeases());
    expect(error.code).to.equal('ERR_ACCESS_DENIED');
    expect(error.message).to.include('dynamodb:Scan').and.include(`'${tableName}'`);
  });

  describe('two coordinators, one throttled for several lease durations', () => {
    let kinesis: LocalKinesis;

    before(async () => {
      kinesis = await startLocalKinesis({ engine: 'kinesalite' });
    });

    after(async () => {
      await kinesis?.stop();
    });

    it('never deliver a shard at once; every record arrives, in order per key', async () => {
      const stream = `dynamo-faults-${process.pid}`;
      await kinesis.createStream(stream, { shards: 4 });
      const leaseDurationMs = 2_000;
      const spans: Array<{ host: string; shardId: string; start: number; end: number }> = [];
      const received: Item[] = [];
      const errors: string[] = [];
      const start = (host: string, endpoint: string) =>
        startCoordinator<Item>({
          streamName: stream,
          group: 'faults',
          hostId: host,
          kinesis: kinesis.clientConfig,
          leases: { dynamodb: { tableName, createTable: true, ...db.clientConfig, endpoint } },
          leaseDurationMs,
          idleFetchIntervalMs: 100,
          workerThreads: 1,
          checkpoint: { intervalMs: 200 },
          handler: async (batch: RecordBatch<Item>) => {
            const t = performance.now();
            await new Promise((resolve) => setTimeout(resolve, 5));
            for (const r of batch.records) received.push(r.data);
            spans.push({ host, shardId: batch.shardId, start: t, end: performance.now() });
          },
        });
      const production = new Production(kinesis, stream, 20);
      const a = await start('A', proxy.endpoint);
      const b = await start('B', db.endpoint);
      for (const c of [a, b]) c.on('error', (e) => errors.push(e.error.message));
      try {
        await waitFor(
          () => new Set(spans.map((s) => s.host)).size === 2,
          () => `hosts delivering: ${[...new Set(spans.map((s) => s.host))]}`,
          20_000,
        );
        const rule = proxy.addRule({
          operation: 'UpdateItem',
          action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
        });
        const throttledAt = performance.now();
        await waitFor(
          () => spans.some((s) => s.host === 'B' && s.start > throttledAt + leaseDurationMs) && rule.hits > 5,
          () => `B delivering after the throttle: ${spans.filter((s) => s.start > throttledAt).length} spans`,
          20_000,
        );
        await new Promise((resolve) => setTimeout(resolve, 2 * leaseDurationMs));
        rule.remove();
        await production.stop();
        await waitFor(
          () => new Set(received.map((r) => `${r.k}/${r.i}`)).size >= production.produced.length,
          () => `${new Set(received.map((r) => `${r.k}/${r.i}`)).size} of ${production.produced.length}`,
          30_000,
        );
      } finally {
        await production.stop();
        await Promise.all([a.stop(), b.stop()]);
      }
      // No shard delivered by both hosts at overlapping times.
      for (const x of spans) {
        for (const y of spans) {
          if (x.host !== y.host && x.shardId === y.shardId && x.start < y.end && y.start < x.end) {
            expect.fail(`${x.shardId}: ${x.host} and ${y.host} delivered at once`);
          }
        }
      }
      expect(
        errors.some((m) => m.includes(tableName)),
        'the throttling was reported, naming the table',
      ).to.equal(true);
      // Duplicates are allowed (records past the last checkpoint of a lost lease), losses are not; the
      // first deliveries keep each key's order.
      const seen = new Set<string>();
      const first = received.filter((r) => !seen.has(`${r.k}/${r.i}`) && seen.add(`${r.k}/${r.i}`));
      expectExactlyOnceInOrder(first, production.produced);
    });
  });
});
