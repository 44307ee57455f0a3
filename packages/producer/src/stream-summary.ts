/**
 * Reading the stream's limits and record distribution (DescribeStreamSummary) before the producer's first
 * shard map. A stream that reports no `MaxRecordSizeInKiB` (the local emulators), or a summary that cannot
 * be read (an IAM policy without `kinesis:DescribeStreamSummary`), gives the classic limits: 1 MiB records,
 * 5 MiB requests, partition-key distribution.
 */
import { DescribeStreamSummaryCommand, type KinesisClient } from '@aws-sdk/client-kinesis';
import {
  CLASSIC_STREAM_LIMITS,
  isRetriable,
  type Logger,
  retry,
  type StreamLimits,
  streamLimitsFromSummary,
} from '@shardline/common';
import type { ResolvedProducerOptions } from './options.js';
import { describeCallError } from './records.js';

export interface StreamSummaryDeps {
  options: ResolvedProducerOptions<unknown>;
  client: KinesisClient;
  signal: AbortSignal;
  logger: Logger;
}

/**
 * The stream's limits, with retriable failures retried as the producer's `retry` option says.
 * @throws only the abort error, when the producer is stopped meanwhile.
 */
export async function readStreamLimits(deps: StreamSummaryDeps): Promise<StreamLimits> {
  const { options, client, signal, logger } = deps;
  const input =
    options.streamArn !== undefined ? { StreamARN: options.streamArn } : { StreamName: options.streamName };
  try {
    const output = await retry(
      () => client.send(new DescribeStreamSummaryCommand(input), { abortSignal: signal }),
      {
        retries: options.retry.retries,
        backoffMs: options.retry.backoffMs,
        signal,
        shouldRetry: isRetriable,
        onRetry: (error, attempt, delayMs) =>
          logger.warn({ err: error, attempt, delayMs }, 'producer: DescribeStreamSummary failed; retrying'),
      },
    );
    const limits = streamLimitsFromSummary(output?.StreamDescriptionSummary);
    logger.debug({ limits }, 'producer: stream limits read');
    return limits;
  } catch (error) {
    if (signal.aborted) throw error;
    // A missing stream is reported by the ListShards that follows, with the producer's usual error.
    logger.warn(
      { err: describeCallError(options, error, 'DescribeStreamSummary') },
      'producer: DescribeStreamSummary failed; using the classic limits (1 MiB records, 5 MiB requests, ' +
        'partition-key distribution)',
    );
    return CLASSIC_STREAM_LIMITS;
  }
}
