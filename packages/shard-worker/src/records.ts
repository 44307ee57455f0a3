/**
 * From a GetRecords response to the records of a batch message (the sending side; the receiving side,
 * `batchToRecords`, is in @shardline/common next to the message protocol).
 *
 * Sub-sequence numbers: every item of a Kinesis record gets its ordinal within that record when the
 * record is a KPL aggregate or the codec is framed (jsonl, msgpack, json-array), counting across the
 * aggregate's sub-records. For an aggregate of one-item payloads this is the KPL sub-sequence number.
 * Decoding is deterministic, so re-reading a record gives the same numbering, which is what resuming
 * mid-record (AT_SEQUENCE_NUMBER and skip through the checkpoint's sub-sequence) relies on.
 */
import type {
  Codec,
  DecodedRecordMessage,
  JsonBatchMessage,
  KinesisRecordInput,
  PoisonRecordMessage,
  RecordToPack,
  SerializedError,
} from '@shardline/common';
import { CodecError, deaggregate, serializeError, unwrapTraceEnvelope } from '@shardline/common';
import { unpackJson } from './json-unpack.js';
import type { BatchEncoding } from './options.js';
import { stripTraceEnvelopes } from './trace-strip.js';

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
  /** `'json'`: the good records' items as JSON texts, and their metadata columns (see JsonBatchMessage). */
  json: JsonColumns;
  /** `'json'`: the records that could not be decoded. */
  poison: PoisonRecordMessage[];
  /** Records in the batch (poison ones included). */
  count: number;
  /** The last record's position (the batch's resume point). */
  last: { sequenceNumber: string; subSequenceNumber?: number } | undefined;
  /** Data bytes of the response's Kinesis records. */
  bytes: number;
  /** Sequence number of the response's last Kinesis record (resume point after it), if any. */
  lastKinesisSequenceNumber: string | undefined;
}

/** The columns of a `'json'` batch as it is built. */
export interface JsonColumns {
  items: string[];
  /** Distinct partition key -> its index in the key table. */
  keys: Map<string, number>;
  keyIndex: number[];
  sequenceNumbers: string[];
  arrivalMs: number[];
  /** -1 for none; empty until a record has one (`anySubSequence`), then one per item. */
  subSequenceNumbers: number[];
  /** '' for none; empty until a record has one (`anyHashKey`), then one per item. */
  explicitHashKeys: string[];
  /** '' for none; empty until a record has one (`anyTrace`), then one per item. */
  traceContexts: string[];
  anySubSequence: boolean;
  anyHashKey: boolean;
  anyTrace: boolean;
}

const EMPTY = new Uint8Array(0);

function jsonColumns(): JsonColumns {
  return {
    items: [],
    keys: new Map(),
    keyIndex: [],
    sequenceNumbers: [],
    arrivalMs: [],
    subSequenceNumbers: [],
    explicitHashKeys: [],
    traceContexts: [],
    anySubSequence: false,
    anyHashKey: false,
    anyTrace: false,
  };
}

/** The fields of a `'json'` batch message from its columns (typed arrays of their own, to transfer). */
export function jsonBatchFields(
  unpacked: UnpackedResponse,
): Omit<JsonBatchMessage, keyof BatchBaseFields | 'encoding'> {
  const c = unpacked.json;
  const fields: Omit<JsonBatchMessage, keyof BatchBaseFields | 'encoding'> = {
    json: `[${c.items.join(',')}]`,
    count: c.items.length,
    partitionKeys: [...c.keys.keys()],
    keyIndex: new Uint32Array(c.keyIndex),
    sequenceNumbers: c.sequenceNumbers.join(','),
    arrivalMs: new Float64Array(c.arrivalMs),
    poison: unpacked.poison,
  };
  if (c.anySubSequence) fields.subSequenceNumbers = new Int32Array(c.subSequenceNumbers);
  if (c.anyHashKey) fields.explicitHashKeys = c.explicitHashKeys;
  if (c.anyTrace) fields.traceContexts = c.traceContexts;
  return fields;
}

