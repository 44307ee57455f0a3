/**
 * A fake enhanced fan-out service for FanOutReader unit tests: one shard's records, pushed as
 * SubscribeToShard events every `cadenceMs` of (fake) time, with the service's rules that matter to a
 * reader: one subscription per consumer and shard at a time (ResourceInUseException, also for
 * `holdMs` after one ended), ContinuationSequenceNumber, a subscription's end, ChildShards at shard end.
 */
import type { SubscribeToShardCommandInput, SubscribeToShardEventStream } from '@aws-sdk/client-kinesis';
import type {
  CallOptions,
  ShardEndProbe,
  SubscribeClient,
  SubscribeToShardResult,
} from '@shardline/shard-worker';
import { awsError, type StoredRecord } from './fake-kinesis.js';

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(awsError('AbortError', 'aborted'));
      return;
    }
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(awsError('AbortError', 'aborted'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

export class FakeFanOut implements SubscribeClient, ShardEndProbe {
  readonly calls: Array<{ input: SubscribeToShardCommandInput; at: number }> = [];
  records: StoredRecord[];
  /** Closed shard: once every record was pushed, the next event ends the shard. */
  closed = false;
  /** Children named in that last event; none: the event carries no ChildShards (like kinesis-mock). */
  children: string[] | undefined;
  /** false: the service never ends a closed shard's subscription (kinesis-mock); readers must probe. */
  endsShard = true;
  cadenceMs = 1_000;
  perEvent = 3;
  /** The service ends a subscription after this many events (AWS: after 5 minutes). */
  eventsPerSubscription = Number.POSITIVE_INFINITY;
  /** How long the service still counts a subscription as open after it ended. */
  holdMs = 0;
  /** Errors thrown by the next SubscribeToShard calls, in order. */
  failures: Error[] = [];
  /** Errors thrown by the next subscriptions' streams after `afterEvents` events. */
  drops: Array<{ afterEvents: number; error: Error }> = [];
  active = 0;
  #busyUntil = 0;
  probes = 0;
  inUseAnswers = 0;

  constructor(records: StoredRecord[]) {
    this.records = records;
  }

  async shardEnd(): Promise<{ closed: boolean; childShardIds: string[] }> {
    this.probes++;
    return { closed: this.closed, childShardIds: this.closed ? ['shardId-000000000009'] : [] };
  }

  async subscribeToShard(
    input: SubscribeToShardCommandInput,
    options?: CallOptions,
  ): Promise<SubscribeToShardResult> {
    this.calls.push({ input, at: Date.now() });
    const failure = this.failures.shift();
    if (failure !== undefined) throw failure;
    if (this.active > 0 || Date.now() < this.#busyUntil) {
      this.inUseAnswers++;
      throw awsError('ResourceInUseException', 'Another active subscription exists');
    }
    const signal = options?.abortSignal ?? new AbortController().signal;
    let index = this.#startIndex(input);
    const drop = this.drops.shift();
    this.active++;
    const release = () => {
      this.active--;
      this.#busyUntil = Date.now() + this.holdMs;
    };
    const self = this;
    async function* events(): AsyncGenerator<SubscribeToShardEventStream> {
      let sent = 0;
      try {
        while (sent < self.eventsPerSubscription) {
          await sleep(self.cadenceMs, signal);
          if (drop !== undefined && sent >= drop.afterEvents) throw drop.error;
          const batch = self.records.slice(index, index + self.perEvent);
          index += batch.length;
          sent++;
          const atEnd = self.endsShard && self.closed && index >= self.records.length;
          const last = self.records[index - 1]?.SequenceNumber;
          yield {
            SubscribeToShardEvent: {
              Records: batch.map((r) => ({ ...r, ApproximateArrivalTimestamp: new Date(0) })),
              ContinuationSequenceNumber: atEnd
                ? undefined
                : (last ?? input.StartingPosition?.SequenceNumber),
              MillisBehindLatest: index < self.records.length ? 1_000 : 0,
              ...(atEnd && self.children !== undefined
                ? {
                    ChildShards: self.children.map((id) => ({
                      ShardId: id,
                      ParentShards: ['shardId-000000000000'],
                      HashKeyRange: { StartingHashKey: '0', EndingHashKey: '1' },
                    })),
                  }
                : {}),
            },
          } as SubscribeToShardEventStream;
          if (atEnd) return;
        }
      } finally {
        release();
      }
    }
    return { EventStream: events() };
  }

  #startIndex(input: SubscribeToShardCommandInput): number {
    const p = input.StartingPosition;
    if (p?.Type === 'TRIM_HORIZON') return 0;
    if (p?.Type === 'LATEST') return this.records.length;
    const at = this.records.findIndex((r) => r.SequenceNumber === p?.SequenceNumber);
    if (p?.Type === 'AT_SEQUENCE_NUMBER') return at;
    if (p?.Type === 'AFTER_SEQUENCE_NUMBER') return at + 1;
    throw awsError('InvalidArgumentException', `unsupported ${p?.Type}`);
  }
}
