/**
 * The reader strips trace envelopes before decoding, in every batch encoding, and the receiving side
 * hands the traceparent out as `ShardRecord.traceContext`; records without an envelope are untouched.
 */
import type { BatchMessage, Codec, ShardRecord } from '@shardline/common';
import {
  aggregate,
  codecs,
  PROTOCOL_VERSION,
  packRecords,
  parseWorkerMessage,
  splitBatch,
  wrapTraceEnvelope,
} from '@shardline/common';
import { expect } from 'chai';
import type { FetchedRecord } from '../../../packages/shard-worker/src/records.js';
import { jsonBatchFields, unpackResponse } from '../../../packages/shard-worker/src/records.js';

const TP1 = `00-${'1'.repeat(32)}-${'a'.repeat(16)}-01`;
const TP2 = `00-${'2'.repeat(32)}-${'b'.repeat(16)}-00`;
const encoder = new TextEncoder();
const json = (value: unknown): Uint8Array => encoder.encode(JSON.stringify(value));
const seq = (i: number) => `49${String(i + 1).padStart(54, '0')}`;

function fetched(i: number, data: Uint8Array, partitionKey = `pk-${i}`): FetchedRecord {
  return {
    Data: data,
    PartitionKey: partitionKey,
    SequenceNumber: seq(i),
    ApproximateArrivalTimestamp: new Date(1_700_000_000_000 + i),
  };
}

const base = { v: PROTOCOL_VERSION, type: 'batch' as const, shardId: 'shardId-000', batchId: 0 };

/** The records a receiver gets for `records`, through the wire format of `encoding` (and its guard). */
function receive(
  records: FetchedRecord[],
  encoding: 'json' | 'decoded' | 'bytes',
  codec: Codec = codecs.json,
): { records: ShardRecord[]; poison: ShardRecord[]; bytes: number } {
  const out = unpackResponse(records, codec, encoding, undefined);
  const end = { lastSequenceNumber: out.last?.sequenceNumber ?? '', bytes: out.bytes };
  let message: BatchMessage;
  if (encoding === 'json') message = { ...base, ...end, encoding, ...jsonBatchFields(out) };
  else if (encoding === 'decoded') message = { ...base, ...end, encoding, records: out.decoded };
  else {
    const packed = packRecords(out.packed);
    message = { ...base, ...end, encoding, records: packed.records, buffer: packed.buffer };
  }
  const split = splitBatch(parseWorkerMessage(structuredClone(message)) as BatchMessage, codec);
  return { records: split.records, poison: split.poison.map((p) => p.record), bytes: out.bytes };
}

describe('trace envelopes on the reading side', () => {
  for (const encoding of ['json', 'decoded', 'bytes'] as const) {
    describe(`'${encoding}' batches`, () => {
      const codec = encoding === 'bytes' ? codecs.raw : codecs.json;
      const payloadOf = (r: ShardRecord) =>
        encoding === 'bytes' ? new TextDecoder().decode(r.data as Uint8Array) : JSON.stringify(r.data);

      it('strips the envelope of plain records and keeps the traceparent; others are untouched', () => {
        const records = [
          fetched(0, wrapTraceEnvelope(TP1, json({ n: 0 }))),
          fetched(1, json({ n: 1 })),
          fetched(2, wrapTraceEnvelope(TP2, json({ n: 2, s: 'é' }))),
        ];
        const got = receive(records, encoding, codec);
        expect(got.poison).to.deep.equal([]);
        expect(got.records.map(payloadOf)).to.deep.equal([
          '{"n":0}',
          '{"n":1}',
          JSON.stringify({ n: 2, s: 'é' }),
        ]);
        expect(got.records.map((r) => r.traceContext)).to.deep.equal([TP1, undefined, TP2]);
        expect('traceContext' in got.records[1]!).to.equal(false);
        // Byte credit counts what was fetched, envelopes included.
        const fetchedBytes = records.reduce((n, r) => n + r.Data!.byteLength, 0);
        expect(got.bytes).to.equal(fetchedBytes);
      });

      it('strips the envelope of each user record inside a KPL aggregate', () => {
        const [agg] = aggregate([
          { partitionKey: 'a', data: wrapTraceEnvelope(TP1, json({ n: 0 })) },
          { partitionKey: 'b', data: json({ n: 1 }) },
          { partitionKey: 'a', data: wrapTraceEnvelope(TP2, json({ n: 2 })) },
        ]);
        const got = receive([fetched(0, agg!.data, 'a')], encoding, codec);
        expect(got.records.map(payloadOf)).to.deep.equal(['{"n":0}', '{"n":1}', '{"n":2}']);
        expect(got.records.map((r) => r.traceContext)).to.deep.equal([TP1, undefined, TP2]);
        expect(got.records.map((r) => r.partitionKey)).to.deep.equal(['a', 'b', 'a']);
        expect(got.records.map((r) => r.subSequenceNumber)).to.deep.equal([0, 1, 2]);
      });

      it('passes a payload that starts with the magic but is malformed through unchanged', () => {
        const malformed = wrapTraceEnvelope(TP1, json({ n: 0 })).slice();
        malformed[4] = 9; // an unknown version
        const got = receive([fetched(0, malformed), fetched(1, json({ n: 1 }))], encoding, codec);
        if (encoding === 'bytes') {
          expect(Buffer.from(got.records[0]!.data as Uint8Array).equals(Buffer.from(malformed))).to.equal(
            true,
          );
          expect(got.records[0]!.traceContext).to.equal(undefined);
        } else {
          // Not JSON: a poison record of its own, with the bytes exactly as fetched.
          expect(got.poison).to.have.length(1);
          expect(Buffer.from(got.poison[0]!.data as Uint8Array).equals(Buffer.from(malformed))).to.equal(
            true,
          );
          expect(got.poison[0]!.traceContext).to.equal(undefined);
        }
        expect(got.records.at(-1)!.data).to.deep.equal(encoding === 'bytes' ? json({ n: 1 }) : { n: 1 });
      });

      if (encoding === 'bytes') return;
      it('an enveloped payload that does not decode is poison with the traceparent and the stripped payload', () => {
        const got = receive([fetched(0, wrapTraceEnvelope(TP1, encoder.encode('{nope')))], encoding, codec);
        expect(got.records).to.deep.equal([]);
        expect(got.poison).to.have.length(1);
        expect(got.poison[0]!.traceContext).to.equal(TP1);
        expect(new TextDecoder().decode(got.poison[0]!.data as Uint8Array)).to.equal('{nope');
      });
    });
  }

  it('a json-codec response without envelopes carries no traceContexts column', () => {
    const out = unpackResponse([fetched(0, json(1)), fetched(1, json(2))], codecs.json, 'json', undefined);
    expect(jsonBatchFields(out)).to.not.have.property('traceContexts');
  });

  it('the guard refuses a traceContexts column of the wrong length', () => {
    const out = unpackResponse(
      [fetched(0, wrapTraceEnvelope(TP1, json(1))), fetched(1, json(2))],
      codecs.json,
      'json',
      undefined,
    );
    const fields = jsonBatchFields(out);
    expect(fields.traceContexts).to.deep.equal([TP1, '']);
    const message = { ...base, lastSequenceNumber: seq(1), bytes: out.bytes, encoding: 'json', ...fields };
    expect(() => parseWorkerMessage({ ...message, traceContexts: [TP1] })).to.throw(/traceContexts/);
  });
});
