import {
  type Codec,
  CodecError,
  type CodecName,
  codecs,
  ErrorCodes,
  resolveCodec,
  ShardlineError,
  ShardlineOptionError,
} from '@shardline/common';
import { expect } from 'chai';
import { seededRandom } from '../../support/random.js';

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString();

/** The error `fn` throws; fails the test when it returns. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(Error);
    return error as Error;
  }
  expect.fail('expected an error, but the call returned');
}

function expectCodecError(fn: () => unknown, codec: string, pattern?: RegExp): CodecError {
  const error = thrown(fn);
  expect(error, String(error)).to.be.instanceOf(CodecError);
  const codecError = error as CodecError;
  expect(codecError.code).to.equal(ErrorCodes.CODEC);
  expect(codecError.codec).to.equal(codec);
  expect(codecError.message).to.contain(`codec '${codec}'`);
  if (pattern !== undefined) expect(codecError.message).to.match(pattern);
  return codecError;
}

const jsonValues: unknown[] = [
  { id: 1, name: 'ada', tags: ['x', 'y'], nested: { deep: [1, 2, { z: null }] } },
  [1, 'two', false, null],
  'line one\nline two\r\n"quoted"',
  '🦄 emoji, 中文, ключ',
  0,
  -1.5e300,
  true,
  null,
  '',
  {},
  [],
];

/** Items each codec can represent, and how to compare a decoded item with the original. */
const samples: Record<CodecName, unknown[]> = {
  json: jsonValues,
  jsonl: jsonValues,
  'json-array': jsonValues,
  string: [
    '',
    'plain',
    'multi\nline\r\n',
    '🦄 emoji, 中文, ключ',
    '\uFEFFstarts with a BOM',
    'x'.repeat(10_000),
  ],
  raw: [
    new Uint8Array(0),
    Uint8Array.of(0, 1, 2, 255),
    Buffer.from('buffer too'),
    new Uint8Array(70_000).fill(7),
  ],
  msgpack: [
    ...jsonValues,
    new Date(1_700_000_000_123),
    Uint8Array.of(1, 2, 3),
    { bin: Uint8Array.of(9, 8), when: new Date(0), n: 2 ** 40, neg: -(2 ** 40) },
  ],
};

const allNames = Object.keys(codecs) as CodecName[];
const framedNames: CodecName[] = ['jsonl', 'msgpack', 'json-array'];

