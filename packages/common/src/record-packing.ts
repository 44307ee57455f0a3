/**
 * Record packing for batches (`messages.ts`): a `'bytes'` batch's record data in one ArrayBuffer that is
 * transferred, not cloned, with per-record offsets into it; what a batch costs against credit; and which
 * buffers a batch message transfers.
 */

import { kindOf, protocolError } from './message-guards.js';
import type { BatchMessage, PackedRecordMeta, WorkerMessage } from './messages.js';

/** How many records (poison ones included) a batch carries: what it costs against record credit. */
export function batchSize(batch: BatchMessage): number {
  return batch.encoding === 'json' ? batch.count + batch.poison.length : batch.records.length;
}

/** A record to pack: its data bytes plus metadata. */
export type RecordToPack = Omit<PackedRecordMeta, 'offset' | 'length'> & { data: Uint8Array };

/** A record of a received batch: `data` is a view into the batch buffer (not a copy). */
export type UnpackedRecord = Omit<PackedRecordMeta, 'offset' | 'length'> & { data: Uint8Array };

/**
 * Copies every record's data into one new ArrayBuffer (the only copy on the way to the coordinator)
 * and returns per-record metadata with offsets. Post `buffer` in the transfer list.
 */
export function packRecords(records: readonly RecordToPack[]): {
  records: PackedRecordMeta[];
  buffer: ArrayBuffer;
  bytes: number;
} {
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const data = records[i]!.data;
    if (!(data instanceof Uint8Array)) {
      throw protocolError(`packRecords: records[${i}].data must be a Uint8Array (got ${kindOf(data)})`);
    }
    total += data.byteLength;
  }
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const metas: PackedRecordMeta[] = new Array(records.length);
  let offset = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    bytes.set(r.data, offset);
    const meta: PackedRecordMeta = {
      partitionKey: r.partitionKey,
      sequenceNumber: r.sequenceNumber,
      arrivalMs: r.arrivalMs,
      offset,
      length: r.data.byteLength,
    };
    if (r.subSequenceNumber !== undefined) meta.subSequenceNumber = r.subSequenceNumber;
    if (r.explicitHashKey !== undefined) meta.explicitHashKey = r.explicitHashKey;
    if (r.error !== undefined) meta.error = r.error;
    if (r.traceContext !== undefined) meta.traceContext = r.traceContext;
    metas[i] = meta;
    offset += r.data.byteLength;
  }
  return { records: metas, buffer, bytes: total };
}

/** The data of one packed record: a view into `buffer`, no copy. */
export function recordData(buffer: ArrayBuffer, meta: PackedRecordMeta): Uint8Array {
  return new Uint8Array(buffer, meta.offset, meta.length);
}

/** The records of a packed batch with `data` as views into `buffer` (no copy). */
export function unpackRecords(records: readonly PackedRecordMeta[], buffer: ArrayBuffer): UnpackedRecord[] {
  const out: UnpackedRecord[] = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const m = records[i]!;
    if (m.offset + m.length > buffer.byteLength) {
      throw protocolError(
        `unpackRecords: records[${i}] spans bytes ${m.offset}..${m.offset + m.length} beyond the buffer (${buffer.byteLength} bytes)`,
      );
    }
    const r: UnpackedRecord = {
      data: new Uint8Array(buffer, m.offset, m.length),
      partitionKey: m.partitionKey,
      sequenceNumber: m.sequenceNumber,
      arrivalMs: m.arrivalMs,
    };
    if (m.subSequenceNumber !== undefined) r.subSequenceNumber = m.subSequenceNumber;
    if (m.explicitHashKey !== undefined) r.explicitHashKey = m.explicitHashKey;
    if (m.error !== undefined) r.error = m.error;
    if (m.traceContext !== undefined) r.traceContext = m.traceContext;
    out[i] = r;
  }
  return out;
}

/** What to pass as `postMessage`'s transfer list for `message`: the batch buffer, if any. */
export function transferListOf(message: WorkerMessage): ArrayBuffer[] {
  if (message.type !== 'batch') return [];
  if (message.encoding === 'bytes') return [message.buffer];
  if (message.encoding !== 'json') return [];
  const list = [message.keyIndex.buffer as ArrayBuffer, message.arrivalMs.buffer as ArrayBuffer];
  if (message.subSequenceNumbers !== undefined) list.push(message.subSequenceNumbers.buffer as ArrayBuffer);
  return list;
}
