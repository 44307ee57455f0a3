/**
 * The Producer: encodes, routes, paces, batches, aggregates and retries records for PutRecords.
 *
 * Data path, per record: `put()` validates and encodes (a bad record rejects its own promise and touches
 * nothing else) -> the record waits for room if `maxBufferedRecords` are unsettled (FIFO; RecordBuffer)
 * -> it is routed to its predicted shard's queue (MD5 of the partition key, or the explicit hash key,
 * against the open shards from ListShards; ShardMap) -> a request is built when a shard's oldest record
 * has lingered `lingerMs`, a full request is ready, puts are waiting for room, or a flush is pending ->
 * each shard gives what its token buckets allow (as plain entries, KPL aggregates, or framed packs;
 * RequestBuilder, pacing) -> PutRecords -> each record settles with its receipt, or goes back to the head
 * of its shard queue with backoff when its entry failed, or rejects when out of retries / on a
 * non-retriable error (Sender).
 *
 * This class is the facade: it wires those parts together and owns the lifecycle (close, abort).
 */
import { Writable } from 'node:stream';
import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import {
  abortError,
  createKinesisClient,
  ErrorCodes,
  isKinesisClient,
  loadTracing,
  ShardlineError,
  ShardlineOptionError,
  type StreamLimits,
  type Tracing,
} from '@shardline/common';
import { RequestBuilder } from './batching.js';
import { RecordBuffer } from './buffer.js';
import {
  ProducerEmitter,
  type ProducerEventName,
  type ProducerEvents,
  type ProducerStatus,
} from './events.js';
import { ProducerMetrics } from './metrics.js';
import { type ProducerOptions, type ResolvedProducerOptions, resolveProducerOptions } from './options.js';
import {
  invalidRecord,
  makeRecord,
  type PendingRecord,
  type ProducerRecord,
  type PutOptions,
  type PutReceipt,
} from './records.js';
import { Sender } from './sender.js';
import { ShardMap } from './shard-map.js';

/**
 * A Kinesis producer. See {@link ProducerOptions} and the package README for the guarantees.
 *
 * ```ts
 * const producer = new Producer({ streamName: 'orders', kinesis: { region: 'eu-west-1' } });
 * const { shardId, sequenceNumber } = await producer.put({ id: 42 }, { partitionKey: 'user-42' });
 * await producer.close();
 * ```
 */
export class Producer<T = unknown> {
  readonly options: ResolvedProducerOptions<T>;
  readonly #client: KinesisClient;
  readonly #ownClient: boolean;
  readonly #abort = new AbortController();
  readonly #events: ProducerEmitter;
  readonly #metrics: ProducerMetrics | undefined;
  readonly #buffer: RecordBuffer;
  readonly #map: ShardMap;
  readonly #sender: Sender;
  /** Undefined when tracing is off or `@opentelemetry/api` is not installed. */
  readonly #tracing: Tracing | undefined;

  #closed = false;
  #stopped = false;
  #closing: Promise<void> | undefined;
  readonly #onSignalAbort = () => this.#stop(abortError(this.options.signal!));

