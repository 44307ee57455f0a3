import { SHARD_END } from '@shardline/common';
import { type Lease, MemoryLeaseManager, MemoryLeaseStore } from '@shardline/coordinator';
import { expect } from 'chai';
import { type AllocationPlan, Allocator } from '../../../packages/coordinator/src/allocator.js';
import type { ShardInfo } from '../../../packages/coordinator/src/shard-discovery.js';
import { Topology } from '../../../packages/coordinator/src/topology.js';

const D = 10_000;
const NOW = 1_000_000;

function shard(id: string, start: number, options: { parents?: string[]; closed?: boolean } = {}): ShardInfo {
  return {
    shardId: id,
    parentShardIds: options.parents ?? [],
    hashKeyRange: { startingHashKey: '0', endingHashKey: '1' },
    sequenceNumberRange: options.closed
      ? { startingSequenceNumber: String(start), endingSequenceNumber: String(start + 1) }
      : { startingSequenceNumber: String(start) },
    closed: options.closed === true,
  };
}

function lease(shardId: string, fields: Partial<Lease> = {}): Lease {
  return {
    shardId,
    owner: undefined,
    counter: 0,
    expiresAtMs: undefined,
    checkpoint: undefined,
    parentShardIds: [],
    childShardIds: [],
    handoffTo: undefined,
    ...fields,
  };
}

const held = (owner: string, extra: Partial<Lease> = {}): Partial<Lease> => ({
  owner,
  counter: 1,
  expiresAtMs: NOW + D,
  ...extra,
});

function hosts(...ids: string[]) {
  return ids.map((hostId) => ({ hostId, lastSeenAtMs: NOW, shards: 0 }));
}

function openShards(n: number): ShardInfo[] {
  return Array.from({ length: n }, (_, i) => shard(`s${i}`, 100 + i));
}

/** One host of a simulated group: a lease manager on the shared store, an allocator, and a plan executor. */
class SimHost {
  readonly manager: MemoryLeaseManager;
  readonly allocator: Allocator;
  readonly requests: Array<{ shardId: string; from: string }> = [];
  constructor(
    readonly hostId: string,
    store: MemoryLeaseStore,
    maxShardConsumers = Number.POSITIVE_INFINITY,
  ) {
    this.manager = new MemoryLeaseManager({ hostId, leaseDurationMs: D, store });
    this.allocator = new Allocator({ hostId, maxShardConsumers });
  }

  async owned(): Promise<Lease[]> {
    const now = await this.manager.now();
    return (await this.manager.listLeases()).filter(
      (l) => l.owner === this.hostId && (l.expiresAtMs ?? 0) > now && l.checkpoint !== SHARD_END,
    );
  }

  /** Heartbeat, plan, execute: what the coordinator's allocation tick does. */
  async tick(topology: Topology): Promise<AllocationPlan> {
    const m = this.manager;
    await m.heartbeat((await this.owned()).length);
    const plan = this.allocator.plan({
      leases: await m.listLeases(),
      topology,
      liveHosts: await m.liveHosts(),
      now: await m.now(),
    });
    for (const { shardId } of [...plan.handOver, ...plan.release.map((shardId) => ({ shardId }))]) {
      const current = await m.getLease(shardId);
      await m.release(shardId, current!.counter);
    }
    const wanted = plan.acquire.length;
    let got = 0;
    for (const shardId of [...plan.acquire, ...plan.spares]) {
      if (got === wanted) break;
      if ((await m.acquire(shardId)) !== undefined) got++;
    }
    for (const request of plan.requestHandoffs) {
      if (await m.requestHandoff(request.shardId, this.hostId)) this.requests.push(request);
    }
    return plan;
  }

  /** Renews what it holds (the coordinator's renewal loop). */
  async renewAll(): Promise<void> {
    for (const l of await this.owned()) await this.manager.renew(l.shardId, l.counter);
  }

  /** Reads a shard to its end: checkpoint SHARD_END, then release. */
  async end(shardId: string): Promise<void> {
    const l = (await this.manager.getLease(shardId))!;
    expect(l.owner).to.equal(this.hostId);
    await this.manager.checkpoint(shardId, l.counter, SHARD_END);
    await this.manager.release(shardId, l.counter);
  }
}

async function counts(sims: SimHost[]): Promise<number[]> {
  return Promise.all(sims.map(async (s) => (await s.owned()).length));
}

