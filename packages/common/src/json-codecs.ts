/**
 * The codecs whose items are JSON values: `json`, `jsonl`, `json-array` and `string` (see {@link codecs}
 * in `codecs.ts` for their formats). Each has `decodeJson` besides `decode`, so that a receiver can
 * parse a whole batch of their items with one `JSON.parse`.
 */
import { TextDecoder, TextEncoder } from 'node:util';
import type { Framing } from './codec-encoding.js';
import {
  checkPayload,
  describeValue,
  EMPTY,
  encodeEach,
  encodePacked,
  label,
  messageOf,
} from './codec-encoding.js';
import type { Codec } from './codecs.js';
import { CodecError } from './errors.js';

const utf8Encoder = new TextEncoder();
// JSON never starts with U+FEFF, so a leading BOM (some tools write one) can be dropped safely.
const utf8JsonDecoder = new TextDecoder('utf-8', { fatal: true });
// For text, U+FEFF at the start is data: keep it so that any string round-trips.
const utf8TextDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

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

function isJsonWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0d || code === 0x0a;
}

// ---- json ---------------------------------------------------------------------------------------------

function jsonItem(item: unknown, index?: number): Uint8Array {
  return utf8Encoder.encode(stringifyJson('json', item, index));
}

export const json: Codec = {
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

export const jsonl: Codec = {
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

export const string: Codec = {
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

// ---- json-array ---------------------------------------------------------------------------------------

function jsonArrayFragment(item: unknown, index?: number): Uint8Array {
  return utf8Encoder.encode(stringifyJson('json-array', item, index));
}

const JSON_ARRAY_FRAMING: Framing = {
  open: Uint8Array.of(0x5b), // [
  separator: Uint8Array.of(0x2c), // ,
  close: Uint8Array.of(0x5d), // ]
};

export const jsonArray: Codec = {
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
