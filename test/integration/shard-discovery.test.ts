import {
  type KinesisClient,
  type ListShardsCommandInput,
  MergeShardsCommand,
  SplitShardCommand,
} from '@aws-sdk/client-kinesis';
import { SHARD_END } from '@shardline/common';
import type { Checkpoint } from '@shardline/coordinator';
import { type LocalKinesis, type LocalKinesisOptions, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
// Internal modules (not exported by the package): discovery and topology are the coordinator's own parts.
import {
  type ListShardsApi,
  listShardsApi,
  ShardDiscovery,
  type ShardInfo,
} from '../../packages/coordinator/src/shard-discovery.js';
import { Topology } from '../../packages/coordinator/src/topology.js';

const MAX_HASH_KEY = (1n << 128n) - 1n;

const engines: Array<{ label: string; options: LocalKinesisOptions; paginates: boolean; arn: boolean }> = [
  { label: 'kinesis-mock', options: { engine: 'kinesis-mock' }, paginates: true, arn: true },
  // kinesalite ignores MaxResults/NextToken and cannot list by StreamARN.
  { label: 'kinesalite', options: { engine: 'kinesalite' }, paginates: false, arn: false },
];

/** Counts the ListShards calls and keeps their inputs. */
function counting(api: ListShardsApi) {
  const calls: ListShardsCommandInput[] = [];
  return {
    calls,
    api: {
      listShards: (input: ListShardsCommandInput, signal?: AbortSignal) => {
        calls.push({ ...input });
        return api.listShards(input, signal);
      },
    } satisfies ListShardsApi,
  };
}

/** The open shards' hash ranges tile 0..2^128-1 without gap or overlap. */
function expectOpenShardsCoverHashSpace(shards: ShardInfo[]): void {
  const open = shards
    .filter((s) => !s.closed)
    .map((s) => [BigInt(s.hashKeyRange.startingHashKey), BigInt(s.hashKeyRange.endingHashKey)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : 1));
  expect(open[0]![0]).to.equal(0n);
  for (let i = 1; i < open.length; i++) expect(open[i]![0]).to.equal(open[i - 1]![1] + 1n);
  expect(open[open.length - 1]![1]).to.equal(MAX_HASH_KEY);
}

for (const { label, options, paginates, arn } of engines) {
  describe(`shard discovery: ${label}`, () => {
    let kinesis: LocalKinesis;
    let client: KinesisClient;

    before(async () => {
      kinesis = await startLocalKinesis(options);
      client = kinesis.client();
    });

    after(async () => {
      await kinesis?.stop();
    });

    it('lists every shard of a new stream by name, following pages', async () => {
      await kinesis.createStream('fresh', { shards: 5 });
      const { api, calls } = counting(listShardsApi(client));
      const shards = await new ShardDiscovery({ api, streamName: 'fresh', pageSize: 2 }).list();
      expect(shards).to.have.length(5);
      expect(new Set(shards.map((s) => s.shardId)).size).to.equal(5);
      for (const shard of shards) {
        expect(shard.closed).to.equal(false);
        expect(shard.parentShardIds).to.deep.equal([]);
        expect(shard.sequenceNumberRange.endingSequenceNumber).to.equal(undefined);
        expect(shard.sequenceNumberRange.startingSequenceNumber).to.match(/^\d+$/);
      }
      expectOpenShardsCoverHashSpace(shards);
      if (paginates) {
        expect(calls).to.have.length(3);
        expect(calls[0]).to.deep.equal({ StreamName: 'fresh', MaxResults: 2 });
        expect(calls[1]).to.have.keys('NextToken', 'MaxResults');
      } else {
        expect(calls).to.have.length(1);
      }
    });

    if (arn) {
      it('lists by stream ARN, following pages', async () => {
        const created = await kinesis.createStream('by-arn', { shards: 3 });
        expect(created.streamArn).to.be.a('string');
        const { api, calls } = counting(listShardsApi(client));
        const shards = await new ShardDiscovery({ api, streamArn: created.streamArn!, pageSize: 1 }).list();
        expect(shards.map((s) => s.shardId).sort()).to.deep.equal(
          created.shards.map((s) => s.ShardId).sort(),
        );
        expect(calls[0]).to.deep.equal({ StreamARN: created.streamArn, MaxResults: 1 });
        expect(calls.length).to.be.greaterThanOrEqual(3);
      });
    }

    it('lists by stream ARN together with the name taken from it (what the coordinator sends)', async () => {
      const created = await kinesis.createStream('arn-and-name', { shards: 3 });
      // kinesalite returns no ARN: build the one the user would pass.
      const streamArn = created.streamArn ?? 'arn:aws:kinesis:us-east-1:000000000000:stream/arn-and-name';
      const shards = await new ShardDiscovery({
        api: listShardsApi(client),
        streamArn,
        streamName: 'arn-and-name',
        pageSize: 2,
      }).list();
      expect(shards.map((s) => s.shardId).sort()).to.deep.equal(created.shards.map((s) => s.ShardId).sort());
    });

    it('fails with ERR_NOT_FOUND for a stream that does not exist', async () => {
      const discovery = new ShardDiscovery({ api: listShardsApi(client), streamName: 'no-such-stream' });
      try {
        await discovery.list();
        expect.fail('expected a rejection');
      } catch (error) {
        expect((error as { code?: string }).code).to.equal('ERR_NOT_FOUND');
      }
    });

    it('after a SplitShard and a MergeShards: closed parents, both merge parents, the child graph', async () => {
      const { shards: initial } = await kinesis.createStream('reshard', { shards: 3 });
      const sorted = [...initial].sort((a, b) =>
        BigInt(a.HashKeyRange!.StartingHashKey!) < BigInt(b.HashKeyRange!.StartingHashKey!) ? -1 : 1,
      );
      const [first, second, third] = sorted as [(typeof sorted)[0], (typeof sorted)[0], (typeof sorted)[0]];
      const discovery = new ShardDiscovery({
        api: listShardsApi(client),
        streamName: 'reshard',
        pageSize: 2,
      });

      const start = BigInt(first.HashKeyRange!.StartingHashKey!);
      const end = BigInt(first.HashKeyRange!.EndingHashKey!);
      await client.send(
        new SplitShardCommand({
          StreamName: 'reshard',
          ShardToSplit: first.ShardId,
          NewStartingHashKey: ((start + end) / 2n).toString(),
        }),
      );
      await kinesis.waitForStreamActive('reshard');
      const afterSplit = await discovery.list();
      expect(afterSplit).to.have.length(5);
      const splitParent = afterSplit.find((s) => s.shardId === first.ShardId)!;
      expect(splitParent.closed).to.equal(true);
      expect(splitParent.sequenceNumberRange.endingSequenceNumber).to.match(/^\d+$/);
      const splitChildren = afterSplit.filter((s) => s.parentShardIds.includes(first.ShardId!));
      expect(splitChildren).to.have.length(2);
      for (const child of splitChildren) expect(child.parentShardIds).to.deep.equal([first.ShardId]);
      expectOpenShardsCoverHashSpace(afterSplit);

      await client.send(
        new MergeShardsCommand({
          StreamName: 'reshard',
          ShardToMerge: second.ShardId,
          AdjacentShardToMerge: third.ShardId,
        }),
      );
      await kinesis.waitForStreamActive('reshard');
      const afterMerge = await discovery.list();
      expect(afterMerge).to.have.length(6);
      for (const id of [second.ShardId, third.ShardId]) {
        expect(afterMerge.find((s) => s.shardId === id)?.closed, id).to.equal(true);
      }
      const merged = afterMerge.find((s) => s.parentShardIds.length === 2)!;
      expect(merged, 'a shard with two parents').to.not.equal(undefined);
      expect([...merged.parentShardIds].sort()).to.deep.equal([second.ShardId, third.ShardId].sort());
      expect(merged.closed).to.equal(false);
      expectOpenShardsCoverHashSpace(afterMerge);

      // The topology built from the real listing: children wait for every parent.
      const topology = new Topology(afterMerge);
      const checkpoints = new Map<string, Checkpoint | undefined>();
      expect(topology.resharding(checkpoints)).to.equal(true);
      expect(topology.childrenOf(first.ShardId!).sort()).to.deep.equal(
        splitChildren.map((s) => s.shardId).sort(),
      );
      expect(topology.childrenOf(second.ShardId!)).to.deep.equal([merged.shardId]);
      expect(topology.childrenOf(third.ShardId!)).to.deep.equal([merged.shardId]);
      for (const child of splitChildren)
        expect(topology.eligible(child.shardId, checkpoints)).to.equal(false);
      expect(topology.eligible(merged.shardId, checkpoints)).to.equal(false);
      checkpoints.set(first.ShardId!, SHARD_END);
      for (const child of splitChildren) expect(topology.eligible(child.shardId, checkpoints)).to.equal(true);
      checkpoints.set(second.ShardId!, SHARD_END);
      expect(topology.eligible(merged.shardId, checkpoints)).to.equal(false);
      checkpoints.set(third.ShardId!, SHARD_END);
      expect(topology.eligible(merged.shardId, checkpoints)).to.equal(true);
      expect(topology.resharding(checkpoints)).to.equal(false);
      // Parents are listed before their children.
      const order = topology.shardIds();
      for (const shard of afterMerge) {
        for (const parent of shard.parentShardIds) {
          expect(order.indexOf(parent)).to.be.lessThan(order.indexOf(shard.shardId));
        }
      }
    });
  });
}
