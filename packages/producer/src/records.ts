/**
 * What the producer's parts share: the Kinesis limits, a user record on its way (PendingRecord), a shard's
 * queue and pacing state (ShardState), a PutRecords call being built or in flight (PutRequest), and the
 * validation and encoding of a record at `put()`.
 */
import { randomUUID } from 'node:crypto';
import type { PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import {
  type Codec,
  classifyAwsError,
  codecs,
  ErrorCodes,
  KinesisError,
  parseExplicitHashKey,
  type RateLimiter,
  ShardlineError,
  validatePartitionKey,
} from '@shardline/common';
import { Deque } from './deque.js';
import type { ResolvedProducerOptions } from './options.js';

/** PutRecords limits. */
export const PUT_RECORDS_MAX_ENTRIES = 500;
export const PUT_RECORDS_MAX_BYTES = 5 * 1024 * 1024;
/** Largest Kinesis record, counting data + partition key. */
export const MAX_RECORD_BYTES = 1_048_576;
/**
 * Upper bound of what KPL framing adds around one user record (magic, MD5, protobuf tags and lengths,
 * the key table entry): used to refuse at `put()` a record that could never be aggregated.
 */
export const AGGREGATE_OVERHEAD_BYTES = 64;

/** Where Kinesis put a record. */
export interface PutReceipt {
  shardId: string;
  sequenceNumber: string;
  /**
   * The record's index inside its Kinesis record, when that carries several user records: a KPL
   * aggregate (`aggregate: true`) or a framed pack (jsonl, msgpack, json-array codecs). Absent otherwise.
   */
  subSequenceNumber?: number;
}

/** Per-record options of {@link Producer.put}. */
export interface PutOptions {
  /**
   * 1 to 256 characters; picks the shard (MD5). Records with the same key keep their order only with
   * `maxInFlightPerShard: 1`.
   * @defaultValue a random UUID per record, which spreads records evenly over the shards
   */
  partitionKey?: string;
  /** Decimal 0..2^128-1: routes the record to the shard holding this hash key instead of the key's MD5. */
  explicitHashKey?: string;
}

/** What {@link Producer.writable} accepts: one object per record. */
export interface ProducerRecord<T = unknown> extends PutOptions {
  /** The item, encoded with the producer's codec. */
  data: T;
}

export enum RecordState {
  Waiting = 0,
  Accepted = 1,
  Settled = 2,
}

/**
 * One user record. Its fields double as a KPL `UserRecord` (partitionKey, explicitHashKey, data), so it
 * goes to the Aggregator without a copy.
 */
export class PendingRecord {
  state = RecordState.Waiting;
  hashKey: bigint | undefined;
  attempts = 0;
  epoch = 0;
  enqueuedAt = 0;
  resolve!: (receipt: PutReceipt) => void;
  reject!: (error: unknown) => void;
  /** Set by writable(): called when the record is accepted after waiting for room. */
  onAccepted: (() => void) | undefined;

  constructor(
    readonly data: Uint8Array,
    readonly partitionKey: string,
    readonly explicitHashKey: string | undefined,
    readonly keyBytes: number,
    /** data + partition key, as Kinesis counts a record. */
    readonly bytes: number,
  ) {}
}

export class ShardState {
  readonly queue = new Deque<PendingRecord>();
  queuedBytes = 0;
  inFlight = 0;
  /** No request for this shard before this time (backoff after failures). */
  notBefore = 0;
  open = true;
  /**
   * Ordered mode: a closed shard whose hash range overlaps this one still has a call in flight. Its
   * records may fail and come back to this queue's head, so nothing here may be sent before they do.
   */
  held = false;
  constructor(
    readonly id: string,
    /** Hash-key range, both ends inclusive. */
    readonly start: bigint,
    readonly end: bigint,
    readonly limiter: RateLimiter | undefined,
  ) {}
}

/** A plain entry's record, or the records of an aggregate / pack in sub-sequence order. */
export type EntryGroup = PendingRecord | PendingRecord[];

/** A PutRecords call being built or in flight. Parallel arrays, one slot per entry. */
export interface PutRequest {
  wire: PutRecordsRequestEntry[];
  groups: EntryGroup[];
  entryShards: ShardState[];
  /** Distinct shards touched (each had its inFlight incremented). */
  shards: ShardState[];
  bytes: number;
  records: number;
  startedAt: number;
}

/** Every user record of a request, in entry order. */
export function recordsOf(request: PutRequest): PendingRecord[] {
  const all: PendingRecord[] = [];
  for (const group of request.groups) {
    if (Array.isArray(group)) all.push(...group);
    else all.push(group);
  }
  return all;
}

/** How several items share one Kinesis record without aggregation: by the codec's own framing. */
export type Framing = 'concat' | 'json-array' | undefined;

export function framingOf(codec: Codec): Framing {
  if (codec.name === codecs.jsonl.name || codec.name === codecs.msgpack.name) {
    return codec.framed ? 'concat' : undefined;
  }
  if (codec.name === codecs['json-array'].name) return codec.framed ? 'json-array' : undefined;
  // A custom framed codec's layout is unknown, so its items are sent one per record.
  return undefined;
}

export function invalidRecord(
  field: string,
  message: string,
  details: Record<string, unknown> = {},
): ShardlineError {
  return new ShardlineError(ErrorCodes.INVALID_RECORD, `${field} ${message}`, {
    details: { field, ...details },
  });
}

/**
 * Validates and encodes one `put()`: the key, the explicit hash key, the codec, the size.
 * @throws ShardlineError `ERR_INVALID_RECORD` / `ERR_CODEC` naming the problem.
 */
export function makeRecord<T>(
  options: ResolvedProducerOptions<T>,
  data: T,
  putOptions: PutOptions | undefined,
): PendingRecord {
  let explicitHashKey: string | undefined;
  let hashKey: bigint | undefined;
  if (putOptions !== undefined && putOptions !== null) {
    if (typeof putOptions !== 'object') {
      throw invalidRecord(
        'options',
        `must be an object { partitionKey?, explicitHashKey? } (got ${typeof putOptions})`,
      );
    }
    if (putOptions.explicitHashKey !== undefined) {
      hashKey = parseExplicitHashKey(putOptions.explicitHashKey);
      explicitHashKey = putOptions.explicitHashKey;
    }
  }
  const key = putOptions?.partitionKey;
  // randomUUID draws from a cached entropy pool: cheap per record, and its MD5 spreads uniformly.
  const partitionKey = key === undefined ? randomUUID() : validatePartitionKey(key);
  const payload = options.codec.encodeItem(data);
  const keyBytes = key === undefined ? partitionKey.length : Buffer.byteLength(partitionKey, 'utf8');
  const bytes = payload.length + keyBytes;
  if (options.aggregate) {
    const alone = bytes + keyBytes + (explicitHashKey?.length ?? 0) + AGGREGATE_OVERHEAD_BYTES;
    if (alone > MAX_RECORD_BYTES) {
      throw invalidRecord(
        'data',
        `is too large to aggregate: ${payload.length} bytes of data + ${keyBytes} bytes of partition key + ` +
          `KPL framing exceed the ${MAX_RECORD_BYTES}-byte Kinesis record limit`,
        { bytes: alone, maxBytes: MAX_RECORD_BYTES },
      );
    }
  } else if (bytes > MAX_RECORD_BYTES) {
    throw invalidRecord(
      'data',
      `is too large: ${payload.length} bytes of data + ${keyBytes} bytes of partition key = ${bytes}, over the ` +
        `${MAX_RECORD_BYTES}-byte Kinesis record limit`,
      { bytes, maxBytes: MAX_RECORD_BYTES },
    );
  }
  const record = new PendingRecord(payload, partitionKey, explicitHashKey, keyBytes, bytes);
  record.hashKey = hashKey;
  return record;
}

/** A Kinesis error for a whole call, with a clear message for a missing stream. */
export function describeCallError(
  options: ResolvedProducerOptions<unknown>,
  error: unknown,
  operation: string,
): ShardlineError {
  const classified = classifyAwsError(error, operation);
  if (classified.code === ErrorCodes.NOT_FOUND) {
    const stream = options.streamArn ?? options.streamName;
    return new KinesisError(ErrorCodes.NOT_FOUND, `stream '${stream}' not found (${classified.message})`, {
      retriable: false,
      cause: error,
      awsName: classified instanceof KinesisError ? classified.awsName : undefined,
      details: { stream, operation },
    });
  }
  return classified;
}
