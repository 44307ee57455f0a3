/**
 * GetRecords answers read from the raw HTTP body, not by the SDK's deserializer. The SDK walks the
 * operation's schema for every field of every record, decodes each record's base64 into a Buffer of its
 * own and wraps it in another view, and builds each record from the parsed JSON again: on a busy shard
 * that was most of the worker's CPU per record, and most of its garbage. Here a successful (HTTP 200)
 * JSON answer is one `JSON.parse` (of a latin1 string when the body is ASCII, which it is unless a
 * partition key is not), and the records' payloads are decoded into one buffer, each record's `Data`
 * a view into it.
 *
 * Everything else goes through the SDK as before: the request (endpoint, signing, the HTTP handler),
 * every error answer (throttling, expired iterators, 5xx: classified by name as they always were), and
 * any 200 body this parser does not take (not JSON, not the GetRecords shape, a payload that is not
 * base64): its bytes are handed back to the SDK, which then reads or rejects them as it would have.
 * The installing middleware sits inside the SDK's deserializer (step `deserialize`, priority `low`)
 * and hands it `{}` in place of a body it read, so the SDK's own output is empty and the parsed answer
 * is returned instead.
 */
import { isAscii } from 'node:buffer';
import type { GetRecordsCommand } from '@aws-sdk/client-kinesis';
import type { GetRecordsResult } from './client.js';
import type { FetchedRecord } from './records.js';

/** What the SDK's base64 decoding accepts (anything else fails the whole answer there). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** The part of the SDK's HTTP response this reads. */
interface RawResponse {
  statusCode?: number;
  headers?: Record<string, string | undefined>;
  body?: unknown;
}

type Next = (args: unknown) => Promise<{ response: unknown; output?: unknown }>;
type Stack = GetRecordsCommand['middlewareStack'];

/**
 * Adds the raw-body reading to one GetRecords command; `slot.result` holds the answer after `send`
 * resolved, when this parser took it (else the SDK's output is the answer). With `slot.bodyOnly`, a
 * successful JSON answer is not parsed at all: its bytes are kept as `slot.body` (for the reader that
 * parses them: see first-fetch.ts).
 */
export function readGetRecordsBody(
  command: GetRecordsCommand,
  slot: { result?: GetRecordsResult; bodyOnly?: boolean; body?: Buffer },
): void {
  const middleware = (next: Next) => async (args: unknown) => {
    const out = await next(args);
    const response = out.response as RawResponse;
    const body = response?.body as AsyncIterable<Uint8Array> | undefined;
    if (response?.statusCode !== 200 || !isJson(response.headers) || !isStream(body)) return out;
    const bytes = await collect(body);
    if (slot.bodyOnly === true) {
      slot.body = bytes;
      response.body = new Uint8Array([0x7b, 0x7d]); // '{}'
      return out;
    }
    const parsed = parseGetRecordsBody(bytes);
    if (parsed === undefined) {
      // Not for this parser: the SDK reads these bytes (and reports what is wrong with them).
      response.body = bytes;
      return out;
    }
    slot.result = parsed;
    response.body = new Uint8Array([0x7b, 0x7d]); // '{}'
    return out;
  };
  command.middlewareStack.add(middleware as unknown as Parameters<Stack['add']>[0], {
    step: 'deserialize',
    priority: 'low',
    name: 'shardlineGetRecordsBody',
  });
}

function isJson(headers: Record<string, string | undefined> | undefined): boolean {
  const type = headers?.['content-type'] ?? headers?.['Content-Type'];
  return type === undefined || type.includes('json');
}

function isStream(body: unknown): body is AsyncIterable<Uint8Array> {
  return typeof (body as { [Symbol.asyncIterator]?: unknown })?.[Symbol.asyncIterator] === 'function';
}

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
  }
  return chunks.length === 1
    ? Buffer.from(chunks[0]!.buffer, chunks[0]!.byteOffset, size)
    : Buffer.concat(chunks, size);
}

/**
 * A GetRecords answer from its JSON body, shaped as the SDK's output (`Data` bytes, the arrival time a
 * Date); undefined when the body is not one this parser is sure to read as the SDK does.
 */
export function parseGetRecordsBody(bytes: Buffer): GetRecordsResult | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString(isAscii(bytes) ? 'latin1' : 'utf8'));
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return undefined;
  const answer = doc as {
    Records?: unknown;
    NextShardIterator?: unknown;
    MillisBehindLatest?: unknown;
    ChildShards?: unknown;
  };
  const raw = answer.Records ?? [];
  if (!Array.isArray(raw)) return undefined;
  if (answer.NextShardIterator !== undefined && typeof answer.NextShardIterator !== 'string')
    return undefined;
  if (answer.MillisBehindLatest !== undefined && typeof answer.MillisBehindLatest !== 'number')
    return undefined;
  if (answer.ChildShards !== undefined && !Array.isArray(answer.ChildShards)) return undefined;
  let base64Length = 0;
  for (const r of raw as Array<{ Data?: unknown } | null>) {
    if (typeof r !== 'object' || r === null) return undefined;
    const data = r.Data;
    if (data === undefined) continue;
    if (typeof data !== 'string' || (data.length * 3) % 4 !== 0 || !BASE64.test(data)) return undefined;
    base64Length += data.length;
  }
  const payloads = Buffer.allocUnsafeSlow((base64Length / 4) * 3);
  const records: FetchedRecord[] = new Array(raw.length);
  let offset = 0;
  for (let i = 0; i < raw.length; i++) {
    const r = raw[i] as {
      Data?: string;
      PartitionKey?: string;
      SequenceNumber?: string;
      ApproximateArrivalTimestamp?: unknown;
      EncryptionType?: string;
    };
    const record: FetchedRecord & { EncryptionType?: string } = {
      Data: undefined,
      PartitionKey: r.PartitionKey,
      SequenceNumber: r.SequenceNumber,
      ApproximateArrivalTimestamp: epochDate(r.ApproximateArrivalTimestamp),
    };
    if (r.Data !== undefined) {
      const written = payloads.write(r.Data, offset, 'base64');
      record.Data = new Uint8Array(payloads.buffer, payloads.byteOffset + offset, written);
      offset += written;
    }
    if (r.EncryptionType !== undefined) record.EncryptionType = r.EncryptionType;
    records[i] = record;
  }
  const result: GetRecordsResult = { Records: records as GetRecordsResult['Records'] };
  if (answer.NextShardIterator !== undefined) result.NextShardIterator = answer.NextShardIterator as string;
  if (answer.MillisBehindLatest !== undefined)
    result.MillisBehindLatest = answer.MillisBehindLatest as number;
  if (answer.ChildShards !== undefined)
    result.ChildShards = answer.ChildShards as GetRecordsResult['ChildShards'];
  return result;
}

/** As the SDK reads an epoch-seconds timestamp (a number, or a numeric string). */
function epochDate(value: unknown): Date | undefined {
  if (typeof value === 'number') return new Date(Math.round(value * 1_000));
  if (typeof value === 'string' && value.length > 0 && Number.isFinite(Number(value))) {
    return new Date(Math.round(Number(value) * 1_000));
  }
  return undefined;
}
