import { ErrorCodes, SHARD_END } from '@shardline/common';
import { MemoryLeaseManager, MemoryLeaseStore } from '@shardline/coordinator';
import { expect } from 'chai';
import { rejection } from '../../support/assertions.js';

const D = 10_000;

describe('MemoryLeaseManager', () => {
  let t: number;
  let store: MemoryLeaseStore;
  let a: MemoryLeaseManager;
  let b: MemoryLeaseManager;
  let c: MemoryLeaseManager;

  beforeEach(async () => {
    t = 1_000_000;
    store = new MemoryLeaseStore({ clock: () => t });
    a = new MemoryLeaseManager({ hostId: 'A', leaseDurationMs: D, store });
    b = new MemoryLeaseManager({ hostId: 'B', leaseDurationMs: D, store });
    c = new MemoryLeaseManager({ hostId: 'C', leaseDurationMs: D, store });
    await a.ensureLeases([
      { shardId: 's1', parentShardIds: [] },
      { shardId: 's2', parentShardIds: ['s1'] },
    ]);
  });

  describe('ensureLeases', () => {
    it('creates free leases once, and adds children to existing ones without resetting them', async () => {
      const acquired = await a.acquire('s1');
      await a.checkpoint('s1', acquired!.counter, { sequenceNumber: '42' });
      await b.ensureLeases([{ shardId: 's1', parentShardIds: [], childShardIds: ['s2', 's3'] }]);
      await b.ensureLeases([{ shardId: 's1', parentShardIds: [], childShardIds: ['s3'] }]);
      const lease = await b.getLease('s1');
      expect(lease).to.deep.include({
        owner: 'A',
        counter: 1,
        checkpoint: { sequenceNumber: '42' },
        childShardIds: ['s2', 's3'],
      });
      expect(await b.getLease('s2')).to.deep.equal({
        shardId: 's2',
        owner: undefined,
        counter: 0,
        expiresAtMs: undefined,
        checkpoint: undefined,
        parentShardIds: ['s1'],
        childShardIds: [],
        handoffTo: undefined,
        readAtMs: t,
      });
    });

    it('validates every seed before writing any', async () => {
      const error = await rejection(
        a.ensureLeases([
          { shardId: 'ok', parentShardIds: [] },
          { shardId: '', parentShardIds: [] },
        ]),
      );
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(await a.getLease('ok')).to.equal(undefined);
      expect(
        (await rejection(a.ensureLeases([{ shardId: 'x', parentShardIds: 'p' as never }]))).message,
      ).to.match(/seeds\[0\]\.parentShardIds/);
    });

    it('lists leases sorted by shard id, as copies', async () => {
      const list = await a.listLeases();
      expect(list.map((l) => l.shardId)).to.deep.equal(['s1', 's2']);
      list[0]!.parentShardIds.push('tampered');
      list[0]!.owner = 'tampered';
      expect(await a.getLease('s1')).to.deep.include({ owner: undefined, parentShardIds: [] });
    });
  });

  describe('acquire and fencing', () => {
    it('takes a free lease, incrementing the counter, expiring after leaseDurationMs on the store clock', async () => {
      const lease = await a.acquire('s1');
      expect(lease).to.deep.include({ owner: 'A', counter: 1, expiresAtMs: t + D, readAtMs: t });
      expect(await a.now()).to.equal(t);
    });

    it('refuses a lease another host holds until it expires; the new owner fences the old one', async () => {
      const first = (await a.acquire('s1'))!;
      expect(await b.acquire('s1')).to.equal(undefined);
      t += D - 1;
      expect(await b.acquire('s1')).to.equal(undefined);
      t += 1;
      const second = (await b.acquire('s1'))!;
      expect(second).to.deep.include({ owner: 'B', counter: 2 });

      expect(await a.renew('s1', first.counter)).to.equal(undefined);
      expect(await a.release('s1', first.counter)).to.equal(false);
      const error = await rejection(a.checkpoint('s1', first.counter, { sequenceNumber: '7' }));
      expect(error.code).to.equal(ErrorCodes.LEASE_LOST);
      expect(error.details).to.deep.include({
        shardId: 's1',
        hostId: 'A',
        counter: 1,
        owner: 'B',
        currentCounter: 2,
      });
      expect((await b.getLease('s1'))?.checkpoint).to.equal(undefined);
    });

    it('notes the first acquisition time and keeps it through later owners and releases', async () => {
      expect((await a.getLease('s1'))?.firstAcquiredAtMs).to.equal(undefined);
      const first = (await a.acquire('s1'))!;
      expect(first.firstAcquiredAtMs).to.equal(t);
      const firstAt = t;
      t += 5;
      expect(await a.release('s1', first.counter)).to.equal(true);
      t += 5;
      expect((await b.acquire('s1'))!).to.deep.include({ counter: 2, firstAcquiredAtMs: firstAt });
      expect((await c.listLeases()).find((l) => l.shardId === 's1')?.firstAcquiredAtMs).to.equal(firstAt);
    });

    it('fences an older counter of the same host (acquired again)', async () => {
      const first = (await a.acquire('s1'))!;
      const again = (await a.acquire('s1'))!;
      expect(again.counter).to.equal(first.counter + 1);
      expect(await a.renew('s1', first.counter)).to.equal(undefined);
      expect((await rejection(a.checkpoint('s1', first.counter, SHARD_END))).code).to.equal(
        ErrorCodes.LEASE_LOST,
      );
      await a.checkpoint('s1', again.counter, SHARD_END);
    });

    it('refuses a shard without lease', async () => {
      expect(await a.acquire('nope')).to.equal(undefined);
      expect((await rejection(a.checkpoint('nope', 1, SHARD_END))).message).to.match(/has no lease/);
    });

    it('lets exactly one of many concurrent acquirers win', async () => {
      const managers = Array.from(
        { length: 8 },
        (_, i) => new MemoryLeaseManager({ hostId: `H${i}`, leaseDurationMs: D, store }),
      );
      const results = await Promise.all(managers.map((m) => m.acquire('s2')));
      const winners = results.filter((r) => r !== undefined);
      expect(winners).to.have.length(1);
      expect(winners[0]!.counter).to.equal(1);
      expect((await a.getLease('s2'))?.owner).to.equal(winners[0]!.owner);
    });

    it('resolves a race between a stale checkpoint and a takeover in favour of the new owner', async () => {
      const old = (await a.acquire('s1'))!;
      await a.checkpoint('s1', old.counter, { sequenceNumber: '10' });
      t += D;
      const [stale, taken] = await Promise.allSettled([
        b.acquire('s1').then(() => a.checkpoint('s1', old.counter, { sequenceNumber: '99' })),
        Promise.resolve(),
      ]);
      expect(stale.status).to.equal('rejected');
      expect(taken.status).to.equal('fulfilled');
      expect((await b.getLease('s1'))?.checkpoint).to.deep.equal({ sequenceNumber: '10' });
    });
  });

  describe('renew', () => {
    it('extends an unexpired lease', async () => {
      const lease = (await a.acquire('s1'))!;
      t += 3_000;
      expect(await a.renew('s1', lease.counter)).to.deep.include({ expiresAtMs: t + D, counter: 1 });
    });

    it('refuses an expired lease even when nobody took it: acquire it again', async () => {
      const lease = (await a.acquire('s1'))!;
      t += D;
      expect(await a.renew('s1', lease.counter)).to.equal(undefined);
      expect((await a.acquire('s1'))?.counter).to.equal(2);
    });
  });

  describe('renewLeases and removeLease', () => {
    it('renewLeases renews every lease held at one instant; refused ones are undefined', async () => {
      const l1 = (await a.acquire('s1'))!;
      const l2 = (await b.acquire('s2'))!;
      t += 3_000;
      const renewed = await a.renewLeases([
        { shardId: 's1', counter: l1.counter },
        { shardId: 's2', counter: l2.counter },
      ]);
      expect(renewed.get('s1')).to.deep.include({ owner: 'A', expiresAtMs: t + D });
      expect(renewed.has('s2')).to.equal(true);
      expect(renewed.get('s2')).to.equal(undefined);
      expect((await b.getLease('s2'))?.expiresAtMs).to.equal(l2.expiresAtMs);
      expect((await rejection(a.renewLeases([{ shardId: '', counter: 0 }]))).code).to.equal(
        ErrorCodes.INVALID_OPTION,
      );
    });

    it('removeLease deletes a lease nobody holds at the counter seen; a held or re-acquired one stays', async () => {
      const held = (await b.acquire('s2'))!;
      expect(await a.removeLease('s2', held.counter)).to.equal(false);
      expect(await a.removeLease('s1', 5)).to.equal(false);
      expect(await a.removeLease('s1', 0)).to.equal(true);
      expect(await a.getLease('s1')).to.equal(undefined);
      expect(await a.removeLease('s1', 0)).to.equal(false);
      t += D;
      expect(await a.removeLease('s2', held.counter), 'expired: nobody holds it').to.equal(true);
    });
  });

  describe('release and checkpoint', () => {
    it('release frees the lease and keeps the checkpoint', async () => {
      const lease = (await a.acquire('s1'))!;
      await a.checkpoint('s1', lease.counter, { sequenceNumber: '123', subSequenceNumber: 4 });
      expect(await a.release('s1', lease.counter)).to.equal(true);
      expect(await a.getLease('s1')).to.deep.include({
        owner: undefined,
        expiresAtMs: undefined,
        counter: 1,
        checkpoint: { sequenceNumber: '123', subSequenceNumber: 4 },
      });
      expect((await b.acquire('s1'))?.counter).to.equal(2);
    });

    it('accepts a late checkpoint and release from the owner of an expired lease nobody took', async () => {
      const lease = (await a.acquire('s1'))!;
      t += D + 5_000;
      await a.checkpoint('s1', lease.counter, { sequenceNumber: '5' });
      expect(await a.release('s1', lease.counter)).to.equal(true);
      expect((await a.getLease('s1'))?.checkpoint).to.deep.equal({ sequenceNumber: '5' });
    });

    it('keeps SHARD_END final', async () => {
      const lease = (await a.acquire('s1'))!;
      await a.checkpoint('s1', lease.counter, SHARD_END);
      await a.checkpoint('s1', lease.counter, SHARD_END);
      const error = await rejection(a.checkpoint('s1', lease.counter, { sequenceNumber: '1' }));
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.message).to.match(/cannot follow SHARD_END/);
      expect((await a.getLease('s1'))?.checkpoint).to.equal(SHARD_END);
    });

    it('validates checkpoints and counters', async () => {
      const lease = (await a.acquire('s1'))!;
      for (const bad of [{ sequenceNumber: 12 }, { sequenceNumber: 'abc' }, 'END', null]) {
        expect((await rejection(a.checkpoint('s1', lease.counter, bad as never))).code).to.equal(
          ErrorCodes.INVALID_OPTION,
        );
      }
      expect(
        (await rejection(a.checkpoint('s1', lease.counter, { sequenceNumber: '1', subSequenceNumber: -1 })))
          .message,
      ).to.match(/checkpoint.subSequenceNumber/);
      expect((await rejection(a.renew('s1', 1.5))).message).to.match(/counter must be an integer/);
      expect((await rejection(a.release('', 1))).message).to.match(/shardId/);
    });

    it('stores a private copy of the checkpoint', async () => {
      const lease = (await a.acquire('s1'))!;
      const position = { sequenceNumber: '1' };
      await a.checkpoint('s1', lease.counter, position);
      position.sequenceNumber = '999';
      expect((await a.getLease('s1'))?.checkpoint).to.deep.equal({ sequenceNumber: '1' });
    });
  });

  describe('handoff', () => {
    it('refuses requests for free, expired, own or already asked leases', async () => {
      expect(await b.requestHandoff('s1', 'B')).to.equal(false);
      const lease = (await a.acquire('s1'))!;
      expect(await a.requestHandoff('s1', 'A')).to.equal(false);
      expect(await b.requestHandoff('s1', 'B')).to.equal(true);
      expect(await c.requestHandoff('s1', 'C')).to.equal(false);
      expect((await a.getLease('s1'))?.handoffTo).to.equal('B');
      t += D;
      expect(await c.requestHandoff('s1', 'C')).to.equal(false);
      expect(await a.renew('s1', lease.counter)).to.equal(undefined);
    });

    it('graceful: the owner releases, the lease is reserved for the requester, who takes it', async () => {
      const lease = (await a.acquire('s1'))!;
      expect(await b.requestHandoff('s1', 'B')).to.equal(true);
      // The owner sees the request on its renew; renewals no longer extend past request + D.
      t += 1_000;
      const renewed = (await a.renew('s1', lease.counter))!;
      expect(renewed.handoffTo).to.equal('B');
      expect(renewed.expiresAtMs).to.equal(t - 1_000 + D);
      // The requester cannot take it while the owner still holds it.
      expect(await b.acquire('s1')).to.equal(undefined);
      await a.checkpoint('s1', lease.counter, { sequenceNumber: '50' });
      expect(await a.release('s1', lease.counter)).to.equal(true);
      // Reserved: a third host is refused, the requester wins.
      expect(await c.acquire('s1')).to.equal(undefined);
      const taken = (await b.acquire('s1'))!;
      expect(taken).to.deep.include({
        owner: 'B',
        counter: 2,
        handoffTo: undefined,
        checkpoint: { sequenceNumber: '50' },
      });
    });

    it('an owner that does not hand over loses the lease at request time + leaseDurationMs', async () => {
      const lease = (await a.acquire('s1'))!;
      const requestedAt = t;
      expect(await b.requestHandoff('s1', 'B')).to.equal(true);
      for (let i = 0; i < 5; i++) {
        t += 3_000;
        const renewed = await a.renew('s1', lease.counter);
        if (t < requestedAt + D) expect(renewed?.expiresAtMs).to.equal(requestedAt + D);
        else expect(renewed).to.equal(undefined);
      }
      expect(t).to.be.greaterThanOrEqual(requestedAt + D);
      expect((await b.acquire('s1'))?.counter).to.equal(2);
      expect((await rejection(a.checkpoint('s1', lease.counter, SHARD_END))).code).to.equal(
        ErrorCodes.LEASE_LOST,
      );
    });

    it('a reservation lapses after leaseDurationMs: anyone may take the released lease', async () => {
      const lease = (await a.acquire('s1'))!;
      await b.requestHandoff('s1', 'B');
      await a.release('s1', lease.counter);
      t += D;
      expect((await c.getLease('s1'))?.handoffTo).to.equal(undefined);
      expect((await c.acquire('s1'))?.owner).to.equal('C');
    });

    it('a new request may replace one that lapsed', async () => {
      const lease = (await a.acquire('s1'))!;
      await b.requestHandoff('s1', 'B');
      t += D - 1;
      await a.renew('s1', lease.counter);
      expect(await a.acquire('s2')).to.not.equal(undefined);
      // The owner re-acquired after losing it; the old request is gone with the acquisition.
      t += 1;
      const again = (await a.acquire('s1'))!;
      expect(again.handoffTo).to.equal(undefined);
      expect(await c.requestHandoff('s1', 'C')).to.equal(true);
      expect((await a.getLease('s1'))?.handoffTo).to.equal('C');
    });
  });

  describe('hosts', () => {
    it('lists hosts seen within one lease duration', async () => {
      await a.heartbeat(2);
      t += 4_000;
      await b.heartbeat(1);
      expect(await c.liveHosts()).to.deep.equal([
        { hostId: 'A', lastSeenAtMs: t - 4_000, shards: 2 },
        { hostId: 'B', lastSeenAtMs: t, shards: 1 },
      ]);
      t += D - 4_000 + 1;
      expect((await c.liveHosts()).map((h) => h.hostId)).to.deep.equal(['B']);
      await a.heartbeat(0);
      expect((await c.liveHosts()).map((h) => h.hostId)).to.deep.equal(['A', 'B']);
    });

    it('close() withdraws the heartbeat, is idempotent, and refuses later calls', async () => {
      await a.heartbeat(1);
      await b.heartbeat(1);
      await a.close();
      await a.close();
      expect((await b.liveHosts()).map((h) => h.hostId)).to.deep.equal(['B']);
      const error = await rejection(a.acquire('s1'));
      expect(error.code).to.equal(ErrorCodes.CLOSED);
      expect((await rejection(a.heartbeat(1))).code).to.equal(ErrorCodes.CLOSED);
    });

    it('validates heartbeat counts', async () => {
      expect((await rejection(a.heartbeat(-1))).code).to.equal(ErrorCodes.INVALID_OPTION);
    });
  });

  it('keeps namespaces (group + stream) of one store apart', async () => {
    const other = new MemoryLeaseManager({ hostId: 'A', leaseDurationMs: D, store, namespace: 'g2:orders' });
    expect(await other.listLeases()).to.deep.equal([]);
    await other.ensureLeases([{ shardId: 's1', parentShardIds: [] }]);
    await other.acquire('s1');
    expect((await b.getLease('s1'))?.owner).to.equal(undefined);
  });

  it('gives each manager without a store its own', async () => {
    const x = new MemoryLeaseManager({ hostId: 'X', leaseDurationMs: D });
    expect(await x.listLeases()).to.deep.equal([]);
    expect(x.store).to.not.equal(store);
  });

  it('validates its options', () => {
    expect(() => new MemoryLeaseManager({ hostId: '', leaseDurationMs: D })).to.throw(/hostId/);
    expect(() => new MemoryLeaseManager({ hostId: 'h', leaseDurationMs: 0 })).to.throw(/leaseDurationMs/);
    expect(() => new MemoryLeaseManager({ hostId: 'h', leaseDurationMs: D, store: {} as never })).to.throw(
      /store/,
    );
    expect(() => new MemoryLeaseStore({ clock: 5 as never })).to.throw(/clock/);
  });
});
