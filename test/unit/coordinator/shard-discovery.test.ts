import type { ListShardsCommandInput, ListShardsCommandOutput, Shard } from '@aws-sdk/client-kinesis';
import { ErrorCodes } from '@shardline/common';
import { expect } from 'chai';
import {
  type ListShardsApi,
  listShardsApi,
  ShardDiscovery,
  toShardInfo,
} from '../../../packages/coordinator/src/shard-discovery.js';
import { rejection } from '../../support/assertions.js';

function sdkShard(id: string, fields: Partial<Shard> = {}): Shard {
  return {
    ShardId: id,
    HashKeyRange: { StartingHashKey: '0', EndingHashKey: '100' },
    SequenceNumberRange: { StartingSequenceNumber: '1' },
    ...fields,
  };
}

function awsError(name: string, status = 400): Error {
  return Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: status } });
}

/** A scripted ListShards: each call takes the next answer (an output or an error to throw). */
function scripted(answers: Array<Partial<ListShardsCommandOutput> | Error>) {
  const calls: ListShardsCommandInput[] = [];
  const api: ListShardsApi = {
    async listShards(input) {
      calls.push({ ...input });
      const next = answers.shift();
      if (next === undefined) throw new Error('no more scripted answers');
      if (next instanceof Error) throw next;
      return { $metadata: {}, ...next } as ListShardsCommandOutput;
    },
  };
  return { api, calls };
}

const noWait = async () => {};