  /** @throws ShardlineOptionError naming the first invalid option. */
  constructor(options: ProducerOptions<T>) {
    this.options = resolveProducerOptions(options);
    const o = this.options;
    const shared = o as ResolvedProducerOptions<unknown>;
    const logger = o.logger;
    const events = new ProducerEmitter(logger);
    this.#events = events;
    // First: a registry holding a clashing metric throws here, before the client is built.
    this.#metrics =
      o.metrics === undefined
        ? undefined
        : new ProducerMetrics({
            registry: o.metrics.registry,
            stream: o.streamName ?? (o.streamArn as string),
            on: (event, listener) => this.on(event, listener),
            bufferedRecords: () => this.#buffer.buffered,
          });
    this.#ownClient = !isKinesisClient(o.kinesis);
    // The producer retries failed entries itself, one by one with backoff and pacing; the SDK's own
    // retries beneath would resend whole batches and hide throttling from the pacing. A user who sets
    // maxAttempts (or passes a ready client) keeps their choice.
    this.#client = createKinesisClient(
      this.#ownClient && (o.kinesis as KinesisClientConfig).maxAttempts === undefined
        ? { ...(o.kinesis as KinesisClientConfig), maxAttempts: 1 }
        : o.kinesis,
    );
    const client = this.#client;
    const signal = this.#abort.signal;
    this.#tracing = o.tracing.enabled || o.tracing.propagate ? loadTracing() : undefined;
    // The parts call each other through these closures, which run only after construction.
    const buffer = new RecordBuffer(o.maxBufferedRecords, {
      route: (record) => this.#map.route(record, false),
      schedulePump: () => this.#sender.schedulePump(),
    });
    this.#buffer = buffer;
    this.#map = new ShardMap({
      options: shared,
      client,
      signal,
      logger,
      events,
      buffer,
      changed: () => this.#sender.schedulePump(),
    });
    this.#sender = new Sender({
      options: shared,
      client,
      signal,
      logger,
      events,
      metrics: this.#metrics,
      tracing: o.tracing.enabled ? this.#tracing : undefined,
      buffer,
      map: this.#map,
      builder: new RequestBuilder(shared, buffer, this.#map),
    });
    if (o.signal !== undefined) {
      if (o.signal.aborted) this.#stop(abortError(o.signal));
      else o.signal.addEventListener('abort', this.#onSignalAbort, { once: true });
    }
  }

  /**
   * Sends one item. Resolves with its receipt once Kinesis acknowledged it; rejects with a
   * {@link ShardlineError}: `ERR_INVALID_RECORD` / `ERR_CODEC` for a record that can never be sent (at
   * once; nothing else is affected), `ERR_CLOSED` after `close()`, `ERR_ABORTED` on abort, or the
   * classified Kinesis error (e.g. `ERR_THROTTLED`, `ERR_NOT_FOUND`) when its entry is out of retries or
   * failed for good; `details.errorCode` then holds the AWS error code.
   *
   * When `maxBufferedRecords` records are unsettled, the returned promise first waits (FIFO) for room:
   * awaiting each `put()` in turn, or using {@link writable}, applies the backpressure.
   */
  put(data: T, options?: PutOptions): Promise<PutReceipt> {
    let record: PendingRecord;
    try {
      this.#checkOpen();
      record = makeRecord(this.options, data, options, this.#map.limits, this.#tracing?.activeTraceparent());
    } catch (error) {
      return Promise.reject(error);
    }
    const promise = new Promise<PutReceipt>((resolve, reject) => {
      record.resolve = resolve;
      record.reject = reject;
    });
    this.#buffer.submit(record);
    return promise;
  }

  /**
   * An object-mode Writable: each chunk is a {@link ProducerRecord} `{ data, partitionKey?,
   * explicitHashKey? }` (an explicit shape, so an item that happens to have a `data` field is never
   * mistaken for a record). A write completes when the record is accepted into the buffer, so the
   * stream's backpressure follows `maxBufferedRecords` (plus the stream's own `highWaterMark`). `end()`
   * flushes: 'finish' fires once every written record is acknowledged. The first record that fails (bad
   * input, out of retries) destroys the stream with its error. Ending the stream does not close the
   * producer.
   */
  writable(options: { highWaterMark?: number } = {}): Writable {
    const highWaterMark = options?.highWaterMark ?? 16;
    if (!Number.isInteger(highWaterMark) || highWaterMark < 1) {
      throw new ShardlineOptionError(
        'highWaterMark',
        `must be an integer >= 1 (got ${String(options.highWaterMark)})`,
      );
    }
    const producer = this;
    let failure: unknown;
    const onError = (error: unknown): void => {
      if (failure === undefined) failure = error;
      stream.destroy(error as Error);
    };
    const stream = new Writable({
      objectMode: true,
      highWaterMark,
      write(chunk: unknown, _encoding, callback) {
        producer.#write(chunk, callback, onError);
      },
      final(callback) {
        producer.flush().then(
          () => callback(failure === undefined ? null : (failure as Error)),
          (error: unknown) => callback(error as Error),
        );
      },
    });
    return stream;
  }

  /**
   * Resolves when every record accepted before the call (including `put()` calls still waiting for room)
   * is settled, acknowledged or rejected. Lingering is skipped meanwhile; pacing and backoff still apply.
   * Never rejects: each record's outcome is on its own promise.
   */
  flush(): Promise<void> {
    return this.#buffer.flush();
  }

  /**
   * Refuses new records (`put()` rejects `ERR_CLOSED`), flushes, stops the timers and any shard-map
   * refresh, and destroys the Kinesis client when the producer built it. Idempotent: every call returns
   * the same promise. To give up on pending records instead, abort the `signal`.
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#closed = true;
      this.#closing = this.flush().then(() => {
        this.#halt();
        // Nothing is in flight but a shard-map refresh, which may be retrying a failing ListShards (forever
        // by default): end it, or it would keep calling, and keep the process alive, after close().
        this.#abort.abort(new ShardlineError(ErrorCodes.CLOSED, 'producer is closed'));
        this.options.signal?.removeEventListener('abort', this.#onSignalAbort);
        this.#metrics?.close();
        if (this.#ownClient) this.#client.destroy();
      });
    }
    return this.#closing;
  }

  /**
   * Subscribes to an event; returns the unsubscribe function (idempotent). A listener that throws, or
   * whose promise rejects, is logged.
   * @throws ShardlineOptionError for an unknown event name or a listener that is not a function.
   */
  on<K extends ProducerEventName>(event: K, listener: (event: ProducerEvents[K]) => void): () => void {
    return this.#events.on(event, listener);
  }

  /**
   * What the producer respects on this stream, read with DescribeStreamSummary before the first shard map
   * (undefined until then): the record limit (`MaxRecordSizeInKiB`, up to 10 MiB, or the classic 1 MiB when
   * the stream reports none, as the local emulators do), the request limits (10 MiB, or the classic 5 MiB;
   * 500 entries), their `source`, and the record `distribution` (`AUTO`: Kinesis picks the shard). Read once:
   * a producer started before UpdateMaxRecordSize keeps the limits it read.
   */
  get streamLimits(): StreamLimits | undefined {
    return this.#map.limits;
  }

  /** Records accepted and not settled yet (at most `maxBufferedRecords`). */
  get bufferedRecords(): number {
    return this.#buffer.buffered;
  }

  status(): ProducerStatus {
    return {
      bufferedRecords: this.#buffer.buffered,
      waitingPuts: this.#buffer.waitingPuts,
      queuedRecords: this.#buffer.queued,
      inFlightRequests: this.#sender.inFlight,
      shards: this.#map.list.length,
      closed: this.#closed,
    };
  }

  #checkOpen(): void {
    if (this.#stopped && this.options.signal?.aborted) throw abortError(this.options.signal);
    if (this.#closed) throw new ShardlineError(ErrorCodes.CLOSED, 'producer is closed: put() after close()');
    const fatal = this.#map.fatal;
    if (fatal !== undefined) throw fatal;
  }

  #write(chunk: unknown, callback: (error?: Error | null) => void, onError: (error: unknown) => void): void {
    let record: PendingRecord;
    try {
      this.#checkOpen();
      if (chunk === null || typeof chunk !== 'object' || !('data' in chunk)) {
        throw invalidRecord('chunk', 'must be an object { data, partitionKey?, explicitHashKey? }');
      }
      const c = chunk as ProducerRecord<T>;
      record = makeRecord(this.options, c.data, c, this.#map.limits, this.#tracing?.activeTraceparent());
    } catch (error) {
      callback(error as Error);
      return;
    }
    const promise = new Promise<PutReceipt>((resolve, reject) => {
      record.resolve = resolve;
      record.reject = reject;
    });
    promise.then(undefined, onError);
    if (this.#buffer.submit(record)) callback();
    else record.onAccepted = callback;
  }

  /** Stops every part: nothing admitted, routed, refreshed or sent any more. Returns the records in flight. */
  #halt(): PendingRecord[] {
    this.#stopped = true;
    this.#buffer.stop();
    this.#map.stop();
    return this.#sender.stop();
  }

  /** Abort: reject everything unsettled, cancel requests in flight, stop timers. */
  #stop(error: ShardlineError): void {
    if (this.#stopped) return;
    this.#closed = true;
    const pending = this.#halt();
    this.#abort.abort(error);
    pending.push(...this.#map.drain());
    pending.push(...this.#buffer.drainWaiting());
    this.#buffer.queued = 0;
    this.#buffer.queuedBytes = 0;
    this.#buffer.rejectMany(pending, error);
    this.#buffer.releaseFlushWaiters();
    this.#metrics?.close();
    if (this.#ownClient) this.#client.destroy();
  }
}
