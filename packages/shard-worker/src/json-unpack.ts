/**
 * The `'json'` batch encoding's half of {@link unpackResponse}: a response's records into the columns
 * of a {@link JsonBatchMessage}. Kept apart because it is the consumer's hot path (every record of the
 * default json codec passes here), written to cost as little as it can per record:
 *
 * - one UTF-8 decoding per response, not one per record: the payloads of the response's plain (not KPL)
 *   records are copied into one buffer and, when that is all ASCII (one native check), read as one
 *   string that each record's text is a slice of. ASCII bytes are the same text in any of UTF-8,
 *   latin1 and ASCII, so the slice is exactly what the codec's own fatal UTF-8 decoding gives (and has
 *   no byte-order mark to strip). A response with other bytes checks each payload, and decodes the
 *   non-ASCII ones with the codec as before.
 * - every item is still checked on its own with `JSON.parse`: that is what makes a bad payload a poison
 *   record of its own, in place (a check of the batch as one text is not sound: items `1,2`, `[3` and
 *   `4]` join into a valid array of three). When the check fails, the codec decodes the payload again,
 *   so the poison record carries the codec's own error.
 * - no object, closure or Map lookup per record where it can be helped: the position of the batch's
 *   last record is kept in locals, a partition key equal to the previous record's skips the key table,
 *   and the optional columns (sub-sequence numbers, explicit hash keys) only exist once a record has one.
 *
 * KPL aggregates, framed codecs (jsonl, json-array) and the other bytes take the general route: the
 * codec's `decodeJson` per (sub-)record, with the numbering described in `records.ts`.
 */
import { isAscii } from 'node:buffer';
import type { Codec, KinesisRecordInput } from '@shardline/common';
import { codecs, deaggregate, isAggregated, serializeError, unwrapTraceEnvelope } from '@shardline/common';
import type { FetchedRecord, JsonColumns, SkipThrough, UnpackedResponse } from './records.js';
import { stripTraceEnvelopes } from './trace-strip.js';

const EMPTY = new Uint8Array(0);

/** How the codec turns one ASCII payload's text into its item's JSON text, when it has a fast path. */
type AsciiItem = (text: string) => string | undefined;

/** json: the text itself, if it is one JSON value. */
function jsonItem(text: string): string | undefined {
  if (text.length === 0) return undefined;
  try {
    JSON.parse(text);
  } catch {
    return undefined;
  }
  return text;
}

/** string: any text is an item; its JSON text is the quoted string. */
function stringItem(text: string): string {
  return JSON.stringify(text);
}

function asciiItemOf(codec: Codec): AsciiItem | undefined {
  if (codec === codecs.json) return jsonItem;
  if (codec === codecs.string) return stringItem;
  return undefined;
}

/**
 * The texts of the response's plain records, as one string and where each starts (`-1`: an aggregate,
 * or a payload that is not all ASCII). Undefined when the codec has no fast path. Payloads that lie one
 * after the other in one buffer (as the raw-body reading of GetRecords decodes them) are read in place;
 * others are copied into one buffer first.
 */
function asciiTexts(records: readonly FetchedRecord[]): { text: string; starts: Int32Array } | undefined {
  const parts: Uint8Array[] = [];
  const starts = new Int32Array(records.length);
  let size = 0;
  let contiguous = true;
  let end = -1;
  for (let r = 0; r < records.length; r++) {
    const data = records[r]!.Data ?? EMPTY;
    if (isAggregated(data)) {
      starts[r] = -1;
      contiguous = false;
      continue;
    }
    if (contiguous && parts.length > 0 && (data.buffer !== parts[0]!.buffer || data.byteOffset !== end)) {
      contiguous = false;
    }
    end = data.byteOffset + data.byteLength;
    starts[r] = size;
    parts.push(data);
    size += data.byteLength;
  }
  if (parts.length === 0) return undefined;
  const first = parts[0]!;
  const joined = contiguous ? Buffer.from(first.buffer, first.byteOffset, size) : Buffer.concat(parts, size);
  if (!isAscii(joined)) {
    for (let r = 0; r < records.length; r++) {
      if (starts[r]! >= 0 && !isAscii(records[r]!.Data ?? EMPTY)) starts[r] = -1;
    }
  }
  return { text: joined.toString('latin1'), starts };
}

