/**
 * Taking over a KCL application's lease table: the table holds items as KCL workers leave them (a
 * plain sequence checkpoint, a checkpoint in the middle of a KPL aggregate written by our Producer with
 * aggregate: true and a pending two-phase checkpoint, a SHARD_END parent after a split with one child
 * part read and one not started), the workers are gone; a Shardline host on the same table delivers
 * exactly the records after each checkpoint (counted, duplicates included) and nothing before. Then
 * the items it leaves are what a KCL worker reads: its checkpoints at the last records delivered.
 */
import {
  type AttributeValue,
  CreateTableCommand,
  type DynamoDBClient,
  PutItemCommand,
  ScanCommand,
} from '@aws-sdk/client-dynamodb';
import { ListShardsCommand, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { type RecordBatch, startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import {
  type LocalDynamoDb,
  type LocalKinesis,
  startLocalDynamoDb,
  startLocalKinesis,
} from '@shardline/testing';
import { expect } from 'chai';
import { waitFor } from './coordinator-helpers.js';

interface Item {
  k: string;
  i: number;
}

interface Written extends Item {
  shardId: string;
  seq: string;
  sub: number | undefined;
}

/** (seq, sub) strictly after (cpSeq, cpSub) in KCL's order; a plain record counts as sub 0. */
function isAfter(r: Written, cpSeq: string, cpSub: number): boolean {
  const seq = BigInt(r.seq);
  const cp = BigInt(cpSeq);
  return seq > cp || (seq === cp && (r.sub ?? 0) > cpSub);
}

describe('taking over a KCL lease table (DynamoDB leases, dynalite + kinesalite)', function () {
  this.timeout(90_000);
  let kinesis: LocalKinesis;
  let db: LocalDynamoDb;
  let raw: DynamoDBClient;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
    db = await startLocalDynamoDb();
    raw = db.client();
  });

  after(async () => {
    raw?.destroy();
    await db?.stop();
    await kinesis?.stop();
  });

  async function put(stream: string, items: Item[], hashKey: (i: number) => string, aggregate: boolean) {
    const producer = new Producer<Item>({
      streamName: stream,
      kinesis: kinesis.clientConfig,
      aggregate,
      lingerMs: 50,
    });
    try {
      const receipts = await Promise.all(
        items.map((item, n) => producer.put(item, { partitionKey: item.k, explicitHashKey: hashKey(n) })),
      );
      return receipts.map(
        (r, n): Written => ({
          ...items[n]!,
          shardId: r.shardId,
          seq: r.sequenceNumber,
          sub: r.subSequenceNumber,
        }),
      );
    } finally {
      await producer.close();
    }
  }

  it('resumes every shard right after its KCL checkpoint: sequence, sub-sequence, SHARD_END', async () => {
    const stream = `kcl-takeover-${process.pid}`;
    const created = await kinesis.createStream(stream, { shards: 3 });
    const [plain, agg, parent] = created.shards.map((s) => ({
      id: s.ShardId!,
      start: BigInt(s.HashKeyRange!.StartingHashKey!),
      end: BigInt(s.HashKeyRange!.EndingHashKey!),
    }));
    const items = (prefix: string, n: number) =>
      Array.from({ length: n }, (_, i) => ({ k: `${prefix}${i % 4}`, i }));

    const plainRecords = await put(stream, items('p', 40), () => String(plain!.start), false);
    const aggRecords = await put(stream, items('a', 90), () => String(agg!.start), true);
    const parentRecords = await put(stream, items('x', 30), () => String(parent!.start), false);
    const client = kinesis.client();
    await client.send(
      new SplitShardCommand({
        StreamName: stream,
        ShardToSplit: parent!.id,
        NewStartingHashKey: String((parent!.start + parent!.end) / 2n),
      }),
    );
    await kinesis.waitForStreamActive(stream);
    const shards = (await client.send(new ListShardsCommand({ StreamName: stream }))).Shards!;
    const children = shards
      .filter((s) => s.ParentShardId === parent!.id)
      .map((s) => s.ShardId!)
      .sort();
    expect(children).to.have.length(2);
    const low = shards.find((s) => s.ShardId === children[0])!;
    const high = shards.find((s) => s.ShardId === children[1])!;
    const lowRecords = await put(stream, items('l', 20), () => low.HashKeyRange!.StartingHashKey!, false);
    const highRecords = await put(stream, items('h', 20), () => high.HashKeyRange!.EndingHashKey!, false);
    for (const [records, shardId] of [
      [plainRecords, plain!.id],
      [aggRecords, agg!.id],
      [parentRecords, parent!.id],
      [lowRecords, low.ShardId!],
      [highRecords, high.ShardId!],
    ] as const) {
      expect(new Set(records.map((r) => r.shardId)), 'routed by hash key').to.deep.equal(new Set([shardId]));
    }

    // Checkpoints as KCL workers left them.
    const byOrder = (a: Written, b: Written) =>
      a.seq === b.seq ? (a.sub ?? 0) - (b.sub ?? 0) : BigInt(a.seq) < BigInt(b.seq) ? -1 : 1;
    plainRecords.sort(byOrder);
    aggRecords.sort(byOrder);
    lowRecords.sort(byOrder);
    const plainCp = plainRecords[14]!;
    const perAggregate = new Map<string, number>();
    for (const r of aggRecords) perAggregate.set(r.seq, (perAggregate.get(r.seq) ?? 0) + 1);
    const [midSeq, size] = [...perAggregate].find(([, n]) => n >= 3)!;
    expect(size, 'an aggregate of 3 or more user records').to.be.at.least(3);
    const aggCp = { seq: midSeq, sub: 1 };
    const lowCp = lowRecords[4]!;

    const tableName = 'kcl-orders-app';
    await raw.send(
      new CreateTableCommand({
        TableName: tableName,
        KeySchema: [{ AttributeName: 'leaseKey', KeyType: 'HASH' }],
        AttributeDefinitions: [{ AttributeName: 'leaseKey', AttributeType: 'S' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    const range = (s: { start: bigint; end: bigint }) => ({
      startingHashKey: { S: String(s.start) },
      endingHashKey: { S: String(s.end) },
    });
    const kclItems: Array<Record<string, AttributeValue>> = [
      {
        leaseKey: { S: plain!.id },
        leaseOwner: { S: 'kcl-worker-a' },
        leaseCounter: { N: '812' },
        checkpoint: { S: plainCp.seq },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '1' },
        ...range(plain!),
      },
      {
        leaseKey: { S: agg!.id },
        leaseOwner: { S: 'kcl-worker-b' },
        leaseCounter: { N: '97' },
        checkpoint: { S: aggCp.seq },
        checkpointSubSequenceNumber: { N: String(aggCp.sub) },
        // A prepared checkpoint further on: KCL resumes from `checkpoint`, so must Shardline.
        pendingCheckpoint: { S: aggRecords.at(-1)!.seq },
        pendingCheckpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        throughputKBps: { N: '3.25' },
        entityType: { S: 'LEASE' },
        ...range(agg!),
      },
      {
        leaseKey: { S: parent!.id },
        leaseOwner: { S: 'kcl-worker-a' },
        leaseCounter: { N: '1033' },
        checkpoint: { S: 'SHARD_END' },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        childShardIds: { SS: children },
        ...range(parent!),
      },
      {
        leaseKey: { S: low.ShardId! },
        leaseOwner: { S: 'kcl-worker-b' },
        leaseCounter: { N: '15' },
        checkpoint: { S: lowCp.seq },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        parentShardId: { SS: [parent!.id] },
      },
      {
        leaseKey: { S: high.ShardId! },
        leaseCounter: { N: '0' },
        checkpoint: { S: 'TRIM_HORIZON' },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
        parentShardId: { SS: [parent!.id] },
      },
    ];
    for (const Item of kclItems) await raw.send(new PutItemCommand({ TableName: tableName, Item }));

    const expected = [
      ...plainRecords.filter((r) => isAfter(r, plainCp.seq, 0)),
      ...aggRecords.filter((r) => isAfter(r, aggCp.seq, aggCp.sub)),
      ...lowRecords.filter((r) => isAfter(r, lowCp.seq, 0)),
      ...highRecords,
    ];
    const received: Written[] = [];
    const leaseDurationMs = 1_500;
    const coordinator = await startCoordinator<Item>({
      streamName: stream,
      group: 'kcl-orders-app',
      hostId: 'shardline-1',
      kinesis: kinesis.clientConfig,
      leases: { dynamodb: { tableName, ...db.clientConfig } },
      leaseDurationMs,
      initialPosition: 'TRIM_HORIZON',
      idleFetchIntervalMs: 100,
      workerThreads: 1,
      checkpoint: { intervalMs: 100 },
      handler: (batch: RecordBatch<Item>) => {
        for (const r of batch.records) {
          received.push({
            ...r.data,
            shardId: batch.shardId,
            seq: r.sequenceNumber,
            sub: r.subSequenceNumber,
          });
        }
      },
    });
    const startedAt = performance.now();
    try {
      await waitFor(
        () => received.length >= expected.length,
        () => `${received.length} of ${expected.length} records`,
        30_000,
      );
      // The dead workers' leases were taken only once their counters stood still for a lease duration.
      expect(performance.now() - startedAt).to.be.at.least(leaseDurationMs);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    } finally {
      await coordinator.stop();
    }
    const id = (r: Item & { shardId: string }) => `${r.shardId}/${r.k}/${r.i}`;
    const counts = new Map<string, number>();
    for (const r of received) counts.set(id(r), (counts.get(id(r)) ?? 0) + 1);
    const duplicates = [...counts].filter(([, n]) => n > 1).map(([k]) => k);
    expect(duplicates, 'delivered twice').to.deep.equal([]);
    expect(
      received.filter((r) => r.shardId === parent!.id),
      'nothing of the SHARD_END parent',
    ).to.deep.equal([]);
    expect(new Set(received.map(id))).to.deep.equal(new Set(expected.map(id)));
    expect(received).to.have.length(expected.length);
    // What was skipped: exactly the records up to each checkpoint.
    expect(
      plainRecords.length + aggRecords.length + lowRecords.length + highRecords.length - expected.length,
    ).to.equal(15 + aggRecords.filter((r) => !isAfter(r, aggCp.seq, aggCp.sub)).length + 5);

    // The items Shardline leaves, as a KCL worker reads them.
    const left = new Map(
      (await raw.send(new ScanCommand({ TableName: tableName, ConsistentRead: true }))).Items!.map((i) => [
        i.leaseKey!.S!,
        i,
      ]),
    );
    const lastOf = (shardId: string) =>
      received
        .filter((r) => r.shardId === shardId)
        .sort(byOrder)
        .at(-1)!;
    for (const shardId of [plain!.id, low.ShardId!, high.ShardId!]) {
      expect(left.get(shardId), shardId).to.deep.include({
        checkpoint: { S: lastOf(shardId).seq },
        checkpointSubSequenceNumber: { N: '0' },
        ownerSwitchesSinceCheckpoint: { N: '0' },
      });
      expect(left.get(shardId)!.leaseOwner, 'released on stop').to.equal(undefined);
    }
    const lastAgg = lastOf(agg!.id);
    expect(left.get(agg!.id)).to.deep.include({
      checkpoint: { S: lastAgg.seq },
      checkpointSubSequenceNumber: { N: String(lastAgg.sub ?? 0) },
      throughputKBps: { N: '3.25' },
    });
    expect(left.get(agg!.id)!.pendingCheckpoint, 'cleared by the checkpoint, as KCL does').to.equal(
      undefined,
    );
    expect(left.get(parent!.id)).to.deep.include({
      checkpoint: { S: 'SHARD_END' },
      leaseCounter: { N: '1033' },
      childShardIds: { SS: children },
    });
    expect(Number(left.get(plain!.id)!.leaseCounter!.N)).to.be.greaterThan(812);
  });
});
