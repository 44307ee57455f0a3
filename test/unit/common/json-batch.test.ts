/**
 * The `'json'` batch encoding (one JSON text per batch) must give the receiver exactly the records the
 * `'decoded'` encoding (a structured clone of decoded items) gives, whatever the data: plain records,
 * KPL aggregates with their sub-sequence numbers and explicit hash keys, framed payloads, poison
 * records and malformed aggregates in place, a resume that skips through a checkpointed record, and
 * partition keys that need escaping. Checked on random responses (fast-check), through a real
 * MessageChannel for both, plus the codecs' `decodeJson` against their `decode`.
 */
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import type { BatchMessage, Codec, CodecName, JsonBatchMessage } from '@shardline/common';
import {
  aggregate,
  batchToRecords,
  codecs,
  KPL_MAGIC,
  PROTOCOL_VERSION,
  splitBatch,
  transferListOf,
} from '@shardline/common';
import { expect } from 'chai';
import fc from 'fast-check';
import type { FetchedRecord } from '../../../packages/shard-worker/src/records.js';
import { jsonBatchFields, unpackResponse } from '../../../packages/shard-worker/src/records.js';

const encoder = new TextEncoder();
const JSON_CODECS = ['json', 'jsonl', 'json-array', 'string'] as const satisfies readonly CodecName[];

function seq(i: number): string {
  return `49${String(i + 1).padStart(54, '0')}`;
}

/** One payload of `items` in `codec`'s layout (framed codecs hold several). */
function payload(codec: (typeof JSON_CODECS)[number], items: unknown[]): Uint8Array {
  switch (codec) {
    case 'json':
      return encoder.encode(JSON.stringify(items[0] ?? null));
    case 'jsonl':
      return encoder.encode(items.map((x) => `${JSON.stringify(x)}\n`).join(''));
    case 'json-array':
      return encoder.encode(JSON.stringify(items));
    case 'string':
      return encoder.encode(typeof items[0] === 'string' ? items[0] : JSON.stringify(items[0] ?? ''));
  }
}

const key = fc.string({ minLength: 1, maxLength: 8, unit: 'binary' });
const value = fc.jsonValue({ maxDepth: 2 });

type Input =
  | { kind: 'plain'; key: string; items: unknown[] }
  | { kind: 'aggregate'; subs: Array<{ key: string; hashKey?: string; items: unknown[] }> }
  | { kind: 'poison'; key: string }
  /** Any text as the payload: ASCII that is not JSON, a BOM, non-ASCII, blank... */
  | { kind: 'text'; key: string; text: string }
  | { kind: 'malformed'; key: string };

const input: fc.Arbitrary<Input> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('plain' as const),
      key,
      items: fc.array(value, { minLength: 1, maxLength: 3 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('aggregate' as const),
      subs: fc.array(
        fc.record(
          {
            key,
            hashKey: fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map(String),
            items: fc.array(value, { minLength: 1, maxLength: 2 }),
          },
          { requiredKeys: ['key', 'items'] },
        ),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('poison' as const), key }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('text' as const),
      key,
      text: fc.oneof(
        // Each is no JSON value, though some join with their neighbours into valid JSON (`1,2`, `[3`, `4]`).
        fc.constantFrom('1,2', '[3', '4]', '', ' ', '{"a":', '"', '01', 'nul', '1 2', '},{', '"a\\"'),
        // One JSON value each, some only after the BOM the json codec drops, some not ASCII.
        fc.constantFrom('\uFEFF{"a":1}', ' 7 ', '"é"', '{"x":"\\u00e9"}', '[1,2]', '\t{}\r\n', 'null'),
        fc.string({ maxLength: 6 }),
        fc.string({ maxLength: 6, unit: 'binary' }),
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('malformed' as const), key }) },
);

function fetchedRecords(codec: (typeof JSON_CODECS)[number], inputs: Input[]): FetchedRecord[] {
  return inputs.map((x, i) => {
    let data: Uint8Array;
    let partitionKey: string;
    switch (x.kind) {
      case 'plain':
        data = payload(codec, x.items);
        partitionKey = x.key;
        break;
      case 'aggregate': {
        const built = aggregate(
          x.subs.map((s) => ({
            partitionKey: s.key,
            data: payload(codec, s.items),
            ...(s.hashKey === undefined ? {} : { explicitHashKey: s.hashKey }),
          })),
          { maxBytes: 10_000_000 },
        );
        data = built[0]!.data;
        partitionKey = built[0]!.partitionKey;
        break;
      }
      case 'text':
        data = encoder.encode(x.text);
        partitionKey = x.key;
        break;
      case 'poison':
        // Not valid UTF-8, so no codec of JSON items decodes it (string included).
        data = Uint8Array.of(0xff, 0xfe, 0x7b);
        partitionKey = x.key;
        break;
      case 'malformed':
        data = Uint8Array.of(...KPL_MAGIC, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17);
        partitionKey = x.key;
        break;
    }
    return {
      Data: data,
      PartitionKey: partitionKey,
      SequenceNumber: seq(i),
      ApproximateArrivalTimestamp: new Date(1_700_000_000_000 + i),
    };
  });
}

/** The batch message a reader posts, through a real MessageChannel (the structured clone included). */
function posted(message: BatchMessage): BatchMessage {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(message, transferListOf(message));
  const received = receiveMessageOnPort(port2)!.message as BatchMessage;
  port1.close();
  return received;
}

