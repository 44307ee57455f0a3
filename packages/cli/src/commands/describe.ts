import type { Shard } from '@aws-sdk/client-kinesis';
import { listAllShards } from '@shardline/common';
import type { CommandContext } from '../context.js';
import { describeStreamSummary, isOpen, parentsOf } from '../kinesis.js';
import { table, toJson } from '../output.js';

/** One shard as `describe --json` prints it. */
export interface ShardDescription {
  shardId: string;
  open: boolean;
  parentShardIds: string[];
  hashKeyRange: { start: string; end: string };
  sequenceNumberRange: { start: string; end?: string };
}

function describeShard(shard: Shard): ShardDescription {
  const range: ShardDescription['sequenceNumberRange'] = {
    start: shard.SequenceNumberRange?.StartingSequenceNumber ?? '',
  };
  const end = shard.SequenceNumberRange?.EndingSequenceNumber;
  if (end !== undefined) range.end = end;
  return {
    shardId: shard.ShardId ?? '',
    open: isOpen(shard),
    parentShardIds: parentsOf(shard),
    hashKeyRange: {
      start: shard.HashKeyRange?.StartingHashKey ?? '',
      end: shard.HashKeyRange?.EndingHashKey ?? '',
    },
    sequenceNumberRange: range,
  };
}

/** `shardline describe <stream>`: the stream summary and every shard (parents, hash range, open/closed). */
export async function describeCommand(ctx: CommandContext, stream: string): Promise<number> {
  const client = ctx.client();
  const summary = await describeStreamSummary(client, stream, ctx.signal);
  const shards = (await listAllShards(client, { streamName: stream, signal: ctx.signal })).map(describeShard);
  const description = {
    streamName: summary.StreamName ?? stream,
    streamArn: summary.StreamARN,
    status: summary.StreamStatus,
    mode: summary.StreamModeDetails?.StreamMode,
    retentionPeriodHours: summary.RetentionPeriodHours,
    openShardCount: shards.filter((s) => s.open).length,
    shards,
  };
  if (ctx.globals.json === true) {
    await ctx.out(`${toJson(description, 2)}\n`);
    return 0;
  }
  const facts = [
    description.status,
    description.mode,
    `${description.openShardCount} open of ${shards.length} shards`,
    description.retentionPeriodHours === undefined
      ? undefined
      : `retention ${description.retentionPeriodHours} h`,
  ].filter((f) => f !== undefined);
  let text = `stream  ${description.streamName} (${facts.join(', ')})\n`;
  if (description.streamArn !== undefined) text += `arn     ${description.streamArn}\n`;
  text += '\n';
  text += table(
    ['SHARD', 'STATE', 'PARENTS', 'HASH KEY RANGE'],
    shards.map((s) => [
      s.shardId,
      s.open ? 'open' : 'closed',
      s.parentShardIds.length === 0 ? '-' : s.parentShardIds.join(','),
      `${s.hashKeyRange.start}-${s.hashKeyRange.end}`,
    ]),
  );
  await ctx.out(text);
  return 0;
}
