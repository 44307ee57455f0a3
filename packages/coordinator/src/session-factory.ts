/**
 * Builds the shard sessions of one coordinator: everything a {@link ShardSession} needs from the host
 * (the lease store, the pool, the credit ledger, the failure policy and the lane or worker it delivers
 * through, the reader options derived from the coordinator's options), so the coordinator keeps only
 * when a session starts and what happens when it ends.
 */

import type { ShardRecord } from '@shardline/common';
import {
  ErrorCodes,
  type ShardlineError,
  ShardlineError as ShardlineErrorClass,
  silentLogger,
} from '@shardline/common';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import type { DeadLetterQueue } from './dead-letter.js';
import type { BatchIterator } from './delivery/batch-iterator.js';
import type { CreditLedger } from './delivery/credit-ledger.js';
import type { FailurePolicy } from './delivery/failure-policy.js';
import { Lane } from './delivery/lane.js';
import type { CoordinatorEvents } from './events.js';
import type { Lease, LeaseManager } from './leases/types.js';
import type { CoordinatorMetrics } from './metrics.js';
import type { ModuleTaskSettings } from './module-worker.js';
import type { ResolvedCoordinatorOptions } from './options.js';
import type { ShardStats } from './reader-run.js';
import { type ReaderStart, type ShardFailure, ShardSession } from './shard-session.js';
import type { CrashGuard, Supervisor } from './supervisor.js';

export interface SessionFactoryOptions<T> {
  options: ResolvedCoordinatorOptions<T>;
  leases: LeaseManager;
  events: CoordinatorEvents;
  metrics: CoordinatorMetrics | undefined;
  ledger: Pick<CreditLedger, 'open'>;
  policy: FailurePolicy;
  /** Iterator mode's iterator; undefined for a handler or handlerModule. */
  iterator: BatchIterator<T> | undefined;
  supervisor: Supervisor;
  crashGuard: CrashGuard;
  deadLetter: DeadLetterQueue | undefined;
}

/** What the coordinator decides for each session. */
export interface SessionHooks {
  /** Children a reader learnt at shard end. */
  noteChildren(childShardIds: readonly string[]): void;
  stopping(): boolean;
  report(error: unknown, message: string): void;
  failed(failure: ShardFailure): void;
}

export class SessionFactory<T> {
  readonly #o: SessionFactoryOptions<T>;
  /** Per-shard figures, kept across sessions for `status()` and the metrics. */
  readonly stats = new Map<string, ShardStats>();
  /** Enhanced fan-out: the registered consumer the readers subscribe as (undefined: polling). */
  consumerArn: string | undefined;

  constructor(options: SessionFactoryOptions<T>) {
    this.#o = options;
  }

  /** `maxRecordAgeMs`: `records` of `shardId` expired (the handler-mode policy's count). */
  countExpired(shardId: string, records: number): void {
    this.#statsOf(shardId).recordsExpired += records;
  }

  /** A session for a lease just acquired (the acquire sent at `sent`, performance.now()); not started. */
  create(lease: Lease, sent: number, isRoot: boolean, hooks: SessionHooks): ShardSession<T> {
    const { shardId } = lease;
    const { options: o, iterator, supervisor } = this.#o;
    const handler = o.handler;
    return new ShardSession<T>(lease, sent, isRoot, {
      hostId: o.hostId,
      leaseDurationMs: o.leaseDurationMs,
      leases: this.#o.leases,
      events: this.#o.events,
      logger: o.logger,
      metrics: this.#o.metrics,
      checkpoint: o.checkpoint,
      ledger: this.#o.ledger,
      crashGuard: this.#o.crashGuard,
      stats: this.#statsOf(shardId),
      initialPosition: o.initialPosition,
      readerOptions: (start) => this.#readerOptions(shardId, start),
      startReader: (options, onMessage) => supervisor.start(options, onMessage),
      threadIndex: (threadId) => supervisor.threadIndex(threadId),
      lane:
        o.delivery === 'handler-module'
          ? undefined
          : (laneHooks) =>
              new Lane<T>({
                shardId,
                streamName: o.stream,
                codec: o.codec,
                sink:
                  iterator !== undefined
                    ? { mode: 'iterator', iterator }
                    : { mode: 'handler', handler: handler! },
                policy: this.#o.policy,
                parallelism: o.parallelism,
                hooks: laneHooks,
                events: this.#o.events,
                logger: o.logger,
              }),
      deadLetter: (records, error, attempts) => this.sendDeadLetter(shardId, records, error, attempts),
      ...hooks,
    });
  }

