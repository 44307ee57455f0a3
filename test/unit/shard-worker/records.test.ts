import type { Codec, DecodedRecordMessage, RecordToPack } from '@shardline/common';
import { aggregate, codecs, ErrorCodes } from '@shardline/common';
import { expect } from 'chai';
import type { FetchedRecord, SkipThrough } from '../../../packages/shard-worker/src/records.js';
import { unpackResponse } from '../../../packages/shard-worker/src/records.js';

const encoder = new TextEncoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));

/** Sequence numbers: fixed width, so string order is numeric order, as in Kinesis. */
function seq(i: number): string {
  return `49${String(i + 1).padStart(54, '0')}`;
}

function fetched(i: number, data: Uint8Array, partitionKey = `pk-${i}`): FetchedRecord {
  return {
    Data: data,
    PartitionKey: partitionKey,
    SequenceNumber: seq(i),
    ApproximateArrivalTimestamp: new Date(1_700_000_000_000 + i),
  };
}

/** One aggregate holding `payloads`, keyed `user-0`, `user-1`, ... */
function aggregateOf(payloads: Uint8Array[], keys = payloads.map((_, j) => `user-${j}`)): Uint8Array {
  const aggregates = aggregate(payloads.map((data, j) => ({ partitionKey: keys[j]!, data })));
  expect(aggregates).to.have.length(1);
  return aggregates[0]!.data;
}

/** A valid aggregate with one body byte flipped: the MD5 trailer no longer matches. */
function corruptAggregate(): Uint8Array {
  const data = aggregateOf([json({ n: 1 }), json({ n: 2 })]).slice();
  data[8] = data[8]! ^ 0xff;
  return data;
}

/** Bytes that own their whole ArrayBuffer: what a structured clone copies is just them. */
function isExactCopy(data: unknown): boolean {
  return data instanceof Uint8Array && data.byteOffset === 0 && data.buffer.byteLength === data.byteLength;
}

function decoded(
  records: readonly FetchedRecord[],
  codec: Codec = codecs.json,
  skip?: SkipThrough,
): DecodedRecordMessage[] {
  const out = unpackResponse(records, codec, 'decoded', skip);
  expect(out.packed, 'a decoded response packs nothing').to.deep.equal([]);
  return out.decoded;
}

function packed(
  records: readonly FetchedRecord[],
  codec: Codec = codecs.raw,
  skip?: SkipThrough,
): RecordToPack[] {
  const out = unpackResponse(records, codec, 'bytes', skip);
  expect(out.decoded, 'a bytes response decodes nothing').to.deep.equal([]);
  return out.packed;
}

/** `[sequenceNumber index, subSequenceNumber, data]` of each decoded record, for compact expectations. */
function positions(records: readonly DecodedRecordMessage[]): Array<[string, number | undefined, unknown]> {
  return records.map((r) => [r.sequenceNumber, r.subSequenceNumber, r.data]);
}