/** Appends one good item to the columns. */
function addItem(
  c: JsonColumns,
  text: string,
  key: number,
  sequenceNumber: string,
  arrivalMs: number,
  sub: number,
  hashKey: string,
  trace: string,
): void {
  const n = c.items.length;
  c.items.push(text);
  c.keyIndex.push(key);
  c.sequenceNumbers.push(sequenceNumber);
  c.arrivalMs.push(arrivalMs);
  if (sub >= 0 && !c.anySubSequence) {
    c.anySubSequence = true;
    for (let i = 0; i < n; i++) c.subSequenceNumbers.push(-1);
  }
  if (c.anySubSequence) c.subSequenceNumbers.push(sub);
  if (hashKey !== '' && !c.anyHashKey) {
    c.anyHashKey = true;
    for (let i = 0; i < n; i++) c.explicitHashKeys.push('');
  }
  if (c.anyHashKey) c.explicitHashKeys.push(hashKey);
  if (trace !== '' && !c.anyTrace) {
    c.anyTrace = true;
    for (let i = 0; i < n; i++) c.traceContexts.push('');
  }
  if (c.anyTrace) c.traceContexts.push(trace);
}

/**
 * Fills `out` (as built by unpackResponse: empty) with the records of a `'json'` batch. `decodeJson` is
 * the codec's. Never throws for bad data.
 */