function messages(
  records: FetchedRecord[],
  codec: Codec,
  skip?: { sequenceNumber: string; subSequenceNumber: number },
) {
  const decoded = unpackResponse(records, codec, 'decoded', skip);
  const json = unpackResponse(records, codec, 'json', skip);
  const base = {
    v: PROTOCOL_VERSION,
    type: 'batch' as const,
    shardId: 's',
    batchId: 0,
    lastSequenceNumber: seq(0),
    bytes: 0,
  };
  return {
    decoded: posted({ ...base, encoding: 'decoded', records: decoded.decoded }),
    json: posted({ ...base, encoding: 'json', ...jsonBatchFields(json) }),
    counts: [decoded.count, json.count],
    last: [decoded.last, json.last],
  };
}

/** Records as compared: a poison record's error without stacks (each decode makes its own). */
function comparable(records: ReturnType<typeof batchToRecords>): unknown[] {
  return records.map((r) =>
    r.ok
      ? r
      : { ...r, error: JSON.parse(JSON.stringify(r.error, (k, v) => (k === 'stack' ? undefined : v))) },
  );
}

describe("the 'json' batch encoding", () => {
  for (const name of JSON_CODECS) {
    it(`${name}: gives the same records as 'decoded', poison records in place (random responses)`, () => {
      const codec = codecs[name];
      fc.assert(
        fc.property(
          fc.array(input, { minLength: 1, maxLength: 8 }),
          fc.nat({ max: 3 }),
          fc.boolean(),
          (inputs, at, resume) => {
            const records = fetchedRecords(name, inputs);
            const skip =
              resume && at < records.length ? { sequenceNumber: seq(at), subSequenceNumber: 0 } : undefined;
            const m = messages(records, codec, skip);
            expect(m.counts[0]).to.equal(m.counts[1]);
            expect(m.last[0]).to.deep.equal(m.last[1]);
            expect(comparable(batchToRecords(m.json, codec))).to.deep.equal(
              comparable(batchToRecords(m.decoded, codec)),
            );
          },
        ),
        { numRuns: 200 },
      );
    });
  }

  it('splitBatch: one parse, Dates for arrival times, poison records with how many good ones precede them', () => {
    const records = fetchedRecords('json', [
      { kind: 'plain', key: 'a"\\\n', items: [{ x: 1 }] },
      { kind: 'poison', key: 'b' },
      { kind: 'plain', key: 'c', items: ['é'] },
      { kind: 'malformed', key: 'd' },
    ]);
    const { json } = messages(records, codecs.json);
    const split = splitBatch(json, codecs.json);
    expect(split.records.map((r) => [r.data, r.partitionKey, r.sequenceNumber])).to.deep.equal([
      [{ x: 1 }, 'a"\\\n', seq(0)],
      ['é', 'c', seq(2)],
    ]);
    expect(split.records[1]!.approximateArrivalTimestamp).to.deep.equal(new Date(1_700_000_000_002));
    expect(split.poison.map((p) => [p.before, p.record.sequenceNumber, p.error.code])).to.deep.equal([
      [1, seq(1), 'ERR_CODEC'],
      [2, seq(3), 'ERR_KPL_MALFORMED'],
    ]);
  });

  it('a batch whose columns do not agree is a protocol error, never a silent gap', () => {
    const { json } = messages(
      fetchedRecords('json', [
        { kind: 'plain', key: 'a', items: [1] },
        { kind: 'plain', key: 'b', items: [2] },
      ]),
      codecs.json,
    );
    const good = json as JsonBatchMessage;
    expect(splitBatch(good, codecs.json).records.map((r) => r.data)).to.deep.equal([1, 2]);
    for (const bad of [
      { json: '[1]' },
      { json: '[' },
      { json: '{}' },
      { sequenceNumbers: seq(0) },
      { keyIndex: Uint32Array.of(0, 7) },
    ]) {
      expect(() => splitBatch({ ...good, ...bad }, codecs.json), JSON.stringify(Object.keys(bad)))
        .to.throw()
        .with.property('code', 'ERR_PROTOCOL');
    }
  });

  describe('codecs: decodeJson', () => {
    for (const name of JSON_CODECS) {
      it(`${name}: its texts parse to what decode gives; a bad payload fails with the same error`, () => {
        const codec = codecs[name];
        fc.assert(
          fc.property(fc.array(value, { minLength: 1, maxLength: 4 }), (items) => {
            const data = payload(name, items);
            expect(codec.decodeJson!(data).map((t) => JSON.parse(t))).to.deep.equal(codec.decode(data));
          }),
          { numRuns: 200 },
        );
        for (const bad of [Uint8Array.of(0xff), encoder.encode('{nope'), new Uint8Array(0)]) {
          let expected: unknown;
          try {
            codec.decode(bad);
          } catch (error) {
            expected = error;
          }
          if (expected === undefined) {
            expect(() => codec.decodeJson!(bad), name).to.not.throw();
            continue;
          }
          expect(() => codec.decodeJson!(bad))
            .to.throw()
            .with.property('message', (expected as Error).message);
        }
      });
    }

    it('codecs whose items are not JSON have none (raw, msgpack)', () => {
      expect(codecs.raw.decodeJson).to.equal(undefined);
      expect(codecs.msgpack.decodeJson).to.equal(undefined);
    });
  });
});
