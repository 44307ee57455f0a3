/**
 * FanOutReader: reads one shard through enhanced fan-out (SubscribeToShard) instead of GetRecords.
 * It speaks the same port protocol as {@link ShardReader} (batch, fetched, throttled, error, log,
 * shard-end out; credit, ack, stop in), so the coordinator treats both alike. A plain class, driven
 * through a MessagePort, with a one-method subscribe client, so tests run it with a fake.
 *
 * A subscription lasts at most 5 minutes on AWS; the reader renews it before then (and whenever the
 * service ends it) from the last ContinuationSequenceNumber, so no record is lost or read twice.
 */
import type { MessagePort } from 'node:worker_threads';
import type {
  SubscribeToShardCommandInput,
  SubscribeToShardEvent,
  SubscribeToShardEventStream,
} from '@aws-sdk/client-kinesis';
import {
  backoffDelay,
  classifyAwsError,
  ErrorCodes,
  PROTOCOL_VERSION,
  rootCause,
  ShardlineError,
  ShardlineOptionError,
} from '@shardline/common';
import type { ShardEndProbe, SubscribeClient } from './fan-out-clients.js';
import type { FanOutReaderOptions } from './fan-out-options.js';
import { resolveFanOutReaderOptions } from './fan-out-options.js';
import type { IteratorStart, ResolvedShardReaderOptions } from './options.js';
import { describeStart, isPort, ReaderPort } from './reader-port.js';
import type { SkipThrough } from './records.js';
import { unpackResponse } from './records.js';
import type {
  ReaderClock,
  ShardReaderDeps,
  ShardReaderOutcome,
  ShardReaderState,
  ShardReaderStatus,
} from './shard-reader.js';
import { systemClock } from './shard-reader.js';

/** Collaborators of a {@link FanOutReader} besides the clock and jitter of {@link ShardReaderDeps}. */
export interface FanOutReaderDeps extends ShardReaderDeps {
  /**
   * Asked, at most every `shardEndCheckIntervalMs` while the shard is idle, whether the shard closed,
   * for services that never end a subscription with ChildShards. Without it, shard end comes only
   * from the subscription.
   */
  shardEndProbe?: ShardEndProbe;
}

/** How far before a LATEST start a re-subscription starts, should the first subscription fail. */
const LATEST_SKEW_MARGIN_MS = 5_000;

/** Why a subscription ended. */
type SubscriptionEnd =
  | 'completed' // the service closed the stream (its 5-minute end, or a drop without an error)
  | 'renew' // the reader's own renewal
  | 'stop' // stop, shard end or a fatal error: leave the loop
  | 'failed'; // an error, already handled (backed off)

/**
 * Reads one shard over enhanced fan-out and posts its records to the coordinator over `port`, under
 * the same credit-based flow control as {@link ShardReader}: while it is out of credit it stops pulling
 * events from the subscription (the HTTP stream pushes back on the service), and renews the
 * subscription from where it stopped when credit comes back after the renewal time.
 *
 * ```ts
 * const reader = new FanOutReader(port, kinesisSubscribeClient(client), { streamName, shardId, consumerArn });
 * reader.start();
 * const outcome = await reader.finished;   // ended | failed | stopped
 * ```
 */
export class FanOutReader {
  readonly shardId: string;
  readonly options: ResolvedShardReaderOptions;
  readonly consumerArn: string;
  readonly subscriptionRenewMs: number;
  readonly shardEndCheckIntervalMs: number;
  readonly #probe: ShardEndProbe | undefined;
  /** When the shard was last probed (clock.now()), and the children if it was found closed. */
  #probedAtMs: number | undefined;
  #probing = false;
  #closedChildren: string[] | undefined;
  /** The coordinator port, credit and lifecycle (shared with ShardReader). */
  readonly #link: ReaderPort;
  readonly #client: SubscribeClient;
  readonly #clock: ReaderClock;
  readonly #random: () => number;

  /** Where the next subscription starts. */
  #resume: IteratorStart;
  #skip: SkipThrough | undefined;
  #throttleAttempt = 0;
  #errorAttempt = 0;

  #throttled = 0;
  #resubscriptions = 0;
  #subscriptions = 0;
  #transientErrors = 0;

