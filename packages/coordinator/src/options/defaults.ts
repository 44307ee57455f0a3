/**
 * The defaults of the coordinator's options and the bounds they are checked against: the one place to
 * read (or change) what an omitted option means.
 */

import type { KinesisTransport } from '@shardline/common';
import type { CoordinatorOptions } from './types.js';

/** The defaults of {@link CoordinatorOptions}. */
export const COORDINATOR_DEFAULTS = Object.freeze({
  keyPrefix: 'shardline',
  maxShardConsumers: Number.POSITIVE_INFINITY,
  /** workerThreads defaults to min(os.availableParallelism(), maxWorkerThreads). */
  maxWorkerThreads: 4,
  initialPosition: 'TRIM_HORIZON' as const,
  codec: 'json' as const,
  maxRecordsPerFetch: 10_000,
  fetchRatePerShard: 5,
  idleFetchIntervalMs: 1_000,
  idleFetchMaxIntervalMs: 5_000,
  maxBufferedRecords: 100_000,
  maxBufferedBytes: 64 * 1024 * 1024,
  checkpoint: Object.freeze({ mode: 'auto' as const, intervalMs: 5_000 }),
  leaseDurationMs: 10_000,
  shardSyncIntervalMs: 60_000,
  leaseCleanupDelayMs: 300_000,
  onHandlerError: Object.freeze({
    retries: Number.POSITIVE_INFINITY,
    backoffMs: Object.freeze({ initial: 100, max: 30_000 }),
    // biome-ignore lint/suspicious/noThenProperty: the API's option name; a string, so never a thenable
    then: 'stop-shard' as const,
  }),
  maxRecordAgeMs: Number.POSITIVE_INFINITY,
  parallelism: 1,
  deadLetterQueue: 'shardline-dlq',
  fanOut: Object.freeze({
    transport: 'auto' as KinesisTransport,
    subscriptionRenewMs: 270_000,
    registrationTimeoutMs: 60_000,
  }),
  tracing: Object.freeze({ enabled: true, links: true }),
});

/** Service limits and bounds the options are checked against. */
export const LIMITS = Object.freeze({
  maxRecordsPerFetch: 10_000,
  fetchRatePerShard: 5,
  minLeaseDurationMs: 1_000,
  /** A day: the Redis lease manager's bound too. */
  maxLeaseDurationMs: 86_400_000,
  minLeaseRenewIntervalMs: 100,
  minShardSyncIntervalMs: 1_000,
  /** A shard iterator expires 5 minutes after it was issued: an idle wait that long always loses it. */
  iteratorLifetimeMs: 300_000,
  maxIdLength: 256,
  /** Concurrent handler calls per shard: more would mostly queue on one shard's 2 MiB/s. */
  maxParallelism: 100,
  /** SubscribeToShard allows one call per second per consumer and shard: a faster renewal is throttled. */
  minSubscriptionRenewMs: 1_000,
  /** AWS ends a subscription after 5 minutes: a longer renewal period would never apply. */
  maxSubscriptionRenewMs: 300_000,
});