type BatchBaseFields = Pick<
  JsonBatchMessage,
  | 'v'
  | 'type'
  | 'shardId'
  | 'batchId'
  | 'millisBehindLatest'
  | 'lastSequenceNumber'
  | 'lastSubSequenceNumber'
  | 'bytes'
>;

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
  const out: UnpackedResponse = {
    packed: [],
    decoded: [],
    json: jsonColumns(),
    poison: [],
    count: 0,
    last: undefined,
    bytes: 0,
    lastKinesisSequenceNumber: undefined,
  };
  const framed = codec.framed;
  const decodeJson = encoding === 'json' ? codec.decodeJson?.bind(codec) : undefined;
  if (encoding === 'json' && decodeJson === undefined) {
    throw new CodecError(codec.name, "the 'json' batch encoding needs a codec whose items are JSON values");
  }
  if (decodeJson !== undefined) {
    unpackJson(records, codec, decodeJson, skip, out);
    return out;
  }
  const stripped = stripTraceEnvelopes(records);
  for (let r = 0; r < records.length; r++) {
    const record = stripped === undefined ? records[r]! : stripped.records[r]!;
    const trace = stripped?.traces[r];
    const data = record.Data ?? EMPTY;
    const sequenceNumber = record.SequenceNumber ?? '';
    const partitionKey = record.PartitionKey ?? '';
    const arrivalMs = record.ApproximateArrivalTimestamp?.getTime() ?? 0;
    // As fetched, envelope included: what the batch costs against byte credit.
    out.bytes += (records[r]!.Data ?? EMPTY).byteLength;
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
      if (aggregated) {
        // Each user record of an aggregate carries its own envelope.
        const unwrapped = unwrapTraceEnvelope(sub.data);
        if (unwrapped !== undefined) {
          sub.data = unwrapped.payload;
          meta.traceContext = unwrapped.traceContext;
        }
      } else if (trace !== undefined) meta.traceContext = trace;
      if (encoding === 'bytes') {
        // Not framed (checked by the options): one item per sub-record.
        if (aggregated) meta.subSequenceNumber = ordinal;
        if (ordinal++ > skipThrough) push(out, meta, () => out.packed.push({ ...meta, data: sub.data }));
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
        if (ordinal++ > skipThrough) push(out, m, () => out.decoded.push(m));
      }
    }
  }
  return out;
}

type Meta = Omit<DecodedRecordMessage, 'data'>;

/** Adds one record (`add` puts it where its encoding wants it) and keeps count and position. */
function push(out: UnpackedResponse, meta: Meta, add: () => void): void {
  add();
  out.count++;
  out.last =
    meta.subSequenceNumber === undefined
      ? { sequenceNumber: meta.sequenceNumber }
      : { sequenceNumber: meta.sequenceNumber, subSequenceNumber: meta.subSequenceNumber };
}

/**
 * Raw payloads can be views into a large buffer (the SDK's decoding pool, an aggregate): a structured
 * clone of a view copies its whole ArrayBuffer, so a decoded batch carries exact copies instead.
 */
function copy(value: unknown): unknown {
  return value instanceof Uint8Array ? exactCopy(value) : value;
}

/**
 * Not `data.slice()`: the sub-records of an aggregate are Buffers (protobufjs decodes from a Buffer
 * view), and `Buffer#slice` returns another view of the same memory.
 */
function exactCopy(data: Uint8Array): Uint8Array {
  return new Uint8Array(data);
}

function pushError(
  out: UnpackedResponse,
  encoding: BatchEncoding,
  meta: Meta,
  data: Uint8Array,
  error: SerializedError,
): void {
  push(out, meta, () => {
    // ('json' batches are built in json-unpack.ts.)
    if (encoding === 'bytes') out.packed.push({ ...meta, data, error });
    else out.decoded.push({ ...meta, data: exactCopy(data), error });
  });
}
