/**
 * From a GetRecords response to the records of a batch message (worker side), and from a batch
 * message back to {@link ShardRecord}s (receiver side).
 *
 * Sub-sequence numbers: every item of a Kinesis record gets its ordinal within that record when the
 * record is a KPL aggregate or the codec is framed (jsonl, msgpack, json-array), counting across the
 * aggregate's sub-records. For an aggregate of one-item payloads this is the KPL sub-sequence number.
 * Decoding is deterministic, so re-reading a record gives the same numbering, which is what resuming
 * mid-record (AT_SEQUENCE_NUMBER and skip through the checkpoint's sub-sequence) relies on.
 */
import type {
  BatchMessage,
  Codec,
  DecodedRecordMessage,
  KinesisRecordInput,
  RecordToPack,
  SerializedError,
  ShardRecord,
} from '@shardline/common';
import { CodecError, deaggregate, serializeError, unpackRecords } from '@shardline/common';
import type { BatchEncoding } from './options.js';

/** A record as GetRecords returns it (the SDK's `_Record`, only the fields the reader reads). */
export interface FetchedRecord {
  Data?: Uint8Array | undefined;
  PartitionKey?: string | undefined;
  SequenceNumber?: string | undefined;
  ApproximateArrivalTimestamp?: Date | undefined;
}

/** Skip items of record `sequenceNumber` whose sub-sequence is <= `subSequenceNumber` (resume mid-record). */
export interface SkipThrough {
  sequenceNumber: string;
  subSequenceNumber: number;
}

/** The records of one response, ready for a batch message. */
export interface UnpackedResponse {
  /** `'bytes'`: items to pack (raw payloads); `'decoded'`: decoded items. */
  packed: RecordToPack[];
  decoded: DecodedRecordMessage[];
  /** Data bytes of the response's Kinesis records. */
  bytes: number;
  /** Sequence number of the response's last Kinesis record (resume point after it), if any. */
  lastKinesisSequenceNumber: string | undefined;
}

const EMPTY = new Uint8Array(0);

/**
 * Deaggregates, decodes (`'decoded'`) and skips what a mid-record checkpoint already covers. Never
 * throws for bad data: a malformed aggregate or an undecodable payload becomes one record with
 * `error` set and its raw bytes as data.
 */
export function unpackResponse(
  records: readonly FetchedRecord[],
  codec: Codec,
  encoding: BatchEncoding,
  skip: SkipThrough | undefined,
): UnpackedResponse {
  const out: UnpackedResponse = { packed: [], decoded: [], bytes: 0, lastKinesisSequenceNumber: undefined };
  const framed = codec.framed;
  for (const record of records) {
    const data = record.Data ?? EMPTY;
    const sequenceNumber = record.SequenceNumber ?? '';
    const partitionKey = record.PartitionKey ?? '';
    const arrivalMs = record.ApproximateArrivalTimestamp?.getTime() ?? 0;
    out.bytes += data.byteLength;
    out.lastKinesisSequenceNumber = sequenceNumber;
    const skipThrough =
      skip !== undefined && skip.sequenceNumber === sequenceNumber ? skip.subSequenceNumber : -1;
    const input: KinesisRecordInput = { data, partitionKey, sequenceNumber };
    if (record.ApproximateArrivalTimestamp !== undefined) {
      input.approximateArrivalTimestamp = record.ApproximateArrivalTimestamp;
    }

    let subs: Array<KinesisRecordInput & { subSequenceNumber?: number }>;
    try {
      subs = deaggregate(input);
    } catch (error) {
      // The whole Kinesis record is the poison record: position (sequenceNumber), no sub-sequence.
      if (skipThrough < 0) {
        pushError(out, encoding, { partitionKey, sequenceNumber, arrivalMs }, data, serializeError(error));
      }
      continue;
    }
    const aggregated = subs.length !== 1 || subs[0]!.subSequenceNumber !== undefined;
    let ordinal = 0;
    for (const sub of subs) {
      const meta: Meta = { partitionKey: sub.partitionKey, sequenceNumber, arrivalMs };
      if (sub.explicitHashKey !== undefined) meta.explicitHashKey = sub.explicitHashKey;
      if (encoding === 'bytes') {
        // Not framed (checked by the options): one item per sub-record.
        if (aggregated) meta.subSequenceNumber = ordinal;
        if (ordinal++ > skipThrough) out.packed.push({ ...meta, data: sub.data });
        continue;
      }
      let items: unknown[];
      try {
        items = codec.decode(sub.data);
      } catch (error) {
        if (aggregated || framed) meta.subSequenceNumber = ordinal;
        if (ordinal++ > skipThrough) pushError(out, encoding, meta, sub.data, serializeError(error));
        continue;
      }
      for (const item of items) {
        const m: DecodedRecordMessage = { ...meta, data: codec.name === 'raw' ? copy(item) : item };
        if (aggregated || framed) m.subSequenceNumber = ordinal;
        if (ordinal++ > skipThrough) out.decoded.push(m);
      }
    }
  }
  return out;
}

