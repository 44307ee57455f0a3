/**
 * Reading back what a producer wrote, straight from the emulator, and checking it against the receipts:
 * shared by the producer integration tests.
 */
import {
  GetRecordsCommand,
  type GetRecordsCommandOutput,
  GetShardIteratorCommand,
  type KinesisClient,
  type Shard,
} from '@aws-sdk/client-kinesis';
import type { PutReceipt } from '@shardline/producer';
import type { LocalKinesis } from '@shardline/testing';
import { expect } from 'chai';

export interface ReadRecord {
  shardId: string;
  sequenceNumber: string;
  partitionKey: string;
  data: Buffer;
}

/** Every record of every shard (open and closed), read straight from the emulator, in shard order. */
export async function readStream(
  kinesis: LocalKinesis,
  client: KinesisClient,
  stream: string,
): Promise<ReadRecord[]> {
  const shards: Shard[] = await kinesis.listShards(stream);
  const out: ReadRecord[] = [];
  for (const shard of shards) {
    const { ShardIterator } = await client.send(
      new GetShardIteratorCommand({
        StreamName: stream,
        ShardId: shard.ShardId!,
        ShardIteratorType: 'TRIM_HORIZON',
      }),
    );
    let iterator: string | undefined = ShardIterator;
    for (let empty = 0; iterator !== undefined && iterator !== null && empty < 2; ) {
      const page: GetRecordsCommandOutput = await client.send(
        new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }),
      );
      const records = page.Records ?? [];
      if (records.length === 0) empty++;
      for (const r of records) {
        out.push({
          shardId: shard.ShardId!,
          sequenceNumber: r.SequenceNumber!,
          partitionKey: r.PartitionKey!,
          data: Buffer.from(r.Data!),
        });
      }
      iterator = page.NextShardIterator;
    }
  }
  return out;
}

export interface Item {
  k: string;
  i: number;
}

/** Checks that every item 0..n-1 was read exactly once, per-key order, and receipts match the reads. */
export function checkReadBack(read: ReadRecord[], receipts: PutReceipt[], n: number): void {
  const seen = new Map<number, ReadRecord>();
  const lastByKey = new Map<string, number>();
  for (const r of read) {
    const item = JSON.parse(r.data.toString('utf8')) as Item;
    expect(seen.has(item.i), `item ${item.i} read twice`).to.equal(false);
    seen.set(item.i, r);
    expect(r.partitionKey).to.equal(item.k);
    const last = lastByKey.get(item.k) ?? -1;
    expect(item.i, `order of key ${item.k}`).to.be.greaterThan(last);
    lastByKey.set(item.k, item.i);
  }
  expect(seen.size).to.equal(n);
  for (let i = 0; i < n; i++) {
    const r = seen.get(i)!;
    expect(receipts[i], `receipt of item ${i}`).to.deep.equal({
      shardId: r.shardId,
      sequenceNumber: r.sequenceNumber,
    });
  }
}
