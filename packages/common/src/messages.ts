/**
 * The data protocol between a shard reader (worker thread) and the coordinator: one MessageChannel per
 * reader. Every message is `{ v: PROTOCOL_VERSION, type, ... }` and is checked on arrival, because the
 * two ends may run different builds during a rolling upgrade and a bad message must fail loudly, not
 * be half-understood. A batch travels in one of three encodings (`bytes`: payloads in one transferred
 * ArrayBuffer; `json`: items as one JSON text, metadata in columns; `decoded`: structured-cloned items);
 * errors travel as {@link SerializedError}.
 *
 * Reader control (start / stop / status) is a request/answer call over comlink, on its own port.
 *
 * This file holds the message types; the checks on arrival are in `message-guards.ts`, the packing of
 * record bytes into a batch's buffer in `record-packing.ts`.
 */

import type { SerializedError } from './errors.js';
import { ErrorCodes, ShardlineError } from './errors.js';

/** Version of this protocol; bumped on any incompatible change. */
export const PROTOCOL_VERSION = 1 as const;

/** A record's metadata; its data bytes are `buffer.slice(offset, offset + length)` of the batch. */
export interface PackedRecordMeta {
  partitionKey: string;
  sequenceNumber: string;
  /** Set for records unpacked from a KPL aggregate or a framed codec. */
  subSequenceNumber?: number;
  explicitHashKey?: string;
  /** ApproximateArrivalTimestamp, epoch milliseconds. */
  arrivalMs: number;
  /** Byte offset of the record's data in the batch buffer. */
  offset: number;
  /** Byte length of the record's data. */
  length: number;
  /** The traceparent of the record's trace envelope (stripped from the data), if it had one. */
  traceContext?: string;
  /**
   * Set when the reader could not unpack this record (a malformed KPL aggregate): `data` is then the
   * record's raw bytes, and the receiver applies its poison-record policy to exactly this record.
   */
  error?: SerializedError;
}

/** A record already decoded by the codec in the worker; `data` must be structured-cloneable. */
export interface DecodedRecordMessage {
  data: unknown;
  partitionKey: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  explicitHashKey?: string;
  /** ApproximateArrivalTimestamp, epoch milliseconds. */
  arrivalMs: number;
  /** The traceparent of the record's trace envelope (stripped from the data), if it had one. */
  traceContext?: string;
  /**
   * Set when the record could not be decoded (codec error) or unpacked (malformed KPL aggregate):
   * `data` is then a `Uint8Array` of the raw payload, and the receiver applies its poison-record
   * policy to exactly this record.
   */
  error?: SerializedError;
}

interface BatchBase {
  v: typeof PROTOCOL_VERSION;
  type: 'batch';
  shardId: string;
  /** Increases by one per batch of a reader (from 0); the coordinator acks by it. */
  batchId: number;
  /** From the GetRecords response that produced the batch. */
  millisBehindLatest?: number;
  /** Where to resume after this batch: the sequence number of its last record. */
  lastSequenceNumber: string;
  /** With {@link lastSequenceNumber}: the last record's sub-sequence, when it came from an aggregate. */
  lastSubSequenceNumber?: number;
  /** Record bytes as fetched from Kinesis (before decoding): what the batch costs against byte credit. */
  bytes: number;
}

/** Records as raw bytes: metadata plus one ArrayBuffer with every record's data, to transfer. */
export interface BytesBatchMessage extends BatchBase {
  encoding: 'bytes';
  records: PackedRecordMeta[];
  buffer: ArrayBuffer;
}

/** Records decoded in the worker (decoding where it is cheapest). */
export interface DecodedBatchMessage extends BatchBase {
  encoding: 'decoded';
  records: DecodedRecordMessage[];
}

/** A record that could not be decoded, in a `'json'` batch: where it goes among the good ones. */
export interface PoisonRecordMessage extends DecodedRecordMessage {
  /** How many of the batch's decoded records come before it. */
  before: number;
  error: SerializedError;
}

/**
 * Records of codecs whose items are JSON values (json, jsonl, json-array, string), in columns: their
 * items as one JSON text, their metadata in arrays. The receiver turns the whole batch into records
 * with one `JSON.parse` and one pass that builds each record from the columns, instead of a structured
 * clone of an object graph (measured in BENCHMARKS.md: about half the receiving thread's time).
 * Record `i` (of the `count` that decoded, in order) has `data` = item `i` of `json`.
 */
