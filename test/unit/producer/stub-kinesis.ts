/**
 * An in-memory stand-in for the KinesisClient calls the producer makes (DescribeStreamSummary, ListShards,
 * PutRecords), so unit tests can script answers and drive time with fake timers.
 */
import {
  DescribeStreamSummaryCommand,
  type DescribeStreamSummaryCommandInput,
  ListShardsCommand,
  type ListShardsCommandInput,
  PutRecordsCommand,
  type PutRecordsCommandInput,
  type PutRecordsCommandOutput,
  type PutRecordsResultEntry,
  type Shard,
  type StreamDescriptionSummary,
} from '@aws-sdk/client-kinesis';
import { MAX_HASH_KEY, ShardRouter } from '@shardline/common';

/** `n` open shards splitting the hash-key space evenly. */
export function evenShards(n: number, prefix = 'shardId-'): Shard[] {
  const out: Shard[] = [];
  const step = (MAX_HASH_KEY + 1n) / BigInt(n);
  for (let i = 0; i < n; i++) {
    const start = step * BigInt(i);
    const end = i === n - 1 ? MAX_HASH_KEY : step * BigInt(i + 1) - 1n;
    out.push({
      ShardId: `${prefix}${String(i).padStart(12, '0')}`,
      HashKeyRange: { StartingHashKey: start.toString(), EndingHashKey: end.toString() },
      SequenceNumberRange: { StartingSequenceNumber: '0' },
    });
  }
  return out;
}

export function awsError(name: string, message = name, status = 400): Error {
  const error = new Error(message) as Error & { $metadata: { httpStatusCode: number }; $fault: string };
  error.name = name;
  error.$metadata = { httpStatusCode: status };
  error.$fault = status >= 500 ? 'server' : 'client';
  return error;
}

export type PutHandler = (
  input: PutRecordsCommandInput,
  call: number,
  stub: StubKinesis,
) => PutRecordsCommandOutput | Promise<PutRecordsCommandOutput>;

export class StubKinesis {
  readonly config = { serviceId: 'Kinesis' };
  shards: Shard[];
  /** What ListShards answers instead of `shards`, e.g. a listing caught mid-resharding with a gap. */
  listed: Shard[] | undefined;
  puts: PutRecordsCommandInput[] = [];
  listShardsCalls: ListShardsCommandInput[] = [];
  listShardsError: Error | undefined;
  /**
   * Fields of the DescribeStreamSummary answer beyond the required ones (MaxRecordSizeInKiB,
   * RecordDistributionStrategy); none by default, as the local emulators answer.
   */
  summary: Partial<StreamDescriptionSummary> = {};
  describeCalls: DescribeStreamSummaryCommandInput[] = [];
  describeError: Error | undefined;
  destroyed = false;
  /** ListShards page size (NextToken = the next index); undefined answers everything at once. */
  pageSize: number | undefined;
  onPut: PutHandler | undefined;
  #seq = 0;
  /** Successful entries in the order they were written, with their shard. */
  /** `partitionKey` is '' for an entry sent without one (AUTO streams). */
  written: Array<{ partitionKey: string; data: Uint8Array; shardId: string; sequenceNumber: string }> = [];

  constructor(shards: Shard[] = evenShards(1)) {
    this.shards = shards;
  }

  async send(command: unknown): Promise<unknown> {
    if (command instanceof ListShardsCommand) {
      this.listShardsCalls.push(command.input);
      if (this.listShardsError !== undefined) throw this.listShardsError;
      const shards = this.listed ?? this.shards;
      if (this.pageSize === undefined) return { Shards: shards };
      const from = Number(command.input.NextToken ?? 0);
      const to = from + this.pageSize;
      return {
        Shards: shards.slice(from, to),
        NextToken: to < shards.length ? String(to) : undefined,
      };
    }
    if (command instanceof DescribeStreamSummaryCommand) {
      this.describeCalls.push(command.input);
      if (this.describeError !== undefined) throw this.describeError;
      return {
        StreamDescriptionSummary: {
          StreamName: command.input.StreamName ?? 'stream',
          StreamStatus: 'ACTIVE',
          OpenShardCount: this.shards.length,
          ...this.summary,
        },
      };
    }
    if (command instanceof PutRecordsCommand) {
      const call = this.puts.length;
      this.puts.push(command.input);
      if (this.onPut !== undefined) return this.onPut(command.input, call, this);
      return this.succeed(command.input);
    }
    throw new Error(`unexpected command ${String((command as object).constructor.name)}`);
  }

