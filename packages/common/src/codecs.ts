/**
 * Codecs turn user items into Kinesis record payloads and back.
 *
 * Common rules, whatever the codec:
 * - Decoding never throws anything but a {@link CodecError} (code `ERR_CODEC`) naming the codec, so a
 *   consumer can report a poison record and move on instead of crashing.
 * - Encoding an item that the codec cannot represent, or that alone exceeds `maxBytes`, throws a
 *   {@link CodecError} naming the codec and the item's index.
 * - Payloads are fresh `Uint8Array`s (never slices of Node's shared Buffer pool), so their `ArrayBuffer`
 *   can be transferred between threads; the `raw` codec is the exception, see {@link codecs}.
 * - `encode([])` returns `[]`: no items, no records.
 */
import { TextDecoder, TextEncoder } from 'node:util';
import { Decoder, Encoder } from '@msgpack/msgpack';
import { CodecError, ShardlineError, ShardlineOptionError } from './errors.js';

/** Names of the built-in codecs. */
export type CodecName = 'json' | 'jsonl' | 'string' | 'raw' | 'msgpack' | 'json-array';

/** Largest Kinesis record (data plus partition key): the default `maxBytes` of {@link Codec.encode}. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1_048_576;

export interface Codec<T = unknown> {
  readonly name: string;
  /** `true` when one Kinesis record can carry several items (jsonl, msgpack, json-array). */
  readonly framed: boolean;
  /**
   * Encodes items into record payloads of at most `maxBytes` each. Framed codecs pack as many items per
   * payload as fit, in order; the others give one payload per item.
   *
   * @param maxBytes - @defaultValue 1_048_576 (1 MiB). Leave room for the partition key when the payload
   * goes into a Kinesis record: the 1 MiB limit counts data and key together.
   * @throws CodecError naming the codec and the item index, for an item that cannot be encoded or alone
   * exceeds `maxBytes`.
   */
  encode(items: readonly T[], maxBytes?: number): Uint8Array[];
  /**
   * Encodes one item into one standalone payload: `decode(encodeItem(x))` gives `[x]` (for producers that
   * do their own packing). No size limit is applied.
   */
  encodeItem(item: T): Uint8Array;
  /** Decodes one payload into its items (framed codecs: possibly many, possibly none). */
  decode(payload: Uint8Array): T[];
  /**
   * Codecs whose items are JSON values (the built-in `json`, `jsonl`, `json-array` and `string`): the
   * payload's items as JSON texts, each checked as {@link decode} checks it (the same errors), so that
   * a receiver can parse a whole batch of them at once (`JSON.parse` of each text gives the item
   * `decode` gives). Absent for other codecs.
   */
  decodeJson?(payload: Uint8Array): string[];
}

const utf8Encoder = new TextEncoder();
// JSON never starts with U+FEFF, so a leading BOM (some tools write one) can be dropped safely.
const utf8JsonDecoder = new TextDecoder('utf-8', { fatal: true });
// For text, U+FEFF at the start is data: keep it so that any string round-trips.
const utf8TextDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

const EMPTY = new Uint8Array(0);

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function label(index: number | undefined): string {
  return index === undefined ? 'item' : `item ${index}`;
}

function describeValue(item: unknown): string {
  if (item === null) return 'null';
  if (item instanceof Uint8Array) return `a ${item.constructor.name}`;
  if (typeof item === 'object') return `an object (${Object.prototype.toString.call(item)})`;
  return typeof item;
}

function resolveMaxBytes(maxBytes: number | undefined): number {
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

function checkPayload(codec: string, payload: unknown): asserts payload is Uint8Array {
  if (!(payload instanceof Uint8Array)) {
    throw new CodecError(codec, `payload must be a Uint8Array (got ${describeValue(payload)})`);
  }
}

function decodeUtf8(codec: string, payload: Uint8Array, decoder: TextDecoder): string {
  try {
    return decoder.decode(payload);
  } catch (error) {
    throw new CodecError(codec, 'payload is not valid UTF-8', error);
  }
}

function stringifyJson(codec: string, item: unknown, index: number | undefined): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(item);
  } catch (error) {
    // BigInt, circular structures, a throwing toJSON...
    throw new CodecError(codec, `${label(index)} cannot be encoded as JSON: ${messageOf(error)}`, error);
  }
  if (text === undefined) {
    throw new CodecError(codec, `${label(index)} cannot be encoded as JSON (${describeValue(item)})`);
  }
  return text;
}

function parseJson(codec: string, text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new CodecError(codec, `${where} is not valid JSON: ${messageOf(error)}`, error);
  }
}

function tooLarge(codec: string, index: number, size: number, maxBytes: number): CodecError {
  return new CodecError(codec, `item ${index} encodes to ${size} bytes, over maxBytes ${maxBytes}`);
}

