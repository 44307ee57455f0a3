/**
 * The receiving half of the batch wire format: a batch message (see `messages.ts`) back to
 * {@link ShardRecord}s. It lives next to the protocol, not in the shard worker that sends batches,
 * because every receiver (the coordinator, the CLI's tail, a user's own reader host) needs it and none
 * of them should depend on the sender's package for it.
 */
import type { Codec } from './codecs.js';
import type { SerializedError } from './errors.js';
import { CodecError, ErrorCodes, ShardlineError, serializeError } from './errors.js';
import type { BatchMessage, JsonBatchMessage } from './messages.js';
import { unpackRecords } from './record-packing.js';
import type { ShardRecord } from './types.js';

/** One record of a received batch: a {@link ShardRecord}, or the raw bytes and the error that made it poison. */
export type BatchRecord<T = unknown> =
  | { ok: true; record: ShardRecord<T> }
  | { ok: false; record: ShardRecord<Uint8Array>; error: SerializedError };

/** A record of a batch that could not be unpacked or decoded. */
export interface PoisonRecord {
  /** How many of the batch's good records come before it. */
  before: number;
  /** Its raw bytes as `data`. */
  record: ShardRecord<Uint8Array>;
  error: SerializedError;
}

/** A received batch: its good records in order, and where its poison records fall among them. */
export interface SplitBatch<T = unknown> {
  records: ShardRecord<T>[];
  /** In order; usually empty. */
  poison: PoisonRecord[];
}

interface WireRecord {
  data: unknown;
  partitionKey: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  explicitHashKey?: string;
  arrivalMs: number;
  traceContext?: string;
}

function toRecord(r: WireRecord): ShardRecord<unknown> {
  const record: ShardRecord<unknown> = {
    data: r.data,
    partitionKey: r.partitionKey,
    sequenceNumber: r.sequenceNumber,
    approximateArrivalTimestamp: new Date(r.arrivalMs),
  };
  if (r.subSequenceNumber !== undefined) record.subSequenceNumber = r.subSequenceNumber;
  if (r.explicitHashKey !== undefined) record.explicitHashKey = r.explicitHashKey;
  if (r.traceContext !== undefined) record.traceContext = r.traceContext;
  return record;
}

/**
 * The records of a batch message, the good ones apart from the poison ones (a record that could not be
 * unpacked or decoded: its raw bytes and the error, so the caller can apply its poison-record policy to
 * exactly that record). `'bytes'` batches are decoded with `codec` (the reader's codec). A `'json'` batch
 * costs one `JSON.parse` and one object and Date per record. Never throws for bad data; throws ERR_PROTOCOL for a
 * batch that breaks the wire format.
 */
export function splitBatch<T = unknown>(batch: BatchMessage, codec: Codec): SplitBatch<T> {
  if (batch.encoding === 'json') return splitJsonBatch<T>(batch);
  const out: SplitBatch<T> = { records: [], poison: [] };
  const wire = batch.encoding === 'bytes' ? unpackRecords(batch.records, batch.buffer) : batch.records;
  for (const r of wire) {
    const record = toRecord(r);
    if (r.error !== undefined) {
      out.poison.push({
        before: out.records.length,
        record: record as ShardRecord<Uint8Array>,
        error: r.error,
      });
      continue;
    }
    if (batch.encoding === 'decoded') {
      out.records.push(record as ShardRecord<T>);
      continue;
    }
    try {
      const items = codec.decode(r.data as Uint8Array);
      if (items.length !== 1) {
        throw new CodecError(codec.name, `a 'bytes' batch needs one item per payload (got ${items.length})`);
      }
      record.data = items[0];
      out.records.push(record as ShardRecord<T>);
    } catch (error) {
      out.poison.push({
        before: out.records.length,
        record: record as ShardRecord<Uint8Array>,
        error: serializeError(error),
      });
    }
  }
  return out;
}

function protocolError(batch: BatchMessage, problem: string, cause?: unknown): ShardlineError {
  return new ShardlineError(ErrorCodes.PROTOCOL, `batch ${batch.batchId} of ${batch.shardId}: ${problem}`, {
    cause,
  });
}

/** A `'json'` batch: one parse for the items, one pass that builds the records from the columns. */
function splitJsonBatch<T>(batch: JsonBatchMessage): SplitBatch<T> {
  let items: unknown;
  try {
    items = JSON.parse(batch.json);
  } catch (error) {
    throw protocolError(batch, 'its json is not valid JSON', error);
  }
  const n = batch.count;
  const sequenceNumbers = n === 0 ? [] : batch.sequenceNumbers.split(',');
  if (!Array.isArray(items) || items.length !== n || sequenceNumbers.length !== n) {
    throw protocolError(batch, `its columns do not all hold count ${n} records`);
  }
  const { partitionKeys, keyIndex, arrivalMs, subSequenceNumbers, explicitHashKeys, traceContexts } = batch;
  const records: ShardRecord<T>[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const partitionKey = partitionKeys[keyIndex[i]!];
    if (partitionKey === undefined) throw protocolError(batch, `record ${i} names no partition key`);
    records[i] = {
      data: items[i] as T,
      partitionKey,
      sequenceNumber: sequenceNumbers[i]!,
      approximateArrivalTimestamp: new Date(arrivalMs[i]!),
    };
  }
  if (subSequenceNumbers !== undefined) {
    for (let i = 0; i < n; i++)
      if (subSequenceNumbers[i]! >= 0) records[i]!.subSequenceNumber = subSequenceNumbers[i]!;
  }
  if (explicitHashKeys !== undefined) {
    for (let i = 0; i < n; i++)
      if (explicitHashKeys[i] !== '') records[i]!.explicitHashKey = explicitHashKeys[i]!;
  }
  if (traceContexts !== undefined) {
    for (let i = 0; i < n; i++) if (traceContexts[i] !== '') records[i]!.traceContext = traceContexts[i]!;
  }
  const poison = batch.poison.map((p) => ({
    before: p.before,
    record: toRecord(p) as ShardRecord<Uint8Array>,
    error: p.error,
  }));
  return { records, poison };
}

/**
 * {@link splitBatch} as one list in the batch's order: each record a {@link ShardRecord} (`ok: true`) or
 * a poison one (`ok: false`, raw bytes and the error). Never throws for bad data.
 */
export function batchToRecords<T = unknown>(batch: BatchMessage, codec: Codec): BatchRecord<T>[] {
  const { records, poison } = splitBatch<T>(batch, codec);
  const out: BatchRecord<T>[] = [];
  let next = 0;
  for (const p of poison) {
    for (; next < p.before; next++) out.push({ ok: true, record: records[next]! });
    out.push({ ok: false, record: p.record, error: p.error });
  }
  for (; next < records.length; next++) out.push({ ok: true, record: records[next]! });
  return out;
}