async function rounds(sims: SimHost[], topology: Topology, n: number, advance: () => void): Promise<void> {
  for (let i = 0; i < n; i++) {
    for (const sim of sims) await sim.tick(topology);
    for (const sim of sims) await sim.renewAll();
    advance();
  }
}

describe('allocator', () => {
  describe('plan (pure)', () => {
    it('4 shards, 1 host, maxShardConsumers 2: takes 2 and warns that capacity is short', () => {
      const topology = new Topology(openShards(4));
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 2 }).plan({
        leases: ['s0', 's1', 's2', 's3'].map((id) => lease(id)),
        topology,
        liveHosts: hosts('A'),
        now: NOW,
      });
      expect(plan.acquire).to.deep.equal(['s0', 's1']);
      expect(plan.spares).to.deep.equal(['s2', 's3']);
      expect(plan.fairShare).to.equal(4);
      expect(plan.target).to.equal(2);
      expect(plan.warning).to.deep.include({
        code: 'insufficient-capacity',
        openShards: 4,
        liveHosts: 1,
        maxShardConsumers: 2,
      });
      expect(plan.warning!.message).to.match(/2 readers cannot cover the 4 open shards/);
    });

    it('does not warn when hosts x maxShardConsumers cover the open shards', () => {
      const topology = new Topology(openShards(4));
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 2 }).plan({
        leases: ['s0', 's1', 's2', 's3'].map((id) => lease(id)),
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(plan.acquire).to.have.length(2);
      expect(plan.warning).to.equal(undefined);
    });

    it('counts children waiting on their parents in the capacity warning', () => {
      // P closed with two open children waiting: 3 open shards in total for 1 host x 2.
      const topology = new Topology([
        shard('P', 1, { closed: true }),
        shard('A', 2, { parents: ['P'] }),
        shard('B', 3, { parents: ['P'] }),
        shard('Q', 4),
      ]);
      const plan = new Allocator({ hostId: 'H', maxShardConsumers: 2 }).plan({
        leases: ['P', 'A', 'B', 'Q'].map((id) => lease(id)),
        topology,
        liveHosts: hosts('H'),
        now: NOW,
      });
      expect(plan.acquire).to.deep.equal(['P', 'Q']);
      expect(plan.warning?.openShards).to.equal(3);
      expect(plan.warning?.message).to.match(/2 readers cannot cover the 3 open shards/);
    });

    it('takes expired leases, and never leases another host holds', () => {
      const topology = new Topology(openShards(3));
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 10 }).plan({
        leases: [lease('s0', held('B')), lease('s1', held('B', { expiresAtMs: NOW })), lease('s2')],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(plan.acquire).to.deep.equal(['s1', 's2']);
      expect(plan.held).to.equal(0);
      expect(plan.target).to.equal(2);
    });

    it('prefers closed parents, then older shards, so children never starve their parents', () => {
      // With room for one: the closed parent P goes first, although Q is older.
      const topology = new Topology([
        shard('Q', 1),
        shard('P', 2, { closed: true }),
        shard('C1', 3, { parents: ['P'] }),
        shard('C2', 4, { parents: ['P'] }),
      ]);
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 1 }).plan({
        leases: ['Q', 'P', 'C1', 'C2'].map((id) => lease(id)),
        topology,
        liveHosts: hosts('A'),
        now: NOW,
      });
      expect(plan.acquire).to.deep.equal(['P']);
      expect(plan.spares).to.deep.equal(['Q']);
    });

    it('keeps children out until all parents are ended; ended shards do not count', () => {
      const topology = new Topology([
        shard('P', 1, { closed: true }),
        shard('C1', 2, { parents: ['P'] }),
        shard('C2', 3, { parents: ['P'] }),
      ]);
      const allocator = new Allocator({ hostId: 'A', maxShardConsumers: 5 });
      const waiting = allocator.plan({
        leases: [lease('P', held('B')), lease('C1'), lease('C2')],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(waiting.acquire).to.deep.equal([]);
      expect(waiting.requestHandoffs).to.deep.equal([]);
      const ended = allocator.plan({
        leases: [lease('P', { checkpoint: SHARD_END, counter: 1 }), lease('C1'), lease('C2')],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(ended.fairShare).to.equal(1);
      expect(ended.acquire).to.deep.equal(['C1']);
    });

    it('leaves a lease reserved for another host, and takes one reserved for itself first', () => {
      const topology = new Topology(openShards(3));
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 1 }).plan({
        leases: [
          lease('s0', { handoffTo: 'B', counter: 1 }),
          lease('s1'),
          lease('s2', { handoffTo: 'A', counter: 1 }),
        ],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(plan.acquire).to.deep.equal(['s2']);
      expect(plan.spares).to.deep.equal(['s1']);
    });

    it('hands over every lease it holds that another host asked for', () => {
      const topology = new Topology(openShards(4));
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 10 }).plan({
        leases: [
          lease('s0', held('A', { handoffTo: 'B' })),
          lease('s1', held('A')),
          lease('s2', held('B')),
          lease('s3', held('B')),
        ],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(plan.handOver).to.deep.equal([{ shardId: 's0', to: 'B' }]);
      expect(plan.acquire).to.deep.equal([]);
    });

    it('releases the youngest leases over maxShardConsumers', () => {
      const topology = new Topology(openShards(4));
      const plan = new Allocator({ hostId: 'A', maxShardConsumers: 2 }).plan({
        leases: ['s0', 's1', 's2', 's3'].map((id) => lease(id, held('A'))),
        topology,
        liveHosts: hosts('A'),
        now: NOW,
      });
      expect(plan.release).to.deep.equal(['s3', 's2']);
      expect(plan.held).to.equal(4);
    });

    it('asks the most loaded host for a lease when none is free, only if it narrows the gap by 2', () => {
      const topology = new Topology(openShards(6));
      const allocator = new Allocator({ hostId: 'D', maxShardConsumers: 10 });
      const owners = ['A', 'A', 'B', 'B', 'C', 'C'];
      const plan = allocator.plan({
        leases: owners.map((o, i) => lease(`s${i}`, held(o))),
        topology,
        liveHosts: hosts('A', 'B', 'C', 'D'),
        now: NOW,
      });
      expect(plan.target).to.equal(2);
      // Ties broken by host id: A; its least preferred (youngest) lease.
      expect(plan.requestHandoffs).to.deep.equal([{ shardId: 's1', from: 'A' }]);

      // 7 shards over 3 hosts at 3/2/2: a move would only swap who has 3. No request.
      const seven = new Topology(openShards(7));
      const balanced = new Allocator({ hostId: 'C', maxShardConsumers: 10 }).plan({
        leases: ['A', 'A', 'A', 'B', 'B', 'C', 'C'].map((o, i) => lease(`s${i}`, held(o))),
        topology: seven,
        liveHosts: hosts('A', 'B', 'C'),
        now: NOW,
      });
      expect(balanced.requestHandoffs).to.deep.equal([]);
    });

    it('counts its pending requests: asks only for the rest of its deficit, from the busiest host', () => {
      const topology = new Topology(openShards(6));
      const leases = [
        lease('s0', held('A')),
        lease('s1', held('A')),
        lease('s2', held('A', { handoffTo: 'C' })),
        lease('s3', held('B')),
        lease('s4', held('B')),
        lease('s5', held('B')),
      ];
      const input = { leases, topology, liveHosts: hosts('A', 'B', 'C'), now: NOW };
      // Target 2, one on its way from A (A counts as 2 then): one more, from B (3).
      const plan = new Allocator({ hostId: 'C', maxShardConsumers: 10 }).plan(input);
      expect(plan.requestHandoffs).to.deep.equal([{ shardId: 's5', from: 'B' }]);
      // Both on their way: nothing more to ask.
      leases[5] = lease('s5', held('B', { handoffTo: 'C' }));
      expect(new Allocator({ hostId: 'C', maxShardConsumers: 10 }).plan(input).requestHandoffs).to.deep.equal(
        [],
      );
    });

    it('a host joining a large group asks for its whole share at once, youngest leases first', () => {
      const topology = new Topology(openShards(8));
      const plan = new Allocator({ hostId: 'B', maxShardConsumers: 10 }).plan({
        leases: openShards(8).map((s) => lease(s.shardId, held('A'))),
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(plan.target).to.equal(4);
      expect(plan.requestHandoffs).to.deep.equal(
        ['s7', 's6', 's5', 's4'].map((shardId) => ({ shardId, from: 'A' })),
      );
      // Capped at maxShardConsumers: only as many as it may read.
      const capped = new Allocator({ hostId: 'B', maxShardConsumers: 1 }).plan({
        leases: openShards(8).map((s) => lease(s.shardId, held('A'))),
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      });
      expect(capped.requestHandoffs).to.deep.equal([{ shardId: 's7', from: 'A' }]);
    });

    it('does not ask a host that is no longer live', () => {
      const topology = new Topology(openShards(4));
      const plan = new Allocator({ hostId: 'B', maxShardConsumers: 10 }).plan({
        leases: ['s0', 's1', 's2', 's3'].map((id) => lease(id, held('DEAD'))),
        topology,
        liveHosts: hosts('B'),
        now: NOW,
      });
      expect(plan.requestHandoffs).to.deep.equal([]);
      expect(plan.acquire).to.deep.equal([]);
    });

    it('takes leases beyond its fair share when they stay free (other hosts capped lower)', () => {
      const topology = new Topology(openShards(4));
      const allocator = new Allocator({ hostId: 'A', maxShardConsumers: 10, overflowAfterPlans: 3 });
      const input = {
        // A holds its share of 2, B is capped at 1: s3 stays free.
        leases: [lease('s0', held('A')), lease('s1', held('A')), lease('s2', held('B')), lease('s3')],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      };
      expect(allocator.plan(input).acquire).to.deep.equal([]);
      expect(allocator.plan(input).acquire).to.deep.equal([]);
      expect(allocator.plan(input).acquire).to.deep.equal(['s3']);
    });

    it('restarts the free streak when a lease was taken in between', () => {
      const topology = new Topology(openShards(4));
      const allocator = new Allocator({ hostId: 'A', maxShardConsumers: 10, overflowAfterPlans: 2 });
      const base = [lease('s0', held('A')), lease('s1', held('A')), lease('s2', held('B'))];
      const free = { leases: [...base, lease('s3')], topology, liveHosts: hosts('A', 'B'), now: NOW };
      const taken = {
        leases: [...base, lease('s3', held('B'))],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
      };
      expect(allocator.plan(free).acquire).to.deep.equal([]);
      expect(allocator.plan(taken).acquire).to.deep.equal([]);
      expect(allocator.plan(free).acquire).to.deep.equal([]);
      expect(allocator.plan(free).acquire).to.deep.equal(['s3']);
    });

    it('never takes or asks for an excluded shard (stopped here after failures)', () => {
      const topology = new Topology(openShards(4));
      const allocator = new Allocator({ hostId: 'A', maxShardConsumers: 10 });
      const plan = allocator.plan({
        leases: [lease('s0'), lease('s1'), lease('s2', held('B')), lease('s3', held('B'))],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
        exclude: new Set(['s0']),
      });
      expect(plan.acquire).to.deep.equal(['s1']);
      expect(plan.spares).to.deep.equal([]);
      const asking = allocator.plan({
        leases: [
          lease('s0', held('B')),
          lease('s1', held('B')),
          lease('s2', held('B')),
          lease('s3', held('B')),
        ],
        topology,
        liveHosts: hosts('A', 'B'),
        now: NOW,
        exclude: new Set(['s3']),
      });
      expect(asking.requestHandoffs).to.deep.equal([
        { shardId: 's2', from: 'B' },
        { shardId: 's1', from: 'B' },
      ]);
    });

    it('validates its options', () => {
      expect(() => new Allocator({ hostId: '', maxShardConsumers: 1 })).to.throw(/hostId/);
      expect(() => new Allocator({ hostId: 'A', maxShardConsumers: 0 })).to.throw(/maxShardConsumers/);
      expect(() => new Allocator({ hostId: 'A', maxShardConsumers: 1, overflowAfterPlans: 0 })).to.throw(
        /overflowAfterPlans/,
      );
    });
  });

  describe('simulated group on a shared MemoryLeaseStore', () => {
    let t: number;
    let store: MemoryLeaseStore;
    const advance = () => {
      t += Math.floor(D / 3);
    };

    beforeEach(() => {
      t = NOW;
      store = new MemoryLeaseStore({ clock: () => t });
    });

    async function group(ids: string[], topology: Topology, max?: number): Promise<SimHost[]> {
      const sims = ids.map((id) => new SimHost(id, store, max));
      await sims[0]!.manager.ensureLeases(topology.leaseSeeds());
      for (const sim of sims) await sim.manager.heartbeat(0);
      return sims;
    }

    it('4 shards, 1 host, maxShardConsumers 2: exactly 2 read', async () => {
      const topology = new Topology(openShards(4));
      const sims = await group(['A'], topology, 2);
      await rounds(sims, topology, 5, advance);
      expect(await counts(sims)).to.deep.equal([2]);
    });

    it('6 shards, 3 hosts: 2 each, every shard read once', async () => {
      const topology = new Topology(openShards(6));
      const sims = await group(['A', 'B', 'C'], topology);
      await rounds(sims, topology, 6, advance);
      expect(await counts(sims)).to.deep.equal([2, 2, 2]);
      const owners = (await sims[0]!.manager.listLeases()).map((l) => l.owner);
      expect(owners.every((o) => o !== undefined)).to.equal(true);
    });

    it('a 4th host joining gets leases by graceful handoff, one request at a time: 2/2/1/1', async () => {
      const topology = new Topology(openShards(6));
      const sims = await group(['A', 'B', 'C'], topology);
      await rounds(sims, topology, 4, advance);
      expect(await counts(sims)).to.deep.equal([2, 2, 2]);
      const d = new SimHost('D', store);
      sims.push(d);
      const countersBefore = new Map((await d.manager.listLeases()).map((l) => [l.shardId, l.counter]));
      for (let i = 0; i < 6; i++) {
        await rounds(sims, topology, 1, advance);
        // Never two requests of D pending at once.
        const pending = (await d.manager.listLeases()).filter((l) => l.handoffTo === 'D');
        expect(pending.length).to.be.at.most(1);
      }
      expect([...(await counts(sims))].sort()).to.deep.equal([1, 1, 2, 2]);
      expect(d.requests.length).to.be.greaterThanOrEqual(1);
      // Moves were releases then acquisitions, never a takeover of a live lease: each moved lease
      // went up by exactly one acquisition.
      const after = await d.manager.listLeases();
      const moved = after.filter((l) => l.counter !== countersBefore.get(l.shardId));
      expect(moved.every((l) => l.counter === countersBefore.get(l.shardId)! + 1)).to.equal(true);
    });

    it('split: the children wait for the parent held by another host, then get read', async () => {
      const topology = new Topology([
        shard('P', 1, { closed: true }),
        shard('Q', 2),
        shard('C1', 3, { parents: ['P'] }),
        shard('C2', 4, { parents: ['P'] }),
      ]);
      const sims = await group(['A', 'B'], topology);
      const [a, b] = sims as [SimHost, SimHost];
      await rounds(sims, topology, 3, advance);
      const leases = await a.manager.listLeases();
      expect(leases.find((l) => l.shardId === 'C1')?.owner).to.equal(undefined);
      expect(leases.find((l) => l.shardId === 'C2')?.owner).to.equal(undefined);
      const parentOwner = leases.find((l) => l.shardId === 'P')!.owner!;
      await (parentOwner === 'A' ? a : b).end('P');
      await rounds(sims, topology, 4, advance);
      const final = await a.manager.listLeases();
      expect(final.find((l) => l.shardId === 'C1')?.owner).to.not.equal(undefined);
      expect(final.find((l) => l.shardId === 'C2')?.owner).to.not.equal(undefined);
      expect([...(await counts(sims))].sort()).to.deep.equal([1, 2]);
    });

    it('merge with parents on different hosts: the child starts only after both ended', async () => {
      const topology = new Topology([
        shard('P1', 1, { closed: true }),
        shard('P2', 2, { closed: true }),
        shard('M', 3, { parents: ['P1', 'P2'] }),
      ]);
      const sims = await group(['A', 'B'], topology);
      await rounds(sims, topology, 3, advance);
      const leases = await sims[0]!.manager.listLeases();
      const p1 = leases.find((l) => l.shardId === 'P1')!.owner!;
      const p2 = leases.find((l) => l.shardId === 'P2')!.owner!;
      expect(p1).to.not.equal(p2);
      const byId = (id: string) => sims.find((s) => s.hostId === id)!;
      await byId(p1).end('P1');
      await rounds(sims, topology, 3, advance);
      expect((await sims[0]!.manager.getLease('M'))?.owner).to.equal(undefined);
      await byId(p2).end('P2');
      await rounds(sims, topology, 2, advance);
      expect((await sims[0]!.manager.getLease('M'))?.owner).to.be.oneOf(['A', 'B']);
    });

    it('a dead host’s leases are taken after they expire', async () => {
      const topology = new Topology(openShards(4));
      const sims = await group(['A', 'B'], topology);
      await rounds(sims, topology, 3, advance);
      expect(await counts(sims)).to.deep.equal([2, 2]);
      // B dies: no heartbeat, no renewal.
      const survivors = [sims[0]!];
      await rounds(survivors, topology, 5, advance);
      expect(await counts(survivors)).to.deep.equal([4]);
    });
  });
});