/** One payload per item. */
function encodeEach(
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
interface Framing {
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
function encodePacked(
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

function isJsonWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0d || code === 0x0a;
}

// ---- json ---------------------------------------------------------------------------------------------

function jsonItem(item: unknown, index?: number): Uint8Array {
  return utf8Encoder.encode(stringifyJson('json', item, index));
}

const json: Codec = {
  name: 'json',
  framed: false,
  encode: (items, maxBytes) => encodeEach('json', items, maxBytes, jsonItem),
  encodeItem: (item) => jsonItem(item),
  decode(payload) {
    return [parseJson('json', jsonText(payload), 'payload')];
  },
  decodeJson(payload) {
    const text = jsonText(payload);
    parseJson('json', text, 'payload');
    return [text];
  },
};

function jsonText(payload: Uint8Array): string {
  checkPayload('json', payload);
  if (payload.length === 0) throw new CodecError('json', 'payload is empty (expected one JSON value)');
  return decodeUtf8('json', payload, utf8JsonDecoder);
}

// ---- jsonl --------------------------------------------------------------------------------------------

function jsonlItem(item: unknown, index?: number): Uint8Array {
  // JSON.stringify escapes every newline inside strings, so one item is exactly one line.
  return utf8Encoder.encode(`${stringifyJson('jsonl', item, index)}\n`);
}

const JSONL_FRAMING: Framing = { open: EMPTY, separator: EMPTY, close: EMPTY };

const jsonl: Codec = {
  name: 'jsonl',
  framed: true,
  encode: (items, maxBytes) => encodePacked('jsonl', items, maxBytes, JSONL_FRAMING, jsonlItem),
  encodeItem: (item) => jsonlItem(item),
  decode(payload) {
    return jsonlLines(payload).map(({ content, line }) => parseJson('jsonl', content, `line ${line}`));
  },
  decodeJson(payload) {
    return jsonlLines(payload).map(({ content, line }) => {
      parseJson('jsonl', content, `line ${line}`);
      return content;
    });
  },
};

/** The lines of a JSON Lines payload that hold an item, with their 1-based line numbers. */
function jsonlLines(payload: Uint8Array): Array<{ content: string; line: number }> {
  checkPayload('jsonl', payload);
  const text = decodeUtf8('jsonl', payload, utf8JsonDecoder);
  const out: Array<{ content: string; line: number }> = [];
  let start = 0;
  let line = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end === -1) end = text.length;
    line++;
    // No CRLF special case needed: JSON.parse takes a trailing '\r' as whitespace, and a line of only
    // '\r' is blank.
    if (end > start) {
      const content = text.slice(start, end);
      if (!(isJsonWhitespace(content.charCodeAt(0)) && content.trim().length === 0)) {
        out.push({ content, line });
      }
    }
    start = end + 1;
  }
  return out;
}

// ---- string -------------------------------------------------------------------------------------------

function stringItem(item: unknown, index?: number): Uint8Array {
  if (typeof item !== 'string') {
    throw new CodecError('string', `${label(index)} must be a string (got ${describeValue(item)})`);
  }
  // TextEncoder would silently turn a lone surrogate into U+FFFD: refuse rather than alter the data.
  if (!(item as string & { isWellFormed(): boolean }).isWellFormed()) {
    throw new CodecError(
      'string',
      `${label(index)} is not well-formed Unicode (it contains a lone surrogate)`,
    );
  }
  return utf8Encoder.encode(item);
}

const string: Codec = {
  name: 'string',
  framed: false,
  encode: (items, maxBytes) => encodeEach('string', items, maxBytes, stringItem),
  encodeItem: (item) => stringItem(item),
  decode(payload) {
    checkPayload('string', payload);
    return [decodeUtf8('string', payload, utf8TextDecoder)];
  },
  decodeJson(payload) {
    checkPayload('string', payload);
    return [JSON.stringify(decodeUtf8('string', payload, utf8TextDecoder))];
  },
};

// ---- raw ----------------------------------------------------------------------------------------------

function rawItem(item: unknown, index?: number): Uint8Array {
  if (!(item instanceof Uint8Array)) {
    throw new CodecError(
      'raw',
      `${label(index)} must be a Uint8Array or Buffer (got ${describeValue(item)})`,
    );
  }
  return item;
}

const raw: Codec = {
  name: 'raw',
  framed: false,
  encode: (items, maxBytes) => encodeEach('raw', items, maxBytes, rawItem),
  encodeItem: (item) => rawItem(item),
  decode(payload) {
    checkPayload('raw', payload);
    return [payload];
  },
};

// ---- msgpack ------------------------------------------------------------------------------------------

