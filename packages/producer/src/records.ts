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
  describeRecordLimit,
  ErrorCodes,
  KINESIS_LIMITS,
  KinesisError,
  KPL_DEFAULT_MAX_BYTES,
  parseExplicitHashKey,
  type RateLimiter,
  ShardlineError,
  type StreamLimits,
  traceEnvelopeBytes,
  validatePartitionKey,
  wrapTraceEnvelope,
} from '@shardline/common';
import { Deque } from './deque.js';
import type { ResolvedProducerOptions } from './options.js';

/**
 * The classic PutRecords limits (500 entries, 5 MiB per request, 1 MiB per record counting data + partition
 * key): what the producer uses on a stream that reports no `MaxRecordSizeInKiB`. A stream that reports one
 * gets its own record limit and 10 MiB requests (see `Producer.streamLimits` and `KINESIS_LIMITS`).
 */
export const PUT_RECORDS_MAX_ENTRIES = KINESIS_LIMITS.putRecordsMaxEntries;
export const PUT_RECORDS_MAX_BYTES = KINESIS_LIMITS.classicPutRecordsMaxBytes;
/** Largest Kinesis record (data + partition key) on a stream that reports no `MaxRecordSizeInKiB`. */
export const MAX_RECORD_BYTES = KINESIS_LIMITS.classicMaxRecordBytes;
/**
 * Largest KPL aggregate or framed pack of several records (data + partition key). It stays at 1 MiB on a
 * stream that allows larger records: Kinesis meant those for the odd large record (its burst capacity
 * refills at the 1 MiB/s shard rate), and KPL readers and Lambda expect aggregates of at most 1 MiB. A
 * single record larger than this goes as a plain entry (KPL readers pass plain records through).
 */
export const AGGREGATE_MAX_BYTES = KPL_DEFAULT_MAX_BYTES;
/**
 * Upper bound of what KPL framing adds around one user record (magic, MD5, protobuf tags and lengths,
 * the key table entry): used to decide whether a record fits an aggregate.
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
   * `maxInFlightPerShard: 1`. On a stream whose RecordDistributionStrategy is `AUTO`, Kinesis ignores it
   * (it picks the shard itself and keeps no per-key order); a record put without one is sent without one,
   * and its readers see an empty `partitionKey`.
   * @defaultValue a random UUID per record, which spreads records evenly over the shards (none on `AUTO`)
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
  /** Its size was checked against the stream's own limits (not only against the 10 MiB maximum). */
  sizeChecked = false;
  /** The traceparent of the context active at `put()` (tracing on and a span active), for links. */
  traceparent: string | undefined = undefined;
  /** Bytes of `data` that are its trace envelope (`tracing.propagate`); 0 without one. */
  envelopeBytes = 0;

  constructor(
    readonly data: Uint8Array,
    /** The caller's key, or a random UUID when they gave none (see `keyGiven`). */
    readonly partitionKey: string,
    readonly explicitHashKey: string | undefined,
    readonly keyBytes: number,
    /** data + partition key, as Kinesis counts a record. */
    readonly bytes: number,
    /** The caller gave the partition key; on an `AUTO` stream a record without one is sent without one. */
    readonly keyGiven: boolean,
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
 * Validates and encodes one `put()`: the key, the explicit hash key, the codec, the size (against the
 * stream's limits when they are known, else against the 10 MiB Kinesis maximum; {@link checkRecordSize}
 * checks it again once they are). `traceparent`: the context active at `put()`, if any; with
 * `tracing.propagate` the payload goes in a trace envelope carrying it (its bytes count in the size).
 * @throws ShardlineError `ERR_INVALID_RECORD` / `ERR_CODEC` naming the problem.
 */
export function makeRecord<T>(
  options: ResolvedProducerOptions<T>,
  data: T,
  putOptions: PutOptions | undefined,
  limits: StreamLimits | undefined,
  traceparent?: string,
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
  const encoded = options.codec.encodeItem(data);
  const enveloped = traceparent !== undefined && options.tracing.propagate;
  const payload = enveloped ? wrapTraceEnvelope(traceparent, encoded) : encoded;
  const keyBytes = key === undefined ? partitionKey.length : Buffer.byteLength(partitionKey, 'utf8');
  const record = new PendingRecord(
    payload,
    partitionKey,
    explicitHashKey,
    keyBytes,
    payload.length + keyBytes,
    key !== undefined,
  );
  record.hashKey = hashKey;
  record.traceparent = traceparent;
  if (enveloped) record.envelopeBytes = traceEnvelopeBytes(traceparent);
  const error = checkRecordSize(record, limits);
  if (error !== undefined) throw error;
  return record;
}

/**
 * The error for a record over its stream's record limit (or, with `limits` unknown yet, over the 10 MiB
 * Kinesis maximum), naming the limit and where it came from; undefined when it fits. Marks the record
 * checked once `limits` are known.
 */
export function checkRecordSize(
  record: PendingRecord,
  limits: StreamLimits | undefined,
): ShardlineError | undefined {
  const max = limits?.maxRecordBytes ?? KINESIS_LIMITS.maxRecordBytes;
  if (record.bytes > max) {
    const limit =
      limits === undefined
        ? `the ${max}-byte Kinesis maximum record size (10 MiB)`
        : describeRecordLimit(limits);
    return invalidRecord(
      'data',
      `is too large: ${record.data.length} bytes of data${
        record.envelopeBytes > 0
          ? ` (${record.envelopeBytes} of them the trace envelope of tracing.propagate)`
          : ''
      } + ${record.keyBytes} bytes of partition key = ${record.bytes}, over ${limit}`,
      {
        bytes: record.bytes,
        maxBytes: max,
        limitSource: limits?.source ?? 'kinesis-maximum',
        ...(record.envelopeBytes > 0 ? { envelopeBytes: record.envelopeBytes } : {}),
      },
    );
  }
  if (limits !== undefined) record.sizeChecked = true;
  return undefined;
}

/** The size of a record as one KPL aggregate of its own. */
export function aggregatedSize(record: PendingRecord): number {
  return record.bytes + record.keyBytes + (record.explicitHashKey?.length ?? 0) + AGGREGATE_OVERHEAD_BYTES;
}

/** The PartitionKey a record's entry carries: none on an `AUTO` stream when the caller gave none. */
export function wireKey(record: PendingRecord, auto: boolean): string | undefined {
  return auto && !record.keyGiven ? undefined : record.partitionKey;
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
