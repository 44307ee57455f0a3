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
 *
 * This file holds the codec contract, the registry of built-in codecs and {@link resolveCodec}; the
 * JSON family is in `json-codecs.ts`, `raw` and `msgpack` in `binary-codecs.ts`, and the helpers they
 * share in `codec-encoding.ts`.
 */
import { msgpack, raw } from './binary-codecs.js';
import { checkPayload, describeValue, messageOf, resolveMaxBytes } from './codec-encoding.js';
import { CodecError, ShardlineError, ShardlineOptionError } from './errors.js';
import { json, jsonArray, jsonl, string } from './json-codecs.js';

/** Names of the built-in codecs. */
export type CodecName = 'json' | 'jsonl' | 'string' | 'raw' | 'msgpack' | 'json-array';

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