// One instance each: both are synchronous and re-entrancy safe (they clone themselves when re-entered).
const msgpackEncoder = new Encoder();
const msgpackDecoder = new Decoder();

function msgpackItem(item: unknown, index?: number): Uint8Array {
  if (item === undefined) {
    // MessagePack has no undefined: it would come back as null.
    throw new CodecError('msgpack', `${label(index)} is undefined, which MessagePack cannot represent`);
  }
  try {
    return msgpackEncoder.encode(item);
  } catch (error) {
    throw new CodecError('msgpack', `${label(index)} cannot be encoded: ${messageOf(error)}`, error);
  }
}

const MSGPACK_FRAMING: Framing = { open: EMPTY, separator: EMPTY, close: EMPTY };

const msgpack: Codec = {
  name: 'msgpack',
  framed: true,
  encode: (items, maxBytes) => encodePacked('msgpack', items, maxBytes, MSGPACK_FRAMING, msgpackItem),
  encodeItem: (item) => msgpackItem(item),
  decode(payload) {
    checkPayload('msgpack', payload);
    if (payload.length === 0)
      throw new CodecError('msgpack', 'payload is empty (expected MessagePack values)');
    const out: unknown[] = [];
    try {
      for (const value of msgpackDecoder.decodeMulti(payload)) out.push(value);
    } catch (error) {
      throw new CodecError(
        'msgpack',
        `payload is not valid MessagePack after ${out.length} value(s): ${messageOf(error)}`,
        error,
      );
    }
    return out;
  },
};

// ---- json-array ---------------------------------------------------------------------------------------

function jsonArrayFragment(item: unknown, index?: number): Uint8Array {
  return utf8Encoder.encode(stringifyJson('json-array', item, index));
}

const JSON_ARRAY_FRAMING: Framing = {
  open: Uint8Array.of(0x5b), // [
  separator: Uint8Array.of(0x2c), // ,
  close: Uint8Array.of(0x5d), // ]
};

const jsonArray: Codec = {
  name: 'json-array',
  framed: true,
  encode: (items, maxBytes) =>
    encodePacked('json-array', items, maxBytes, JSON_ARRAY_FRAMING, jsonArrayFragment),
  encodeItem: (item) => utf8Encoder.encode(`[${stringifyJson('json-array', item, undefined)}]`),
  decode(payload) {
    return jsonArrayItems(payload);
  },
  decodeJson(payload) {
    return jsonArrayItems(payload).map((item) => JSON.stringify(item));
  },
};

function jsonArrayItems(payload: Uint8Array): unknown[] {
  checkPayload('json-array', payload);
  if (payload.length === 0) throw new CodecError('json-array', 'payload is empty (expected a JSON array)');
  const value = parseJson('json-array', decodeUtf8('json-array', payload, utf8JsonDecoder), 'payload');
  if (!Array.isArray(value)) {
    throw new CodecError(
      'json-array',
      `payload must be a JSON array (got ${value === null ? 'null' : typeof value})`,
    );
  }
  return value;
}

/**
 * The built-in codecs.
 *
 * - `json`: one JSON value per record, UTF-8. Not framed. Items JSON cannot represent (`undefined`,
 *   functions, symbols, BigInt, circular objects) are refused; the usual JSON conversions apply inside
 *   values (`Date` -> string, `undefined` properties dropped). A UTF-8 BOM before the JSON is accepted.
 *   An empty payload is an error.
 * - `jsonl`: JSON Lines, one item per line, each line ending with `\n` (so payloads concatenate). Framed.
 *   Decoding accepts CRLF, a missing final newline, and skips blank lines; an empty payload gives `[]`.
 *   A bad line is an error naming its (1-based) line number.
 * - `string`: UTF-8 text, one string per record. Invalid UTF-8 is an error, never replaced with U+FFFD;
 *   a lone surrogate is refused on encode for the same reason. A leading U+FEFF is kept.
 *   An empty payload gives `['']`.
 * - `raw`: bytes as they are. `encode` returns the given `Uint8Array`s themselves and `decode` returns the
 *   payload itself (a view, no copy): copy before mutating, or before transferring the ArrayBuffer of a
 *   pooled `Buffer`. An empty payload gives `[empty Uint8Array]`.
 * - `msgpack`: MessagePack (@msgpack/msgpack defaults), several values concatenated per record. Framed.
 *   `undefined` and BigInt items are refused (BigInt would need int64 decoding for every consumer);
 *   `Date` round-trips via the timestamp extension; binary values decode as views into the payload.
 *   An empty payload is an error.
 * - `json-array`: each record is a JSON array of items. Framed. Decoding anything but an array is an
 *   error; `[]` gives `[]`; an empty payload is an error.
 */
