/**
 * Wire-level helpers of the FaultProxy: which operation a request is, how its body is encoded, and how
 * Kinesis encodes the errors the proxy answers with.
 *
 * `@aws-sdk/client-kinesis` v3 speaks awsJson1_1: `POST /`, `X-Amz-Target: Kinesis_20131202.<Operation>`,
 * `Content-Type: application/x-amz-json-1.1`, blobs in base64; errors are an HTTP 4xx/5xx whose JSON body
 * names the error in `__type` (which the SDK reads first, before the `x-amzn-ErrorType` header). Other
 * Kinesis clients (the Java SDKs) may send CBOR (`application/x-amz-cbor-1.1`), and Smithy RPCv2 CBOR
 * names the operation in the path; the proxy recognises those so that operation-level faults still
 * apply and errors come back in the encoding the client asked for.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';

/** How a request body (and the proxy's error answer) is encoded. */
export type WireProtocol = 'json' | 'cbor' | 'rpcv2-cbor' | 'unknown';

export const AMZ_JSON_1_1 = 'application/x-amz-json-1.1';
const AMZ_CBOR_1_1 = 'application/x-amz-cbor-1.1';
const RPCV2_CBOR = 'application/cbor';

/** The account Kinesis emulators use unless told otherwise (kinesalite, kinesis-mock). */
export const DEFAULT_ACCOUNT_ID = '000000000000';

export interface WireRequest {
  /** The Kinesis operation (`GetRecords`...), or undefined when the request names none. */
  operation: string | undefined;
  protocol: WireProtocol;
  /** The JSON body when it is a JSON object; undefined for CBOR, malformed JSON or no body. */
  body: Record<string, unknown> | undefined;
}