  /** Answers every entry (or those `fail` does not pick) as written, on the shard its key hashes to. */
  succeed(
    input: PutRecordsCommandInput,
    fail: (index: number) => string | undefined = () => undefined,
  ): PutRecordsCommandOutput {
    const router = new ShardRouter(
      this.shards
        .filter((s) => s.SequenceNumberRange?.EndingSequenceNumber === undefined)
        .map((s) => ({
          shardId: s.ShardId!,
          startingHashKey: s.HashKeyRange!.StartingHashKey!,
          endingHashKey: s.HashKeyRange!.EndingHashKey!,
        })),
    );
    let failed = 0;
    const records: PutRecordsResultEntry[] = (input.Records ?? []).map((entry, i) => {
      const code = fail(i);
      if (code !== undefined) {
        failed++;
        return { ErrorCode: code, ErrorMessage: `${code} (stub)` };
      }
      // An AUTO stream's entry may come without a key: Kinesis picks the shard (here: the first).
      const shardId =
        entry.PartitionKey === undefined
          ? router.shardIds[0]!
          : router.shardFor(entry.PartitionKey, entry.ExplicitHashKey);
      const sequenceNumber = String(++this.#seq).padStart(20, '0');
      this.written.push({
        partitionKey: entry.PartitionKey ?? '',
        data: entry.Data!,
        shardId,
        sequenceNumber,
      });
      return { ShardId: shardId, SequenceNumber: sequenceNumber };
    });
    return { Records: records, FailedRecordCount: failed, $metadata: {} };
  }

  destroy(): void {
    this.destroyed = true;
  }
}

/** Marks a shard closed, as ListShards shows a parent after resharding. */
function closed(shard: Shard): Shard {
  return {
    ...shard,
    SequenceNumberRange: { StartingSequenceNumber: '0', EndingSequenceNumber: '99' },
  };
}

/**
 * The listing after SplitShard of `shardId` at the middle of its range: the parent closed, two children
 * named `<prefix>a` / `<prefix>b` (default: the parent's id) with ParentShardId set.
 */
export function splitShard(shards: Shard[], shardId: string, prefix = shardId): Shard[] {
  const out: Shard[] = [];
  for (const shard of shards) {
    if (shard.ShardId !== shardId) {
      out.push(shard);
      continue;
    }
    const start = BigInt(shard.HashKeyRange!.StartingHashKey!);
    const end = BigInt(shard.HashKeyRange!.EndingHashKey!);
    const mid = (start + end) / 2n;
    out.push(closed(shard));
    out.push(
      {
        ShardId: `${prefix}a`,
        ParentShardId: shardId,
        HashKeyRange: { StartingHashKey: start.toString(), EndingHashKey: mid.toString() },
        SequenceNumberRange: { StartingSequenceNumber: '100' },
      },
      {
        ShardId: `${prefix}b`,
        ParentShardId: shardId,
        HashKeyRange: { StartingHashKey: (mid + 1n).toString(), EndingHashKey: end.toString() },
        SequenceNumberRange: { StartingSequenceNumber: '100' },
      },
    );
  }
  return out;
}

/**
 * The listing after MergeShards of `shardId` with the adjacent shard above it: both closed, one child
 * `childId` over both ranges.
 */
export function mergeShards(shards: Shard[], shardId: string, adjacentId: string, childId: string): Shard[] {
  const low = shards.find((s) => s.ShardId === shardId)!;
  const high = shards.find((s) => s.ShardId === adjacentId)!;
  const out = shards.map((s) => (s === low || s === high ? closed(s) : s));
  out.push({
    ShardId: childId,
    ParentShardId: shardId,
    AdjacentParentShardId: adjacentId,
    HashKeyRange: {
      StartingHashKey: low.HashKeyRange!.StartingHashKey!,
      EndingHashKey: high.HashKeyRange!.EndingHashKey!,
    },
    SequenceNumberRange: { StartingSequenceNumber: '100' },
  });
  return out;
}
