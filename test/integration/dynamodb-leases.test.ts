/**
 * DynamoDbLeaseManager against dynalite with the real SDK client: the LeaseManager contract shared
 * with the Redis store (lease-store-cases.ts), and what only DynamoDB has: expiry on each observer's
 * monotonic clock, the handoff cap from the owner's first sight of the request, live hosts derived
 * from lease owners, the table's checks and creation, and the items in the KCL format.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  type DynamoDBClient,
  GetItemCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { DynamoDbLeaseManager, type DynamoDbLeaseManagerOptions, type Lease } from '@shardline/coordinator';
import { type LocalDynamoDb, startLocalDynamoDb } from '@shardline/testing';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../support/assertions.js';
import { leaseStoreCases, waitFor } from './lease-store-cases.js';

let tables = 0;

describe('DynamoDbLeaseManager (dynalite)', () => {
  let db: LocalDynamoDb;
  let raw: DynamoDBClient;
  let tableName: string;
  let managers: DynamoDbLeaseManager[];

  before(async () => {
    db = await startLocalDynamoDb();
    raw = db.client();
  });

  after(async () => {
    raw?.destroy();
    await db?.stop();
  });

  beforeEach(() => {
    tableName = `leases-${process.pid}-${++tables}`;
    managers = [];
  });

  afterEach(async () => {
    await Promise.all(managers.map((m) => m.close()));
  });

  function manager(hostId: string, options: Partial<DynamoDbLeaseManagerOptions> = {}): DynamoDbLeaseManager {
    const m = new DynamoDbLeaseManager({
      tableName,
      createTable: true,
      ...db.clientConfig,
      hostId,
      ...options,
    });
    managers.push(m);
    return m;
  }

  leaseStoreCases({ manager: (hostId, options) => manager(hostId, options) });

  describe('time without a server clock', () => {
    it('times leases on this host monotonic clock, whatever Date says', async () => {
      const clock = sinon.useFakeTimers({ now: Date.now() + 3_600_000, toFake: ['Date'] });
      try {
        const a = manager('A', { leaseDurationMs: 2_000 });
        const b = manager('B', { leaseDurationMs: 2_000 });
        await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        const lease = (await a.acquire('s0'))!;
        expect(Math.abs(lease.readAtMs! - Date.now())).to.be.greaterThan(3_000_000);
        expect(lease.expiresAtMs! - lease.readAtMs!).to.equal(2_000);
        expect(await b.acquire('s0')).to.equal(undefined);
        expect(await a.renew('s0', lease.counter)).to.not.equal(undefined);
      } finally {
        clock.restore();
      }
    });

    it('a host that first sees a held lease waits a full lease duration from then, even if the owner died long ago', async () => {
      const leaseDurationMs = 600;
      const a = manager('A', { leaseDurationMs });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      // A stops renewing; its lease runs out on its own clock.
      await waitFor('A lease to run out', async () => (await a.now()) > lease.expiresAtMs!);
      const b = manager('B', { leaseDurationMs });
      const firstSeen = (await b.getLease('s0'))!;
      expect(firstSeen.expiresAtMs! - firstSeen.readAtMs!).to.be.within(
        leaseDurationMs - 50,
        leaseDurationMs,
      );
      expect(await b.acquire('s0')).to.equal(undefined);
      const taken = await waitFor('B to take it', () => b.acquire('s0'));
      expect(taken.readAtMs!).to.be.at.least(firstSeen.readAtMs! + leaseDurationMs - 5);
      expect(taken).to.include({ owner: 'B', counter: 2 });
    });

    it('every renew increments leaseCounter, which keeps observers from taking the lease', async () => {
      const leaseDurationMs = 400;
      const a = manager('A', { leaseDurationMs });
      const b = manager('B', { leaseDurationMs });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      const counter = async () =>
        Number(
          (await raw.send(new GetItemCommand({ TableName: tableName, Key: { leaseKey: { S: 's0' } } }))).Item!
            .leaseCounter!.N,
        );
      const before = await counter();
      const until = performance.now() + 3 * leaseDurationMs;
      while (performance.now() < until) {
        expect(await a.renew('s0', lease.counter)).to.not.equal(undefined);
        expect(await b.acquire('s0')).to.equal(undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await counter()).to.be.greaterThan(before + 5);
      expect((await b.getLease('s0'))!.counter, 'the fencing token moves only by acquisitions').to.equal(1);
    });

    it('renewLeases bounds each call by the per-call timeout (a hung DynamoDB) and rejects: outcome unknown', async function () {
      this.timeout(20_000);
      const hung = await startLocalDynamoDb();
      try {
        const a = manager('A', { ...hung.clientConfig, callTimeoutMs: 5_000 });
        await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        const lease = (await a.acquire('s0'))!;
        process.kill(hung.pid, 'SIGSTOP');
        const started = performance.now();
        const error = await rejection(
          a.renewLeases([{ shardId: 's0', counter: lease.counter }], { timeoutMs: 300 }),
        );
        const tookMs = performance.now() - started;
        process.kill(hung.pid, 'SIGCONT');
        expect(error.code).to.equal('ERR_TRANSIENT');
        expect(error.message).to.include(tableName).and.include('unknown');
        expect(tookMs, 'bounded by the call timeout, not callTimeoutMs').to.be.below(2_000);
        // The lease is still this host's: the next round renews it.
        expect(await a.renew('s0', lease.counter)).to.not.equal(undefined);
      } finally {
        process.kill(hung.pid, 'SIGCONT');
        await hung.stop();
      }
    });
  });

  describe('handoff (DynamoDB)', () => {
    it('caps the owner at a lease duration from its first sight of the request; the requester takes it only after', async () => {
      const leaseDurationMs = 800;
      const a = manager('A', { leaseDurationMs });
      const b = manager('B', { leaseDurationMs });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      expect(await b.requestHandoff('s0', 'B')).to.equal(true);
      const seen = (await a.renew('s0', lease.counter))!;
      expect(seen.handoffTo).to.equal('B');
      const cap = seen.readAtMs! + leaseDurationMs;
      let last: Lease | undefined = seen;
      let lastExpiry = seen.expiresAtMs!;
      while (last !== undefined) {
        expect(last.expiresAtMs).to.be.at.most(cap + 50);
        lastExpiry = last.expiresAtMs!;
        expect(await b.acquire('s0')).to.equal(undefined);
        await new Promise((resolve) => setTimeout(resolve, 50));
        last = await a.renew('s0', lease.counter);
      }
      // Both managers share this process's clock: B's lease starts after A's last one ended.
      const taken = await waitFor('B to take the lease', () => b.acquire('s0'), 10_000);
      expect(taken.readAtMs!).to.be.at.least(lastExpiry);
      expect(taken).to.include({ owner: 'B', counter: lease.counter + 1 });
    });
  });

  describe('live hosts, derived from the table', () => {
    it('are the owners of unexpired leases, the requesters of live handoffs and this host once it beat', async () => {
      const leaseDurationMs = 700;
      const a = manager('A', { leaseDurationMs });
      const b = manager('B', { leaseDurationMs });
      const c = manager('C', { leaseDurationMs });
      await a.ensureLeases(['s0', 's1', 's2'].map((shardId) => ({ shardId, parentShardIds: [] })));
      expect(await a.liveHosts()).to.deep.equal([]);
      await a.heartbeat(0);
      const b0 = (await b.acquire('s0'))!;
      const b1 = (await b.acquire('s1'))!;
      expect(await c.requestHandoff('s0', 'C')).to.equal(true);
      await new Promise((resolve) => setTimeout(resolve, leaseDurationMs / 4 + 10));
      expect((await a.liveHosts()).map((h) => [h.hostId, h.shards])).to.deep.equal([
        ['A', 0],
        ['B', 2],
        ['C', 0],
      ]);
      await b.release('s0', b0.counter);
      await b.release('s1', b1.counter);
      await waitFor('B and C to drop out', async () => {
        await a.heartbeat(0);
        const live = await a.liveHosts();
        return live.length === 1 && live;
      });
      expect((await a.liveHosts()).map((h) => h.hostId)).to.deep.equal(['A']);
      await a.close();
      expect((await b.liveHosts()).map((h) => h.hostId)).to.deep.equal([]);
    });
  });

  describe('the table', () => {
    it('is refused when missing, naming it, unless createTable: true creates it on demand (hash key leaseKey)', async () => {
      const a = manager('A', { createTable: false });
      const error = await rejection(a.listLeases());
      expect(error.code).to.equal('ERR_NOT_FOUND');
      expect(error.message).to.include(`'${tableName}'`).and.include('createTable');
      await manager('B').ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const table = (await raw.send(new DescribeTableCommand({ TableName: tableName }))).Table!;
      expect(table.KeySchema).to.deep.equal([{ AttributeName: 'leaseKey', KeyType: 'HASH' }]);
      expect(table.BillingModeSummary?.BillingMode).to.equal('PAY_PER_REQUEST');
      // The same manager retries the check: the table exists now.
      expect((await a.listLeases()).map((l) => l.shardId)).to.deep.equal(['s0']);
    });

    it('is refused with the wrong key schema, naming the table and the schema it has', async () => {
      await raw.send(
        new CreateTableCommand({
          TableName: tableName,
          KeySchema: [
            { AttributeName: 'id', KeyType: 'HASH' },
            { AttributeName: 'at', KeyType: 'RANGE' },
          ],
          AttributeDefinitions: [
            { AttributeName: 'id', AttributeType: 'S' },
            { AttributeName: 'at', AttributeType: 'N' },
          ],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      );
      const a = manager('A');
      const error = await rejection(a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]));
      expect(error.code).to.equal('ERR_INVALID_OPTION');
      expect(error.message).to.include(`'${tableName}'`).and.include('id HASH (S), at RANGE (N)');
      const again = await rejection(a.acquire('s0'));
      expect(again.code).to.equal('ERR_INVALID_OPTION');
    });

    it('checks its options naming the field', () => {
      const bad: [Partial<DynamoDbLeaseManagerOptions>, string][] = [
        [{ tableName: 'x' }, 'tableName'],
        [{ tableName: 'ok-table', endpoint: 'localhost:4567' }, 'endpoint'],
        [{ tableName: 'ok-table', region: 'EU WEST' }, 'region'],
        [{ tableName: 'ok-table', createTable: 'yes' as never }, 'createTable'],
        [{ tableName: 'ok-table', client: {} as never }, 'client'],
        [{ tableName: 'ok-table', leaseDurationMs: 0 }, 'leaseDurationMs'],
        [{ tableName: 'ok-table', hostId: '' }, 'hostId'],
      ];
      for (const [options, field] of bad) {
        expect(() => new DynamoDbLeaseManager({ hostId: 'A', ...options } as DynamoDbLeaseManagerOptions))
          .to.throw()
          .with.property('option', field);
      }
      const client = db.client();
      try {
        expect(
          () => new DynamoDbLeaseManager({ hostId: 'A', tableName: 'ok-table', client, region: 'eu-west-1' }),
        )
          .to.throw(/region cannot be combined with client/)
          .with.property('option', 'region');
      } finally {
        client.destroy();
      }
    });
  });

  describe('items in the KCL format', () => {
    it('writes what a KCL worker reads: types, sentinels, sets, counters, owner switches', async () => {
      const a = manager('A', { leaseDurationMs: 300 });
      const b = manager('B', { leaseDurationMs: 300 });
      await a.ensureLeases([
        { shardId: 'shardId-000000000000', parentShardIds: [], childShardIds: ['shardId-000000000001'] },
        { shardId: 'shardId-000000000001', parentShardIds: ['shardId-000000000000'] },
        { shardId: 'shardId-000000000002', parentShardIds: [] },
      ]);
      const item = async (shardId: string) =>
        (await raw.send(new GetItemCommand({ TableName: tableName, Key: { leaseKey: { S: shardId } } })))
          .Item!;
      expect(await item('shardId-000000000001')).to.deep.equal({
        leaseKey: { S: 'shardId-000000000001' },
        leaseCounter: { N: '0' },
        checkpoint: { S: 'TRIM_HORIZON' },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        entityType: { S: 'LEASE' },
        parentShardId: { SS: ['shardId-000000000000'] },
      });
      const parent = (await a.acquire('shardId-000000000000'))!;
      await a.checkpoint('shardId-000000000000', parent.counter, 'SHARD_END');
      const closed = await item('shardId-000000000000');
      expect(closed).to.deep.include({
        leaseOwner: { S: 'A' },
        checkpoint: { S: 'SHARD_END' },
        checkpointSubSequenceNumber: { N: '0' },
        childShardIds: { SS: ['shardId-000000000001'] },
      });
      expect(Number(closed.leaseCounter!.N)).to.equal(2);

      const mid = (await b.acquire('shardId-000000000002'))!;
      await b.checkpoint('shardId-000000000002', mid.counter, {
        sequenceNumber: '49590338271490256608559692538361571095921575989136588898',
        subSequenceNumber: 3,
      });
      expect(await item('shardId-000000000002')).to.deep.include({
        leaseOwner: { S: 'B' },
        checkpoint: { S: '49590338271490256608559692538361571095921575989136588898' },
        checkpointSubSequenceNumber: { N: '3' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
      });
      // B dies; A takes the lease over: KCL counts the owner switch until the next checkpoint.
      await waitFor('B lease to expire for A', async () => {
        const l = (await a.getLease('shardId-000000000002'))!;
        return (await a.now()) >= l.expiresAtMs!;
      });
      const over = (await a.acquire('shardId-000000000002'))!;
      expect(over.checkpoint).to.deep.equal({
        sequenceNumber: '49590338271490256608559692538361571095921575989136588898',
        subSequenceNumber: 3,
      });
      expect(await item('shardId-000000000002')).to.deep.include({
        leaseOwner: { S: 'A' },
        ownerSwitchesSinceCheckpoint: { N: '1' },
      });
      await a.checkpoint('shardId-000000000002', over.counter, { sequenceNumber: '7' });
      expect(await item('shardId-000000000002')).to.deep.include({
        checkpoint: { S: '7' },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
      });
      expect(await a.release('shardId-000000000002', over.counter)).to.equal(true);
      const released = await item('shardId-000000000002');
      expect(released.leaseOwner).to.equal(undefined);
      // Every attribute a KCL reader knows has the type KCL's serializer writes.
      const scanned = (await raw.send(new ScanCommand({ TableName: tableName }))).Items!;
      for (const it of scanned) {
        expect(Object.keys(it.leaseKey!)).to.deep.equal(['S']);
        expect(Object.keys(it.leaseCounter!)).to.deep.equal(['N']);
        expect(Object.keys(it.checkpoint!)).to.deep.equal(['S']);
        expect(Object.keys(it.checkpointSubSequenceNumber!)).to.deep.equal(['N']);
        expect(Object.keys(it.ownerSwitchesSinceCheckpoint!)).to.deep.equal(['N']);
        if (it.leaseOwner !== undefined) expect(Object.keys(it.leaseOwner)).to.deep.equal(['S']);
        if (it.parentShardId !== undefined) expect(Object.keys(it.parentShardId)).to.deep.equal(['SS']);
        if (it.childShardIds !== undefined) expect(Object.keys(it.childShardIds)).to.deep.equal(['SS']);
      }
    });
  });
});
