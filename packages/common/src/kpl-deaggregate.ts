/**
 * Reading KPL aggregates (the format is described in `kpl.ts`): {@link deaggregate} unpacks a Kinesis
 * record into its user records, checking the MD5 and every table index on the way.
 */
import { createHash } from 'node:crypto';
import { KplError } from './errors.js';
import { FIXED_OVERHEAD, isAggregated, MAGIC_BYTES, MD5_BYTES } from './kpl.js';
import {
  aggregatedRecordType,
  type ProtoAggregatedRecord,
  type ProtoRecord,
  type ProtoUint64,
} from './kpl-proto.js';
import type { KinesisRecordInput } from './types.js';

function toIndex(value: ProtoUint64): number {
  if (typeof value === 'number') return value;
  // Any index needing more than 32 bits is out of range of a table that fits in a Kinesis record.
  return value.high === 0 ? value.low >>> 0 : Number.POSITIVE_INFINITY;
}

function describeRecord(record: KinesisRecordInput): string {
  return `record ${record.sequenceNumber} (partition key '${record.partitionKey}')`;
}

/**
 * Unpacks a Kinesis record into its user records.
 *
 * - A record without the KPL magic passes through unchanged: `[record]`, same object, no
 *   `subSequenceNumber`.
 * - An aggregate yields its user records in order with `subSequenceNumber` 0..n-1, their own partition
 *   key and explicit hash key (from the aggregate's tables; absent when the sub-record has none), and the
 *   aggregate's `sequenceNumber` and `approximateArrivalTimestamp`. Their `data` are views into the
 *   aggregate's bytes, not copies. An aggregate of zero records yields `[]`.
 *
 * Unlike the KCL, which hands a record with the magic but a bad checksum to the application as a plain
 * record, a bad aggregate is reported: silently delivering protobuf bytes as user data helps nobody.
 *
 * @throws KplError (`ERR_KPL_MALFORMED`) when the magic is present but the record is shorter than magic +
 * MD5, the MD5 does not match, the protobuf does not decode, or a table index is out of range.
 */
export function deaggregate(
  record: KinesisRecordInput,
): Array<KinesisRecordInput & { subSequenceNumber?: number }> {
  const data = record.data;
  if (!isAggregated(data)) return [record];
  if (data.length < FIXED_OVERHEAD) {
    throw new KplError(
      `${describeRecord(record)} starts with the KPL magic but has ${data.length} bytes, fewer than magic + MD5 (${FIXED_OVERHEAD})`,
    );
  }
  const bodyEnd = data.length - MD5_BYTES;
  // A Buffer view (no copy) lets protobufjs use its faster Buffer reader; sub-record data are views too.
  const body = Buffer.from(data.buffer, data.byteOffset + MAGIC_BYTES, bodyEnd - MAGIC_BYTES);
  const digest = createHash('md5').update(body).digest();
  for (let i = 0; i < MD5_BYTES; i++) {
    if (digest[i] !== data[bodyEnd + i]) {
      throw new KplError(`${describeRecord(record)}: MD5 checksum mismatch (corrupt or truncated aggregate)`);
    }
  }

  let message: ProtoAggregatedRecord;
  try {
    message = aggregatedRecordType().decode(body) as unknown as ProtoAggregatedRecord;
  } catch (error) {
    throw new KplError(
      `${describeRecord(record)}: protobuf decoding failed: ${error instanceof Error ? error.message : String(error)}`,
      error,
    );
  }

  const pkTable = message.partition_key_table;
  const ehkTable = message.explicit_hash_key_table;
  const subRecords = message.records;
  const out: Array<KinesisRecordInput & { subSequenceNumber?: number }> = new Array(subRecords.length);
  const sequenceNumber = record.sequenceNumber;
  const arrival = record.approximateArrivalTimestamp;
  for (let i = 0; i < subRecords.length; i++) {
    const sub: ProtoRecord = subRecords[i]!;
    const pkIndex = toIndex(sub.partition_key_index);
    if (pkIndex >= pkTable.length) {
      throw new KplError(
        `${describeRecord(record)}: sub-record ${i} has partition_key_index ${String(sub.partition_key_index)} ` +
          `but the table has ${pkTable.length} keys`,
      );
    }
    const user: KinesisRecordInput & { subSequenceNumber?: number } = {
      data: sub.data,
      partitionKey: pkTable[pkIndex]!,
      sequenceNumber,
      subSequenceNumber: i,
    };
    // The decoder sets the property only when the field is on the wire; reading it otherwise would
    // return the prototype's default (0), which is the mistake aws-kinesis-agg makes.
    if (Object.hasOwn(sub, 'explicit_hash_key_index')) {
      const ehkIndex = toIndex(sub.explicit_hash_key_index!);
      if (ehkIndex >= ehkTable.length) {
        throw new KplError(
          `${describeRecord(record)}: sub-record ${i} has explicit_hash_key_index ` +
            `${String(sub.explicit_hash_key_index)} but the table has ${ehkTable.length} keys`,
        );
      }
      user.explicitHashKey = ehkTable[ehkIndex]!;
    }
    if (arrival !== undefined) user.approximateArrivalTimestamp = arrival;
    out[i] = user;
  }
  return out;
}
