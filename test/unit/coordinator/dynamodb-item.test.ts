/**
 * The KCL lease item <-> Shardline lease mapping (pure): checkpoint sentinels and sub-sequences both
 * ways, sets, owners during a KCL 3.x handoff, non-lease entities, Shardline's extra attributes.
 */
import { expect } from 'chai';
import {
  checkpointFromItem,
  checkpointToAttributes,
  isLeaseItem,
  leaseFromItem,
  newLeaseItem,
} from '../../../packages/coordinator/src/leases/dynamodb-item.js';

const SEQ = '49590338271490256608559692538361571095921575989136588898';

describe('DynamoDB lease items (KCL format)', () => {
  it('reads KCL checkpoints: initial sentinels as none, SHARD_END, (seq, sub) as a mid-record position', () => {
    for (const sentinel of ['TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP']) {
      expect(
        checkpointFromItem({ checkpoint: { S: sentinel }, checkpointSubSequenceNumber: { N: '0' } }),
      ).to.equal(undefined);
    }
    expect(checkpointFromItem({})).to.equal(undefined);
    expect(
      checkpointFromItem({ checkpoint: { S: 'SHARD_END' }, checkpointSubSequenceNumber: { N: '0' } }),
    ).to.equal('SHARD_END');
    // KCL's (S, 0): record S (plain) or user record 0 of the aggregate S processed: resume at S, skip sub 0.
    expect(
      checkpointFromItem({ checkpoint: { S: SEQ }, checkpointSubSequenceNumber: { N: '0' } }),
    ).to.deep.equal({
      sequenceNumber: SEQ,
      subSequenceNumber: 0,
    });
    expect(
      checkpointFromItem({ checkpoint: { S: SEQ }, checkpointSubSequenceNumber: { N: '4' } }),
    ).to.deep.equal({
      sequenceNumber: SEQ,
      subSequenceNumber: 4,
    });
    expect(checkpointFromItem({ checkpoint: { S: SEQ } })).to.deep.equal({
      sequenceNumber: SEQ,
      subSequenceNumber: 0,
    });
    expect(checkpointFromItem({ checkpoint: { S: 'garbage' } })).to.equal(undefined);
  });

  it('writes Shardline checkpoints as KCL does, and reads each back exactly', () => {
    const cases = [
      [undefined, { checkpoint: 'TRIM_HORIZON', subSequenceNumber: 0, wholeRecord: undefined }],
      ['SHARD_END', { checkpoint: 'SHARD_END', subSequenceNumber: 0, wholeRecord: undefined }],
      [{ sequenceNumber: SEQ }, { checkpoint: SEQ, subSequenceNumber: 0, wholeRecord: SEQ }],
      [
        { sequenceNumber: SEQ, subSequenceNumber: 0 },
        { checkpoint: SEQ, subSequenceNumber: 0, wholeRecord: undefined },
      ],
      [
        { sequenceNumber: SEQ, subSequenceNumber: 9 },
        { checkpoint: SEQ, subSequenceNumber: 9, wholeRecord: undefined },
      ],
    ] as const;
    for (const [checkpoint, attributes] of cases) {
      const a = checkpointToAttributes(checkpoint);
      expect(a).to.deep.equal(attributes);
      const item = {
        checkpoint: { S: a.checkpoint },
        checkpointSubSequenceNumber: { N: String(a.subSequenceNumber) },
        ...(a.wholeRecord === undefined ? {} : { shardlineWholeRecord: { S: a.wholeRecord } }),
      };
      expect(checkpointFromItem(item)).to.deep.equal(checkpoint);
    }
  });

  it('ignores a stale whole-record marker once KCL wrote another checkpoint', () => {
    const item = {
      checkpoint: { S: '200' },
      checkpointSubSequenceNumber: { N: '0' },
      shardlineWholeRecord: { S: '100' },
    };
    expect(checkpointFromItem(item)).to.deep.equal({ sequenceNumber: '200', subSequenceNumber: 0 });
  });

  it('reads a KCL lease: owner (checkpointOwner during a 3.x handoff), counters, sets sorted, extras', () => {
    const lease = leaseFromItem({
      leaseKey: { S: 'shardId-000000000002' },
      leaseOwner: { S: 'next-worker' },
      checkpointOwner: { S: 'old-worker' },
      leaseCounter: { N: '812' },
      checkpoint: { S: SEQ },
      checkpointSubSequenceNumber: { N: '2' },
      parentShardId: { SS: ['shardId-000000000001', 'shardId-000000000000'] },
      childShardIds: { SS: ['shardId-000000000003'] },
      ownerSwitchesSinceCheckpoint: { N: '3' },
      throughputKBps: { N: '1.5' },
      shardlineHandoffTo: { S: 'h2' },
      shardlineHandoffId: { S: 'req-1' },
      shardlineFirstAcquiredAtMs: { N: '1764000000000' },
      shardlineFailure: {
        S: JSON.stringify({ hostId: 'h1', reason: 'reader', code: 'X', message: 'm', atMs: 5 }),
      },
    })!;
    expect(lease).to.deep.equal({
      shardId: 'shardId-000000000002',
      owner: 'old-worker',
      leaseCounter: 812,
      acquisitions: 0,
      checkpoint: { sequenceNumber: SEQ, subSequenceNumber: 2 },
      parentShardIds: ['shardId-000000000000', 'shardId-000000000001'],
      childShardIds: ['shardId-000000000003'],
      handoffTo: 'h2',
      handoffId: 'req-1',
      failure: { hostId: 'h1', reason: 'reader', code: 'X', message: 'm', atMs: 5 },
      firstAcquiredAtMs: 1764000000000,
    });
    expect(leaseFromItem({ leaseKey: { S: 's' }, shardlineFailure: { S: '{not json' } })!.failure).to.equal(
      undefined,
    );
  });

  it('skips items that are not leases (KCL 3.x entityType), keeps those without one (KCL 2.x)', () => {
    expect(isLeaseItem({ leaseKey: { S: 's' } })).to.equal(true);
    expect(isLeaseItem({ leaseKey: { S: 's' }, entityType: { S: 'LEASE' } })).to.equal(true);
    expect(isLeaseItem({ leaseKey: { S: 's' }, entityType: { S: 'STREAM_INFO' } })).to.equal(false);
    expect(leaseFromItem({ key: { S: 'x' } })).to.equal(undefined);
  });

  it('creates new leases as KCL does: counter 0, no owner, TRIM_HORIZON, no empty sets', () => {
    expect(newLeaseItem('s1', [], [])).to.deep.equal({
      leaseKey: { S: 's1' },
      leaseCounter: { N: '0' },
      checkpoint: { S: 'TRIM_HORIZON' },
      checkpointSubSequenceNumber: { N: '0' },
      ownerSwitchesSinceCheckpoint: { N: '0' },
      entityType: { S: 'LEASE' },
    });
    expect(newLeaseItem('s2', ['a', 'b', 'a'], ['c']).parentShardId).to.deep.equal({ SS: ['a', 'b'] });
    expect(newLeaseItem('s2', ['a'], ['c']).childShardIds).to.deep.equal({ SS: ['c'] });
  });
});
