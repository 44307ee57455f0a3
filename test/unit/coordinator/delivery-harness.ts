/**
 * The delivery parts wired as a shard session wires them (see reader-run.ts), for the delivery unit
 * tests: a Lane per shard, the host's CreditLedger, the FailurePolicy and, in iterator mode, the
 * BatchIterator; each lane's hooks recorded.
 */
import type {
  BatchMessage,
  CoordinatorMessage,
  DecodedRecordMessage,
  ShardPosition,
} from '@shardline/common';
import {
  batchSize,
  CodecError,
  codecs,
  PROTOCOL_VERSION,
  serializeError,
  silentLogger,
} from '@shardline/common';
import { BatchIterator } from '../../../packages/coordinator/src/delivery/batch-iterator.js';
import {
  type CreditAccount,
  CreditLedger,
} from '../../../packages/coordinator/src/delivery/credit-ledger.js';
import {
  FailurePolicy,
  type FailurePolicyOptions,
} from '../../../packages/coordinator/src/delivery/failure-policy.js';
import { Lane } from '../../../packages/coordinator/src/delivery/lane.js';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';
import type { RecordHandler } from '../../../packages/coordinator/src/options.js';

/** What one shard's lane told its owner. */
export interface TestLane {
  sent: CoordinatorMessage[];
  processed: Array<{ position: ShardPosition; records: number }>;
  checkpoints: ShardPosition[];
  failed: string[];
}

export const credit = (l: TestLane) =>
  l.sent.filter((m) => m.type === 'credit').map((m) => (m.type === 'credit' ? m.records : 0));
export const revoked = (l: TestLane) =>
  l.sent.filter((m) => m.type === 'revoke').map((m) => (m.type === 'revoke' ? m.records : 0));

export function lane(): TestLane {
  return { sent: [], processed: [], checkpoints: [], failed: [] };
}

let lastBatchId = 0;
/** A fresh batch id. */
export const nextBatchId = () => lastBatchId++;
/** A reader's batch of `values` (sequence numbers from `firstSeq`); `keys` and `arrivalMs` per record. */
export function batch(
  shardId: string,
  values: Array<number | 'poison'>,
  firstSeq = 100,
  per: { keys?: string[]; arrivalMs?: number[] } = {},
): BatchMessage {
  const records: DecodedRecordMessage[] = values.map((v, n) => {
    const record: DecodedRecordMessage = {
      data: v === 'poison' ? new Uint8Array([1]) : { v },
      partitionKey: per.keys?.[n] ?? 'k',
      sequenceNumber: String(firstSeq + n),
      arrivalMs: per.arrivalMs?.[n] ?? 0,
    };
    if (v === 'poison') record.error = serializeError(new CodecError('json', 'undecodable'));
    return record;
  });
  return {
    v: PROTOCOL_VERSION,
    type: 'batch',
    shardId,
    batchId: nextBatchId(),
    lastSequenceNumber: String(firstSeq + values.length - 1),
    bytes: values.length * 10,
    encoding: 'decoded',
    records,
  };
}

export const tick = () => new Promise((resolve) => setImmediate(resolve));

export interface DeliveryOptions {
  mode?: 'handler' | 'iterator';
  handler?: RecordHandler<{ v: number }>;
  maxBufferedRecords?: number;
  onHandlerError?: FailurePolicyOptions['onHandlerError'];
  deadLetter?: FailurePolicyOptions['deadLetter'];
  maxRecordAgeMs?: number;
  parallelism?: number;
  tracing?: FailurePolicyOptions['tracing'];
}

/** Lanes, a ledger, a policy and (iterator mode) an iterator, wired as a shard session wires them. */
export function delivery(options: DeliveryOptions = {}) {
  const events = new CoordinatorEvents(silentLogger);
  const ledger = new CreditLedger({
    maxBufferedRecords: options.maxBufferedRecords ?? 100,
    maxBufferedBytes: 64 * 1024 * 1024,
  });
  const iterator = options.mode === 'iterator' ? new BatchIterator<{ v: number }>() : undefined;
  const policy = new FailurePolicy({
    onHandlerError: options.onHandlerError ?? {
      retries: 0,
      backoffMs: { initial: 1, max: 1 },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      then: 'stop-shard',
    },
    events,
    logger: silentLogger,
    ...(options.maxRecordAgeMs === undefined ? {} : { maxRecordAgeMs: options.maxRecordAgeMs }),
    ...(options.deadLetter === undefined ? {} : { deadLetter: options.deadLetter }),
    ...(options.tracing === undefined ? {} : { tracing: options.tracing }),
  });
  const lanes = new Map<string, { lane: Lane<{ v: number }>; account: CreditAccount }>();
  return {
    events,
    ledger,
    iterator: iterator!,
    open(shardId: string, l: TestLane): Lane<{ v: number }> {
      const account = ledger.open(shardId, (m) => l.sent.push(m));
      const created = new Lane<{ v: number }>({
        shardId,
        codec: codecs.json as never,
        sink:
          iterator !== undefined
            ? { mode: 'iterator', iterator }
            : { mode: 'handler', handler: options.handler! },
        policy,
        ...(options.parallelism === undefined ? {} : { parallelism: options.parallelism }),
        hooks: {
          processed: (position, records) => l.processed.push({ position, records }),
          checkpoint: async (position) => {
            l.checkpoints.push(position);
          },
          finished: (b, completed) => {
            account.release(batchSize(b), b.bytes);
            if (completed) l.sent.push({ v: PROTOCOL_VERSION, type: 'ack', batchId: b.batchId });
          },
          failed: (error) => l.failed.push(error.code),
        },
        events,
        logger: silentLogger,
      });
      lanes.set(shardId, { lane: created, account });
      return created;
    },
    push(shardId: string, message: BatchMessage): void {
      const { lane: target, account } = lanes.get(shardId)!;
      const keep = !target.halted;
      account.received(batchSize(message), message.bytes, keep);
      if (keep) target.push(message);
    },
    lane: (shardId: string) => lanes.get(shardId)!.lane,
    get bufferedRecords() {
      return ledger.bufferedRecords;
    },
  };
}
