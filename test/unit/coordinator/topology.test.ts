import { SHARD_END } from '@shardline/common';
import type { Checkpoint } from '@shardline/coordinator';
import { expect } from 'chai';
import type { ShardInfo } from '../../../packages/coordinator/src/shard-discovery.js';
import { Topology } from '../../../packages/coordinator/src/topology.js';

const MAX = ((1n << 128n) - 1n).toString();

/** A shard: `start` orders shards by age; `closed` gives it an ending sequence number. */
function shard(
  id: string,
  start: string,
  options: { parents?: string[]; closed?: boolean; range?: [string, string] } = {},
): ShardInfo {
  const [from, to] = options.range ?? ['0', MAX];
  return {
    shardId: id,
    parentShardIds: options.parents ?? [],
    hashKeyRange: { startingHashKey: from, endingHashKey: to },
    sequenceNumberRange: options.closed
      ? { startingSequenceNumber: start, endingSequenceNumber: `${start}999` }
      : { startingSequenceNumber: start },
    closed: options.closed === true,
  };
}

function cps(entries: Record<string, Checkpoint | undefined>): Map<string, Checkpoint | undefined> {
  return new Map(Object.entries(entries));
}

describe('topology', () => {
  describe('split', () => {
    // P split into A and B.
    const shards = [
      shard('A', '200', { parents: ['P'] }),
      shard('P', '100', { closed: true }),
      shard('B', '201', { parents: ['P'] }),
    ];

    it('links parent and children, oldest first', () => {
      const t = new Topology(shards);
      expect(t.shardIds()).to.deep.equal(['P', 'A', 'B']);
      expect(t.parentsOf('A')).to.deep.equal(['P']);
      expect(t.childrenOf('P')).to.deep.equal(['A', 'B']);
      expect(t.childrenOf('A')).to.deep.equal([]);
      expect(t.generationOf('P')).to.equal(0);
      expect(t.generationOf('B')).to.equal(1);
      expect(t.isClosed('P')).to.equal(true);
      expect(t.isOpen('A')).to.equal(true);
      expect(t.openShardIds()).to.deep.equal(['A', 'B']);
    });

    it('keeps children waiting until the parent is checkpointed SHARD_END', () => {
      const t = new Topology(shards);
      expect(t.eligible('P', cps({}))).to.equal(true);
      expect(t.eligible('A', cps({}))).to.equal(false);
      expect(t.eligible('A', cps({ P: { sequenceNumber: '100999' } }))).to.equal(false);
      expect(t.phase('A', cps({ P: { sequenceNumber: '1' } }))).to.equal('waiting-for-parent');
      expect(t.blockingParents('B', cps({}))).to.deep.equal(['P']);
      const ended = cps({ P: SHARD_END });
      expect(t.eligible('A', ended)).to.equal(true);
      expect(t.eligible('B', ended)).to.equal(true);
      expect(t.phase('P', ended)).to.equal('ended');
      expect(t.phase('A', ended)).to.equal('ready');
    });

    it('reports resharding until the closed parent is read to its end', () => {
      const t = new Topology(shards);
      expect(t.resharding(cps({}))).to.equal(true);
      expect(t.resharding(cps({ P: { sequenceNumber: '5' } }))).to.equal(true);
      expect(t.resharding(cps({ P: SHARD_END }))).to.equal(false);
      expect(new Topology([shard('X', '1')]).resharding(cps({}))).to.equal(false);
    });

    it('accepts a lookup function for checkpoints', () => {
      const t = new Topology(shards);
      expect(t.eligible('A', (id) => (id === 'P' ? SHARD_END : undefined))).to.equal(true);
      expect(t.eligible('A', () => undefined)).to.equal(false);
    });
  });

  describe('merge', () => {
    // P1 and P2 merged into C: ParentShardId P1, AdjacentParentShardId P2.
    const shards = [
      shard('P1', '100', { closed: true }),
      shard('P2', '101', { closed: true }),
      shard('C', '300', { parents: ['P1', 'P2'] }),
      shard('Q', '102'),
    ];

    it('knows both parents', () => {
      const t = new Topology(shards);
      expect(t.parentsOf('C')).to.deep.equal(['P1', 'P2']);
      expect(t.childrenOf('P1')).to.deep.equal(['C']);
      expect(t.childrenOf('P2')).to.deep.equal(['C']);
    });

    it('starts the child only when BOTH parents ended', () => {
      const t = new Topology(shards);
      expect(t.eligible('C', cps({ P1: SHARD_END }))).to.equal(false);
      expect(t.blockingParents('C', cps({ P1: SHARD_END }))).to.deep.equal(['P2']);
      expect(t.eligible('C', cps({ P2: SHARD_END }))).to.equal(false);
      expect(t.eligible('C', cps({ P1: SHARD_END, P2: SHARD_END }))).to.equal(true);
      expect(t.eligible('Q', cps({}))).to.equal(true);
    });
  });

  describe('split then merge', () => {
    // S0 split into S1, S2; then S2 merged with S3 into S4.
    const shards = [
      shard('S0', '100', { closed: true }),
      shard('S3', '101', { closed: true }),
      shard('S1', '200', { parents: ['S0'] }),
      shard('S2', '201', { parents: ['S0'], closed: true }),
      shard('S4', '300', { parents: ['S2', 'S3'] }),
    ];

    it('orders by generation and chains eligibility', () => {
      const t = new Topology(shards);
      expect(t.shardIds()).to.deep.equal(['S0', 'S3', 'S1', 'S2', 'S4']);
      expect(t.generationOf('S4')).to.equal(2);
      expect(t.eligible('S2', cps({}))).to.equal(false);
      expect(t.eligible('S4', cps({ S3: SHARD_END }))).to.equal(false);
      expect(t.eligible('S2', cps({ S0: SHARD_END }))).to.equal(true);
      expect(t.eligible('S4', cps({ S0: SHARD_END, S3: SHARD_END }))).to.equal(false);
      expect(t.eligible('S4', cps({ S0: SHARD_END, S2: SHARD_END, S3: SHARD_END }))).to.equal(true);
      expect(t.resharding(cps({ S0: SHARD_END, S3: SHARD_END }))).to.equal(true);
      expect(t.resharding(cps({ S0: SHARD_END, S2: SHARD_END, S3: SHARD_END }))).to.equal(false);
    });
  });

  describe('parents gone from the stream (aged out of retention)', () => {
    it('lets a child whose parents are all gone start', () => {
      const t = new Topology([shard('A', '200', { parents: ['P'] })]);
      expect(t.isGone('P')).to.equal(true);
      expect(t.parentsOf('A')).to.deep.equal(['P']);
      expect(t.generationOf('A')).to.equal(0);
      expect(t.eligible('A', cps({}))).to.equal(true);
    });

    it('still waits for a merge parent that is present and not ended', () => {
      const t = new Topology([
        shard('P2', '101', { closed: true }),
        shard('C', '300', { parents: ['P1', 'P2'] }),
      ]);
      expect(t.eligible('C', cps({}))).to.equal(false);
      expect(t.blockingParents('C', cps({}))).to.deep.equal(['P2']);
      expect(t.eligible('C', cps({ P2: SHARD_END }))).to.equal(true);
    });

    it('follows the list as parents disappear on update', () => {
      const t = new Topology([shard('P', '100', { closed: true }), shard('A', '200', { parents: ['P'] })]);
      expect(t.eligible('A', cps({}))).to.equal(false);
      t.update([shard('A', '200', { parents: ['P'] })]);
      expect(t.eligible('A', cps({}))).to.equal(true);
      expect(t.resharding(cps({}))).to.equal(false);
    });
  });

  it('isRoot: a shard without parents, or whose parents are all gone from the stream and have no lease in the group', () => {
    const t = new Topology([
      shard('P', '100', { closed: true }),
      shard('C', '200', { parents: ['P'] }),
      shard('G', '300', { parents: ['gone-1', 'gone-2'] }),
    ]);
    const none = new Set<string>();
    expect(t.isRoot('P', none)).to.equal(true);
    // A parent still in the stream: read it first, then the child from TRIM_HORIZON.
    expect(t.isRoot('C', none)).to.equal(false);
    // Both parents gone and unknown to the group (a reshard older than the retention, a new group).
    expect(t.isRoot('G', none)).to.equal(true);
    // The group has a lease for one of them: it was reading it, so the child continues after it.
    expect(t.isRoot('G', new Set(['gone-2']))).to.equal(false);
  });

  it('is not eligible for a shard it does not know', () => {
    expect(new Topology([]).eligible('nope', cps({}))).to.equal(false);
  });

  describe('ChildShards hints from readers', () => {
    it('adds children before ListShards shows them, and drops hints with their parent', () => {
      const t = new Topology([shard('P', '100', { closed: true })]);
      t.noteChildren('P', ['A', 'B']);
      expect(t.childrenOf('P')).to.deep.equal(['A', 'B']);
      expect(t.has('A')).to.equal(false);
      expect(t.leaseSeeds()).to.deep.equal([{ shardId: 'P', parentShardIds: [], childShardIds: ['A', 'B'] }]);
      // ListShards caught up: children listed, hint and list agree.
      t.update([
        shard('P', '100', { closed: true }),
        shard('A', '200', { parents: ['P'] }),
        shard('B', '201', { parents: ['P'] }),
      ]);
      expect(t.childrenOf('P')).to.deep.equal(['A', 'B']);
      // Parent aged out: its hints go too.
      t.update([shard('A', '200', { parents: ['P'] }), shard('B', '201', { parents: ['P'] })]);
      expect(t.childrenOf('P')).to.deep.equal(['A', 'B']);
      t.update([]);
      expect(t.childrenOf('P')).to.deep.equal([]);
    });

    it('ignores hints for unknown parents', () => {
      const t = new Topology([]);
      t.noteChildren('P', ['A']);
      expect(t.childrenOf('P')).to.deep.equal([]);
    });
  });

  it('orders by sequence number as a number, not text', () => {
    const t = new Topology([
      shard('late', '49590000000000000000000000000000000000000000000000000010'),
      shard('early', '9'),
    ]);
    expect(t.shardIds()).to.deep.equal(['early', 'late']);
  });

  it('works on a kinesalite-like list (no ChildShards, parents only in ListShards)', () => {
    // kinesalite after SplitShard of shardId-000000000001 and MergeShards of 000000000000 + 000000000002.
    const z = (n: number) => `shardId-${String(n).padStart(12, '0')}`;
    const seq = (n: number) => `4959${String(n).padStart(52, '0')}`;
    const t = new Topology([
      shard(z(0), seq(1), { closed: true }),
      shard(z(1), seq(2), { closed: true }),
      shard(z(2), seq(3), { closed: true }),
      shard(z(3), seq(10), { parents: [z(1)] }),
      shard(z(4), seq(11), { parents: [z(1)] }),
      shard(z(5), seq(20), { parents: [z(0), z(2)] }),
    ]);
    expect(t.openShardIds()).to.deep.equal([z(3), z(4), z(5)]);
    expect(t.childrenOf(z(1))).to.deep.equal([z(3), z(4)]);
    expect(t.childrenOf(z(2))).to.deep.equal([z(5)]);
    expect(t.eligible(z(5), cps({ [z(0)]: SHARD_END }))).to.equal(false);
    expect(t.eligible(z(5), cps({ [z(0)]: SHARD_END, [z(2)]: SHARD_END }))).to.equal(true);
    expect(t.leaseSeeds().find((s) => s.shardId === z(5))).to.deep.equal({
      shardId: z(5),
      parentShardIds: [z(0), z(2)],
      childShardIds: [],
    });
  });

  it('survives a parent cycle (never in a sane stream) without looping', () => {
    const t = new Topology([shard('A', '1', { parents: ['B'] }), shard('B', '2', { parents: ['A'] })]);
    expect(t.size).to.equal(2);
    expect(t.eligible('A', cps({}))).to.equal(false);
  });

  it('rejects a malformed list', () => {
    expect(() => new Topology('x' as never)).to.throw(/shards must be an array/);
    expect(() => new Topology([{ shardId: 1 }] as never)).to.throw(/shards must be an array of ShardInfo/);
    expect(() => new Topology([{ shardId: 'a', parentShardIds: [], closed: false }] as never)).to.throw(
      /shards must be an array of ShardInfo/,
    );
  });
});
