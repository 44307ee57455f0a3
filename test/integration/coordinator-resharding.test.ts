/**
 * Resharding while producing and consuming: split one shard and merge two. Every record arrives once,
 * and for every key all its parent-shard records come before its child-shard records. On kinesis-mock
 * (ChildShards at shard end) and kinesalite (no ChildShards: children come from ListShards); with
 * in-memory leases, and on kinesalite with DynamoDB leases (dynalite), where a second run on the same
 * lease table then resumes after the final checkpoints: none of the records is delivered again.
 */

import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { MergeShardsCommand, SplitShardCommand } from '@aws-sdk/client-kinesis';
import type { RecordBatch } from '@shardline/coordinator';
import { startCoordinator } from '@shardline/coordinator';
import {
  type LocalDynamoDb,
  type LocalKinesisEngine,
  startLocalDynamoDb,
  startLocalKinesis,
} from '@shardline/testing';
import { expect } from 'chai';
import { expectExactlyOnceInOrder, type Item, keyedItems, putItems, waitFor } from './coordinator-helpers.js';

const VARIANTS: Array<[LocalKinesisEngine, 'memory' | 'dynamodb']> = [
  ['kinesis-mock', 'memory'],
  ['kinesalite', 'memory'],
  ['kinesalite', 'dynamodb'],
];

for (const [engine, store] of VARIANTS) {
  describe(`startCoordinator across a split and a merge (${engine}, ${store} leases)`, function () {
    this.timeout(90_000);

    it('delivers every record once, parents before children for every key', async () => {
      const kinesis = await startLocalKinesis({ engine });
      let db: LocalDynamoDb | undefined;
      try {
        db = store === 'dynamodb' ? await startLocalDynamoDb() : undefined;
        const leases =
          db === undefined
            ? {}
            : { dynamodb: { tableName: 'reshard-leases', createTable: true, ...db.clientConfig } };
        const stream = `reshard-${process.pid}`;
        const { shards } = await kinesis.createStream(stream, { shards: 4 });
        const client = kinesis.client();
        const next = new Map<string, number>();
        const produced: Item[] = [];
        const produce = async (count: number) => {
          const items = keyedItems(count, 40, next);
          await putItems(client, stream, items);
          produced.push(...items);
        };

        const received: Array<Item & { shardId: string }> = [];
        const ended: string[] = [];
        const coordinator = await startCoordinator<Item>({
          streamName: stream,
          group: 'reshard',
          kinesis: kinesis.clientConfig,
          leases,
          idleFetchIntervalMs: 100,
          workerThreads: 2,
          checkpoint: { intervalMs: 100 },
          handler: (batch: RecordBatch<Item>) => {
            for (const r of batch.records) received.push({ ...r.data, shardId: batch.shardId });
          },
        });
        coordinator.on('shard.ended', (e) => ended.push(e.shardId));
        try {
          await produce(400);
          const [s0, , s2, s3] = shards;
          const start = BigInt(s0!.HashKeyRange!.StartingHashKey!);
          const end = BigInt(s0!.HashKeyRange!.EndingHashKey!);
          await client.send(
            new SplitShardCommand({
              StreamName: stream,
              ShardToSplit: s0!.ShardId!,
              NewStartingHashKey: ((start + end) / 2n).toString(),
            }),
          );
          await kinesis.waitForStreamActive(stream);
          await produce(400);
          await client.send(
            new MergeShardsCommand({
              StreamName: stream,
              ShardToMerge: s2!.ShardId!,
              AdjacentShardToMerge: s3!.ShardId!,
            }),
          );
          await kinesis.waitForStreamActive(stream);
          await produce(400);

          await waitFor(
            () => received.length >= produced.length && ended.length >= 3,
            () => `${received.length} of ${produced.length}, ended ${ended.join(',')}`,
            45_000,
          );
          const parents = new Set([s0!.ShardId!, s2!.ShardId!, s3!.ShardId!]);
          expect(new Set(ended)).to.deep.equal(parents);
          const status = coordinator.status();
          expect(status.shards).to.have.length(7);
          const children = status.shards.filter((s) => s.parentShardIds.length > 0);
          expect(children.map((s) => s.parentShardIds.length).sort()).to.deep.equal([1, 1, 2]);
          expect(children.every((s) => s.state === 'reading')).to.equal(true);
          expect(status.shards.filter((s) => parents.has(s.shardId)).map((s) => s.state)).to.deep.equal([
            'ended',
            'ended',
            'ended',
          ]);
          expect(status.resharding).to.equal(false);

          // For every key: once a child-shard record was delivered, no parent-shard record follows.
          const childIds = new Set(children.map((s) => s.shardId));
          const sawChild = new Set<string>();
          for (const r of received) {
            if (childIds.has(r.shardId)) sawChild.add(r.k);
            else if (parents.has(r.shardId) && sawChild.has(r.k)) {
              expect.fail(`key ${r.k}: record ${r.i} of parent ${r.shardId} after a child-shard record`);
            }
          }
          expect(sawChild.size, 'keys that moved to children').to.be.greaterThan(0);
          expectExactlyOnceInOrder(
            received.map(({ k, i }) => ({ k, i })),
            produced,
          );
        } finally {
          await coordinator.stop();
        }
        if (db === undefined) return;
        // The lease table as a KCL worker would read it: the three parents at SHARD_END.
        const raw = db.client();
        const items = (await raw.send(new ScanCommand({ TableName: 'reshard-leases' }))).Items!;
        raw.destroy();
        expect(items).to.have.length(7);
        expect(items.filter((i) => i.checkpoint?.S === 'SHARD_END')).to.have.length(3);
        expect(
          items.every((i) => i.leaseOwner === undefined),
          'released on stop',
        ).to.equal(true);
        // A second run on the same table resumes after the final checkpoints: only new records come.
        const again: Item[] = [];
        const second = await startCoordinator<Item>({
          streamName: stream,
          group: 'reshard',
          kinesis: kinesis.clientConfig,
          leases,
          idleFetchIntervalMs: 100,
          handler: (batch: RecordBatch<Item>) => {
            for (const r of batch.records) again.push(r.data);
          },
        });
        try {
          const before = produced.length;
          await produce(200);
          await waitFor(
            () => again.length >= 200,
            () => `${again.length} of 200 after the restart`,
            30_000,
          );
          await new Promise((resolve) => setTimeout(resolve, 500));
          expectExactlyOnceInOrder(again, produced.slice(before));
        } finally {
          await second.stop();
        }
      } finally {
        await db?.stop();
        await kinesis.stop();
      }
    });
  });
}