export function unpackJson(
  fetched: readonly FetchedRecord[],
  codec: Codec,
  decodeJson: (payload: Uint8Array) => string[],
  skip: SkipThrough | undefined,
  out: UnpackedResponse,
): void {
  // Trace envelopes off first, so that enveloped json records still take the ASCII route.
  const stripped = stripTraceEnvelopes(fetched);
  const records = stripped === undefined ? fetched : stripped.records;
  const c = out.json;
  const framed = codec.framed;
  const asciiItem = asciiItemOf(codec);
  const ascii = asciiItem === undefined ? undefined : asciiTexts(records);
  let lastKey: string | undefined;
  let lastKeyIndex = 0;
  const keyOf = (partitionKey: string): number => {
    if (partitionKey === lastKey) return lastKeyIndex;
    let index = c.keys.get(partitionKey);
    if (index === undefined) {
      index = c.keys.size;
      c.keys.set(partitionKey, index);
    }
    lastKey = partitionKey;
    lastKeyIndex = index;
    return index;
  };
  // The batch's last record (poison ones included): its position is the batch's resume point.
  let lastSequenceNumber: string | undefined;
  let lastSub = -1;
  let count = 0;
  let bytes = 0;
  const poison = (
    meta: { partitionKey: string; sequenceNumber: string; arrivalMs: number },
    sub: number,
    hashKey: string | undefined,
    trace: string,
    data: Uint8Array,
    error: unknown,
  ): void => {
    const record: UnpackedResponse['poison'][number] = {
      partitionKey: meta.partitionKey,
      sequenceNumber: meta.sequenceNumber,
      arrivalMs: meta.arrivalMs,
      // An exact copy: a view would carry its whole ArrayBuffer (the SDK's pool, an aggregate) along.
      data: new Uint8Array(data),
      error: serializeError(error),
      before: c.items.length,
    };
    if (sub >= 0) record.subSequenceNumber = sub;
    if (hashKey !== undefined) record.explicitHashKey = hashKey;
    if (trace !== '') record.traceContext = trace;
    out.poison.push(record);
    count++;
    lastSequenceNumber = meta.sequenceNumber;
    lastSub = sub;
  };

  for (let r = 0; r < records.length; r++) {
    const record = records[r]!;
    const data = record.Data ?? EMPTY;
    const sequenceNumber = record.SequenceNumber ?? '';
    const partitionKey = record.PartitionKey ?? '';
    const arrivalMs = record.ApproximateArrivalTimestamp?.getTime() ?? 0;
    // As fetched, envelope included: what the batch costs against byte credit.
    bytes += (fetched[r]!.Data ?? EMPTY).byteLength;
    const trace = stripped?.traces[r] ?? '';
    const skipThrough =
      skip !== undefined && skip.sequenceNumber === sequenceNumber ? skip.subSequenceNumber : -1;

    const start = ascii === undefined ? -1 : ascii.starts[r]!;
    if (start >= 0 && asciiItem !== undefined && ascii !== undefined) {
      // A plain record of a codec with one item per payload (json, string): ordinal 0, no sub-sequence.
      if (skipThrough >= 0) {
        keyOf(partitionKey);
        continue;
      }
      const item = asciiItem(ascii.text.slice(start, start + data.byteLength));
      if (item !== undefined) {
        addItem(c, item, keyOf(partitionKey), sequenceNumber, arrivalMs, -1, '', trace);
        count++;
        lastSequenceNumber = sequenceNumber;
        lastSub = -1;
        continue;
      }
      // Not one JSON value: fall through, so that the codec says why (as the poison record's error).
    }

    const meta = { partitionKey, sequenceNumber, arrivalMs };
    if (!isAggregated(data)) {
      let texts: string[];
      try {
        texts = decodeJson(data);
      } catch (error) {
        if (skipThrough < 0) poison(meta, framed ? 0 : -1, undefined, trace, data, error);
        continue;
      }
      const key = keyOf(partitionKey);
      for (let ordinal = 0; ordinal < texts.length; ordinal++) {
        if (ordinal <= skipThrough) continue;
        addItem(c, texts[ordinal]!, key, sequenceNumber, arrivalMs, framed ? ordinal : -1, '', trace);
        count++;
        lastSequenceNumber = sequenceNumber;
        lastSub = framed ? ordinal : -1;
      }
      continue;
    }

    const input: KinesisRecordInput = { data, partitionKey, sequenceNumber };
    if (record.ApproximateArrivalTimestamp !== undefined) {
      input.approximateArrivalTimestamp = record.ApproximateArrivalTimestamp;
    }
    let subs: Array<KinesisRecordInput & { subSequenceNumber?: number }>;
    try {
      subs = deaggregate(input);
    } catch (error) {
      // The whole Kinesis record is the poison record: position (sequenceNumber), no sub-sequence.
      if (skipThrough < 0) poison(meta, -1, undefined, '', data, error);
      continue;
    }
    // Sub-sequence numbers count the items across the aggregate's sub-records.
    let ordinal = 0;
    for (const sub of subs) {
      const subMeta = { partitionKey: sub.partitionKey, sequenceNumber, arrivalMs };
      // Each user record of an aggregate carries its own envelope.
      const unwrapped = unwrapTraceEnvelope(sub.data);
      const payload = unwrapped === undefined ? sub.data : unwrapped.payload;
      const subTrace = unwrapped === undefined ? '' : unwrapped.traceContext;
      let texts: string[];
      try {
        texts = decodeJson(payload);
      } catch (error) {
        const at = ordinal++;
        if (at > skipThrough) poison(subMeta, at, sub.explicitHashKey, subTrace, payload, error);
        continue;
      }
      const key = keyOf(sub.partitionKey);
      const hashKey = sub.explicitHashKey ?? '';
      for (const text of texts) {
        const at = ordinal++;
        if (at <= skipThrough) continue;
        addItem(c, text, key, sequenceNumber, arrivalMs, at, hashKey, subTrace);
        count++;
        lastSequenceNumber = sequenceNumber;
        lastSub = at;
      }
    }
  }

  out.count = count;
  out.bytes = bytes;
  if (records.length > 0) out.lastKinesisSequenceNumber = records.at(-1)!.SequenceNumber ?? '';
  if (lastSequenceNumber !== undefined) {
    out.last =
      lastSub < 0
        ? { sequenceNumber: lastSequenceNumber }
        : { sequenceNumber: lastSequenceNumber, subSequenceNumber: lastSub };
  }
}
