/**
 * The two Kinesis calls a shard reader makes, as an interface: the real one is a thin adapter over
 * `KinesisClient.send`; unit tests pass a fake.
 */
import type {
  GetRecordsCommandInput,
  GetRecordsCommandOutput,
  GetShardIteratorCommandInput,
  GetShardIteratorCommandOutput,
  KinesisClient,
} from '@aws-sdk/client-kinesis';
import { GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-kinesis';
import { readGetRecordsBody } from './get-records-body.js';

/** Per-call options: the reader aborts an in-flight call when it is stopped. */
export interface CallOptions {
  abortSignal?: AbortSignal;
}

/** What the reader reads from a GetShardIterator answer. */
export type GetShardIteratorResult = Pick<GetShardIteratorCommandOutput, 'ShardIterator'>;

/** What the reader reads from a GetRecords answer. */
export type GetRecordsResult = Pick<
  GetRecordsCommandOutput,
  'Records' | 'NextShardIterator' | 'MillisBehindLatest' | 'ChildShards'
>;

/**
 * GetShardIterator and GetRecords, shaped like the SDK commands' input and output. Errors are thrown as
 * the SDK throws them (classified by `error.name`).
 */
export interface GetRecordsClient {
  getShardIterator(
    input: GetShardIteratorCommandInput,
    options?: CallOptions,
  ): Promise<GetShardIteratorResult>;
  getRecords(input: GetRecordsCommandInput, options?: CallOptions): Promise<GetRecordsResult>;
}

/**
 * The real {@link GetRecordsClient} over a KinesisClient (build it with `createKinesisClient`, with
 * `maxAttempts: 1` so that the reader's own backoff, not the SDK's, handles throttling and counts it).
 * A successful GetRecords answer is read from its raw body (see get-records-body.ts), not by the SDK's
 * deserializer; errors are the SDK's.
 */
export function kinesisGetRecordsClient(client: KinesisClient): GetRecordsClient {
  return {
    getShardIterator: (input, options) =>
      client.send(new GetShardIteratorCommand(input), sendOptions(options)),
    getRecords: async (input, options) => {
      const command = new GetRecordsCommand(input);
      const slot: { result?: GetRecordsResult } = {};
      readGetRecordsBody(command, slot);
      const output = await client.send(command, sendOptions(options));
      return slot.result ?? output;
    },
  };
}

function sendOptions(options: CallOptions | undefined): { abortSignal?: AbortSignal } | undefined {
  return options?.abortSignal === undefined ? undefined : { abortSignal: options.abortSignal };
}