describe('unpackResponse (GetRecords response -> batch records)', () => {
  describe('plain records', () => {
    it('decodes each record into one item carrying its position, key and arrival time', () => {
      const out = decoded([fetched(0, json({ n: 0 })), fetched(1, json({ n: 1 }), 'other')]);
      expect(out).to.deep.equal([
        { data: { n: 0 }, partitionKey: 'pk-0', sequenceNumber: seq(0), arrivalMs: 1_700_000_000_000 },
        { data: { n: 1 }, partitionKey: 'other', sequenceNumber: seq(1), arrivalMs: 1_700_000_000_001 },
      ]);
      // No sub-sequence number: a plain record is its own position.
      expect(out.every((r) => !('subSequenceNumber' in r))).to.equal(true);
    });

    it('counts the data bytes of every Kinesis record and remembers the last sequence number', () => {
      const a = json({ n: 0 });
      const b = json({ text: 'a longer payload' });
      const out = unpackResponse([fetched(0, a), fetched(1, b)], codecs.json, 'decoded', undefined);
      expect(out.bytes).to.equal(a.byteLength + b.byteLength);
      expect(out.lastKinesisSequenceNumber).to.equal(seq(1));
    });

    it('an empty response has no records, no bytes and no resume point', () => {
      expect(unpackResponse([], codecs.json, 'decoded', undefined)).to.deep.equal({
        packed: [],
        decoded: [],
        json: {
          items: [],
          keys: new Map(),
          keyIndex: [],
          sequenceNumbers: [],
          arrivalMs: [],
          subSequenceNumbers: [],
          explicitHashKeys: [],
          traceContexts: [],
          anySubSequence: false,
          anyHashKey: false,
          anyTrace: false,
        },
        poison: [],
        count: 0,
        last: undefined,
        bytes: 0,
        lastKinesisSequenceNumber: undefined,
      });
    });

    it('treats missing fields as empty, not as a crash (an empty payload is a poison record for json)', () => {
      const out = unpackResponse([{}], codecs.json, 'decoded', undefined);
      expect(out.bytes).to.equal(0);
      expect(out.lastKinesisSequenceNumber).to.equal('');
      expect(out.decoded).to.have.length(1);
      const [r] = out.decoded;
      expect(r!.partitionKey).to.equal('');
      expect(r!.sequenceNumber).to.equal('');
      expect(r!.arrivalMs).to.equal(0);
      expect(r!.error?.code).to.equal(ErrorCodes.CODEC);
      expect(r!.data).to.deep.equal(new Uint8Array(0));
    });

    it('decodes with the codec it is given (string)', () => {
      const out = decoded([fetched(0, encoder.encode('héllo'))], codecs.string);
      expect(out.map((r) => r.data)).to.deep.equal(['héllo']);
    });
  });

  describe('KPL aggregates', () => {
    it('gives each user record its sub-sequence number, its own partition key and explicit hash key', () => {
      const [agg] = aggregate([
        { partitionKey: 'alice', data: json({ n: 0 }) },
        { partitionKey: 'bob', data: json({ n: 1 }), explicitHashKey: '42' },
        { partitionKey: 'alice', data: json({ n: 2 }) },
      ]);
      const out = decoded([fetched(7, agg!.data, agg!.partitionKey)]);
      expect(out).to.deep.equal([
        {
          data: { n: 0 },
          partitionKey: 'alice',
          sequenceNumber: seq(7),
          subSequenceNumber: 0,
          arrivalMs: 1_700_000_000_007,
        },
        {
          data: { n: 1 },
          partitionKey: 'bob',
          explicitHashKey: '42',
          sequenceNumber: seq(7),
          subSequenceNumber: 1,
          arrivalMs: 1_700_000_000_007,
        },
        {
          data: { n: 2 },
          partitionKey: 'alice',
          sequenceNumber: seq(7),
          subSequenceNumber: 2,
          arrivalMs: 1_700_000_000_007,
        },
      ]);
    });

    it('numbers the single user record of a one-record aggregate 0 (it is still an aggregate)', () => {
      const out = decoded([fetched(0, aggregateOf([json({ n: 0 })]))]);
      expect(positions(out)).to.deep.equal([[seq(0), 0, { n: 0 }]]);
    });

    it('counts the aggregate bytes (what Kinesis stored), not the user records', () => {
      const data = aggregateOf([json({ n: 0 }), json({ n: 1 })]);
      const out = unpackResponse([fetched(0, data)], codecs.json, 'decoded', undefined);
      expect(out.bytes).to.equal(data.byteLength);
      expect(out.decoded).to.have.length(2);
    });

    it('restarts the numbering at each Kinesis record, aggregates and plain records mixed', () => {
      const out = decoded([
        fetched(0, aggregateOf([json('a'), json('b')])),
        fetched(1, json('c')),
        fetched(2, aggregateOf([json('d'), json('e'), json('f')])),
      ]);
      expect(positions(out)).to.deep.equal([
        [seq(0), 0, 'a'],
        [seq(0), 1, 'b'],
        [seq(1), undefined, 'c'],
        [seq(2), 0, 'd'],
        [seq(2), 1, 'e'],
        [seq(2), 2, 'f'],
      ]);
    });

    it('decodes raw payloads into exact copies, not views into the aggregate', () => {
      const out = decoded(
        [fetched(0, aggregateOf([new Uint8Array([1, 2]), new Uint8Array([3])]))],
        codecs.raw,
      );
      expect(out.map((r) => [...(r.data as Uint8Array)])).to.deep.equal([[1, 2], [3]]);
      // A view would drag the whole aggregate's ArrayBuffer through the structured clone.
      expect(out.map((r) => isExactCopy(r.data))).to.deep.equal([true, true]);
    });
  });

  describe('framed codecs', () => {
    it('numbers the items of a jsonl payload by their line', () => {
      const out = decoded([fetched(0, encoder.encode('{"n":0}\n{"n":1}\n{"n":2}\n'))], codecs.jsonl);
      expect(positions(out)).to.deep.equal([
        [seq(0), 0, { n: 0 }],
        [seq(0), 1, { n: 1 }],
        [seq(0), 2, { n: 2 }],
      ]);
    });

    it('numbers a framed payload of one item too (its position must not depend on the item count)', () => {
      const out = decoded([fetched(0, encoder.encode('[5]'))], codecs['json-array']);
      expect(positions(out)).to.deep.equal([[seq(0), 0, 5]]);
    });

    it('counts across the sub-records of an aggregate of framed payloads', () => {
      const [first, second] = [codecs.msgpack.encode([1, 2])[0]!, codecs.msgpack.encode([3, 4, 5])[0]!];
      const out = decoded([fetched(0, aggregateOf([first, second]))], codecs.msgpack);
      expect(positions(out)).to.deep.equal([
        [seq(0), 0, 1],
        [seq(0), 1, 2],
        [seq(0), 2, 3],
        [seq(0), 3, 4],
        [seq(0), 4, 5],
      ]);
    });

    it('a framed payload with no items takes no number and yields no record', () => {
      const out = decoded(
        [fetched(0, aggregateOf([encoder.encode('[]'), encoder.encode('[1,2]')]))],
        codecs['json-array'],
      );
      expect(positions(out)).to.deep.equal([
        [seq(0), 0, 1],
        [seq(0), 1, 2],
      ]);
    });
  });

  describe('skip-through on resume (AT_SEQUENCE_NUMBER + sub-sequence)', () => {
    const response = (): FetchedRecord[] => [
      fetched(0, aggregateOf([json('a0'), json('a1'), json('a2')])),
      fetched(1, aggregateOf([json('b0'), json('b1'), json('b2')])),
    ];

    it('drops the items of the checkpointed record up to and including its sub-sequence, and only those', () => {
      const out = decoded(response(), codecs.json, { sequenceNumber: seq(1), subSequenceNumber: 1 });
      expect(positions(out)).to.deep.equal([
        [seq(0), 0, 'a0'],
        [seq(0), 1, 'a1'],
        [seq(0), 2, 'a2'],
        [seq(1), 2, 'b2'],
      ]);
    });

    it('re-reading a record gives the same numbering, so resume + skip delivers each item once', () => {
      const first = decoded(response());
      const checkpoint = first[3]!; // b0
      const resumed = decoded(response().slice(1), codecs.json, {
        sequenceNumber: checkpoint.sequenceNumber,
        subSequenceNumber: checkpoint.subSequenceNumber!,
      });
      expect([...first.slice(0, 4), ...resumed].map((r) => r.data)).to.deep.equal([
        'a0',
        'a1',
        'a2',
        'b0',
        'b1',
        'b2',
      ]);
    });

    it('still counts the bytes and the resume point of a fully skipped record', () => {
      const records = response();
      const out = unpackResponse(records, codecs.json, 'decoded', {
        sequenceNumber: seq(1),
        subSequenceNumber: 2,
      });
      expect(out.decoded.map((r) => r.data)).to.deep.equal(['a0', 'a1', 'a2']);
      expect(out.bytes).to.equal(records[0]!.Data!.byteLength + records[1]!.Data!.byteLength);
      expect(out.lastKinesisSequenceNumber).to.equal(seq(1));
    });

    it('skips through framed items the same way', () => {
      const out = decoded([fetched(0, encoder.encode('1\n2\n3\n'))], codecs.jsonl, {
        sequenceNumber: seq(0),
        subSequenceNumber: 0,
      });
      expect(positions(out)).to.deep.equal([
        [seq(0), 1, 2],
        [seq(0), 2, 3],
      ]);
    });

    it("skips through an aggregate's sub-records in 'bytes' encoding too", () => {
      const out = packed(
        [fetched(0, aggregateOf([new Uint8Array([0]), new Uint8Array([1]), new Uint8Array([2])]))],
        codecs.raw,
        { sequenceNumber: seq(0), subSequenceNumber: 1 },
      );
      expect(out.map((r) => [r.subSequenceNumber, [...r.data]])).to.deep.equal([[2, [2]]]);
    });

    it('skips a malformed aggregate at the checkpoint (it was delivered whole before the checkpoint)', () => {
      const skip = { sequenceNumber: seq(0), subSequenceNumber: 0 };
      expect(decoded([fetched(0, corruptAggregate())], codecs.json, skip)).to.deep.equal([]);
      // Without the skip it is delivered, as one poison record.
      expect(decoded([fetched(0, corruptAggregate())])).to.have.length(1);
    });
  });

  describe('bad data becomes error records, never an exception', () => {
    it('a malformed aggregate is one poison record: the raw bytes, the Kinesis position, no sub-sequence', () => {
      const bad = corruptAggregate();
      const out = decoded([
        fetched(0, json('before')),
        fetched(1, bad, 'outer-key'),
        fetched(2, json('after')),
      ]);
      expect(out.map((r) => (r.data instanceof Uint8Array ? 'bytes' : r.data))).to.deep.equal([
        'before',
        'bytes',
        'after',
      ]);
      const poison = out[1]!;
      expect(poison.error?.code).to.equal(ErrorCodes.KPL_MALFORMED);
      expect(poison.error?.message).to.match(/MD5/);
      expect(poison.partitionKey).to.equal('outer-key');
      expect(poison.sequenceNumber).to.equal(seq(1));
      expect(poison).to.not.have.property('subSequenceNumber');
      expect(poison.data).to.deep.equal(bad);
    });

    it('an undecodable payload is a poison record with a copy of its bytes, and the others decode', () => {
      const bad = encoder.encode('{not json');
      const out = decoded([fetched(0, json(1)), fetched(1, bad), fetched(2, json(3))]);
      expect(out.map((r) => r.error?.code)).to.deep.equal([undefined, ErrorCodes.CODEC, undefined]);
      expect(out[1]!.error?.message).to.match(/json/);
      expect(out[1]!.data).to.deep.equal(bad);
      expect(out[1]!.data, 'a copy: the response buffer is not held').to.not.equal(bad);
      expect(isExactCopy(out[1]!.data)).to.equal(true);
      expect(out[1]).to.not.have.property('subSequenceNumber');
    });

    it('an undecodable sub-record keeps its number, and the numbering goes on after it', () => {
      const out = decoded([fetched(0, aggregateOf([json('a'), encoder.encode('{'), json('c')]))]);
      expect(out.map((r) => [r.subSequenceNumber, r.error?.code ?? r.data])).to.deep.equal([
        [0, 'a'],
        [1, ErrorCodes.CODEC],
        [2, 'c'],
      ]);
      expect(out[1]!.partitionKey).to.equal('user-1');
      // The raw bytes of the sub-record alone, not a view into the aggregate (cloned whole otherwise).
      expect(isExactCopy(out[1]!.data)).to.equal(true);
      expect([...(out[1]!.data as Uint8Array)]).to.deep.equal([...encoder.encode('{')]);
    });

    it('an undecodable framed payload is one poison record numbered like an item', () => {
      const out = decoded([fetched(0, encoder.encode('1\n{\n3\n'))], codecs.jsonl);
      // The payload fails as a whole: its items cannot be told apart from the bad line.
      expect(out).to.have.length(1);
      expect(out[0]!.error?.code).to.equal(ErrorCodes.CODEC);
      expect(out[0]!.subSequenceNumber).to.equal(0);
    });

    it("in 'bytes' encoding a malformed aggregate is a packed record with the error; bad payloads pass through", () => {
      const bad = corruptAggregate();
      const notJson = encoder.encode('{not json');
      const out = packed([fetched(0, notJson), fetched(1, bad)], codecs.json);
      expect(out).to.have.length(2);
      // The reader does not decode 'bytes' batches: the receiver finds the codec error.
      expect(out[0]!.error).to.equal(undefined);
      expect([...out[0]!.data]).to.deep.equal([...notJson]);
      expect(out[1]!.error?.code).to.equal(ErrorCodes.KPL_MALFORMED);
      expect([...out[1]!.data]).to.deep.equal([...bad]);
      expect(out[1]).to.not.have.property('subSequenceNumber');
    });
  });

  describe("'bytes' encoding", () => {
    it('packs the raw payload of each record; only sub-records of an aggregate get a sub-sequence', () => {
      const out = packed([
        fetched(0, new Uint8Array([9, 9])),
        fetched(1, aggregateOf([new Uint8Array([1]), new Uint8Array([2, 2])], ['k1', 'k2'])),
      ]);
      expect(
        out.map((r) => [r.sequenceNumber, r.subSequenceNumber, r.partitionKey, [...r.data]]),
      ).to.deep.equal([
        [seq(0), undefined, 'pk-0', [9, 9]],
        [seq(1), 0, 'k1', [1]],
        [seq(1), 1, 'k2', [2, 2]],
      ]);
      expect(out.every((r) => r.arrivalMs >= 1_700_000_000_000)).to.equal(true);
    });

    it('counts the Kinesis record bytes, as the decoded encoding does', () => {
      const records = [fetched(0, new Uint8Array(10)), fetched(1, aggregateOf([new Uint8Array(3)]))];
      const bytes = unpackResponse(records, codecs.raw, 'bytes', undefined).bytes;
      expect(bytes).to.equal(unpackResponse(records, codecs.raw, 'decoded', undefined).bytes);
      expect(bytes).to.equal(10 + records[1]!.Data!.byteLength);
    });
  });

  describe("'json' encoding", () => {
    const text = (t: string): Uint8Array => encoder.encode(t);

    it('checks each payload on its own: `1,2`, `[3`, `4]` are three poison records, though they join into JSON', () => {
      const records = [
        fetched(0, text('{"a":1}')),
        fetched(1, text('1,2')),
        fetched(2, text('[3')),
        fetched(3, text('4]')),
        fetched(4, text('"é"')),
        fetched(5, text('\uFEFF[5]')),
        fetched(6, new Uint8Array([0x7b, 0xff, 0x7d])),
      ];
      const out = unpackResponse(records, codecs.json, 'json', undefined);
      expect(out.json.items).to.deep.equal(['{"a":1}', '"é"', '[5]']);
      expect(out.json.sequenceNumbers).to.deep.equal([seq(0), seq(4), seq(5)]);
      expect(out.json.keyIndex.map((k) => [...out.json.keys.keys()][k])).to.deep.equal([
        'pk-0',
        'pk-4',
        'pk-5',
      ]);
      expect(
        out.poison.map((p) => [p.sequenceNumber, p.before, p.error.code, [...(p.data as Uint8Array)]]),
      ).to.deep.equal([
        [seq(1), 1, ErrorCodes.CODEC, [...text('1,2')]],
        [seq(2), 1, ErrorCodes.CODEC, [...text('[3')]],
        [seq(3), 1, ErrorCodes.CODEC, [...text('4]')]],
        [seq(6), 3, ErrorCodes.CODEC, [0x7b, 0xff, 0x7d]],
      ]);
      // The codec's own error: the same message `decode` gives for that payload.
      expect(out.poison[0]!.error.message).to.equal(
        (() => {
          try {
            codecs.json.decode(text('1,2'));
          } catch (error) {
            return (error as Error).message;
          }
          return 'decoded';
        })(),
      );
      expect(out.poison.every((p) => isExactCopy(p.data))).to.equal(true);
      expect(out.count).to.equal(records.length);
      expect(out.last).to.deep.equal({ sequenceNumber: seq(6) });
    });

    it('keeps the metadata columns one entry per item, the optional ones only once a record has one', () => {
      const agg = aggregate(
        [
          { partitionKey: 'k1', data: json(1) },
          { partitionKey: 'k2', data: json(2), explicitHashKey: '42' },
        ],
        { maxBytes: 10_000 },
      )[0]!;
      const out = unpackResponse(
        [
          fetched(0, json('a'), 'same'),
          fetched(1, json('b'), 'same'),
          fetched(2, agg.data, agg.partitionKey),
        ],
        codecs.json,
        'json',
        undefined,
      );
      const c = out.json;
      expect(c.items).to.deep.equal(['"a"', '"b"', '1', '2']);
      expect([...c.keys.keys()]).to.deep.equal(['same', 'k1', 'k2']);
      expect(c.keyIndex).to.deep.equal([0, 0, 1, 2]);
      expect(c.subSequenceNumbers).to.deep.equal([-1, -1, 0, 1]);
      expect(c.explicitHashKeys).to.deep.equal(['', '', '', '42']);
      expect(out.last).to.deep.equal({ sequenceNumber: seq(2), subSequenceNumber: 1 });
    });
  });
});