describe('codecs', () => {
  it('has the six built-in codecs, frozen, with the right framing', () => {
    expect(allNames.sort()).to.deep.equal(['json', 'json-array', 'jsonl', 'msgpack', 'raw', 'string']);
    for (const name of allNames) {
      const codec = codecs[name];
      expect(codec.name).to.equal(name);
      expect(codec.framed, name).to.equal(framedNames.includes(name));
      expect(Object.isFrozen(codec)).to.equal(true);
    }
    expect(Object.isFrozen(codecs)).to.equal(true);
  });

  describe('round trips', () => {
    for (const name of allNames) {
      it(`${name}: encodeItem/decode and encode/decode give the items back, in order`, () => {
        const codec = codecs[name];
        const items = samples[name];
        for (const item of items) {
          expect(codec.decode(codec.encodeItem(item)), `${name} ${String(item)}`).to.deep.equal([item]);
        }
        const payloads = codec.encode(items);
        expect(payloads.length).to.equal(codec.framed ? 1 : items.length);
        expect(payloads.flatMap((p) => codec.decode(p))).to.deep.equal(items);
        expect(codec.encode([])).to.deep.equal([]);
      });
    }

    it('json payloads are plain UTF-8 JSON', () => {
      expect(text(codecs.json.encodeItem({ a: 'é' }))).to.equal('{"a":"é"}');
      expect(codecs.json.decode(utf8('\uFEFF {"bom": true} \n'))).to.deep.equal([{ bom: true }]);
    });

    it('jsonl writes one line per item, newline-terminated, and reads CRLF, blank lines and no final newline', () => {
      const [payload] = codecs.jsonl.encode([{ a: 1 }, 'two\nlines', [3]]);
      expect(text(payload!)).to.equal('{"a":1}\n"two\\nlines"\n[3]\n');
      expect(codecs.jsonl.decode(utf8('{"a":1}\r\n\r\n  \n"x"\r\n[3]'))).to.deep.equal([{ a: 1 }, 'x', [3]]);
      expect(codecs.jsonl.decode(utf8('1\n2\n'))).to.deep.equal([1, 2]);
      expect(codecs.jsonl.decode(utf8('\n\n'))).to.deep.equal([]);
      expect(codecs.jsonl.decode(utf8('  {"padded": 1}  \n'))).to.deep.equal([{ padded: 1 }]);
    });

    it('json-array writes a JSON array per payload', () => {
      expect(text(codecs['json-array'].encode([1, 'a', { b: 2 }])[0]!)).to.equal('[1,"a",{"b":2}]');
      expect(text(codecs['json-array'].encodeItem({ b: 2 }))).to.equal('[{"b":2}]');
      expect(codecs['json-array'].decode(utf8('[]'))).to.deep.equal([]);
    });

    it('msgpack payloads are concatenated MessagePack values', () => {
      const [payload] = codecs.msgpack.encode([1, 'a', null]);
      // fixint 1, fixstr "a", nil
      expect([...payload!]).to.deep.equal([0x01, 0xa1, 0x61, 0xc0]);
    });

    it('raw passes bytes through without copying', () => {
      const item = Uint8Array.of(1, 2, 3);
      expect(codecs.raw.encode([item])[0]).to.equal(item);
      expect(codecs.raw.encodeItem(item)).to.equal(item);
      const payload = new Uint8Array(new ArrayBuffer(16), 4, 8);
      const [decoded] = codecs.raw.decode(payload) as Uint8Array[];
      expect(decoded!.buffer).to.equal(payload.buffer);
      expect(decoded!.byteOffset).to.equal(4);
      expect(decoded!.byteLength).to.equal(8);
    });

    it('encoded payloads own their ArrayBuffer (safe to transfer between threads)', () => {
      for (const name of ['json', 'jsonl', 'string', 'msgpack', 'json-array'] as const) {
        const item = name === 'string' ? 'small' : { small: true };
        for (const payload of [codecs[name].encodeItem(item), ...codecs[name].encode([item, item])]) {
          expect(payload.byteOffset, name).to.equal(0);
          expect(payload.buffer.byteLength, name).to.equal(payload.byteLength);
        }
      }
    });

    it('decoding empty payloads: json, msgpack and json-array fail; jsonl gives [], string [""], raw [empty]', () => {
      const empty = new Uint8Array(0);
      expectCodecError(() => codecs.json.decode(empty), 'json', /empty/);
      expectCodecError(() => codecs.msgpack.decode(empty), 'msgpack', /empty/);
      expectCodecError(() => codecs['json-array'].decode(empty), 'json-array', /empty/);
      expect(codecs.jsonl.decode(empty)).to.deep.equal([]);
      expect(codecs.string.decode(empty)).to.deep.equal(['']);
      const raw = codecs.raw.decode(empty) as Uint8Array[];
      expect(raw).to.have.length(1);
      expect(raw[0]!.length).to.equal(0);
    });
  });

  describe('packing and maxBytes', () => {
    for (const name of allNames) {
      it(`${name}: an item of exactly maxBytes fits, one byte less does not (and the error names the item)`, () => {
        const codec = codecs[name];
        const bySize = [...samples[name]].sort(
          (a, b) => codec.encode([a], 10_000_000)[0]!.length - codec.encode([b], 10_000_000)[0]!.length,
        );
        const [small, item] = [bySize[0]!, bySize[bySize.length - 1]!];
        const size = codec.encode([item], 10_000_000)[0]!.length;
        expect(codec.encode([item], size)).to.have.length(1);
        expect(codec.encode([item], size)[0]!.length).to.equal(size);
        expectCodecError(
          () => codec.encode([item], size - 1),
          name,
          new RegExp(`item 0 encodes to ${size} bytes, over maxBytes ${size - 1}`),
        );
        expectCodecError(() => codec.encode([small, small, item], size - 1), name, /item 2 /);
      });
    }

    for (const name of framedNames) {
      it(`${name}: two items share a payload at exactly their joint size, and split one byte under`, () => {
        const codec = codecs[name];
        const [a, b] = [{ first: 'item' }, ['second', 2]];
        const joint = codec.encode([a, b], 10_000_000);
        expect(joint).to.have.length(1);
        const size = joint[0]!.length;
        const atLimit = codec.encode([a, b], size);
        expect(atLimit).to.have.length(1);
        expect(atLimit[0]!.length).to.equal(size);
        const under = codec.encode([a, b], size - 1);
        expect(under).to.have.length(2);
        expect(under.flatMap((p) => codec.decode(p))).to.deep.equal([a, b]);
        // One byte over is obviously fine too, and still one payload.
        expect(codec.encode([a, b], size + 1)).to.have.length(1);
      });

      it(`${name}: random items pack greedily, in order, never over maxBytes`, () => {
        const codec = codecs[name];
        const random = seededRandom(name.length * 7919);
        for (let round = 0; round < 40; round++) {
          const items = Array.from({ length: 1 + Math.floor(random() * 60) }, (_, i) => ({
            i,
            pad: 'x'.repeat(Math.floor(random() * 200)),
          }));
          const maxBytes = 260 + Math.floor(random() * 2_000);
          const payloads = codec.encode(items, maxBytes);
          const decoded = payloads.map((p) => codec.decode(p));
          expect(decoded.flat()).to.deep.equal(items);
          for (let p = 0; p < payloads.length; p++) {
            expect(payloads[p]!.length).to.be.at.most(maxBytes);
            if (p + 1 < payloads.length) {
              // Greedy: the next payload's first item would not have fitted in this one.
              const grown = codec.encode([...decoded[p]!, decoded[p + 1]![0]], 10_000_000);
              expect(grown).to.have.length(1);
              expect(grown[0]!.length).to.be.above(maxBytes);
            }
          }
        }
      });
    }

    it('non-framed codecs give one payload per item however small', () => {
      expect(codecs.json.encode([1, 2, 3], 1_000)).to.have.length(3);
      expect(codecs.string.encode(['a', 'b'], 1_000)).to.have.length(2);
    });

    it('defaults maxBytes to 1 MiB', () => {
      const fits = 'x'.repeat(1_048_576 - 2); // JSON adds two quotes
      expect(codecs.json.encode([fits])[0]!.length).to.equal(1_048_576);
      expectCodecError(() => codecs.json.encode([`${fits}x`]), 'json', /over maxBytes 1048576/);
      expect(codecs.jsonl.encode(['a'.repeat(600_000), 'b'.repeat(600_000)])).to.have.length(2);
    });

    it('rejects a bad maxBytes or a non-array with ShardlineOptionError', () => {
      for (const maxBytes of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '10']) {
        const error = thrown(() => codecs.jsonl.encode([1], maxBytes as number));
        expect(error).to.be.instanceOf(ShardlineOptionError);
        expect(error.message).to.match(/^maxBytes must be a positive integer/);
      }
      const error = thrown(() => codecs.json.encode('abc' as unknown as unknown[]));
      expect(error).to.be.instanceOf(ShardlineOptionError);
      expect(error.message).to.match(/^items must be an array/);
    });
  });

  describe('encode errors', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const cases: Array<[CodecName, unknown, RegExp]> = [
      ['json', undefined, /cannot be encoded as JSON \(undefined\)/],
      ['json', () => 1, /cannot be encoded as JSON \(function\)/],
      ['json', Symbol('s'), /cannot be encoded as JSON/],
      ['json', 10n, /cannot be encoded as JSON: .*BigInt/],
      ['json', circular, /cannot be encoded as JSON: .*circular/i],
      ['jsonl', undefined, /cannot be encoded as JSON/],
      ['jsonl', 10n, /BigInt/],
      ['json-array', undefined, /cannot be encoded as JSON/],
      ['json-array', { big: 10n }, /BigInt/],
      ['string', 42, /must be a string \(got number\)/],
      ['string', Buffer.from('x'), /must be a string/],
      ['string', 'lone \uD800 surrogate', /well-formed/],
      ['raw', 'text', /must be a Uint8Array or Buffer \(got string\)/],
      ['raw', new ArrayBuffer(4), /must be a Uint8Array/],
      ['raw', [1, 2], /must be a Uint8Array/],
      ['msgpack', undefined, /undefined/],
      ['msgpack', 10n, /cannot be encoded/],
      ['msgpack', () => 1, /cannot be encoded/],
    ];
    for (const [name, item, pattern] of cases) {
      it(`${name} refuses ${typeof item === 'function' ? 'a function' : typeof item === 'object' ? Object.prototype.toString.call(item) : typeof item} with a CodecError naming the item`, () => {
        const codec = codecs[name] as Codec<unknown>;
        expectCodecError(() => codec.encodeItem(item), name, pattern);
        const error = expectCodecError(() => codec.encode([samples[name][0], item]), name, pattern);
        expect(error.message).to.contain('item 1');
      });
    }
  });

  describe('decode errors', () => {
    const cases: Array<[CodecName, Uint8Array, RegExp]> = [
      ['json', utf8('{"a":'), /not valid JSON/],
      ['json', utf8('nope'), /not valid JSON/],
      ['json', utf8('1 2'), /not valid JSON/],
      ['json', Uint8Array.of(0x22, 0xff, 0x22), /not valid UTF-8/],
      ['jsonl', utf8('{"ok":1}\n{"bad":\n3'), /line 2 is not valid JSON/],
      ['jsonl', utf8('1\r\n\r\n{oops}\r\n'), /line 3 /],
      ['jsonl', Uint8Array.of(0x31, 0x0a, 0xc0, 0x80), /not valid UTF-8/],
      ['json-array', utf8('{"a":1}'), /must be a JSON array \(got object\)/],
      ['json-array', utf8('null'), /must be a JSON array \(got null\)/],
      ['json-array', utf8('"[1]"'), /must be a JSON array \(got string\)/],
      ['json-array', utf8('[1,'), /not valid JSON/],
      ['string', Uint8Array.of(0x61, 0xff), /not valid UTF-8/],
      ['string', Uint8Array.of(0xc0, 0x80), /not valid UTF-8/], // overlong NUL
      ['string', Uint8Array.of(0xed, 0xa0, 0x80), /not valid UTF-8/], // encoded surrogate
      ['string', Uint8Array.of(0xe4, 0xb8), /not valid UTF-8/], // truncated sequence
      ['msgpack', Uint8Array.of(0xc1), /not valid MessagePack after 0 value/],
      ['msgpack', Uint8Array.of(0x01, 0x92, 0x01), /not valid MessagePack after 1 value/], // truncated array
      ['msgpack', Uint8Array.of(0xd9), /not valid MessagePack/],
    ];
    for (const [name, payload, pattern] of cases) {
      it(`${name} rejects ${JSON.stringify(Buffer.from(payload).toString('latin1'))} with a CodecError`, () => {
        const error = expectCodecError(() => codecs[name].decode(payload), name, pattern);
        expect(error).to.be.instanceOf(ShardlineError);
      });
    }

    it('rejects a payload that is not a Uint8Array, for every codec', () => {
      for (const name of allNames) {
        for (const payload of ['{}', null, undefined, [1, 2], new ArrayBuffer(2)]) {
          expectCodecError(
            () => codecs[name].decode(payload as unknown as Uint8Array),
            name,
            /must be a Uint8Array/,
          );
        }
      }
    });

    it('never throws anything but CodecError on random or mutated bytes', () => {
      const random = seededRandom(20_240_611);
      const valid = allNames.flatMap((name) => codecs[name].encode(samples[name].slice(0, 8)));
      let decodedOk = 0;
      let rejected = 0;
      for (let round = 0; round < 2_000; round++) {
        let payload: Uint8Array;
        if (round % 2 === 0) {
          payload = new Uint8Array(Math.floor(random() * 48));
          for (let i = 0; i < payload.length; i++) payload[i] = Math.floor(random() * 256);
          // Bias towards structural bytes so parsers get past their first byte.
          if (payload.length > 0 && random() < 0.5)
            payload[0] = [0x7b, 0x5b, 0x22, 0x92, 0x82, 0xdd, 0xc7][round % 7]!;
        } else {
          const base = valid[Math.floor(random() * valid.length)]!;
          payload = base.slice(0, Math.max(0, base.length - Math.floor(random() * 4)));
          for (let flips = 1 + Math.floor(random() * 3); flips > 0 && payload.length > 0; flips--) {
            payload[Math.floor(random() * payload.length)] = Math.floor(random() * 256);
          }
        }
        for (const name of allNames) {
          try {
            const out = codecs[name].decode(payload);
            expect(Array.isArray(out)).to.equal(true);
            decodedOk++;
          } catch (error) {
            if (!(error instanceof CodecError) || error.codec !== name) {
              expect.fail(`${name} threw ${String(error)} for bytes [${[...payload].join(',')}]`);
            }
            rejected++;
          }
        }
      }
      // Both outcomes happened a lot: the loop really exercised the error paths.
      expect(decodedOk).to.be.above(1_000);
      expect(rejected).to.be.above(1_000);
    });
  });

  describe('resolveCodec', () => {
    it('resolves built-in names and built-in objects to themselves', () => {
      for (const name of allNames) {
        expect(resolveCodec(name)).to.equal(codecs[name]);
        expect(resolveCodec(codecs[name])).to.equal(codecs[name]);
      }
    });

    it('rejects unknown names and non-codecs, naming the option', () => {
      const unknown = thrown(() => resolveCodec('xml' as CodecName));
      expect(unknown).to.be.instanceOf(ShardlineOptionError);
      expect((unknown as ShardlineOptionError).option).to.equal('codec');
      expect(unknown.message).to.equal(
        "codec must be one of 'json', 'jsonl', 'string', 'raw', 'msgpack', 'json-array' or a Codec object (got 'xml')",
      );
      expect(thrown(() => resolveCodec('JSON' as CodecName, 'producer.codec')).message).to.match(
        /^producer\.codec must be one of/,
      );
      expect(thrown(() => resolveCodec('toString' as CodecName)).message).to.match(/^codec must be one of/);
      for (const bad of [null, undefined, 42, true]) {
        const error = thrown(() => resolveCodec(bad as unknown as Codec));
        expect(error).to.be.instanceOf(ShardlineOptionError);
        expect(error.message).to.match(/^codec must be one of/);
      }
    });

    const good = (): Codec<unknown> => ({
      name: 'csv',
      framed: false,
      encode: (items) => items.map((i) => utf8(String(i))),
      encodeItem: (item) => utf8(String(item)),
      decode: (payload) => [text(payload)],
    });

    it('validates custom codec objects field by field', () => {
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ name: '' }, /^codec\.name must be a non-empty string/],
        [{ name: 5 }, /^codec\.name /],
        [{ framed: 'yes' }, /^codec\.framed must be a boolean/],
        [{ encode: undefined }, /^codec\.encode must be a function/],
        [{ encodeItem: 'no' }, /^codec\.encodeItem must be a function/],
        [{ decode: null }, /^codec\.decode must be a function/],
      ];
      for (const [patch, pattern] of cases) {
        const error = thrown(() => resolveCodec({ ...good(), ...patch } as Codec));
        expect(error).to.be.instanceOf(ShardlineOptionError);
        expect(error.message).to.match(pattern);
      }
      expect(
        thrown(() => resolveCodec({ ...good(), decode: null } as unknown as Codec, 'consumer.codec')).message,
      ).to.match(/^consumer\.codec\.decode /);
    });

    it('wraps a custom codec so that it keeps the contract, and resolves it to the same wrapper each time', () => {
      const custom = good();
      const resolved = resolveCodec(custom);
      expect(resolved).to.not.equal(custom);
      expect(resolveCodec(custom)).to.equal(resolved);
      expect(resolveCodec(resolved)).to.equal(resolved);
      expect(resolved.name).to.equal('csv');
      expect(resolved.framed).to.equal(false);
      expect(resolved.decode(resolved.encodeItem('a,b'))).to.deep.equal(['a,b']);
      expect(resolved.encode(['x', 'y']).map(text)).to.deep.equal(['x', 'y']);
    });

    it('turns whatever a custom codec throws into a CodecError naming it', () => {
      const cause = new TypeError('boom');
      const resolved = resolveCodec({
        ...good(),
        decode: () => {
          throw cause;
        },
        encodeItem: () => {
          throw 'a string';
        },
      });
      const error = expectCodecError(() => resolved.decode(utf8('x')), 'csv', /decode failed: boom/);
      expect(error.cause).to.equal(cause);
      expectCodecError(() => resolved.encodeItem('x'), 'csv', /encodeItem failed: a string/);
      expectCodecError(() => resolved.decode('x' as unknown as Uint8Array), 'csv', /must be a Uint8Array/);
      const own = new ShardlineError('ERR_CUSTOM', 'mine');
      const passthrough = resolveCodec({
        ...good(),
        name: 'own',
        decode: () => {
          throw own;
        },
      });
      expect(thrown(() => passthrough.decode(utf8('x')))).to.equal(own);
    });

    it('checks what a custom codec returns', () => {
      const badShapes = resolveCodec({
        ...good(),
        name: 'liar',
        decode: () => 'not an array' as unknown as unknown[],
        encodeItem: () => 'not bytes' as unknown as Uint8Array,
        encode: (items, maxBytes) => (maxBytes === 3 ? [utf8('four')] : (items as unknown as Uint8Array[])),
      });
      expectCodecError(() => badShapes.decode(utf8('x')), 'liar', /decode\(\) returned string, not an array/);
      expectCodecError(() => badShapes.encodeItem('x'), 'liar', /encodeItem\(\) returned string/);
      expectCodecError(() => badShapes.encode(['x']), 'liar', /returned string at index 0/);
      expectCodecError(() => badShapes.encode(['x'], 3), 'liar', /4-byte payload, over maxBytes 3/);
      expect(thrown(() => badShapes.encode(['x'], -1))).to.be.instanceOf(ShardlineOptionError);
    });
  });
});
