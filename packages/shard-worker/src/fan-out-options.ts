/**
 * Options of a {@link FanOutReader}: those of a shard reader (GetRecords pacing ignored) plus the
 * consumer and the subscription timings, validated in one place.
 */
import { ShardlineOptionError } from '@shardline/common';
import type { ResolvedShardReaderOptions, ShardReaderOptions } from './options.js';
import { resolveShardReaderOptions } from './options.js';

/** Options of a {@link FanOutReader}: those of a shard reader (GetRecords pacing ignored), plus the consumer. */
export interface FanOutReaderOptions extends ShardReaderOptions {
  /** The registered stream consumer's ARN (RegisterStreamConsumer / DescribeStreamConsumer). */
  consumerArn: string;
  /**
   * How long one subscription is kept before the reader renews it. AWS ends a subscription after
   * 5 minutes; renewing a little earlier keeps the reader in charge of when the gap happens.
   * @defaultValue 270_000
   */
  subscriptionRenewMs?: number;
  /**
   * Least time between two shard-end checks (`FanOutReaderDeps.shardEndProbe`) of an idle shard.
   * @defaultValue 10_000
   */
  shardEndCheckIntervalMs?: number;
}

/** Defaults of what {@link FanOutReaderOptions} adds. */
export const FAN_OUT_READER_DEFAULTS = Object.freeze({
  subscriptionRenewMs: 270_000,
  shardEndCheckIntervalMs: 10_000,
});

/** {@link FanOutReaderOptions} validated: the reader's own, and what fan-out adds. */
export interface ResolvedFanOutReaderOptions {
  readonly reader: ResolvedShardReaderOptions;
  readonly consumerArn: string;
  readonly subscriptionRenewMs: number;
  readonly shardEndCheckIntervalMs: number;
}

/** AWS ends a subscription after this long: renewing later than that is never needed. */
const MAX_SUBSCRIPTION_MS = 300_000;
const CONSUMER_ARN = /^arn:[^:]+:kinesis:[^:]*:[^:]*:stream\/[^/]+\/consumer\/[^:]+:[0-9]+$/;

/**
 * Validates and completes {@link FanOutReaderOptions}.
 * @throws ShardlineOptionError naming the option.
 */
export function resolveFanOutReaderOptions(options: FanOutReaderOptions): ResolvedFanOutReaderOptions {
  const { consumerArn, subscriptionRenewMs, shardEndCheckIntervalMs, ...readerOptions } = (options ??
    {}) as FanOutReaderOptions;
  const reader = resolveShardReaderOptions(readerOptions);
  if (typeof consumerArn !== 'string' || !CONSUMER_ARN.test(consumerArn)) {
    throw new ShardlineOptionError(
      'consumerArn',
      `must be a stream consumer ARN (arn:aws:kinesis:REGION:ACCOUNT:stream/NAME/consumer/NAME:TIMESTAMP; got ${
        typeof consumerArn === 'string' ? `'${consumerArn}'` : String(consumerArn)
      })`,
    );
  }
  const renew = subscriptionRenewMs ?? FAN_OUT_READER_DEFAULTS.subscriptionRenewMs;
  if (typeof renew !== 'number' || !Number.isFinite(renew) || renew < 1 || renew > MAX_SUBSCRIPTION_MS) {
    throw new ShardlineOptionError(
      'subscriptionRenewMs',
      `must be a number from 1 to ${MAX_SUBSCRIPTION_MS} (a subscription lasts 5 minutes; got ${String(renew)})`,
    );
  }
  const check = shardEndCheckIntervalMs ?? FAN_OUT_READER_DEFAULTS.shardEndCheckIntervalMs;
  if (typeof check !== 'number' || !Number.isFinite(check) || check < 0) {
    throw new ShardlineOptionError(
      'shardEndCheckIntervalMs',
      `must be a number of milliseconds >= 0 (got ${String(check)})`,
    );
  }
  return Object.freeze({
    reader,
    consumerArn,
    subscriptionRenewMs: renew,
    shardEndCheckIntervalMs: check,
  });
}