describe('shard discovery', () => {
  it('converts shards: both parents, ranges, closed when EndingSequenceNumber is present', () => {
    expect(
      toShardInfo(
        sdkShard('c', {
          ParentShardId: 'p1',
          AdjacentParentShardId: 'p2',
          SequenceNumberRange: { StartingSequenceNumber: '5', EndingSequenceNumber: '9' },
        }),
      ),
    ).to.deep.equal({
      shardId: 'c',
      parentShardIds: ['p1', 'p2'],
      hashKeyRange: { startingHashKey: '0', endingHashKey: '100' },
      sequenceNumberRange: { startingSequenceNumber: '5', endingSequenceNumber: '9' },
      closed: true,
    });
    expect(toShardInfo(sdkShard('o', { ParentShardId: 'p' }))).to.deep.include({
      parentShardIds: ['p'],
      closed: false,
    });
    expect(() => toShardInfo({ ShardId: 'x' } as Shard)).to.throw(/shard x has no HashKeyRange/);
    expect(() => toShardInfo({} as Shard)).to.throw(/without ShardId/);
  });

  it('follows NextToken pages, naming only the token after the first page (kinesis-mock rule)', async () => {
    const { api, calls } = scripted([
      { Shards: [sdkShard('a'), sdkShard('b')], NextToken: 't1' },
      { Shards: [sdkShard('c')], NextToken: 't2' },
      { Shards: [] },
    ]);
    const discovery = new ShardDiscovery({ api, streamName: 'orders', pageSize: 2, sleep: noWait });
    const shards = await discovery.list();
    expect(shards.map((s) => s.shardId)).to.deep.equal(['a', 'b', 'c']);
    expect(calls).to.deep.equal([
      { StreamName: 'orders', MaxResults: 2 },
      { NextToken: 't1', MaxResults: 2 },
      { NextToken: 't2', MaxResults: 2 },
    ]);
  });

  it('lists by ARN', async () => {
    const { api, calls } = scripted([
      { Shards: [sdkShard('a')], NextToken: 'n' },
      { Shards: [sdkShard('b')] },
    ]);
    const arn = 'arn:aws:kinesis:us-east-1:000000000000:stream/orders';
    await new ShardDiscovery({ api, streamArn: arn, sleep: noWait }).list();
    expect(calls[0]).to.deep.equal({ StreamARN: arn, MaxResults: 1000 });
    expect(calls[1]).to.deep.equal({ NextToken: 'n', MaxResults: 1000 });
  });

  it('names the stream by both ARN and name when given both', async () => {
    const { api, calls } = scripted([{ Shards: [sdkShard('a')], NextToken: 'n' }, { Shards: [] }]);
    const arn = 'arn:aws:kinesis:us-east-1:000000000000:stream/orders';
    await new ShardDiscovery({ api, streamArn: arn, streamName: 'orders', sleep: noWait }).list();
    expect(calls).to.deep.equal([
      { StreamName: 'orders', StreamARN: arn, MaxResults: 1000 },
      { NextToken: 'n', MaxResults: 1000 },
    ]);
  });

  it('works with a server that ignores pagination and repeats shards (kinesalite)', async () => {
    const { api } = scripted([{ Shards: [sdkShard('a'), sdkShard('b'), sdkShard('a')] }]);
    const shards = await new ShardDiscovery({ api, streamName: 's', pageSize: 1, sleep: noWait }).list();
    expect(shards.map((s) => s.shardId)).to.deep.equal(['a', 'b']);
  });

  it('retries throttling, transient errors and a stream still being created', async () => {
    const { api, calls } = scripted([
      awsError('LimitExceededException'),
      awsError('InternalFailure', 500),
      awsError('ResourceInUseException'),
      Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
      { Shards: [sdkShard('a')] },
    ]);
    const waits: number[] = [];
    const discovery = new ShardDiscovery({
      api,
      streamName: 's',
      sleep: async (ms) => {
        waits.push(ms);
      },
      random: () => 1,
    });
    expect((await discovery.list()).map((s) => s.shardId)).to.deep.equal(['a']);
    expect(calls).to.have.length(5);
    expect(waits).to.deep.equal([100, 200, 400, 800]);
  });

  it('retries a failing page, not the whole listing', async () => {
    const { api, calls } = scripted([
      { Shards: [sdkShard('a')], NextToken: 't1' },
      awsError('LimitExceededException'),
      { Shards: [sdkShard('b')] },
    ]);
    await new ShardDiscovery({ api, streamName: 's', sleep: noWait }).list();
    expect(calls.map((c) => c.NextToken ?? c.StreamName)).to.deep.equal(['s', 't1', 't1']);
  });

  it('gives up after the retries, with the classified error', async () => {
    const { api, calls } = scripted(Array.from({ length: 3 }, () => awsError('LimitExceededException')));
    const error = await rejection(
      new ShardDiscovery({
        api,
        streamName: 's',
        retry: { retries: 2, backoffMs: { initial: 1, max: 1 } },
        sleep: noWait,
      }).list(),
    );
    expect(error.code).to.equal(ErrorCodes.LIMIT_EXCEEDED);
    expect(error.message).to.match(/^ListShards: LimitExceededException/);
    expect(calls).to.have.length(3);
  });

  it('does not retry a missing stream or denied access', async () => {
    const missing = scripted([awsError('ResourceNotFoundException')]);
    const error = await rejection(
      new ShardDiscovery({ api: missing.api, streamName: 's', sleep: noWait }).list(),
    );
    expect(error.code).to.equal(ErrorCodes.NOT_FOUND);
    expect(missing.calls).to.have.length(1);
    const denied = scripted([awsError('AccessDeniedException')]);
    expect(
      (await rejection(new ShardDiscovery({ api: denied.api, streamName: 's', sleep: noWait }).list())).code,
    ).to.equal(ErrorCodes.ACCESS_DENIED);
  });

  it('starts over when a NextToken expired', async () => {
    const { api, calls } = scripted([
      { Shards: [sdkShard('a')], NextToken: 't1' },
      awsError('ExpiredNextTokenException'),
      { Shards: [sdkShard('a')], NextToken: 't9' },
      { Shards: [sdkShard('b')] },
    ]);
    const shards = await new ShardDiscovery({ api, streamName: 's', sleep: noWait }).list();
    expect(shards.map((s) => s.shardId)).to.deep.equal(['a', 'b']);
    expect(calls.map((c) => c.NextToken ?? c.StreamName)).to.deep.equal(['s', 't1', 's', 't9']);
  });

  it('refuses a server that sends the same NextToken twice (no endless loop)', async () => {
    const { api } = scripted([
      { Shards: [sdkShard('a')], NextToken: 'same' },
      { Shards: [sdkShard('b')], NextToken: 'same' },
    ]);
    const error = await rejection(new ShardDiscovery({ api, streamName: 's', sleep: noWait }).list());
    expect(error.code).to.equal(ErrorCodes.KINESIS);
    expect(error.message).to.match(/same NextToken/);
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    const { api } = scripted([awsError('LimitExceededException'), { Shards: [] }]);
    const discovery = new ShardDiscovery({
      api,
      streamName: 's',
      sleep: async () => {
        controller.abort();
      },
    });
    expect((await rejection(discovery.list(controller.signal))).code).to.equal(ErrorCodes.ABORTED);
  });

  it('passes the abort signal to the client (joined with its own deadline)', async () => {
    let seen: AbortSignal | undefined;
    const client = {
      send: async (_command: unknown, options: { abortSignal?: AbortSignal }) => {
        seen = options.abortSignal;
        return { Shards: [] };
      },
    };
    const controller = new AbortController();
    await new ShardDiscovery({ api: listShardsApi(client as never), streamName: 's' }).list(
      controller.signal,
    );
    expect(seen?.aborted).to.equal(false);
    controller.abort();
    expect(seen?.aborted).to.equal(true);
  });

  it('validates its options', () => {
    const { api } = scripted([]);
    expect(() => new ShardDiscovery({ api, sleep: noWait })).to.throw(/streamName or streamArn is required/);
    expect(() => new ShardDiscovery({ api, streamArn: '' })).to.throw(/streamArn must be a non-empty string/);
    expect(() => new ShardDiscovery({ api: {} as never, streamName: 'a' })).to.throw(/listShards/);
    expect(() => new ShardDiscovery({ api, streamName: 'a', pageSize: 0 })).to.throw(/pageSize/);
    expect(
      () =>
        new ShardDiscovery({
          api,
          streamName: 'a',
          retry: { retries: -1, backoffMs: { initial: 1, max: 1 } },
        }),
    ).to.throw(/retry.retries/);
  });
});
