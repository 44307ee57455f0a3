/**
 * The LeaseManager contract, run against every shared lease store (Redis, DynamoDB): every
 * transition's success and refusals, fencing, expiry on the store's clock, races, handoff. Each store's
 * test file calls {@link leaseStoreCases} with a factory and adds the cases only that store has.
 */

import { setTimeout as delay } from 'node:timers/promises';
import type { ShardlineError } from '@shardline/common';
import type { Lease, LeaseManager } from '@shardline/coordinator';
import { expect } from 'chai';
import { rejection } from '../support/assertions.js';

export const SHORT_LEASE_MS = 300;

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 5_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(20);
  }
}

export interface LeaseStoreFactory {
  /** A manager of the store under test for `hostId` (closed by the caller's afterEach). */
  manager(hostId: string, options?: { leaseDurationMs?: number }): LeaseManager;
}

/** Waits until `m` judges the lease expired on its store's clock (for DynamoDB: its observer's). */
export async function waitUntilExpired(m: LeaseManager, lease: Lease): Promise<void> {
  await waitFor('the lease to expire on the store clock', async () => {
    const current = await m.getLease(lease.shardId);
    return (
      current === undefined || current.expiresAtMs === undefined || (await m.now()) >= current.expiresAtMs
    );
  });
}

export function leaseStoreCases(factory: LeaseStoreFactory): void {
  const manager = (hostId: string, options: { leaseDurationMs?: number } = {}) =>
    factory.manager(hostId, options);

  describe('ensureLeases, getLease, listLeases', () => {
    it('creates free leases once, in shard id order, and never resets an existing one', async () => {
      const a = manager('A');
      await a.ensureLeases([
        { shardId: 'shardId-000000000001', parentShardIds: [] },
        { shardId: 'shardId-000000000000', parentShardIds: [], childShardIds: ['shardId-000000000002'] },
      ]);
      const leases = await a.listLeases();
      expect(leases.map((l) => l.shardId)).to.deep.equal(['shardId-000000000000', 'shardId-000000000001']);
      expect(leases[0]).to.include({
        owner: undefined,
        counter: 0,
        expiresAtMs: undefined,
        checkpoint: undefined,
      });
      expect(leases[0]!.childShardIds).to.deep.equal(['shardId-000000000002']);
      expect(leases[0]!.parentShardIds).to.deep.equal([]);

      const held = (await a.acquire('shardId-000000000000'))!;
      await a.checkpoint('shardId-000000000000', held.counter, { sequenceNumber: '42' });
      await a.ensureLeases([
        { shardId: 'shardId-000000000000', parentShardIds: [], childShardIds: ['shardId-000000000003'] },
        { shardId: 'shardId-000000000002', parentShardIds: ['shardId-000000000000'] },
      ]);
      const after = (await a.getLease('shardId-000000000000'))!;
      expect(after).to.include({ owner: 'A', counter: 1, expiresAtMs: held.expiresAtMs });
      expect(after.checkpoint).to.deep.equal({ sequenceNumber: '42' });
      expect(after.childShardIds).to.deep.equal(['shardId-000000000002', 'shardId-000000000003']);
      expect((await a.getLease('shardId-000000000002'))!.parentShardIds).to.deep.equal([
        'shardId-000000000000',
      ]);
      expect(await a.getLease('shardId-999')).to.equal(undefined);
    });

    it('creates many leases at once (several store calls) and accepts an empty list', async () => {
      const a = manager('A');
      await a.ensureLeases([]);
      expect(await a.listLeases()).to.deep.equal([]);
      const ids = Array.from({ length: 1_203 }, (_, i) => `shardId-${String(i).padStart(12, '0')}`);
      await a.ensureLeases(ids.map((shardId) => ({ shardId, parentShardIds: [] })));
      const leases = await a.listLeases();
      expect(leases.map((l) => l.shardId)).to.deep.equal(ids);
      expect(leases.every((l) => l.counter === 0 && l.owner === undefined)).to.equal(true);
    });

    it('rejects bad seeds naming the field, writing nothing', async () => {
      const a = manager('A');
      const bad: unknown[] = [
        [{ shardId: '', parentShardIds: [] }, 'seeds[0].shardId'],
        [{ shardId: 's', parentShardIds: 'p' }, 'seeds[0].parentShardIds'],
        [{ shardId: 's', parentShardIds: [], childShardIds: [7] }, 'seeds[0].childShardIds[0]'],
        [null, 'seeds[0]'],
      ];
      for (const [seed, field] of bad as [unknown, string][]) {
        const error = await rejection(a.ensureLeases([seed as never]));
        expect(error.code).to.equal('ERR_INVALID_OPTION');
        expect(error.message).to.include(field);
      }
      expect(await a.listLeases()).to.deep.equal([]);
    });
  });

  describe('acquire, renew, release', () => {
    it('acquires a free lease for leaseDurationMs on the store clock and refuses a second host', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const before = await a.now();
      const lease = (await a.acquire('s0'))!;
      expect(lease).to.include({ shardId: 's0', owner: 'A', counter: 1, handoffTo: undefined });
      expect(lease.readAtMs).to.be.within(before, before + 1_000);
      expect(lease.expiresAtMs).to.equal(lease.readAtMs! + a.leaseDurationMs);
      expect(await b.acquire('s0')).to.equal(undefined);
      expect((await b.getLease('s0'))!).to.include({ owner: 'A', counter: 1 });
      expect(await a.acquire('missing')).to.equal(undefined);
    });

    it('notes the first acquisition time (epoch ms) and keeps it through later owners', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      expect((await a.getLease('s0'))?.firstAcquiredAtMs).to.equal(undefined);
      const before = Date.now();
      const first = (await a.acquire('s0'))!;
      // The store's clock (Redis server) or the acquiring host's: this machine's, within a second.
      expect(first.firstAcquiredAtMs).to.be.within(before - 1_000, Date.now() + 1_000);
      expect(await a.release('s0', first.counter)).to.equal(true);
      const second = (await b.acquire('s0'))!;
      expect(second).to.include({ owner: 'B', firstAcquiredAtMs: first.firstAcquiredAtMs });
      expect((await a.listLeases())[0]?.firstAcquiredAtMs).to.equal(first.firstAcquiredAtMs);
    });

    it('lets the owner acquire again (a retry after a lost reply): the counter moves and fences the old one', async () => {
      const a = manager('A');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const first = (await a.acquire('s0'))!;
      const second = (await a.acquire('s0'))!;
      expect(second.counter).to.equal(first.counter + 1);
      expect(await a.renew('s0', first.counter)).to.equal(undefined);
      expect((await a.renew('s0', second.counter))!.counter).to.equal(second.counter);
    });

    it('renews only for the owner with its counter, extending from the store time of the renew', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      await waitFor('the store clock to move', async () => (await a.now()) > lease.readAtMs! + 5);
      const renewed = (await a.renew('s0', lease.counter))!;
      expect(renewed).to.include({ owner: 'A', counter: lease.counter });
      expect(renewed.expiresAtMs).to.equal(renewed.readAtMs! + a.leaseDurationMs);
      expect(renewed.expiresAtMs).to.be.greaterThan(lease.expiresAtMs!);
      expect(await b.renew('s0', lease.counter)).to.equal(undefined);
      expect(await a.renew('s0', lease.counter + 1)).to.equal(undefined);
      expect(await a.renew('missing', 1)).to.equal(undefined);
      expect((await a.getLease('s0'))!.expiresAtMs).to.equal(renewed.expiresAtMs);
    });

    it('renewLeases renews every lease held in one call; refused ones come back undefined, in order', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases(['s0', 's1', 's2', 's3'].map((shardId) => ({ shardId, parentShardIds: [] })));
      const l0 = (await a.acquire('s0'))!;
      const l1 = (await a.acquire('s1'))!;
      const l2 = (await b.acquire('s2'))!;
      await waitFor('the store clock to move', async () => (await a.now()) > l1.readAtMs! + 5);
      const renewed = await a.renewLeases([
        { shardId: 's0', counter: l0.counter },
        { shardId: 's1', counter: l1.counter },
        { shardId: 's2', counter: l2.counter },
        { shardId: 's1', counter: l1.counter + 1 },
        { shardId: 'missing', counter: 1 },
      ]);
      expect([...renewed.keys()]).to.deep.equal(['s0', 's1', 's2', 'missing']);
      expect(renewed.get('s0')).to.include({ owner: 'A', counter: l0.counter });
      expect(renewed.get('s0')!.expiresAtMs).to.equal(renewed.get('s0')!.readAtMs! + a.leaseDurationMs);
      expect(renewed.get('s0')!.expiresAtMs).to.be.greaterThan(l0.expiresAtMs!);
      // The same shard twice: the later entry (a stale counter) is what the map keeps.
      expect(renewed.get('s1')).to.equal(undefined);
      expect(renewed.get('s2')).to.equal(undefined);
      expect(renewed.get('missing')).to.equal(undefined);
      expect((await a.getLease('s1'))!.expiresAtMs).to.be.greaterThan(l1.expiresAtMs!);
      expect((await a.getLease('s2'))!.owner).to.equal('B');
      expect((await a.renewLeases([])).size).to.equal(0);
      expect((await rejection(a.renewLeases([{ shardId: '', counter: 1 }]))).code).to.equal(
        'ERR_INVALID_OPTION',
      );
    });

    it('releases only for the owner with its counter, keeping the checkpoint for the next owner', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      await a.checkpoint('s0', lease.counter, { sequenceNumber: '100', subSequenceNumber: 3 });
      expect(await b.release('s0', lease.counter)).to.equal(false);
      expect(await a.release('s0', lease.counter + 1)).to.equal(false);
      expect(await a.release('s0', lease.counter)).to.equal(true);
      expect(await a.release('s0', lease.counter)).to.equal(false);
      expect(await a.release('missing', 1)).to.equal(false);
      const free = (await b.getLease('s0'))!;
      expect(free).to.include({ owner: undefined, expiresAtMs: undefined, counter: 1 });
      const taken = (await b.acquire('s0'))!;
      expect(taken).to.include({ owner: 'B', counter: 2 });
      expect(taken.checkpoint).to.deep.equal({ sequenceNumber: '100', subSequenceNumber: 3 });
    });

    it('rejects bad shard ids and counters before calling the store', async () => {
      const a = manager('A');
      for (const call of [
        () => a.acquire(''),
        () => a.getLease(42 as never),
        () => a.renew('s0', -1),
        () => a.release('s0', 1.5),
        () => a.checkpoint('s0', Number.NaN, { sequenceNumber: '1' }),
        () => a.requestHandoff('s0', ''),
        () => a.heartbeat(-1),
      ]) {
        expect((await rejection(call())).code).to.equal('ERR_INVALID_OPTION');
      }
    });
  });

  describe('checkpoint', () => {
    it('round-trips sequence + sub-sequence, plain sequence and SHARD_END', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      const big = '49590338271490256608559692538361571095921575989136588898';
      await a.checkpoint('s0', lease.counter, { sequenceNumber: big, subSequenceNumber: 0 });
      expect((await b.getLease('s0'))!.checkpoint).to.deep.equal({
        sequenceNumber: big,
        subSequenceNumber: 0,
      });
      await a.checkpoint('s0', lease.counter, { sequenceNumber: big, subSequenceNumber: 17 });
      expect((await b.getLease('s0'))!.checkpoint).to.deep.equal({
        sequenceNumber: big,
        subSequenceNumber: 17,
      });
      await a.checkpoint('s0', lease.counter, {
        sequenceNumber: '49590338271490256608559692538361571095921575989136588999',
      });
      expect((await b.getLease('s0'))!.checkpoint).to.deep.equal({
        sequenceNumber: '49590338271490256608559692538361571095921575989136588999',
      });
      await a.checkpoint('s0', lease.counter, 'SHARD_END');
      expect((await b.getLease('s0'))!.checkpoint).to.equal('SHARD_END');
      expect((await b.listLeases())[0]!.checkpoint).to.equal('SHARD_END');
    });

    it('keeps SHARD_END final: a position after it is refused, SHARD_END again is fine', async () => {
      const a = manager('A');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      await a.checkpoint('s0', lease.counter, 'SHARD_END');
      const error = await rejection(a.checkpoint('s0', lease.counter, { sequenceNumber: '5' }));
      expect(error.code).to.equal('ERR_INVALID_OPTION');
      expect(error.message).to.include('SHARD_END');
      await a.checkpoint('s0', lease.counter, 'SHARD_END');
      expect((await a.getLease('s0'))!.checkpoint).to.equal('SHARD_END');
    });

    it('is refused with ERR_LEASE_LOST for another host, a stale counter, a free or a missing lease', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      await a.checkpoint('s0', lease.counter, { sequenceNumber: '1' });

      const notOwner = await rejection(b.checkpoint('s0', lease.counter, { sequenceNumber: '2' }));
      expect(notOwner.code).to.equal('ERR_LEASE_LOST');
      expect(notOwner.retriable).to.equal(false);
      expect(notOwner.message).to.include('held by A with counter 1');
      expect(notOwner.details).to.include({ shardId: 's0', hostId: 'B', reason: 'NOT_OWNER', owner: 'A' });

      const stale = await rejection(a.checkpoint('s0', lease.counter - 1, { sequenceNumber: '2' }));
      expect(stale.code).to.equal('ERR_LEASE_LOST');
      expect(stale.details).to.include({ reason: 'STALE_COUNTER', currentCounter: 1 });

      await a.release('s0', lease.counter);
      const free = await rejection(a.checkpoint('s0', lease.counter, { sequenceNumber: '2' }));
      expect(free.code).to.equal('ERR_LEASE_LOST');
      expect(free.message).to.include('it is free');

      const missing = await rejection(a.checkpoint('nope', 1, { sequenceNumber: '2' }));
      expect(missing.code).to.equal('ERR_LEASE_LOST');
      expect((await a.getLease('s0'))!.checkpoint).to.deep.equal({ sequenceNumber: '1' });
      expect(await a.getLease('nope')).to.equal(undefined);
    });

    it('rejects malformed checkpoints naming the field, writing nothing', async () => {
      const a = manager('A');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      const bad: [unknown, string][] = [
        [{ sequenceNumber: 'abc' }, 'checkpoint.sequenceNumber'],
        [{ sequenceNumber: '' }, 'checkpoint.sequenceNumber'],
        [{ sequenceNumber: 12 }, 'checkpoint.sequenceNumber'],
        [{ sequenceNumber: '1', subSequenceNumber: -1 }, 'checkpoint.subSequenceNumber'],
        [{ sequenceNumber: '1', subSequenceNumber: 1.5 }, 'checkpoint.subSequenceNumber'],
        ['LATEST', 'checkpoint'],
        [null, 'checkpoint'],
      ];
      for (const [value, field] of bad) {
        const error = await rejection(a.checkpoint('s0', lease.counter, value as never));
        expect(error.code, field).to.equal('ERR_INVALID_OPTION');
        expect(error.message).to.match(new RegExp(`^${field.replace('.', '\\.')} `));
      }
      expect((await a.getLease('s0'))!.checkpoint).to.equal(undefined);
    });
  });

  describe('expiry and fencing', () => {
    it('fences the old owner once another host took the expired lease: no renew, release or checkpoint', async () => {
      const a = manager('A', { leaseDurationMs: SHORT_LEASE_MS });
      const b = manager('B', { leaseDurationMs: SHORT_LEASE_MS });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const old = (await a.acquire('s0'))!;
      await a.checkpoint('s0', old.counter, { sequenceNumber: '10' });
      await waitUntilExpired(b, old);
      const taken = (await b.acquire('s0'))!;
      expect(taken).to.include({ owner: 'B', counter: old.counter + 1 });
      expect(taken.checkpoint).to.deep.equal({ sequenceNumber: '10' });

      expect(await a.renew('s0', old.counter)).to.equal(undefined);
      expect(await a.release('s0', old.counter)).to.equal(false);
      const error = await rejection(a.checkpoint('s0', old.counter, { sequenceNumber: '11' }));
      expect(error.code).to.equal('ERR_LEASE_LOST');
      expect(error.details).to.include({ owner: 'B', currentCounter: old.counter + 1, reason: 'NOT_OWNER' });
      expect((await b.getLease('s0'))!).to.include({ owner: 'B', counter: old.counter + 1 });
      expect((await b.getLease('s0'))!.checkpoint).to.deep.equal({ sequenceNumber: '10' });
    });

    it('refuses to renew an expired lease nobody took, but accepts its late checkpoint and release', async () => {
      const a = manager('A', { leaseDurationMs: SHORT_LEASE_MS });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      await waitUntilExpired(a, lease);
      expect(await a.renew('s0', lease.counter)).to.equal(undefined);
      await a.checkpoint('s0', lease.counter, { sequenceNumber: '7', subSequenceNumber: 2 });
      expect(await a.release('s0', lease.counter)).to.equal(true);
      const next = (await a.acquire('s0'))!;
      expect(next.counter).to.equal(lease.counter + 1);
      expect(next.checkpoint).to.deep.equal({ sequenceNumber: '7', subSequenceNumber: 2 });
    });
  });

  describe('removeLease', () => {
    it('deletes a lease nobody holds at the counter seen, and takes it off the index; a held or re-acquired one stays', async () => {
      const a = manager('A', { leaseDurationMs: SHORT_LEASE_MS });
      const b = manager('B', { leaseDurationMs: SHORT_LEASE_MS });
      await a.ensureLeases(['gone', 'held', 'moved'].map((shardId) => ({ shardId, parentShardIds: [] })));
      const held = (await b.acquire('held'))!;
      expect(await a.removeLease('held', held.counter), 'held by B').to.equal(false);
      const seen = (await a.getLease('moved'))!;
      await b.acquire('moved');
      await b.release('moved', seen.counter + 1);
      expect(await a.removeLease('moved', seen.counter), 'acquired since it was seen').to.equal(false);
      expect(await a.removeLease('gone', 0)).to.equal(true);
      expect(await a.getLease('gone')).to.equal(undefined);
      expect((await a.listLeases()).map((l) => l.shardId)).to.deep.equal(['held', 'moved']);
      expect(await a.removeLease('gone', 0), 'removed already').to.equal(false);
      // Once the holder's lease expired, it can go.
      await waitUntilExpired(a, held);
      expect(await a.removeLease('held', held.counter)).to.equal(true);
      expect((await a.listLeases()).map((l) => l.shardId)).to.deep.equal(['moved']);
    });
  });

  describe('races', () => {
    it('20 clients acquiring the same free lease: exactly one wins, the counter moves once (50 rounds)', async function () {
      this.timeout(120_000);
      const contenders = Array.from({ length: 20 }, (_, i) => manager(`host-${i}`));
      await contenders[0]!.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      // Connect everyone first, so the rounds race on the script and not on connection setup.
      await Promise.all(contenders.map((m) => m.now()));
      for (let round = 1; round <= 50; round++) {
        const results = await Promise.all(contenders.map((m) => m.acquire('s0')));
        const winners = results.flatMap((lease, i) => (lease === undefined ? [] : [{ lease, i }]));
        expect(winners, `round ${round}`).to.have.length(1);
        const { lease, i } = winners[0]!;
        expect(lease.counter, `round ${round}`).to.equal(round);
        expect(lease.owner).to.equal(`host-${i}`);
        const stored = (await contenders[0]!.getLease('s0'))!;
        expect(stored).to.include({ owner: `host-${i}`, counter: round });
        expect(await contenders[i]!.release('s0', lease.counter)).to.equal(true);
      }
    });

    it('concurrent checkpoints from a fenced and a current owner: only the current one lands', async () => {
      const a = manager('A', { leaseDurationMs: SHORT_LEASE_MS });
      const b = manager('B', { leaseDurationMs: SHORT_LEASE_MS });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const old = (await a.acquire('s0'))!;
      await waitUntilExpired(b, old);
      const current = (await b.acquire('s0'))!;
      const writes = Array.from({ length: 20 }, (_, i) =>
        i % 2 === 0
          ? a.checkpoint('s0', old.counter, { sequenceNumber: String(1_000 + i) }).then(
              () => 'stale-landed',
              (e: ShardlineError) => e.code,
            )
          : b.checkpoint('s0', current.counter, { sequenceNumber: String(i) }).then(() => 'ok'),
      );
      const outcomes = await Promise.all(writes);
      expect(outcomes.filter((o) => o === 'ERR_LEASE_LOST')).to.have.length(10);
      expect(outcomes.filter((o) => o === 'ok')).to.have.length(10);
      const seq = ((await b.getLease('s0'))!.checkpoint as { sequenceNumber: string }).sequenceNumber;
      expect(Number(seq)).to.be.below(1_000);
    });
  });

  describe('handoff', () => {
    it('shows the request to the owner, reserves the released lease for the requester, then hands it over', async () => {
      const a = manager('A');
      const b = manager('B');
      const c = manager('C');
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      expect(await b.requestHandoff('s0', 'B')).to.equal(false); // free: acquire it instead
      const lease = (await a.acquire('s0'))!;
      expect(await a.requestHandoff('s0', 'A')).to.equal(false); // already the owner
      expect(await b.requestHandoff('s0', 'B')).to.equal(true);
      expect(await c.requestHandoff('s0', 'C')).to.equal(false); // one request at a time
      expect(await b.requestHandoff('missing', 'B')).to.equal(false);

      const seen = (await a.renew('s0', lease.counter))!;
      expect(seen.handoffTo).to.equal('B');
      expect((await c.getLease('s0'))!.handoffTo).to.equal('B');
      expect(await b.acquire('s0')).to.equal(undefined); // the owner has not released yet

      await a.checkpoint('s0', lease.counter, { sequenceNumber: '99', subSequenceNumber: 1 });
      expect(await a.release('s0', lease.counter)).to.equal(true);
      expect(await c.acquire('s0')).to.equal(undefined); // reserved for B
      const handed = (await b.acquire('s0'))!;
      expect(handed).to.include({ owner: 'B', counter: lease.counter + 1, handoffTo: undefined });
      expect(handed.checkpoint).to.deep.equal({ sequenceNumber: '99', subSequenceNumber: 1 });
      expect(await a.renew('s0', lease.counter)).to.equal(undefined);
    });

    it('forgets a request once its deadline passed: a new one can be made, and anyone can take a released lease', async () => {
      const leaseDurationMs = 1_000;
      const a = manager('A', { leaseDurationMs });
      const b = manager('B', { leaseDurationMs });
      const c = manager('C', { leaseDurationMs });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      expect(await b.requestHandoff('s0', 'B')).to.equal(true);
      expect(await a.release('s0', lease.counter)).to.equal(true);
      expect(await c.acquire('s0')).to.equal(undefined);
      const requestedAt = (await c.getLease('s0'))!.readAtMs!;
      await waitFor('the reservation to lapse', async () => (await c.now()) >= requestedAt + leaseDurationMs);
      expect((await c.getLease('s0'))!.handoffTo).to.equal(undefined);
      const taken = (await c.acquire('s0'))!;
      expect(taken.owner).to.equal('C');
      expect(await a.requestHandoff('s0', 'A')).to.equal(true);
    });
  });

  describe('lifecycle', () => {
    it('refuses calls after close() with ERR_CLOSED; close() is idempotent', async () => {
      const a = manager('A');
      await a.now();
      await Promise.all([a.close(), a.close()]);
      const error = await rejection(a.listLeases());
      expect(error.code).to.equal('ERR_CLOSED');
      await a.close();
    });
  });
}