type Meta = Omit<DecodedRecordMessage, 'data'>;

/**
 * Raw payloads can be views into a large buffer (the SDK's decoding pool, an aggregate): a structured
 * clone of a view copies its whole ArrayBuffer, so a decoded batch carries exact copies instead.
 */
function copy(value: unknown): unknown {
  return value instanceof Uint8Array ? value.slice() : value;
}

function pushError(
  out: UnpackedResponse,
  encoding: BatchEncoding,
  meta: Meta,
  data: Uint8Array,
  error: SerializedError,
): void {
  if (encoding === 'bytes') out.packed.push({ ...meta, data, error });
  else out.decoded.push({ ...meta, data: data.slice(), error });
}

/** One record of a received batch: a {@link ShardRecord}, or the raw bytes and the error that made it poison. */
export type BatchRecord<T = unknown> =
  | { ok: true; record: ShardRecord<T> }
  | { ok: false; record: ShardRecord<Uint8Array>; error: SerializedError };

/**
 * Receiver side: the records of a batch message as {@link ShardRecord}s, decoding `'bytes'` batches
 * with `codec` (the reader's codec). A record that could not be unpacked or decoded comes back with
 * `ok: false`, its raw bytes as `data` and the error, so the caller can apply its poison-record policy
 * to exactly that record. Never throws for bad data.
 */
export function batchToRecords<T = unknown>(batch: BatchMessage, codec: Codec): BatchRecord<T>[] {
  const out: BatchRecord<T>[] = [];
  const records = batch.encoding === 'bytes' ? unpackRecords(batch.records, batch.buffer) : batch.records;
  for (const r of records) {
    const record: ShardRecord<unknown> = {
      data: r.data,
      partitionKey: r.partitionKey,
      sequenceNumber: r.sequenceNumber,
      approximateArrivalTimestamp: new Date(r.arrivalMs),
    };
    if (r.subSequenceNumber !== undefined) record.subSequenceNumber = r.subSequenceNumber;
    if (r.explicitHashKey !== undefined) record.explicitHashKey = r.explicitHashKey;
    if (r.error !== undefined) {
      out.push({ ok: false, record: record as ShardRecord<Uint8Array>, error: r.error });
      continue;
    }
    if (batch.encoding === 'decoded') {
      out.push({ ok: true, record: record as ShardRecord<T> });
      continue;
    }
    try {
      const items = codec.decode(r.data as Uint8Array);
      if (items.length !== 1) {
        throw new CodecError(codec.name, `a 'bytes' batch needs one item per payload (got ${items.length})`);
      }
      record.data = items[0];
      out.push({ ok: true, record: record as ShardRecord<T> });
    } catch (error) {
      out.push({ ok: false, record: record as ShardRecord<Uint8Array>, error: serializeError(error) });
    }
  }
  return out;
}