function mediaType(headers: IncomingHttpHeaders): string {
  return (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Reads the operation, encoding and (for JSON) the body of a client request. Never throws. */
export function parseWireRequest(
  url: string | undefined,
  headers: IncomingHttpHeaders,
  body: Buffer,
): WireRequest {
  const type = mediaType(headers);
  let operation: string | undefined;
  const target = headers['x-amz-target'];
  if (typeof target === 'string' && target.includes('.')) {
    operation = target.slice(target.lastIndexOf('.') + 1) || undefined;
  }
  const pathOperation = /\/operation\/([A-Za-z0-9]+)\/?$/.exec(url ?? '');
  if (operation === undefined && pathOperation !== null) operation = pathOperation[1];

  let protocol: WireProtocol = 'unknown';
  if (type === AMZ_CBOR_1_1) protocol = 'cbor';
  else if (type === RPCV2_CBOR || headers['smithy-protocol'] === 'rpc-v2-cbor') protocol = 'rpcv2-cbor';
  else if (type.startsWith('application/x-amz-json-') || type === 'application/json') protocol = 'json';

  let parsed: Record<string, unknown> | undefined;
  if (protocol === 'json' && body.length > 0) {
    try {
      const value: unknown = JSON.parse(body.toString('utf8'));
      if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        parsed = value as Record<string, unknown>;
      }
    } catch {
      // Malformed JSON is forwarded untouched: the upstream answers SerializationException as AWS would.
    }
  }
  return { operation, protocol, body: parsed };
}

/** Region and access key id from a SigV4 `Authorization` header, when there is one. */
export function credentialScope(headers: IncomingHttpHeaders): { accessKeyId?: string; region?: string } {
  const auth = headers.authorization;
  if (typeof auth !== 'string') return {};
  const match = /Credential=([^/,\s]+)\/[^/,\s]*\/([^/,\s]+)\//.exec(auth);
  return match === null ? {} : { accessKeyId: match[1]!, region: match[2]! };
}

/** The parts of a stream ARN (or of a consumer ARN, which starts with its stream's ARN). */
export interface ParsedStreamArn {
  region: string;
  accountId: string;
  streamName: string;
}

/** `arn:aws:kinesis:us-east-1:000000000000:stream/name[/consumer/c:123]` -> its parts. */
export function parseStreamArn(arn: unknown): ParsedStreamArn | undefined {
  if (typeof arn !== 'string') return undefined;
  const match = /^arn:[^:]+:kinesis:([^:]*):([^:]*):stream\/([^/]+)/.exec(arn);
  return match === null ? undefined : { region: match[1]!, accountId: match[2]!, streamName: match[3]! };
}

/** The HTTP status Kinesis answers an error with: 500 / 503 for the server-side ones, else 400. */
export function defaultErrorStatus(error: string): number {
  switch (error) {
    case 'InternalFailure':
    case 'InternalFailureException':
    case 'InternalServerError':
      return 500;
    case 'ServiceUnavailable':
    case 'ServiceUnavailableException':
      return 503;
    default:
      return 400;
  }
}

// kinesalite's rendering of Kinesis' timestamps in ExpiredIteratorException messages.
function amzUtcString(date: Date): string {
  const pieces = /^(.+), (.+) (.+) (.+) (.+) GMT$/.exec(date.toUTCString());
  if (pieces === null) return date.toISOString();
  return [pieces[1], pieces[3], pieces[2], pieces[5], 'UTC', pieces[4]].join(' ');
}

export interface ErrorMessageContext {
  streamName: string | undefined;
  shardId: string | undefined;
  accountId: string;
  /** Wall-clock time, for ExpiredIteratorException's "right now". */
  now: Date;
}

/**
 * The message Kinesis sends with an error, reconstructed from AWS documentation and kinesalite (which copies
 * the service's texts). Undefined where AWS sends none (InternalFailure, ServiceUnavailable): the SDK then
 * reports `UnknownError`, as it does against AWS.
 */
export function defaultErrorMessage(error: string, ctx: ErrorMessageContext): string | undefined {
  const { streamName, shardId, accountId } = ctx;
  switch (error) {
    case 'ProvisionedThroughputExceededException':
      if (streamName !== undefined && shardId !== undefined) {
        return `Rate exceeded for shard ${shardId} in stream ${streamName} under account ${accountId}.`;
      }
      return streamName === undefined
        ? 'Rate exceeded.'
        : `Rate exceeded for stream ${streamName} under account ${accountId}.`;
    case 'LimitExceededException':
      return streamName === undefined
        ? 'Rate exceeded.'
        : `Rate exceeded for stream ${streamName} under account ${accountId}.`;
    case 'ExpiredIteratorException': {
      const created = new Date(ctx.now.getTime() - 300_001);
      return (
        `Iterator expired. The iterator was created at time ${amzUtcString(created)} while right now it is ` +
        `${amzUtcString(ctx.now)} which is further in the future than the tolerated delay of 300000 milliseconds.`
      );
    }
    case 'ResourceNotFoundException':
      if (streamName === undefined) return 'Requested resource not found.';
      return shardId === undefined
        ? `Stream ${streamName} under account ${accountId} not found.`
        : `Shard ${shardId} in stream ${streamName} under account ${accountId} does not exist`;
    default:
      return undefined;
  }
}

/** A complete HTTP answer the proxy writes itself. */
export interface WireResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * An error answer in the client's encoding: `{"__type": error, "message": ...}` (JSON or CBOR) plus the
 * `x-amzn-ErrorType` and `x-amzn-RequestId` headers Kinesis sends.
 */
export function errorResponse(
  protocol: WireProtocol,
  error: string,
  message: string | undefined,
  status: number,
): WireResponse {
  const fields: Record<string, string> = { __type: error };
  if (message !== undefined) fields.message = message;
  const headers: Record<string, string> = {
    'x-amzn-RequestId': randomUUID(),
    'x-amzn-ErrorType': error,
  };
  let body: Buffer;
  if (protocol === 'cbor' || protocol === 'rpcv2-cbor') {
    body = encodeCborStringMap(fields);
    headers['Content-Type'] = protocol === 'cbor' ? AMZ_CBOR_1_1 : RPCV2_CBOR;
    if (protocol === 'rpcv2-cbor') headers['smithy-protocol'] = 'rpc-v2-cbor';
  } else {
    body = Buffer.from(JSON.stringify(fields), 'utf8');
    headers['Content-Type'] = AMZ_JSON_1_1;
  }
  headers['Content-Length'] = String(body.length);
  return { status, headers, body };
}

/** A 200 JSON answer, for a PutRecords call the proxy completes without the upstream. */
export function jsonResponse(value: unknown, status = 200): WireResponse {
  const body = Buffer.from(JSON.stringify(value), 'utf8');
  return {
    status,
    headers: {
      'Content-Type': AMZ_JSON_1_1,
      'Content-Length': String(body.length),
      'x-amzn-RequestId': randomUUID(),
    },
    body,
  };
}

function cborHead(major: number, length: number): Buffer {
  if (length < 24) return Buffer.from([(major << 5) | length]);
  if (length < 0x100) return Buffer.from([(major << 5) | 24, length]);
  if (length < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(length, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(length, 1);
  return b;
}

/** CBOR for a map of text strings: all an error body needs (RFC 8949 major types 3 and 5). */
export function encodeCborStringMap(fields: Record<string, string>): Buffer {
  const parts: Buffer[] = [cborHead(5, Object.keys(fields).length)];
  for (const [key, value] of Object.entries(fields)) {
    for (const text of [key, value]) {
      const bytes = Buffer.from(text, 'utf8');
      parts.push(cborHead(3, bytes.length), bytes);
    }
  }
  return Buffer.concat(parts);
}

/** Decoded size of a base64 string, without decoding it. Non-strings count 0. */
export function base64ByteLength(value: unknown): number {
  if (typeof value !== 'string' || value.length === 0) return 0;
  let padding = 0;
  if (value.endsWith('==')) padding = 2;
  else if (value.endsWith('=')) padding = 1;
  return Math.max(0, Math.floor((value.length * 3) / 4) - padding);
}

/** Headers that describe one connection, not the message: never copied between client and upstream. */
export const HOP_BY_HOP_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

/** Reads a request body; answers 413 and returns undefined when it is larger than `limit` bytes. */
export async function readRequestBody(
  req: IncomingMessage,
  res: ServerResponse,
  limit: number,
): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) {
        res.writeHead(413, { Connection: 'close', 'Content-Length': '0' });
        res.end();
        req.socket.destroySoon();
        return undefined;
      }
      chunks.push(chunk);
    }
  } catch {
    return undefined; // the client went away mid-request
  }
  return Buffer.concat(chunks);
}
