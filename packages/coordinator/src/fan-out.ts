/**
 * Enhanced fan-out: the stream consumer the readers subscribe as. Registered when absent and reused
 * when present (by every host of the group); never deregistered here, since other hosts may still read
 * with it (deregistering is `shardline fanout deregister`).
 */
import type { Consumer, KinesisClient } from '@aws-sdk/client-kinesis';
import {
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  ListStreamConsumersCommand,
  RegisterStreamConsumerCommand,
} from '@aws-sdk/client-kinesis';
import type { Logger } from '@shardline/common';
import { backoffDelay, classifyAwsError, ErrorCodes, ShardlineError, sleep } from '@shardline/common';

/** What {@link ensureStreamConsumer} needs. */
export interface EnsureStreamConsumerOptions {
  /** The stream by name or ARN (an ARN saves a DescribeStreamSummary call). */
  streamName?: string | undefined;
  streamArn?: string | undefined;
  consumerName: string;
  /** Longest wait for the consumer to become ACTIVE. */
  timeoutMs: number;
  logger: Logger;
  signal?: AbortSignal | undefined;
  /** Pause between two DescribeStreamConsumer calls while waiting. @defaultValue 500 */
  pollIntervalMs?: number;
}

/** A consumer ready to subscribe with. */
export interface StreamConsumer {
  consumerArn: string;
  consumerName: string;
  streamArn: string;
  /** Whether this call registered it (false: it existed). */
  registered: boolean;
}

/** The ARN of the stream, from DescribeStreamSummary when only its name is known. */
export async function streamArnOf(
  client: KinesisClient,
  stream: { streamName?: string | undefined; streamArn?: string | undefined },
  signal?: AbortSignal,
): Promise<string> {
  if (stream.streamArn !== undefined) return stream.streamArn;
  try {
    const out = await client.send(
      new DescribeStreamSummaryCommand({ StreamName: stream.streamName }),
      signal === undefined ? undefined : { abortSignal: signal },
    );
    const arn = out.StreamDescriptionSummary?.StreamARN;
    if (typeof arn !== 'string') {
      throw new ShardlineError(ErrorCodes.KINESIS, 'DescribeStreamSummary answered without a StreamARN');
    }
    return arn;
  } catch (error) {
    throw classifyAwsError(error, 'DescribeStreamSummary');
  }
}

/**
 * Registers the consumer if absent (an existing one is reused) and waits until it is ACTIVE.
 * @throws ShardlineError: `ERR_NOT_FOUND` for a missing stream, `ERR_LIMIT_EXCEEDED` when the stream
 * * already has its 20 consumers, a retriable `ERR_KINESIS` when it does not become ACTIVE in time.
 */
export async function ensureStreamConsumer(
  client: KinesisClient,
  options: EnsureStreamConsumerOptions,
): Promise<StreamConsumer> {
  const { consumerName, logger, signal } = options;
  const send = signal === undefined ? undefined : { abortSignal: signal };
  const streamArn = await streamArnOf(client, options, signal);
  const deadline = performance.now() + options.timeoutMs;
  const pollMs = options.pollIntervalMs ?? 500;
  let registered = false;
  let attempt = 0;
  for (;;) {
    let consumer: Consumer | undefined;
    try {
      const out = await client.send(
        new DescribeStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: consumerName }),
        send,
      );
      consumer = out.ConsumerDescription;
    } catch (error) {
      const classified = classifyAwsError(error, 'DescribeStreamConsumer');
      if (classified.code !== ErrorCodes.NOT_FOUND) {
        if (!classified.retriable) throw classified;
        logger.warn({ code: classified.code }, `fan-out: ${classified.message}: retrying`);
      }
    }
    if (consumer === undefined) {
      try {
        await client.send(
          new RegisterStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: consumerName }),
          send,
        );
        registered = true;
        logger.info({ consumerName, streamArn }, 'fan-out: registered the stream consumer');
      } catch (error) {
        const name = (error as { name?: unknown } | null)?.name;
        // Another host registered it between our Describe and Register: reuse it.
        if (name !== 'ResourceInUseException') {
          const classified = classifyAwsError(error, 'RegisterStreamConsumer');
          // LimitExceededException is both "20 consumers already" and "too many calls": the stream's
          // consumer count tells which.
          if (
            classified.code === ErrorCodes.LIMIT_EXCEEDED &&
            (await consumerCount(client, streamArn)) >= 20
          ) {
            throw new ShardlineError(
              ErrorCodes.LIMIT_EXCEEDED,
              `fan-out: cannot register consumer '${consumerName}': the stream has 20 registered consumers, the most Kinesis allows (deregister one with \`shardline fanout deregister\`)`,
              { cause: error },
            );
          }
          if (!classified.retriable) throw classified;
          logger.warn({ code: classified.code }, `fan-out: ${classified.message}: retrying`);
        }
      }
    } else if (consumer.ConsumerStatus === 'ACTIVE' && typeof consumer.ConsumerARN === 'string') {
      if (!registered) logger.info({ consumerName, streamArn }, 'fan-out: reusing the stream consumer');
      return { consumerArn: consumer.ConsumerARN, consumerName, streamArn, registered };
    }
    if (performance.now() >= deadline) {
      throw new ShardlineError(
        ErrorCodes.KINESIS,
        `fan-out: consumer '${consumerName}' is not ACTIVE after ${options.timeoutMs} ms (status ${
          consumer?.ConsumerStatus ?? 'absent'
        }); raise fanOut.registrationTimeoutMs or check the stream`,
        { retriable: true },
      );
    }
    // CREATING (or DELETING, after which it is registered anew): poll, with jitter for the other hosts.
    await sleep(Math.max(pollMs, backoffDelay(attempt++, { initial: pollMs, max: 5_000 })), signal);
  }
}

async function consumerCount(client: KinesisClient, streamArn: string): Promise<number> {
  try {
    let count = 0;
    let token: string | undefined;
    do {
      const out = await client.send(
        new ListStreamConsumersCommand(
          token === undefined ? { StreamARN: streamArn } : { StreamARN: streamArn, NextToken: token },
        ),
      );
      count += out.Consumers?.length ?? 0;
      token = out.NextToken;
    } while (token !== undefined);
    return count;
  } catch {
    return 0;
  }
}
