/**
 * The reader's half of the trace envelope (see @shardline/common `trace-envelope.ts`): every plain
 * record is checked for the envelope magic (four byte compares; nothing is allocated for a response
 * without an enveloped record) and stripped before decoding, its traceparent kept for the record's
 * `traceContext`. The user records inside a KPL aggregate carry their own envelopes, stripped one by one
 * after deaggregation (`unwrapTraceEnvelope` in records.ts and json-unpack.ts).
 */
import { hasTraceEnvelopeMagic, unwrapTraceEnvelope } from '@shardline/common';
import type { FetchedRecord } from './records.js';

/** A response's records with the envelopes taken off, and each record's traceparent. */
export interface StrippedRecords {
  records: FetchedRecord[];
  /** By record index; undefined for a record without (a well-formed) envelope. */
  traces: Array<string | undefined>;
}

/**
 * The records with their envelopes stripped, or undefined when no record starts with the envelope magic
 * (the usual case: the records are used as they are). A record that starts with the magic but is no
 * well-formed envelope is kept unchanged.
 */
export function stripTraceEnvelopes(records: readonly FetchedRecord[]): StrippedRecords | undefined {
  let first = -1;
  for (let r = 0; r < records.length; r++) {
    const data = records[r]!.Data;
    if (data !== undefined && hasTraceEnvelopeMagic(data)) {
      first = r;
      break;
    }
  }
  if (first < 0) return undefined;
  const out: FetchedRecord[] = records.slice();
  const traces = new Array<string | undefined>(records.length);
  for (let r = first; r < records.length; r++) {
    const record = records[r]!;
    const data = record.Data;
    if (data === undefined || !hasTraceEnvelopeMagic(data)) continue;
    const unwrapped = unwrapTraceEnvelope(data);
    if (unwrapped === undefined) continue;
    out[r] = {
      Data: unwrapped.payload,
      PartitionKey: record.PartitionKey,
      SequenceNumber: record.SequenceNumber,
      ApproximateArrivalTimestamp: record.ApproximateArrivalTimestamp,
    };
    traces[r] = unwrapped.traceContext;
  }
  return { records: out, traces };
}
