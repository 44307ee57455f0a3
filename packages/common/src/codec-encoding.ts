/**
 * Helpers shared by the codecs (`codecs.ts`): the `maxBytes` and payload checks every codec applies
 * alike, and the two ways to lay items out in payloads, one per item (`encodeEach`) or greedily packed
 * with a framing (`encodePacked`). Only {@link DEFAULT_MAX_PAYLOAD_BYTES} is part of the package's API.
 */
import { CodecError, ShardlineOptionError } from './errors.js';

/** Largest Kinesis record (data plus partition key): the default `maxBytes` of {@link Codec.encode}. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576;

export const EMPTY = new Uint8Array(0);

export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

export function label(index: number | undefined): string {
  return index === undefined ? 'item' : `item ${index}`;
}

export function describeValue(item: unknown): string {
  if (item === null) return 'null';
  if (item instanceof Uint8Array) return `a ${item.constructor.name}`;
  if (typeof item === 'object') return `an object (${Object.prototype.toString.call(item)})`;
  return typeof item;
}

export function resolveMaxBytes(maxBytes: number | undefined): number {
  if (maxBytes === undefined) return DEFAULT_MAX_PAYLOAD_BYTES;
  if (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new ShardlineOptionError('maxBytes', `must be a positive integer (got ${String(maxBytes)})`);
  }
  return maxBytes;
}

function checkItems(items: unknown): asserts items is readonly unknown[] {
  if (!Array.isArray(items)) {
    throw new ShardlineOptionError('items', `must be an array (got ${describeValue(items)})`);
  }
}

export function checkPayload(codec: string, payload: unknown): asserts payload is Uint8Array {
  if (!(payload instanceof Uint8Array)) {
    throw new CodecError(codec, `payload must be a Uint8Array (got ${describeValue(payload)})`);
  }
}

function tooLarge(codec: string, index: number, size: number, maxBytes: number): CodecError {
  return new CodecError(codec, `item ${index} encodes to ${size} bytes, over maxBytes ${maxBytes}`);
}

/** One payload per item. */
export function encodeEach(
  codec: string,
  items: readonly unknown[],
  maxBytes: number | undefined,
  encodeOne: (item: unknown, index: number) => Uint8Array,
): Uint8Array[] {
  checkItems(items);
  const max = resolveMaxBytes(maxBytes);
  const out = new Array<Uint8Array>(items.length);
  for (let i = 0; i < items.length; i++) {
    const payload = encodeOne(items[i], i);
    if (payload.length > max) throw tooLarge(codec, i, payload.length, max);
    out[i] = payload;
  }
  return out;
}

/** How a framed codec lays out items in a payload: open + item (sep + item)* + close. */
export interface Framing {
  open: Uint8Array;
  separator: Uint8Array;
  close: Uint8Array;
}

function joinPayload(framing: Framing, parts: Uint8Array[], size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(framing.open, 0);
  let pos = framing.open.length;
  for (let i = 0; i < parts.length; i++) {
    if (i > 0) {
      out.set(framing.separator, pos);
      pos += framing.separator.length;
    }
    out.set(parts[i]!, pos);
    pos += parts[i]!.length;
  }
  out.set(framing.close, pos);
  return out;
}

/** Greedy in-order packing: a payload is closed when the next item would take it over maxBytes. */
export function encodePacked(
  codec: string,
  items: readonly unknown[],
  maxBytes: number | undefined,
  framing: Framing,
  fragment: (item: unknown, index: number) => Uint8Array,
): Uint8Array[] {
  checkItems(items);
  const max = resolveMaxBytes(maxBytes);
  const fixed = framing.open.length + framing.close.length;
  const sep = framing.separator.length;
  const out: Uint8Array[] = [];
  let parts: Uint8Array[] = [];
  let size = fixed;
  for (let i = 0; i < items.length; i++) {
    const part = fragment(items[i], i);
    if (fixed + part.length > max) throw tooLarge(codec, i, fixed + part.length, max);
    const added = parts.length === 0 ? part.length : sep + part.length;
    if (parts.length > 0 && size + added > max) {
      out.push(joinPayload(framing, parts, size));
      parts = [];
      size = fixed + part.length;
    } else {
      size += added;
    }
    parts.push(part);
  }
  if (parts.length > 0) out.push(joinPayload(framing, parts, size));
  return out;
}