export interface JsonBatchMessage extends BatchBase {
  encoding: 'json';
  /** A JSON array of the decoded records' items, in order. */
  json: string;
  /** How many records the columns hold. */
  count: number;
  /** The batch's distinct partition keys; record `i`'s is `partitionKeys[keyIndex[i]]`. */
  partitionKeys: string[];
  keyIndex: Uint32Array;
  /** The records' sequence numbers (decimal digits), joined by `,`. */
  sequenceNumbers: string;
  /** ApproximateArrivalTimestamp of each record, epoch milliseconds. */
  arrivalMs: Float64Array;
  /** Each record's sub-sequence number, -1 for none; absent when no record has one. */
  subSequenceNumbers?: Int32Array;
  /** Each record's explicit hash key, '' for none; absent when no record has one. */
  explicitHashKeys?: string[];
  /**
   * Each record's trace context (the traceparent of its trace envelope), '' for none; absent when no
   * record has one. Optional, so either side may be older.
   */
  traceContexts?: string[];
  /** Records that could not be decoded (raw bytes as `data`), in order. */
  poison: PoisonRecordMessage[];
}

/** worker -> coordinator: records of one shard, in order. */
export type BatchMessage = BytesBatchMessage | DecodedBatchMessage | JsonBatchMessage;

/** worker -> coordinator: the shard was read to its end (no NextShardIterator). */
export interface ShardEndMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'shard-end';
  shardId: string;
  /** From GetRecords' ChildShards; `undefined` when the service sent none (kinesalite): use ListShards. */
  childShardIds: string[] | undefined;
}

/** worker -> coordinator: the reader failed (fatal: it stopped) or hit an error it will retry. */
export interface ErrorMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'error';
  shardId: string;
  error: SerializedError;
  /** True when the reader stopped because of it; false when it backs off and carries on. */
  fatal: boolean;
}

/** worker -> coordinator: Kinesis throttled the reader (ProvisionedThroughputExceeded). */
export interface ThrottledMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'throttled';
  shardId: string;
  /** How long the reader backs off before its next call. */
  delayMs: number;
  /** Throttled responses this message reports (added to the shard's `throttled` total). */
  count: number;
}

/** worker -> coordinator: stats of the latest GetRecords call, for `status()` and metrics. */
export interface FetchedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'fetched';
  shardId: string;
  /** When the call returned, epoch milliseconds. */
  lastFetchAtMs: number;
  millisBehindLatest?: number;
  /** Kinesis records in the response (before KPL deaggregation). */
  records: number;
  /** Data bytes in the response. */
  bytes: number;
  /**
   * Shard iterators that expired (ExpiredIteratorException) since the previous `fetched` message and
   * were acquired again before this call; absent when none. Optional, so either side may be older.
   */
  expiredIterators?: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** worker -> coordinator: a log line, relayed to the coordinator's logger (workers never print). */
export interface LogMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'log';
  level: LogLevel;
  message: string;
  /** Structured-cloneable fields (the reader adds its shardId here). */
  fields?: Record<string, unknown>;
}

/** worker -> coordinator: the reader task runs on this thread (first message of every task). */
export interface StartedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'started';
  shardId: string;
  /** `threadId` of node:worker_threads in the thread running the task. */
  threadId: number;
}

export type WorkerMessage =
  | StartedMessage
  | BatchMessage
  | ShardEndMessage
  | ErrorMessage
  | ThrottledMessage
  | FetchedMessage
  | LogMessage;

/** coordinator -> worker: more room; the reader fetches only while it holds credit. */
export interface CreditMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'credit';
  /** Records granted, added to the reader's credit. */
  records: number;
  /** Bytes granted, added to the reader's credit. */
  bytes: number;
}

/**
 * coordinator -> worker: record credit taken back (more readers share the host budget now); the
 * reader's credit may go negative, and it fetches again once grants bring it above zero.
 */
export interface RevokeMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'revoke';
  /** Records taken from the reader's credit. */
  records: number;
  /** Bytes taken from the reader's credit (absent: none; older coordinators send none). */
  bytes?: number;
}

/** coordinator -> worker: the batch `batchId` (and every earlier one) was processed. */
export interface AckMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'ack';
  batchId: number;
}

/** coordinator -> worker: stop reading; no batch follows it. */
export interface StopMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'stop';
  /** Why, for logs: e.g. 'shutdown', 'lease-lost', 'handoff'. */
  reason: string;
}

export type CoordinatorMessage = CreditMessage | RevokeMessage | AckMessage | StopMessage;

export type WorkerMessageType = WorkerMessage['type'];
export type CoordinatorMessageType = CoordinatorMessage['type'];

/** For the `default` branch of a switch over a union: a compile error if a case is missing. */
export function assertNever(value: never): never {
  const type = (value as { type?: unknown } | null)?.type;
  throw new ShardlineError(
    ErrorCodes.INTERNAL,
    `unexpected value${typeof type === 'string' ? ` of type '${type}'` : ''}: not handled by this version`,
  );
}
