/**
 * The trace envelope: how a producer carries the W3C `traceparent` of the context a record was put in,
 * since Kinesis records have no headers. Opt-in on the producer (`tracing.propagate`); every reader
 * strips it before decoding. Layout (see packages/common/README.md, "Trace envelope"):
 *
 * ```
 * offset 0  4 bytes  magic C1 53 4C 54 (0xC1, then "SLT")
 * offset 4  1 byte   version, 0x01
 * offset 5  1 byte   n, the traceparent's length in bytes (55 for traceparent version 00)
 * offset 6  n bytes  the traceparent, ASCII: 00-<32 hex trace id>-<16 hex span id>-<2 hex flags>
 * offset 6+n ...     the original payload, unchanged
 * ```
 *
 * 0xC1 can start no UTF-8 text (it is never valid in UTF-8) and no MessagePack value (the one byte
 * MessagePack never uses), and differs from the KPL magic (F3 89 9A C2): no JSON, string, jsonl or
 * msgpack payload is ever mistaken for an envelope. A payload that starts with the magic but is not a
 * well-formed envelope (a raw/binary payload that happens to) is passed through unchanged.
 *
 * With KPL aggregation, each user record inside the aggregate has its own envelope.
 */

/** The envelope's first four bytes. */
export const TRACE_ENVELOPE_MAGIC: readonly number[] = Object.freeze([0xc1, 0x53, 0x4c, 0x54]);
/** The envelope version this build writes and reads. */
export const TRACE_ENVELOPE_VERSION = 1;
/** Bytes before the traceparent: magic, version, length. */
export const TRACE_ENVELOPE_HEADER_BYTES = 6;

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x21-\x7e]*)?$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/** A traceparent's parts. */
export interface ParsedTraceparent {
  traceId: string;
  spanId: string;
  /** The trace flags (bit 0: sampled). */
  traceFlags: number;
}

/**
 * The parts of a W3C traceparent, or undefined when it is not a valid one (version `ff`, an all-zero
 * trace or span id, version 00 with trailing data, not lower-case hex).
 */
export function parseTraceparent(value: string): ParsedTraceparent | undefined {
  const match = TRACEPARENT.exec(value);
  if (match === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = match;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId: traceId!, spanId: spanId!, traceFlags: Number.parseInt(flags!, 16) };
}

/** The traceparent (version 00) of a span context. */
export function formatTraceparent(traceId: string, spanId: string, traceFlags: number): string {
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** What an envelope around a payload with `traceparent` adds to it, in bytes. */
export function traceEnvelopeBytes(traceparent: string): number {
  return TRACE_ENVELOPE_HEADER_BYTES + traceparent.length;
}

/**
 * `payload` in an envelope carrying `traceparent` (one new buffer).
 * @throws TypeError for a value that is not a valid traceparent (a bug of the caller: the producer only
 * wraps traceparents it formatted itself).
 */
export function wrapTraceEnvelope(traceparent: string, payload: Uint8Array): Uint8Array {
  if (traceparent.length > 255 || parseTraceparent(traceparent) === undefined) {
    throw new TypeError(`not a valid W3C traceparent: ${JSON.stringify(traceparent)}`);
  }
  const n = traceparent.length;
  const out = new Uint8Array(TRACE_ENVELOPE_HEADER_BYTES + n + payload.length);
  out.set(TRACE_ENVELOPE_MAGIC, 0);
  out[4] = TRACE_ENVELOPE_VERSION;
  out[5] = n;
  for (let i = 0; i < n; i++) out[TRACE_ENVELOPE_HEADER_BYTES + i] = traceparent.charCodeAt(i);
  out.set(payload, TRACE_ENVELOPE_HEADER_BYTES + n);
  return out;
}

/** Whether `data` starts with the envelope magic: the per-record check, four byte compares. */
export function hasTraceEnvelopeMagic(data: Uint8Array): boolean {
  return data.length >= 4 && data[0] === 0xc1 && data[1] === 0x53 && data[2] === 0x4c && data[3] === 0x54;
}

/** A payload taken out of its envelope. */
export interface UnwrappedTraceEnvelope {
  /** The traceparent the producer put in. */
  traceContext: string;
  /** The original payload: a view into `data`, no copy. */
  payload: Uint8Array;
}

/**
 * The traceparent and payload of an enveloped record, or undefined when `data` is no well-formed
 * envelope (no magic, another version, a length past the end, an invalid traceparent): such data is
 * the payload as it is.
 */
export function unwrapTraceEnvelope(data: Uint8Array): UnwrappedTraceEnvelope | undefined {
  if (!hasTraceEnvelopeMagic(data) || data.length < TRACE_ENVELOPE_HEADER_BYTES) return undefined;
  if (data[4] !== TRACE_ENVELOPE_VERSION) return undefined;
  const n = data[5]!;
  const end = TRACE_ENVELOPE_HEADER_BYTES + n;
  if (n < 55 || end > data.length) return undefined;
  let traceContext: string;
  if (n === 55) {
    // The length of version 00, the one producers write: its layout checked byte by byte (no string
    // until it passes).
    if (!isTraceparent55(data)) return undefined;
    traceContext = LATIN1.decode(data.subarray(TRACE_ENVELOPE_HEADER_BYTES, end));
    if (traceContext.startsWith(ZERO_TRACE, 3) || traceContext.startsWith(ZERO_SPAN, 36)) return undefined;
  } else {
    // A later traceparent version: longer, checked as a string (a byte outside ASCII fails the check).
    traceContext = LATIN1.decode(data.subarray(TRACE_ENVELOPE_HEADER_BYTES, end));
    if (parseTraceparent(traceContext) === undefined) return undefined;
  }
  return { traceContext, payload: data.subarray(end) };
}

const LATIN1 = new TextDecoder('latin1');
/** 1 for the bytes of lower-case hex digits. */
const HEX = new Uint8Array(256);
for (const c of '0123456789abcdef') HEX[c.charCodeAt(0)] = 1;

/** `<2 hex, not ff>-<32 hex>-<16 hex>-<2 hex>` at offset 6 of `data` (55 bytes, known to be there). */
function isTraceparent55(data: Uint8Array): boolean {
  const o = TRACE_ENVELOPE_HEADER_BYTES;
  if (data[o] === 0x66 && data[o + 1] === 0x66) return false;
  for (let i = 0; i < 55; i++) {
    const b = data[o + i]!;
    if (i === 2 || i === 35 || i === 52) {
      if (b !== 0x2d) return false;
    } else if (HEX[b] !== 1) return false;
  }
  return true;
}