  /**
   * @param port - this shard's data port, listened to from construction until the reader finishes.
   * @param client - SubscribeToShard ({@link kinesisSubscribeClient} for the real one).
   * @throws ShardlineOptionError for invalid options, naming the option.
   */
  constructor(
    port: MessagePort,
    client: SubscribeClient,
    options: FanOutReaderOptions,
    deps: FanOutReaderDeps = {},
  ) {
    if (!isPort(port)) throw new ShardlineOptionError('port', 'must be a MessagePort');
    if (typeof client !== 'object' || client === null || typeof client.subscribeToShard !== 'function') {
      throw new ShardlineOptionError('client', 'must have subscribeToShard(input)');
    }
    const resolved = resolveFanOutReaderOptions(options);
    this.options = resolved.reader;
    this.shardEndCheckIntervalMs = resolved.shardEndCheckIntervalMs;
    this.#probe = deps.shardEndProbe;
    this.consumerArn = resolved.consumerArn;
    this.subscriptionRenewMs = resolved.subscriptionRenewMs;
    this.shardId = this.options.shardId;
    this.#client = client;
    this.#clock = deps.clock ?? systemClock;
    this.#random = deps.random ?? Math.random;
    this.#resume = this.options.start;
    const start = this.options.start;
    if (start.type === 'AT_SEQUENCE_NUMBER') {
      this.#skip = { sequenceNumber: start.sequenceNumber, subSequenceNumber: start.skipThroughSubSequence };
    }
    this.#link = new ReaderPort(port, this.options, this.#clock, {
      name: 'fan-out reader',
      logFields: { consumer: 'fan-out' },
      abortOnPostFailure: true,
    });
  }

  /** Resolves once the reader has finished (shard end, fatal error, or stop). Never rejects. */
  get finished(): Promise<ShardReaderOutcome> {
    return this.#link.finished;
  }

  get state(): ShardReaderState {
    return this.#link.state;
  }

  /** Starts reading. Idempotent; does nothing once stopped. */
  start(): void {
    this.#link.start('fan-out reader started', { start: describeStart(this.options.start) }, () =>
      this.#run(),
    );
  }

  /**
   * Stops reading: the open subscription is ended; records of an event not yet handed out are read
   * again from the checkpoint by the next reader. Idempotent; resolves when the loop has exited.
   */
  stop(reason = 'stop'): Promise<ShardReaderOutcome> {
    return this.#link.stop(reason);
  }

  /**
   * The same snapshot as {@link ShardReader.status}: `lastFetchAtMs` is when the last event came,
   * `iteratorRefreshes` counts re-subscriptions (renewals and resumes after a drop).
   */
  status(): ShardReaderStatus {
    return this.#link.status({
      throttled: this.#throttled,
      iteratorRefreshes: this.#resubscriptions,
      transientErrors: this.#transientErrors,
    });
  }

  // --- loop ----------------------------------------------------------------------------------------

  /** One subscription after another; {@link ReaderPort.start} runs it and finishes the reader after. */
  async #run(): Promise<void> {
    const link = this.#link;
    while (link.running()) {
      if (!(await link.waitForCredit())) break;
      link.state = 'reading';
      if (this.#subscriptions > 0) this.#resubscriptions++;
      this.#subscriptions++;
      const end = await this.#subscribe();
      if (end === 'stop' || !link.running()) break;
      if (end === 'completed') {
        link.log('debug', 'subscription ended by the service: subscribing again', {
          start: describeStart(this.#resume),
        });
      }
    }
  }

  /** One subscription, from {@link #resume} until it ends, is renewed, fails or the shard ends. */
  async #subscribe(): Promise<SubscriptionEnd> {
    const subscription = new AbortController();
    const onStop = () => subscription.abort(this.#link.signal.reason);
    this.#link.signal.addEventListener('abort', onStop, { once: true });
    let renewing = false;
    // The renewal timer is a sleep on the clock, so fake timers drive it in tests.
    const timer = new AbortController();
    this.#clock.sleep(this.subscriptionRenewMs, timer.signal).then(
      () => {
        renewing = true;
        subscription.abort(new ShardlineError(ErrorCodes.ABORTED, 'subscription renewal'));
      },
      () => {},
    );
    const aborted = new Promise<'aborted'>((resolve) => {
      if (subscription.signal.aborted) resolve('aborted');
      subscription.signal.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    let iterator: AsyncIterator<SubscribeToShardEventStream> | undefined;
    let events = 0;
    try {
      const input = this.#input();
      if (this.#resume.type === 'LATEST') {
        // Should this subscription fail before its first event, LATEST again would skip what arrived
        // meanwhile: resume from when it was asked for, less a margin for clock skew (as ShardReader).
        this.#resume = {
          type: 'AT_TIMESTAMP',
          timestamp: new Date(this.#clock.epochMs() - LATEST_SKEW_MARGIN_MS),
        };
      }
      const answer = await Promise.race([
        this.#client.subscribeToShard(input, { abortSignal: subscription.signal }),
        aborted,
      ]);
      if (answer === 'aborted') return this.#link.running() ? 'renew' : 'stop';
      const stream = answer.EventStream;
      if (stream === undefined) {
        throw new ShardlineError(ErrorCodes.KINESIS, 'SubscribeToShard answered without an event stream', {
          retriable: true,
        });
      }
      this.#link.log('debug', 'subscribed', { start: describeStart(this.#resume) });
      iterator = stream[Symbol.asyncIterator]();
      for (;;) {
        if (!this.#link.running()) return 'stop';
        if (!(await this.#link.waitForCredit(subscription.signal))) return 'stop';
        if (subscription.signal.aborted) return renewing ? 'renew' : 'stop';
        this.#link.state = 'reading';
        const next = await Promise.race([iterator.next(), aborted]);
        if (next === 'aborted') return renewing && this.#link.running() ? 'renew' : 'stop';
        if (next.done) {
          // A stream that ends without a single event is not progress: do not re-subscribe in a hot loop.
          if (events === 0) await this.#backoffQuietly();
          return this.#link.running() ? 'completed' : 'stop';
        }
        events++;
        const event = next.value.SubscribeToShardEvent;
        if (event === undefined) continue; // an event type this SDK does not know: nothing to read
        this.#throttleAttempt = 0;
        this.#errorAttempt = 0;
        if (this.#onEvent(event) === 'stop') return 'stop';
      }
    } catch (error) {
      if (!this.#link.running()) return 'stop';
      if (renewing && subscription.signal.aborted) return 'renew';
      return (await this.#onFailure(error)) === 'stop' ? 'stop' : 'failed';
    } finally {
      timer.abort();
      this.#link.signal.removeEventListener('abort', onStop);
      if (!subscription.signal.aborted) subscription.abort(new ShardlineError(ErrorCodes.ABORTED, 'closed'));
      // Ending the iterator releases the HTTP stream; its own rejection (the abort) is of no interest.
      iterator?.return?.().catch(() => {});
    }
  }

  #input(): SubscribeToShardCommandInput {
    const start = this.#resume;
    const position: SubscribeToShardCommandInput['StartingPosition'] = { Type: start.type };
    if (start.type === 'AT_TIMESTAMP') position.Timestamp = start.timestamp;
    if (start.type === 'AFTER_SEQUENCE_NUMBER' || start.type === 'AT_SEQUENCE_NUMBER') {
      position.SequenceNumber = start.sequenceNumber;
    }
    return { ConsumerARN: this.consumerArn, ShardId: this.shardId, StartingPosition: position };
  }

  #onEvent(event: SubscribeToShardEvent): 'ok' | 'stop' {
    const records = event.Records ?? [];
    const unpacked = unpackResponse(records, this.options.codec, this.options.encoding, this.#skip);
    this.#link.fetched(records.length, unpacked.bytes, event.MillisBehindLatest);
    if (unpacked.lastKinesisSequenceNumber !== undefined) {
      this.#skip = undefined;
      this.#link.sendBatch(unpacked);
      this.#resume = { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: unpacked.lastKinesisSequenceNumber };
    }
    const continuation = event.ContinuationSequenceNumber;
    if (typeof continuation !== 'string' || continuation.length === 0) {
      // No continuation: the shard is closed and read to its end. AWS names the children here; where
      // the service does not, the coordinator finds them with ListShards (shard-end without children).
      const children = (event.ChildShards ?? [])
        .map((c) => c.ShardId)
        .filter((id): id is string => typeof id === 'string');
      this.#link.endShard(children.length > 0 ? children : undefined);
      return 'stop';
    }
    if (records.length === 0 && (this.#link.millisBehindLatest ?? 0) === 0) {
      // Idle and caught up. A shard found closed before this event has nothing left to read.
      if (this.#closedChildren !== undefined) {
        this.#link.endShard(this.#closedChildren.length > 0 ? this.#closedChildren : undefined);
        return 'stop';
      }
      this.#maybeProbe();
    }
    // The continuation moves on even when no record came (a LATEST start, a quiet shard): resuming from
    // it neither re-reads nor skips. While a mid-record checkpoint's skip is pending, keep starting AT it.
    if (this.#skip === undefined) {
      this.#resume = { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: continuation };
    }
    return 'ok';
  }

  /** Starts a shard-end check in the background (never blocks reading), at most once per interval. */
  #maybeProbe(): void {
    const probe = this.#probe;
    const now = this.#clock.now();
    if (probe === undefined || this.#probing) return;
    if (this.#probedAtMs !== undefined && now - this.#probedAtMs < this.shardEndCheckIntervalMs) return;
    this.#probing = true;
    this.#probedAtMs = now;
    probe.shardEnd(this.shardId, { abortSignal: this.#link.signal }).then(
      (answer) => {
        this.#probing = false;
        // Only an event that arrives after this answer proves every record before the close was read.
        if (answer.closed) this.#closedChildren = answer.childShardIds;
      },
      (error: unknown) => {
        this.#probing = false;
        if (this.#link.running()) {
          this.#link.log('debug', 'shard-end check failed: trying again later', {
            code: classifyAwsError(error, 'ListShards').code,
          });
        }
      },
    );
  }

  /** Decides what a failed subscription means; backs off where needed. */
  async #onFailure(error: unknown): Promise<'retry' | 'stop'> {
    const classified = classifyAwsError(error, 'SubscribeToShard');
    const name = (rootCause(error) as { name?: unknown } | null)?.name;
    if (name === 'ResourceInUseException') {
      // The previous subscription of this consumer to this shard is still open on the service side
      // (AWS keeps it a few seconds after a re-subscribe): expected, so not reported as an error.
      this.#transientErrors++;
      this.#link.log('debug', 'previous subscription still open (ResourceInUseException): retrying');
      await this.#backoffQuietly();
      return this.#link.running() ? 'retry' : 'stop';
    }
    if (classified.code === ErrorCodes.THROTTLED || classified.code === ErrorCodes.LIMIT_EXCEEDED) {
      // LimitExceededException: more than one SubscribeToShard per second per consumer and shard.
      this.#throttled++;
      const delayMs = backoffDelay(this.#throttleAttempt++, this.options.throttleBackoffMs, this.#random);
      this.#link.post({ v: PROTOCOL_VERSION, type: 'throttled', shardId: this.shardId, delayMs, count: 1 });
      this.#link.state = 'backing-off';
      await this.#clock.sleep(delayMs, this.#link.signal);
      return this.#link.running() ? 'retry' : 'stop';
    }
    if (classified.code === ErrorCodes.ABORTED && !this.#link.running()) return 'stop';
    if (classified.retriable || classified.code === ErrorCodes.ABORTED || isDroppedStream(error)) {
      this.#transientErrors++;
      const delayMs = backoffDelay(this.#errorAttempt++, this.options.errorBackoffMs, this.#random);
      this.#link.retrying(classified);
      this.#link.log('warn', `${classified.message}: subscribing again in ${Math.round(delayMs)} ms`, {
        code: classified.code,
        start: describeStart(this.#resume),
      });
      this.#link.state = 'backing-off';
      await this.#clock.sleep(delayMs, this.#link.signal);
      return this.#link.running() ? 'retry' : 'stop';
    }
    this.#link.fail(classified, 'SubscribeToShard');
    return 'stop';
  }

  async #backoffQuietly(): Promise<void> {
    const delayMs = backoffDelay(this.#errorAttempt++, this.options.errorBackoffMs, this.#random);
    this.#link.state = 'backing-off';
    await this.#clock.sleep(delayMs, this.#link.signal);
  }
}

/**
 * A subscription whose HTTP stream broke (reset, premature close, truncated event, a checksum error
 * from the event-stream decoder): resume from the continuation rather than fail the shard.
 */
function isDroppedStream(error: unknown): boolean {
  const root = rootCause(error) as { name?: unknown; message?: unknown } | null;
  const message = typeof root?.message === 'string' ? root.message : '';
  return /Truncated event message|premature close|socket hang up|aborted|checksum|ECONNRESET/i.test(message);
}
