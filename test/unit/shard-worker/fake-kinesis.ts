/**
 * An in-memory shard behind the GetRecordsClient interface, with scripted faults, and a harness that
 * plays the coordinator's side of a reader's MessageChannel.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { GetRecordsCommandInput, GetShardIteratorCommandInput } from '@aws-sdk/client-kinesis';
import type { CoordinatorMessage, WorkerMessage } from '@shardline/common';
import { PROTOCOL_VERSION, parseWorkerMessage } from '@shardline/common';
import type { CallOptions, GetRecordsClient, GetRecordsResult } from '@shardline/shard-worker';

export interface StoredRecord {
  SequenceNumber: string;
  PartitionKey: string;
  Data: Uint8Array;
  ApproximateArrivalTimestamp: Date;
}

export interface Call {
  op: 'GetShardIterator' | 'GetRecords';
  /** Fake (Date.now) time of the call. */
  at: number;
  input: GetShardIteratorCommandInput | GetRecordsCommandInput;
}

/** Sequence numbers: fixed width, so string order is numeric order, as in Kinesis. */
export function seq(i: number): string {
  return `49${String(i + 1).padStart(54, '0')}`;
}

export function awsError(name: string, message = name): Error {
  const error = new Error(message);
  error.name = name;
  return error;
}

const encoder = new TextEncoder();

export function jsonRecord(i: number, value: unknown = { n: i }): StoredRecord {
  return rawRecord(i, encoder.encode(JSON.stringify(value)));
}

export function rawRecord(i: number, data: Uint8Array, partitionKey = `pk-${i}`): StoredRecord {
  return {
    SequenceNumber: seq(i),
    PartitionKey: partitionKey,
    Data: data,
    ApproximateArrivalTimestamp: new Date(1_000 + i),
  };
}

/**
 * One shard. Iterators are `it:<position>:<n>`; a closed shard answers no NextShardIterator once read
 * to the end. `fault` decides, per call, to throw instead of answering.
 */
export class FakeShard implements GetRecordsClient {
  readonly calls: Call[] = [];
  records: StoredRecord[];
  closed = false;
  childShardIds: string[] | undefined;
  /** millisBehindLatest while records remain after the answer; 0 at the tip. */
  behindMs = 5_000;
  /** Always answer this millisBehindLatest, when set. */
  fixedBehindMs: number | undefined;
  /** Called before each answer; throw to inject a fault. */
  fault: ((call: Call, index: number) => void) | undefined;
  /** When set, GetRecords waits for this promise (or an abort) before answering. */
  hold: Promise<void> | undefined;
  #issued = 0;

  constructor(records: StoredRecord[] = []) {
    this.records = records;
  }

  get getRecordsCalls(): Call[] {
    return this.calls.filter((c) => c.op === 'GetRecords');
  }

  get iteratorCalls(): GetShardIteratorCommandInput[] {
    return this.calls
      .filter((c) => c.op === 'GetShardIterator')
      .map((c) => c.input as GetShardIteratorCommandInput);
  }

  #position(input: GetShardIteratorCommandInput): number {
    const index = (s: string | undefined) => this.records.findIndex((r) => r.SequenceNumber === s);
    switch (input.ShardIteratorType) {
      case 'TRIM_HORIZON':
        return 0;
      case 'LATEST':
        return this.records.length;
      case 'AT_SEQUENCE_NUMBER':
        return index(input.StartingSequenceNumber);
      case 'AFTER_SEQUENCE_NUMBER':
        return index(input.StartingSequenceNumber) + 1;
      case 'AT_TIMESTAMP': {
        const at = (input.Timestamp as Date).getTime();
        const i = this.records.findIndex((r) => r.ApproximateArrivalTimestamp.getTime() >= at);
        return i === -1 ? this.records.length : i;
      }
      default:
        throw awsError('InvalidArgumentException', `bad type ${input.ShardIteratorType}`);
    }
  }

  async getShardIterator(input: GetShardIteratorCommandInput): Promise<{ ShardIterator?: string }> {
    const call: Call = { op: 'GetShardIterator', at: Date.now(), input };
    this.calls.push(call);
    this.fault?.(call, this.calls.length - 1);
    return { ShardIterator: `it:${this.#position(input)}:${this.#issued++}` };
  }

  async getRecords(input: GetRecordsCommandInput, options?: CallOptions): Promise<GetRecordsResult> {
    const call: Call = { op: 'GetRecords', at: Date.now(), input };
    this.calls.push(call);
    if (this.hold !== undefined) {
      const signal = options?.abortSignal;
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(awsError('AbortError', 'Request aborted'));
        if (signal?.aborted) onAbort();
        signal?.addEventListener('abort', onAbort, { once: true });
        this.hold!.then(resolve, reject);
      });
    }
    this.fault?.(call, this.calls.length - 1);
    const position = Number((input.ShardIterator ?? '').split(':')[1]);
    const limit = input.Limit ?? 10_000;
    const records = this.records.slice(position, position + limit);
    const next = position + records.length;
    const atEnd = next >= this.records.length;
    const out: GetRecordsResult = {
      Records: records,
      MillisBehindLatest: this.fixedBehindMs ?? (atEnd ? 0 : this.behindMs),
    };
    if (this.closed && atEnd) {
      if (this.childShardIds !== undefined) {
        out.ChildShards = this.childShardIds.map((id) => ({
          ShardId: id,
          ParentShards: [],
          HashKeyRange: undefined,
        }));
      }
    } else {
      out.NextShardIterator = `it:${next}:${this.#issued++}`;
    }
    return out;
  }
}

/** The coordinator's end of a reader's channel. */
export class CoordinatorEnd {
  readonly port: MessagePort;
  readonly readerPort: MessagePort;
  readonly messages: WorkerMessage[] = [];

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.readerPort = port2;
    port1.on('message', (data) => this.messages.push(parseWorkerMessage(data)));
  }

  of<T extends WorkerMessage['type']>(type: T): Array<Extract<WorkerMessage, { type: T }>> {
    return this.messages.filter((m): m is Extract<WorkerMessage, { type: T }> => m.type === type);
  }

  send(message: CoordinatorMessage): void {
    this.port.postMessage(message);
  }

  credit(records: number, bytes = 1 << 30): void {
    this.send({ v: PROTOCOL_VERSION, type: 'credit', records, bytes });
  }

  close(): void {
    this.port.close();
    this.readerPort.close();
  }
}

/**
 * Lets MessagePort deliveries happen (real event-loop turns: fake timers leave setImmediate alone) and
 * runs due fake timers, `rounds` times.
 */
export async function settle(clock: { tickAsync(ms: number): Promise<number> }, rounds = 4): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await new Promise<void>((resolve) => setImmediate(resolve));
    await clock.tickAsync(0);
  }
}

/** Advances fake time by `ms` in steps, letting port messages flow between steps. */
export async function advance(
  clock: { tickAsync(ms: number): Promise<number> },
  ms: number,
  stepMs = 10,
): Promise<void> {
  for (let t = 0; t < ms; t += stepMs) {
    await clock.tickAsync(Math.min(stepMs, ms - t));
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await settle(clock, 2);
}
