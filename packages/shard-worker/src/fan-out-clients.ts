/**
 * What a {@link FanOutReader} calls Kinesis through: SubscribeToShard, and a ListShards probe for
 * services that never end a subscription with ChildShards. One-method interfaces, so tests drive the
 * reader with fakes; the real ones are thin wrappers over a KinesisClient.
 */
import type {
  KinesisClient,
  SubscribeToShardCommandInput,
  SubscribeToShardEventStream,
} from '@aws-sdk/client-kinesis';
import { SubscribeToShardCommand } from '@aws-sdk/client-kinesis';
import { listAllShards } from '@shardline/common';
import type { CallOptions } from './client.js';

/** What the reader reads from a SubscribeToShard answer: the event stream. */
export interface SubscribeToShardResult {
  EventStream?: AsyncIterable<SubscribeToShardEventStream> | undefined;
}

/**
 * SubscribeToShard, shaped like the SDK command. Errors (of the call, or thrown by the event stream
 * when the service sends an exception event) are thrown as the SDK throws them, classified by `name`.
 * The reader aborts `abortSignal` to end a subscription (renewal, stop).
 */
export interface SubscribeClient {
  subscribeToShard(
    input: SubscribeToShardCommandInput,
    options?: CallOptions,
  ): Promise<SubscribeToShardResult>;
}

/**
 * The real {@link SubscribeClient} over a KinesisClient built by `createKinesisClient` with
 * `maxAttempts: 1` (the reader's backoff handles throttling) and, on AWS, the `'http2'` transport.
 */
export function kinesisSubscribeClient(client: KinesisClient): SubscribeClient {
  return {
    subscribeToShard: (input, options) =>
      client.send(
        new SubscribeToShardCommand(input),
        options?.abortSignal === undefined ? undefined : { abortSignal: options.abortSignal },
      ),
  };
}

/** Whether a shard is closed, and its children: for services that send no ChildShards (kinesis-mock). */
export interface ShardEndProbe {
  shardEnd(shardId: string, options?: CallOptions): Promise<{ closed: boolean; childShardIds: string[] }>;
}

/** A {@link ShardEndProbe} over ListShards (every page; the stream by ARN when given, else by name). */
export function kinesisShardEndProbe(
  client: KinesisClient,
  stream: { streamName?: string | undefined; streamArn?: string | undefined },
): ShardEndProbe {
  return {
    async shardEnd(shardId, options) {
      const shards = await listAllShards(client, {
        ...(stream.streamArn !== undefined
          ? { streamArn: stream.streamArn }
          : { streamName: stream.streamName }),
        signal: options?.abortSignal,
      });
      const own = shards.find((shard) => shard.ShardId === shardId);
      const childShardIds: string[] = [];
      for (const shard of shards) {
        if (
          shard.ShardId !== undefined &&
          (shard.ParentShardId === shardId || shard.AdjacentParentShardId === shardId)
        ) {
          childShardIds.push(shard.ShardId);
        }
      }
      return { closed: own?.SequenceNumberRange?.EndingSequenceNumber !== undefined, childShardIds };
    },
  };
}
