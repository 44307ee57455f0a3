/**
 * The Kinesis calls the commands share: the client from the global options, the stream check,
 * paginated ListStreams and ListShards.
 */
import type {
  KinesisClient,
  KinesisClientConfig,
  Shard,
  StreamDescriptionSummary,
} from '@aws-sdk/client-kinesis';
import { DescribeStreamSummaryCommand, ListShardsCommand, ListStreamsCommand } from '@aws-sdk/client-kinesis';

/** The global options every command gets. */
export interface GlobalOptions {
  endpoint?: string;
  region?: string;
  json?: boolean;
  verbose?: boolean;
}

/**
 * The client config for the global options. Region: `--region`, else `AWS_REGION`, else `us-east-1`
 * when `--endpoint` is given (local emulators accept any), else whatever the SDK finds (profile).
 */
export function clientConfig(globals: GlobalOptions, env: NodeJS.ProcessEnv): KinesisClientConfig {
  const config: KinesisClientConfig = {};
  const region =
    globals.region ?? env.AWS_REGION ?? (globals.endpoint === undefined ? undefined : 'us-east-1');
  if (region !== undefined && region !== '') config.region = region;
  if (globals.endpoint !== undefined) config.endpoint = globals.endpoint;
  return config;
}

/** Stream summary; rejects with the SDK's ResourceNotFoundException when it does not exist. */
export async function describeStreamSummary(
  client: KinesisClient,
  stream: string,
  signal?: AbortSignal,
): Promise<StreamDescriptionSummary> {
  const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }), {
    abortSignal: signal,
  });
  if (out.StreamDescriptionSummary === undefined) {
    throw new Error(`DescribeStreamSummary returned no summary for '${stream}'`);
  }
  return out.StreamDescriptionSummary;
}

/** Every stream name, following NextToken (or, from older servers such as kinesalite, HasMoreStreams). */
export async function listAllStreams(client: KinesisClient, signal?: AbortSignal): Promise<string[]> {
  const names: string[] = [];
  let nextToken: string | undefined;
  for (;;) {
    const exclusiveStart = nextToken === undefined ? names.at(-1) : undefined;
    const out = await client.send(
      new ListStreamsCommand(
        nextToken !== undefined
          ? { NextToken: nextToken }
          : exclusiveStart === undefined
            ? {}
            : { ExclusiveStartStreamName: exclusiveStart },
      ),
      { abortSignal: signal },
    );
    const page = out.StreamNames ?? [];
    names.push(...page);
    if (out.HasMoreStreams !== true || page.length === 0) break;
    // A server that repeats its token would loop forever: stop when paging makes no progress.
    if (out.NextToken !== undefined && out.NextToken === nextToken) break;
    nextToken = out.NextToken;
  }
  return names;
}

/** Every shard of the stream, open and closed, following NextToken. */
export async function listAllShards(
  client: KinesisClient,
  stream: string,
  signal?: AbortSignal,
): Promise<Shard[]> {
  const shards: Shard[] = [];
  const seen = new Set<string>();
  let nextToken: string | undefined;
  for (;;) {
    // StreamName and NextToken are exclusive in ListShards.
    const out = await client.send(
      new ListShardsCommand(nextToken === undefined ? { StreamName: stream } : { NextToken: nextToken }),
      { abortSignal: signal },
    );
    for (const shard of out.Shards ?? []) {
      if (shard.ShardId === undefined || seen.has(shard.ShardId)) continue;
      seen.add(shard.ShardId);
      shards.push(shard);
    }
    if (out.NextToken === undefined || out.NextToken === nextToken || (out.Shards ?? []).length === 0) break;
    nextToken = out.NextToken;
  }
  return shards;
}

/** The parents of a shard (two after a merge). */
export function parentsOf(shard: Shard): string[] {
  const parents: string[] = [];
  if (shard.ParentShardId) parents.push(shard.ParentShardId);
  if (shard.AdjacentParentShardId) parents.push(shard.AdjacentParentShardId);
  return parents;
}

/** A shard is closed once it has an ending sequence number. */
export function isOpen(shard: Shard): boolean {
  return shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
}
