/**
 * Sending PutRecords calls: the pump (as many calls as `maxInFlightRequests` and each shard's
 * `maxInFlightPerShard`, pacing and backoff allow, and one timer for the next moment one could go), the
 * answers (receipts settled, failed entries counted and re-queued at the head of their shard with a
 * full-jitter backoff, or rejected when out of retries or not retriable), and throttling feedback.
 */
// Time comes from the global `performance` (not an import from node:perf_hooks) so that fake timers
// installed by tests drive lingering, pacing and backoff here as they do in the token buckets.
import {
  type KinesisClient,
  PutRecordsCommand,
  type PutRecordsCommandInput,
  type PutRecordsCommandOutput,
} from '@aws-sdk/client-kinesis';
import {
  backoffDelay,
  classifyAwsError,
  distinctTraceContexts,
  KinesisError,
  type Logger,
  type ShardlineError,
  type TraceSpan,
  type Tracing,
} from '@shardline/common';
import type { RequestBuilder } from './batching.js';
import type { RecordBuffer } from './buffer.js';
import type { ProducerEmitter } from './events.js';
import type { ProducerMetrics } from './metrics.js';
import type { ResolvedProducerOptions } from './options.js';
import { paceDelayMs } from './pacing.js';
import {
  describeCallError,
  type EntryGroup,
  type PendingRecord,
  type PutRequest,
  RecordState,
  recordsOf,
  type ShardState,
} from './records.js';
import type { ShardMap } from './shard-map.js';

const THROTTLE_CODES = new Set(['ProvisionedThroughputExceededException', 'KMSThrottlingException']);

/** `orders` of `arn:aws:kinesis:eu-west-1:123456789012:stream/orders`. */
function streamNameOfArn(arn: string): string {
  const at = arn.lastIndexOf('/');
  return at < 0 ? arn : arn.slice(at + 1);
}

/** Records of one shard to send again after a failure, and the AWS error code that failed them. */
interface ShardRetry {
  records: PendingRecord[];
  errorCode: string;
}

export interface SenderDeps {
  options: ResolvedProducerOptions<unknown>;
  client: KinesisClient;
  /** Cancels the calls in flight. */
  signal: AbortSignal;
  logger: Logger;
  events: ProducerEmitter;
  metrics: ProducerMetrics | undefined;
  /** A `send` span per call when set (tracing enabled and the API installed). */
  tracing: Tracing | undefined;
  buffer: RecordBuffer;
  map: ShardMap;
  builder: RequestBuilder;
}

export class Sender {
  readonly #deps: SenderDeps;
  #inFlight = 0;
  readonly #requests = new Set<PutRequest>();
  #pumpScheduled = false;
  readonly #pumpTask = () => this.#pump();
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeAt = Number.POSITIVE_INFINITY;
  #stopped = false;

  constructor(deps: SenderDeps) {
    this.#deps = deps;
  }