  /** `onHandlerError.then: 'dead-letter'`: sends the records to the queue (and counts them). */
  sendDeadLetter(
    shardId: string,
    records: ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
  ): Promise<void> {
    const queue = this.#o.deadLetter;
    if (queue === undefined) {
      return Promise.reject(new ShardlineErrorClass(ErrorCodes.INTERNAL, 'no dead-letter queue configured'));
    }
    const sent = queue.send(shardId, records, error, attempts, this.#o.options.stream);
    const metrics = this.#o.metrics;
    return metrics === undefined ? sent : sent.then(() => metrics.deadLettered(records.length));
  }

  #statsOf(shardId: string): ShardStats {
    let stats = this.stats.get(shardId);
    if (stats === undefined) {
      stats = { recordsDelivered: 0, recordsExpired: 0, throttled: 0 };
      this.stats.set(shardId, stats);
    }
    return stats;
  }

  #readerOptions(shardId: string, start: ReaderStart): ShardReaderTaskOptions {
    const o = this.#o.options;
    const options: ShardReaderTaskOptions = {
      shardId,
      initialPosition: 'initialPosition' in start ? start.initialPosition : 'TRIM_HORIZON',
      maxRecordsPerFetch: o.maxRecordsPerFetch,
      fetchRatePerShard: o.fetchRatePerShard,
      idleFetchIntervalMs: o.idleFetchIntervalMs,
      idleFetchMaxIntervalMs: o.idleFetchMaxIntervalMs,
      // A custom Codec cannot cross threads: the worker sends raw bytes and it decodes here. Built-in
      // codecs decode in the worker; those of JSON items cross as one JSON text (the shard-worker's
      // default encoding for them).
      codec: o.codecName ?? 'raw',
      ...(o.codecName === undefined ? { encoding: 'bytes' as const } : {}),
      kinesis: o.workerKinesisConfig,
    };
    if (o.streamName !== undefined) options.streamName = o.streamName;
    if (o.streamArn !== undefined) options.streamArn = o.streamArn;
    if ('checkpoint' in start) options.checkpoint = { ...start.checkpoint };
    if (this.consumerArn !== undefined && o.fanOut !== undefined) {
      const { transport, subscriptionRenewMs } = o.fanOut;
      options.fanOut = { consumerArn: this.consumerArn, transport, subscriptionRenewMs };
    }
    return options;
  }
}

/** What every task of a `handlerModule` pool carries (nothing without `handlerModule`). */
export function moduleTaskSettings(
  o: Pick<
    ResolvedCoordinatorOptions,
    'handlerModule' | 'onHandlerError' | 'maxRecordAgeMs' | 'parallelism' | 'tracing' | 'group'
  >,
): { module?: ModuleTaskSettings } {
  if (o.handlerModule === undefined) return {};
  const { onHandlerError, maxRecordAgeMs, parallelism } = o;
  const module: ModuleTaskSettings = { url: o.handlerModule, onHandlerError, maxRecordAgeMs, parallelism };
  if (o.tracing.enabled) module.tracing = { group: o.group, links: o.tracing.links };
  return { module };
}

/**
 * A shard that stops after a failure must never be silent: the session logs it at warn; when the logger
 * is the default silent one and nobody listens to `handler.failed` or `error`, it becomes a process
 * warning (printed to stderr by Node unless `--no-warnings` or a 'warning' listener).
 */
export function warnIfUnheard(
  o: Pick<ResolvedCoordinatorOptions, 'logger' | 'stream' | 'group'>,
  events: { listenerCount(event: 'handler.failed' | 'error'): number },
  shardId: string,
  failure: ShardFailure,
): void {
  if (o.logger !== silentLogger) return;
  if (events.listenerCount('handler.failed') > 0 || events.listenerCount('error') > 0) return;
  const p = failure.position;
  const at =
    p === undefined
      ? ''
      : ` at sequence number ${p.sequenceNumber}${p.subSequenceNumber === undefined ? '' : `:${p.subSequenceNumber}`}`;
  process.emitWarning(
    `shard ${shardId} of stream ${o.stream} (group ${o.group}) stopped on this host${at}: ` +
      `${failure.error.code}: ${failure.error.message}. Add a 'handler.failed' listener or a logger to ` +
      "handle this yourself; onHandlerError.then 'skip' or 'dead-letter' keep the shard reading.",
    { code: 'SHARDLINE_SHARD_STOPPED', type: 'ShardlineWarning' },
  );
}
