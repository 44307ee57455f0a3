/**
 * The codecs whose items are not JSON values: `raw` (bytes as they are) and `msgpack` (see
 * {@link codecs} in `codecs.ts` for their formats).
 */
import { Decoder, Encoder } from '@msgpack/msgpack';
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

export const raw: Codec = {
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

export const msgpack: Codec = {
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