  /** PutRecords calls in flight. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Sends what can be sent, once the current task is done (many changes, one pass). */
  schedulePump(): void {
    if (this.#pumpScheduled || this.#stopped) return;
    this.#pumpScheduled = true;
    queueMicrotask(this.#pumpTask);
  }

  /** Sends nothing more and handles no more answers; returns the records of the calls in flight. */
  stop(): PendingRecord[] {
    this.#stopped = true;
    if (this.#wakeTimer !== undefined) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = undefined;
    const pending: PendingRecord[] = [];
    for (const request of this.#requests) pending.push(...recordsOf(request));
    return pending;
  }

  #pump(): void {
    this.#pumpScheduled = false;
    const { map, builder, options } = this.#deps;
    if (this.#stopped || !map.loaded) return;
    const now = performance.now();
    while (this.#inFlight < options.maxInFlightRequests) {
      if (!builder.forced() && !builder.anyDue(now, map.list)) break;
      const request = builder.build(now, map.list);
      if (request === undefined) break;
      this.#send(request);
    }
    this.#armWake(now);
  }

  /** Arms one timer for the earliest moment something could be sent: linger end, backoff end, tokens. */
  #armWake(now: number): void {
    const { map, builder, options } = this.#deps;
    let at = Number.POSITIVE_INFINITY;
    if (this.#inFlight < options.maxInFlightRequests) {
      const forced = builder.forced();
      for (const shard of map.list) {
        const head = shard.queue.peek();
        // A held shard is woken by the answer that releases it, not by a timer.
        if (head === undefined || shard.inFlight >= options.maxInFlightPerShard || shard.held) continue;
        let t = Math.max(shard.notBefore, forced ? now : head.enqueuedAt + options.lingerMs);
        const paceMs = paceDelayMs(shard, head, builder.packing);
        if (paceMs !== undefined) t = Math.max(t, now + paceMs);
        if (t < at) at = t;
      }
    }
    if (at === Number.POSITIVE_INFINITY) {
      if (this.#wakeTimer !== undefined) {
        clearTimeout(this.#wakeTimer);
        this.#wakeTimer = undefined;
        this.#wakeAt = Number.POSITIVE_INFINITY;
      }
      return;
    }
    if (this.#wakeTimer !== undefined && this.#wakeAt <= at) return;
    if (this.#wakeTimer !== undefined) clearTimeout(this.#wakeTimer);
    this.#wakeAt = at;
    // At least 1 ms: rounding in the token arithmetic must not turn into a busy loop.
    this.#wakeTimer = setTimeout(
      () => {
        this.#wakeTimer = undefined;
        this.#wakeAt = Number.POSITIVE_INFINITY;
        this.#pump();
      },
      Math.max(1, Math.ceil(at - now)),
    );
  }

  #send(request: PutRequest): void {
    const { options, client, signal } = this.#deps;
    this.#deps.metrics?.requestSent();
    this.#inFlight++;
    this.#requests.add(request);
    const input: PutRecordsCommandInput =
      options.streamArn !== undefined
        ? { StreamARN: options.streamArn, Records: request.wire }
        : { StreamName: options.streamName, Records: request.wire };
    const span = this.#deps.tracing === undefined ? undefined : this.#startSpan(this.#deps.tracing, request);
    const call = () => client.send(new PutRecordsCommand(input), { abortSignal: signal });
    // In the span's context, so that an instrumented SDK's HTTP span is its child.
    (span === undefined ? call() : span.run(call)).then(
      (output) => {
        if (span !== undefined) this.#endSpan(span, output);
        this.#onAnswer(request, output);
      },
      (error: unknown) => {
        if (span !== undefined) {
          span.fail(error);
          span.end();
        }
        this.#onCallError(request, error);
      },
    );
  }

  /**
   * `send <stream>` (PRODUCER), per the OpenTelemetry messaging conventions, linked to the contexts the
   * request's records were put in.
   */
  #startSpan(tracing: Tracing, request: PutRequest): TraceSpan {
    const { options } = this.#deps;
    const stream = options.streamName ?? streamNameOfArn(options.streamArn!);
    // Every user record's context, those inside aggregates included.
    const links = distinctTraceContexts(recordsOf(request), (r) => r.traceparent);
    return tracing.startSpan(
      `send ${stream}`,
      'producer',
      {
        'messaging.system': 'aws_kinesis',
        'messaging.destination.name': stream,
        'messaging.operation.type': 'send',
        'messaging.operation.name': 'send',
        'messaging.batch.message_count': request.records,
        'shardline.kinesis.entries': request.wire.length,
      },
      links,
    );
  }

  #endSpan(span: TraceSpan, output: PutRecordsCommandOutput): void {
    const failed = output.FailedRecordCount ?? 0;
    span.setAttribute('shardline.kinesis.failed_entries', failed);
    span.end();
  }

  #finishRequest(request: PutRequest): void {
    this.#inFlight--;
    this.#requests.delete(request);
    for (const shard of request.shards) shard.inFlight--;
    this.#deps.map.callEnded(request.shards);
  }

  #onAnswer(request: PutRequest, output: PutRecordsCommandOutput): void {
    this.#finishRequest(request);
    if (this.#stopped) return;
    const results = output.Records ?? [];
    const retries = new Map<ShardState, ShardRetry>();
    const perShard: Record<string, number> = {};
    let acknowledged = 0;
    let acknowledgedBytes = 0;
    let failedEntries = 0;
    let misrouted = false;
    for (let i = 0; i < request.wire.length; i++) {
      const result = results[i];
      const group = request.groups[i]!;
      const shard = request.entryShards[i]!;
      perShard[shard.id] = (perShard[shard.id] ?? 0) + 1;
      if (result === undefined || result.ErrorCode !== undefined || result.SequenceNumber === undefined) {
        failedEntries++;
        const code = result?.ErrorCode ?? 'InternalFailure';
        const message = result?.ErrorMessage ?? (result === undefined ? 'no result for this entry' : '');
        this.#entryFailed(group, shard, code, message, undefined, retries);
        continue;
      }
      const shardId = result.ShardId ?? shard.id;
      if (shardId !== shard.id) misrouted = true;
      const sequenceNumber = result.SequenceNumber;
      if (Array.isArray(group)) {
        for (let j = 0; j < group.length; j++) {
          acknowledgedBytes += group[j]!.bytes;
          this.#deps.buffer.settle(group[j]!, { shardId, sequenceNumber, subSequenceNumber: j });
        }
        acknowledged += group.length;
      } else {
        acknowledgedBytes += group.bytes;
        this.#deps.buffer.settle(group, { shardId, sequenceNumber });
        acknowledged++;
      }
    }
    this.#deps.events.emit('put', {
      records: acknowledged,
      entries: request.wire.length,
      bytes: request.bytes,
      acknowledgedBytes,
      failedEntries,
      shards: perShard,
      durationMs: performance.now() - request.startedAt,
    });
    this.#requeue(retries);
    if (misrouted) this.#deps.map.misrouted();
    this.schedulePump();
  }

  #onCallError(request: PutRequest, error: unknown): void {
    this.#finishRequest(request);
    if (this.#stopped) return;
    const classified = describeCallError(this.#deps.options, error, 'PutRecords');
    if (!classified.retriable) {
      const rejected = this.#deps.buffer.rejectMany(recordsOf(request), classified);
      this.#deps.logger.error(
        { err: classified, records: rejected },
        'producer: PutRecords failed; records rejected',
      );
      this.#deps.events.emit('error', { error: classified, records: rejected });
    } else {
      const retries = new Map<ShardState, ShardRetry>();
      const code =
        classified instanceof KinesisError && classified.awsName ? classified.awsName : classified.code;
      for (let i = 0; i < request.groups.length; i++) {
        this.#entryFailed(
          request.groups[i]!,
          request.entryShards[i]!,
          code,
          classified.message,
          classified,
          retries,
        );
      }
      this.#requeue(retries);
    }
    this.schedulePump();
  }

  /** Counts an attempt on each record of a failed entry: rejects those out of retries, queues the rest. */
  #entryFailed(
    group: EntryGroup,
    shard: ShardState,
    errorCode: string,
    errorMessage: string,
    classified: ShardlineError | undefined,
    retries: Map<ShardState, ShardRetry>,
  ): void {
    const records = Array.isArray(group) ? group : [group];
    let retry = retries.get(shard);
    for (const record of records) {
      if (record.state === RecordState.Settled) continue;
      record.attempts++;
      const kind = classified ?? classifyAwsError({ name: errorCode, message: errorMessage }, 'PutRecords');
      if (record.attempts > this.#deps.options.retry.retries || !kind.retriable) {
        const error = new KinesisError(
          kind.code,
          `record not written after ${record.attempts} attempt(s): ${errorCode}${errorMessage ? `: ${errorMessage}` : ''}`,
          {
            retriable: kind.retriable,
            cause: classified,
            awsName: errorCode,
            details: { errorCode, errorMessage, shardId: shard.id, attempts: record.attempts },
          },
        );
        this.#deps.buffer.settle(record, undefined, error);
        this.#deps.events.emit('error', { error, records: 1 });
        continue;
      }
      if (retry === undefined) {
        retry = { records: [], errorCode };
        retries.set(shard, retry);
      }
      retry.records.push(record);
    }
    if (THROTTLE_CODES.has(errorCode)) {
      // Kinesis saw this shard as busier than our buckets did (another writer, or our buckets started
      // earlier than its window): spend what they hold, so the next call waits for fresh tokens.
      const limiter = shard.limiter;
      if (limiter !== undefined) {
        const records = limiter.records?.available() ?? 0;
        const bytes = limiter.bytes?.available() ?? 0;
        limiter.consume(Math.max(0, records), Math.max(0, bytes));
      }
      this.#deps.events.emit('throttled', { shardId: shard.id, entries: 1, errorCode });
    }
  }

  /**
   * Failed records back to the head of their shard queue, in their original order, after a backoff; those
   * of a shard that closed meanwhile go to the head of the shard now holding their hash key.
   */
  #requeue(retries: Map<ShardState, ShardRetry>): void {
    const now = performance.now();
    for (const [shard, { records, errorCode }] of retries) {
      let attempt = 0;
      for (const record of records) if (record.attempts > attempt) attempt = record.attempts;
      const delayMs = backoffDelay(attempt - 1, this.#deps.options.retry.backoffMs);
      for (let i = records.length - 1; i >= 0; i--) {
        const record = records[i]!;
        this.#deps.buffer.requeue(record);
        if (shard.open) {
          shard.queue.unshift(record);
          shard.queuedBytes += record.bytes;
        } else {
          this.#deps.map.route(record, true);
        }
      }
      if (shard.open) shard.notBefore = Math.max(shard.notBefore, now + delayMs);
      this.#deps.events.emit('retry', {
        shardId: shard.id,
        records: records.length,
        attempt,
        delayMs,
        errorCode,
      });
    }
  }
}
