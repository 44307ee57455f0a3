/** The demo's reshard: the first open shard split in two halfway through its hash range. */
import { type Shard, SplitShardCommand } from '@aws-sdk/client-kinesis';
import type { LocalKinesis } from '@shardline/testing';
import type { SplitInfo } from './result.js';

/** Which shard to split (the open one with the lowest id) and where (the middle of its range). */
export function planSplit(shards: readonly Shard[]): SplitInfo {
  const open = shards
    .filter((s) => s.SequenceNumberRange?.EndingSequenceNumber === undefined)
    .sort((a, b) => (a.ShardId ?? '').localeCompare(b.ShardId ?? ''));
  const shard = open[0];
  if (shard?.ShardId === undefined || shard.HashKeyRange === undefined) {
    throw new Error('the demo stream has no open shard to split');
  }
  const start = BigInt(shard.HashKeyRange.StartingHashKey!);
  const end = BigInt(shard.HashKeyRange.EndingHashKey!);
  return { parent: shard.ShardId, hashKey: ((start + end) / 2n + 1n).toString(), children: [] };
}

/** Splits as planned, waits for the stream to be ACTIVE again, and returns the children (sorted). */
export async function splitShard(
  local: LocalKinesis,
  stream: string,
  split: SplitInfo,
  signal: AbortSignal,
): Promise<string[]> {
  const client = local.client();
  try {
    await client.send(
      new SplitShardCommand({
        StreamName: stream,
        ShardToSplit: split.parent,
        NewStartingHashKey: split.hashKey,
      }),
      { abortSignal: signal },
    );
  } finally {
    client.destroy();
  }
  await local.waitForStreamActive(stream);
  return (await local.listShards(stream))
    .filter((s) => s.ParentShardId === split.parent || s.AdjacentParentShardId === split.parent)
    .map((s) => s.ShardId!)
    .sort();
}