export const codecs: Readonly<Record<CodecName, Codec>> = Object.freeze({
  json: Object.freeze(json),
  jsonl: Object.freeze(jsonl),
  string: Object.freeze(string),
  raw: Object.freeze(raw),
  msgpack: Object.freeze(msgpack),
  'json-array': Object.freeze(jsonArray),
});

const CODEC_NAMES = Object.keys(codecs) as CodecName[];
const trusted = new WeakSet<Codec>(Object.values(codecs));
const wrappers = new WeakMap<Codec, Codec>();

function asCodecError(name: string, what: string, error: unknown): ShardlineError {
  if (error instanceof ShardlineError) return error;
  return new CodecError(name, `${what} failed: ${messageOf(error)}`, error);
}

/** Holds a user codec to the contract: only ShardlineErrors escape, results have the promised shape. */
function wrapCustomCodec(codec: Codec): Codec {
  const name = codec.name;
  const wrapped: Codec = {
    name,
    framed: codec.framed,
    encode(items, maxBytes) {
      const max = resolveMaxBytes(maxBytes);
      let out: unknown;
      try {
        out = codec.encode(items, maxBytes);
      } catch (error) {
        throw asCodecError(name, 'encode', error);
      }
      if (!Array.isArray(out)) throw new CodecError(name, 'encode() must return an array of Uint8Array');
      for (let i = 0; i < out.length; i++) {
        const payload: unknown = out[i];
        if (!(payload instanceof Uint8Array)) {
          throw new CodecError(
            name,
            `encode() returned ${describeValue(payload)} at index ${i}, not a Uint8Array`,
          );
        }
        if (payload.length > max) {
          throw new CodecError(
            name,
            `encode() returned a ${payload.length}-byte payload, over maxBytes ${max}`,
          );
        }
      }
      return out as Uint8Array[];
    },
    encodeItem(item) {
      let out: unknown;
      try {
        out = codec.encodeItem(item);
      } catch (error) {
        throw asCodecError(name, 'encodeItem', error);
      }
      if (!(out instanceof Uint8Array)) {
        throw new CodecError(name, `encodeItem() returned ${describeValue(out)}, not a Uint8Array`);
      }
      return out;
    },
    decode(payload) {
      checkPayload(name, payload);
      let out: unknown;
      try {
        out = codec.decode(payload);
      } catch (error) {
        throw asCodecError(name, 'decode', error);
      }
      if (!Array.isArray(out))
        throw new CodecError(name, `decode() returned ${describeValue(out)}, not an array`);
      return out;
    },
  };
  return Object.freeze(wrapped);
}

/**
 * Resolves a codec option: a built-in name, or a custom {@link Codec} object.
 *
 * A custom codec is checked (a non-empty `name`, a boolean `framed`, the three methods) and returned
 * wrapped so that it keeps the codec contract: whatever it throws surfaces as a {@link CodecError} naming
 * it (ShardlineErrors pass through), and results of the wrong shape or over `maxBytes` are errors. The
 * same codec object always resolves to the same wrapper; a built-in codec resolves to itself.
 *
 * @param option - the option name used in error messages. @defaultValue 'codec'
 * @throws ShardlineOptionError naming `option`.
 */
export function resolveCodec(codec: CodecName | Codec, option = 'codec'): Codec {
  if (typeof codec === 'string') {
    if (Object.hasOwn(codecs, codec)) return codecs[codec as CodecName];
    throw new ShardlineOptionError(
      option,
      `must be one of ${CODEC_NAMES.map((n) => `'${n}'`).join(', ')} or a Codec object (got '${codec}')`,
    );
  }
  if (codec === null || typeof codec !== 'object') {
    throw new ShardlineOptionError(
      option,
      `must be one of ${CODEC_NAMES.map((n) => `'${n}'`).join(', ')} or a Codec object (got ${describeValue(codec)})`,
    );
  }
  if (trusted.has(codec)) return codec;
  const cached = wrappers.get(codec);
  if (cached !== undefined) return cached;
  if (typeof codec.name !== 'string' || codec.name.length === 0) {
    throw new ShardlineOptionError(`${option}.name`, 'must be a non-empty string');
  }
  if (typeof codec.framed !== 'boolean') {
    throw new ShardlineOptionError(
      `${option}.framed`,
      `must be a boolean (got ${describeValue(codec.framed)})`,
    );
  }
  for (const method of ['encode', 'encodeItem', 'decode'] as const) {
    if (typeof codec[method] !== 'function') {
      throw new ShardlineOptionError(
        `${option}.${method}`,
        `must be a function (got ${describeValue(codec[method])})`,
      );
    }
  }
  const wrapped = wrapCustomCodec(codec);
  wrappers.set(codec, wrapped);
  trusted.add(wrapped);
  return wrapped;
}
