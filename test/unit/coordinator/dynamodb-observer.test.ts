/**
 * The DynamoDB store's observer (pure): expiry timed from this host's first sight of a leaseCounter
 * value, stale reads ignored, a held lease timed from its last renew's send, capped by a handoff
 * request from its first sight, and requests live for a lease duration.
 */
import { expect } from 'chai';
import type { ItemLease } from '../../../packages/coordinator/src/leases/dynamodb-item.js';
import { LeaseObserver } from '../../../packages/coordinator/src/leases/dynamodb-observer.js';

const D = 1_000;

function lease(overrides: Partial<ItemLease> = {}): ItemLease {
  return {
    shardId: 's0',
    owner: 'B',
    leaseCounter: 10,
    acquisitions: 3,
    checkpoint: undefined,
    parentShardIds: [],
    childShardIds: [],
    handoffTo: undefined,
    handoffId: undefined,
    failure: undefined,
    firstAcquiredAtMs: undefined,
    ...overrides,
  };
}

describe('LeaseObserver (DynamoDB expiry on the observer clock)', () => {
  it('expires another host lease a duration after its counter was first seen; a change restarts it', () => {
    const o = new LeaseObserver('A', D);
    o.observe(lease(), 5_000);
    expect(o.expired(lease(), 5_999)).to.equal(false);
    o.observe(lease(), 5_900); // same counter seen again: the clock does not restart
    expect(o.expiresAt(lease())).to.equal(6_000);
    expect(o.expired(lease(), 6_000)).to.equal(true);
    o.observe(lease({ leaseCounter: 11 }), 6_100);
    expect(o.expired(lease({ leaseCounter: 11 }), 6_500)).to.equal(false);
    expect(o.seenCounter('s0')).to.equal(11);
    // A stale read (a lower counter) changes nothing.
    o.observe(lease({ leaseCounter: 10 }), 6_200);
    expect(o.seenCounter('s0')).to.equal(11);
    expect(o.expiresAt(lease({ leaseCounter: 11 }))).to.equal(7_100);
    expect(o.expired(lease({ owner: undefined }), 0), 'a free lease').to.equal(true);
    expect(o.expiresAt(lease({ shardId: 'never-seen' }))).to.equal(Number.NEGATIVE_INFINITY);
  });

  it('times a held lease from its last renew send, capped at a duration after a handoff request was first seen', () => {
    const o = new LeaseObserver('A', D);
    const held = lease({ owner: 'A', acquisitions: 4 });
    o.hold('s0', 4, 2_000);
    expect(o.expiresAt(held)).to.equal(3_000);
    expect(o.held('s0', 4)?.renewedAt).to.equal(2_000);
    expect(o.held('s0', 3)).to.equal(undefined);
    const asked = { ...held, handoffTo: 'C', handoffId: 'r1' };
    o.observe(asked, 2_500);
    o.hold('s0', 4, 3_000);
    expect(o.expiresAt(asked), 'capped by the request').to.equal(3_500);
    expect(o.liveHandoff(asked, 3_499)).to.equal('C');
    expect(o.liveHandoff(asked, 3_500)).to.equal(undefined);
    // Another token (a newer acquisition elsewhere): no longer timed as held.
    expect(o.expiresAt({ ...held, acquisitions: 5 })).to.not.equal(4_000);
    o.drop('s0', 3);
    expect(o.held('s0', 4), 'drop with another token keeps it').to.not.equal(undefined);
    o.drop('s0', 4);
    expect(o.held('s0', 4)).to.equal(undefined);
  });

  it('reports the lease: token as counter, local expiry, live request only, read time', () => {
    const o = new LeaseObserver('A', D);
    const l = lease({ handoffTo: 'C', handoffId: 'r2', checkpoint: 'SHARD_END' });
    o.observe(l, 1_000);
    expect(o.toLease(l, 1_200)).to.deep.equal({
      shardId: 's0',
      owner: 'B',
      counter: 3,
      expiresAtMs: 2_000,
      checkpoint: 'SHARD_END',
      parentShardIds: [],
      childShardIds: [],
      handoffTo: 'C',
      readAtMs: 1_200,
    });
    expect(o.toLease(l, 2_000).handoffTo).to.equal(undefined);
    expect(o.toLease(lease({ owner: undefined }), 0).expiresAtMs).to.equal(undefined);
  });
});
