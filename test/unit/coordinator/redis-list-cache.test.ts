/**
 * LeaseListCache, the Redis lease manager's last full listing: when it falls due, which listings it
 * keeps, and which of this host's own writes it follows. (Against the real Redis and its scripts:
 * test/integration/redis-lease-listing.test.ts.)
 */
import type { Lease } from '@shardline/coordinator';
import { expect } from 'chai';
import {
  LeaseListCache,
  LIST_CACHE_MARGIN_FRACTION,
  type ListedLease,
} from '../../../packages/coordinator/src/leases/redis-list-cache.js';

const D = 10_000;
const MARGIN = D * LIST_CACHE_MARGIN_FRACTION;
const READ_AT = 1_000_000;

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
    readAtMs: READ_AT,
    ...fields,
  };
}

function listed(l: Lease, handoffDeadlineMs?: number): ListedLease {
  return { lease: l, handoffDeadlineMs };
}

/** A cache for host A holding one full listing at version '7', read at READ_AT. */
function cacheWith(...entries: ListedLease[]): LeaseListCache {
  const cache = new LeaseListCache('A', D);
  cache.store(cache.query(), '7', READ_AT, entries);
  return cache;
}

describe('LeaseListCache (the Redis listing cache)', () => {
  it('has nothing to offer before a listing: the store is asked for every lease', () => {
    const query = new LeaseListCache('A', D).query();
    expect(query).to.include({ snapshot: undefined, version: '', dueMs: undefined });
  });

  it('falls due at the earliest expiry or handoff deadline still ahead when read, less the margin', () => {
    const cache = cacheWith(
      listed(lease('free')),
      listed(lease('b-late', { owner: 'B', counter: 1, expiresAtMs: READ_AT + 9_000 })),
      listed(lease('b-early', { owner: 'B', counter: 1, expiresAtMs: READ_AT + 6_000 })),
      listed(lease('mine', { owner: 'A', counter: 3, expiresAtMs: READ_AT + 8_000 })),
    );
    expect(cache.query()).to.include({ version: '7', dueMs: READ_AT + 6_000 - MARGIN });

    const reserved = cacheWith(
      listed(lease('b', { owner: 'B', counter: 1, expiresAtMs: READ_AT + 9_000 })),
      listed(lease('reserved', { handoffTo: 'C' }), READ_AT + 2_000),
    );
    expect(reserved.query().dueMs).to.equal(READ_AT + 2_000 - MARGIN);
  });

  it('ignores times already past when read (only a version bump can change those leases) and free leases', () => {
    const cache = cacheWith(
      listed(lease('expired', { owner: 'B', counter: 1, expiresAtMs: READ_AT - 1 })),
      listed(lease('at-read', { owner: 'B', counter: 1, expiresAtMs: READ_AT })),
      listed(lease('lapsed', {}), READ_AT - 5),
      // A free lease keeps no expiry that matters (the store drops it on release anyway).
      listed(lease('free', { expiresAtMs: READ_AT + 1_000 })),
    );
    expect(cache.query()).to.include({ version: '7', dueMs: undefined });
  });

  it('keeps a listing only at a version and when nothing invalidated it while it was read', () => {
    const cache = new LeaseListCache('A', D);
    cache.store(cache.query(), '', READ_AT, [listed(lease('s0'))]);
    expect(cache.query().snapshot, 'no version key yet').to.equal(undefined);

    const inFlight = cache.query();
    cache.invalidate();
    cache.store(inFlight, '8', READ_AT, [listed(lease('s0'))]);
    expect(cache.query().snapshot, 'invalidated meanwhile').to.equal(undefined);

    cache.store(cache.query(), '9', READ_AT, [listed(lease('s0'))]);
    expect(cache.query().version).to.equal('9');
    cache.invalidate();
    expect(cache.query()).to.include({ snapshot: undefined, version: '' });
  });

  it('hands out copies read at the confirming time, so callers cannot change the cache', () => {
    const cache = new LeaseListCache('A', D);
    const first = cache.store(cache.query(), '7', READ_AT, [
      listed(
        lease('s0', {
          owner: 'B',
          counter: 2,
          expiresAtMs: READ_AT + 5_000,
          checkpoint: { sequenceNumber: '5' },
          parentShardIds: ['p'],
        }),
      ),
    ]);
    first[0]!.parentShardIds.push('x');
    (first[0]!.checkpoint as { sequenceNumber: string }).sequenceNumber = '6';
    const query = cache.query();
    const again = cache.confirmed(query.snapshot!, READ_AT + 3_000);
    expect(again[0]).to.deep.include({
      owner: 'B',
      expiresAtMs: READ_AT + 5_000,
      checkpoint: { sequenceNumber: '5' },
      parentShardIds: ['p'],
      readAtMs: READ_AT + 3_000,
    });
  });

  it('follows this host renewals and checkpoints of its own leases at their counter, nothing else', () => {
    const cache = cacheWith(
      listed(lease('mine', { owner: 'A', counter: 3, expiresAtMs: READ_AT + 2_000 })),
      listed(lease('theirs', { owner: 'B', counter: 1, expiresAtMs: READ_AT + 9_000 })),
    );
    expect(cache.query().dueMs).to.equal(READ_AT + 2_000 - MARGIN);
    cache.renewed(lease('mine', { owner: 'A', counter: 3, expiresAtMs: READ_AT + 12_000 }));
    // Another counter (acquired again since the listing), another host's lease: left alone.
    cache.renewed(lease('mine', { owner: 'A', counter: 4, expiresAtMs: READ_AT + 20_000 }));
    cache.renewed(lease('theirs', { owner: 'B', counter: 1, expiresAtMs: READ_AT + 20_000 }));
    expect(cache.query().dueMs).to.equal(READ_AT + 9_000 - MARGIN);

    cache.checkpointed('mine', 3, { sequenceNumber: '42', subSequenceNumber: 1 });
    cache.checkpointed('mine', 2, { sequenceNumber: '1' });
    cache.checkpointed('theirs', 1, 'SHARD_END');
    const [mine, theirs] = cache.confirmed(cache.query().snapshot!, READ_AT + 1);
    expect(mine).to.deep.include({
      expiresAtMs: READ_AT + 12_000,
      checkpoint: { sequenceNumber: '42', subSequenceNumber: 1 },
    });
    expect(theirs).to.deep.include({ expiresAtMs: READ_AT + 9_000, checkpoint: undefined });
  });

  it('knows whether a listing holds every shard given (a shard it lacks means a full read)', () => {
    const cache = cacheWith(listed(lease('s0')), listed(lease('s1')));
    expect(cache.hasAll(['s1', 's0'])).to.equal(true);
    expect(cache.hasAll(['s0', 's2'])).to.equal(false);
    expect(new LeaseListCache('A', D).hasAll([])).to.equal(false);
  });
});
