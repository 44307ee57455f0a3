import type { CoordinatorStatus, ShardStatus } from '@shardline/coordinator';
import { expect } from 'chai';
import { isHostMessage, isParentMessage } from '../../../packages/cli/src/demo/host-protocol.js';
import { mergeShardViews } from '../../../packages/cli/src/demo/hosts.js';

function shard(
  shardId: string,
  state: ShardStatus['state'],
  recordsDelivered: number,
  extra: Partial<ShardStatus> = {},
): ShardStatus {
  return {
    streamName: 's',
    shardId,
    state,
    parentShardIds: [],
    childShardIds: [],
    recordsDelivered,
    recordsExpired: 0,
    throttled: 0,
    ...extra,
  };
}

function host(hostId: string, shards: ShardStatus[]): CoordinatorStatus {
  return {
    hostId,
    group: 'g',
    stream: 's',
    state: 'running',
    streams: [{ streamName: 's', shards: shards.length, reading: 0, resharding: false }],
    shards,
    hosts: [],
    resharding: false,
    bufferedRecords: 0,
    bufferedBytes: 0,
  };
}

describe('cli demo hosts', () => {
  it('mergeShardViews: the host reading a shard tells its state, owner and lag; records add up over hosts', () => {
    const views = mergeShardViews([
      host('host-1', [
        shard('shardId-000000000001', 'leased-elsewhere', 5),
        shard('shardId-000000000000', 'reading', 7, { millisBehindLatest: 250, checkpoint: '42' }),
      ]),
      host('host-2', [
        shard('shardId-000000000001', 'reading', 3, { millisBehindLatest: 0 }),
        shard('shardId-000000000000', 'leased-elsewhere', 1),
      ]),
    ]);
    expect(views).to.deep.equal([
      {
        shardId: 'shardId-000000000000',
        state: 'reading',
        owner: 'host-1',
        millisBehindLatest: 250,
        recordsDelivered: 8,
        parentShardIds: [],
        checkpoint: '42',
      },
      {
        shardId: 'shardId-000000000001',
        state: 'reading',
        owner: 'host-2',
        millisBehindLatest: 0,
        recordsDelivered: 8,
        parentShardIds: [],
      },
    ]);
  });

  it('mergeShardViews: ended beats waiting and leased-elsewhere; nobody reading means no owner', () => {
    const views = mergeShardViews([
      host('host-1', [shard('shardId-000000000000', 'leased-elsewhere', 0)]),
      host('host-2', [shard('shardId-000000000000', 'ended', 9, { checkpoint: 'SHARD_END' })]),
      host('host-3', [shard('shardId-000000000000', 'waiting-for-parent', 0)]),
    ]);
    expect(views).to.have.length(1);
    expect(views[0]!.state).to.equal('ended');
    expect(views[0]!.owner).to.equal(undefined);
    expect(views[0]!.checkpoint).to.equal('SHARD_END');
    expect(views[0]!.recordsDelivered).to.equal(9);
  });

  it('the IPC guards accept only version 1 messages of known types', () => {
    expect(isHostMessage({ v: 1, type: 'ready', hostId: 'h', pid: 1 })).to.equal(true);
    expect(isHostMessage({ v: 2, type: 'ready', hostId: 'h', pid: 1 })).to.equal(false);
    expect(isHostMessage({ v: 1, type: 'nonsense', hostId: 'h' })).to.equal(false);
    expect(isHostMessage({ v: 1, type: 'batch' })).to.equal(false);
    expect(isHostMessage(null)).to.equal(false);
    expect(isParentMessage({ v: 1, type: 'stop' })).to.equal(true);
    expect(isParentMessage({ v: 1, type: 'metrics', id: 3 })).to.equal(true);
    expect(isParentMessage({ v: 1, type: 'metrics' })).to.equal(false);
    expect(isParentMessage({ type: 'stop' })).to.equal(false);
  });
});
