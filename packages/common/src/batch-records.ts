/**
 * The receiving half of the batch wire format: a batch message (see `messages.ts`) back to
 * {@link ShardRecord}s. It lives next to the protocol, not in the shard worker that sends batches,
 * because every receiver (the coordinator, the CLI's tail, a user's own reader host) needs it and none
 * of them should depend on the sender's package for it.
 */
import type { Codec } from './codecs.js';
import type { SerializedError } from './errors.js';
import { CodecError, serializeError } from './errors.js';
import type { BatchMessage } from './messages.js';
import { unpackRecords } from './messages.js';
import type { ShardRecord } from './types.js';

/** One record of a received batch: a {@link ShardRecord}, or the raw bytes and the error that made it poison. */
export type BatchRecord<T = unknown> =
  | { ok: true; record: ShardRecord<T> }
  | { ok: false; record: ShardRecord<Uint8Array>; error: SerializedError };

/**
 * The records of a batch message as {@link ShardRecord}s, decoding `'bytes'` batches with `codec` (the
 * reader's codec). A record that could not be unpacked or decoded comes back with `ok: false`, its raw
 * bytes as `data` and the error, so the caller can apply its poison-record policy to exactly that
 * record. Never throws for bad data.
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
