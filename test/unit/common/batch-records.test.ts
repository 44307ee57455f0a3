import { once } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import {
  type BatchMessage,
  type BatchRecord,
  type BytesBatchMessage,
  batchToRecords,
  type Codec,
  CodecError,
  codecs,
  type DecodedBatchMessage,
  type DecodedRecordMessage,
  ErrorCodes,
  KplError,
  PROTOCOL_VERSION,
  packRecords,
  parseWorkerMessage,
  type RecordToPack,
  type SerializedError,
  serializeError,
  transferListOf,
} from '@shardline/common';
import { expect } from 'chai';

const encoder = new TextEncoder();
const ARRIVAL = 1_700_000_000_000;

function seq(i: number): string {
  return `49${String(i + 1).padStart(54, '0')}`;
}

function toPack(i: number, data: Uint8Array, extra: Partial<RecordToPack> = {}): RecordToPack {
  return { data, partitionKey: `pk-${i}`, sequenceNumber: seq(i), arrivalMs: ARRIVAL + i, ...extra };
}

function bytesBatch(records: RecordToPack[]): BytesBatchMessage {
  const packed = packRecords(records);
  const last = records.at(-1);
  return {
    v: PROTOCOL_VERSION,
    type: 'batch',
    shardId: 'shardId-000000000000',
    batchId: 0,
    lastSequenceNumber: last?.sequenceNumber ?? '',
    bytes: packed.bytes,
    encoding: 'bytes',
    records: packed.records,
    buffer: packed.buffer,
  };
}

function decodedBatch(records: DecodedRecordMessage[]): DecodedBatchMessage {
  return {
    v: PROTOCOL_VERSION,
    type: 'batch',
    shardId: 'shardId-000000000000',
    batchId: 0,
    lastSequenceNumber: records.at(-1)?.sequenceNumber ?? '',
    bytes: 0,
    encoding: 'decoded',
    records,
  };
}

/** A codec that fails the test if it is asked to decode: decoded batches need no decoding. */
const unusable: Codec = {
  ...codecs.json,
  name: 'unusable',
  decode() {
    throw new Error('a decoded batch must not be decoded again');
  },
};

function poison<T>(entry: BatchRecord<T> | undefined): { data: Uint8Array; error: SerializedError } {
  if (entry === undefined || entry.ok) expect.fail(`expected a poison record, got ${JSON.stringify(entry)}`);
  return { data: entry.record.data, error: entry.error };
}

const kplError = (): SerializedError => serializeError(new KplError('record 7: MD5 checksum mismatch'));

describe('batchToRecords (batch message -> ShardRecords)', () => {
  describe("'bytes' batches", () => {
    it('decodes each payload with the codec, in order, with every position field of the record', () => {
      const batch = bytesBatch([
        toPack(0, encoder.encode('{"n":0}')),
        toPack(1, encoder.encode('{"n":1}'), { subSequenceNumber: 0, explicitHashKey: '42' }),
        toPack(1, encoder.encode('{"n":2}'), { subSequenceNumber: 1, partitionKey: 'other' }),
      ]);
      const out = batchToRecords<{ n: number }>(batch, codecs.json);
      expect(out).to.deep.equal([
        {
          ok: true,
          record: {
            data: { n: 0 },
            partitionKey: 'pk-0',
            sequenceNumber: seq(0),
            approximateArrivalTimestamp: new Date(ARRIVAL),
          },
        },
        {
          ok: true,
          record: {
            data: { n: 1 },
            partitionKey: 'pk-1',
            sequenceNumber: seq(1),
            subSequenceNumber: 0,
            explicitHashKey: '42',
            approximateArrivalTimestamp: new Date(ARRIVAL + 1),
          },
        },
        {
          ok: true,
          record: {
            data: { n: 2 },
            partitionKey: 'other',
            sequenceNumber: seq(1),
            subSequenceNumber: 1,
            approximateArrivalTimestamp: new Date(ARRIVAL + 1),
          },
        },
      ]);
    });

    it('gives raw payloads back as their exact bytes', () => {
      const payloads = [new Uint8Array([0, 255, 7]), new Uint8Array(0), new Uint8Array([1])];
      const out = batchToRecords<Uint8Array>(bytesBatch(payloads.map((p, i) => toPack(i, p))), codecs.raw);
      expect(out.map((r) => (r.ok ? [...r.record.data] : 'poison'))).to.deep.equal([[0, 255, 7], [], [1]]);
    });

    it('an undecodable payload becomes a poison record with its raw bytes; the others still decode', () => {
      const bad = encoder.encode('{not json');
      const out = batchToRecords<number>(
        bytesBatch([toPack(0, encoder.encode('1')), toPack(1, bad), toPack(2, encoder.encode('3'))]),
        codecs.json,
      );
      expect(out.map((r) => r.ok)).to.deep.equal([true, false, true]);
      expect(out.filter((r) => r.ok).map((r) => r.record.data)).to.deep.equal([1, 3]);
      const { data, error } = poison(out[1]);
      expect([...data]).to.deep.equal([...bad]);
      expect(error.code).to.equal(ErrorCodes.CODEC);
      expect(error.message).to.match(/json/);
      // The position is kept, so the caller can checkpoint past exactly this record.
      expect(out[1]!.record.sequenceNumber).to.equal(seq(1));
      expect(out[1]!.record.partitionKey).to.equal('pk-1');
    });

    it("a record the reader could not unpack comes back as poison with the reader's error, not decoded", () => {
      const raw = encoder.encode('{"n":1}'); // decodable, but the reader said it is poison
      const out = batchToRecords(
        bytesBatch([toPack(0, encoder.encode('0')), toPack(1, raw, { error: kplError() })]),
        codecs.json,
      );
      expect(out[0]).to.deep.include({ ok: true });
      const { data, error } = poison(out[1]);
      expect(error.code).to.equal(ErrorCodes.KPL_MALFORMED);
      expect(error.message).to.match(/MD5/);
      expect([...data]).to.deep.equal([...raw]);
    });

    it('needs exactly one item per payload: a framed payload of 2 or 0 items is poison, naming the count', () => {
      const out = batchToRecords(
        bytesBatch([
          toPack(0, encoder.encode('{"n":0}\n')),
          toPack(1, encoder.encode('{"n":1}\n{"n":2}\n')),
          toPack(2, encoder.encode('\n')),
        ]),
        codecs.jsonl,
      );
      expect(out[0]).to.deep.include({ ok: true });
      expect(out[0]!.record.data).to.deep.equal({ n: 0 });
      for (const [index, count] of [
        [1, 2],
        [2, 0],
      ] as const) {
        const { error } = poison(out[index]);
        expect(error.code).to.equal(ErrorCodes.CODEC);
        expect(error.message).to.include(`one item per payload (got ${count})`);
        expect(error.message).to.include('jsonl');
      }
    });

    it('an empty batch gives no records', () => {
      expect(batchToRecords(bytesBatch([]), codecs.json)).to.deep.equal([]);
    });

    it('refuses a batch whose record metadata points past its buffer (a broken message, not bad data)', () => {
      const batch = bytesBatch([toPack(0, encoder.encode('1'))]);
      batch.records[0]!.length = 5;
      expect(() => batchToRecords(batch, codecs.json))
        .to.throw(/beyond the buffer/)
        .with.property('code', ErrorCodes.PROTOCOL);
    });

    it('reads a batch that crossed a MessageChannel with its buffer transferred', async () => {
      const { port1, port2 } = new MessageChannel();
      try {
        const sent = bytesBatch(
          Array.from({ length: 50 }, (_, i) => toPack(i, encoder.encode(`{"n":${i}}`))),
        );
        const received = once(port2, 'message');
        port1.postMessage(sent, transferListOf(sent));
        expect(sent.buffer.byteLength, 'the buffer was transferred, not copied').to.equal(0);
        const [raw] = await received;
        const message = parseWorkerMessage(raw) as BatchMessage;
        const out = batchToRecords<{ n: number }>(message, codecs.json);
        expect(out.map((r) => (r.ok ? r.record.data.n : -1))).to.deep.equal(
          Array.from({ length: 50 }, (_, i) => i),
        );
        expect(out.map((r) => r.record.sequenceNumber)).to.deep.equal(
          Array.from({ length: 50 }, (_, i) => seq(i)),
        );
      } finally {
        port1.close();
        port2.close();
      }
    });
  });

  describe("'decoded' batches", () => {
    it('passes the decoded items through as record data, without decoding them again', () => {
      const out = batchToRecords(
        decodedBatch([
          { data: '{"looks":"like json"}', partitionKey: 'a', sequenceNumber: seq(0), arrivalMs: ARRIVAL },
          {
            data: { n: 1 },
            partitionKey: 'b',
            sequenceNumber: seq(1),
            subSequenceNumber: 3,
            explicitHashKey: '7',
            arrivalMs: ARRIVAL + 1,
          },
        ]),
        unusable,
      );
      expect(out).to.deep.equal([
        {
          ok: true,
          record: {
            data: '{"looks":"like json"}',
            partitionKey: 'a',
            sequenceNumber: seq(0),
            approximateArrivalTimestamp: new Date(ARRIVAL),
          },
        },
        {
          ok: true,
          record: {
            data: { n: 1 },
            partitionKey: 'b',
            sequenceNumber: seq(1),
            subSequenceNumber: 3,
            explicitHashKey: '7',
            approximateArrivalTimestamp: new Date(ARRIVAL + 1),
          },
        },
      ]);
    });

    it('a record with an error is poison, with its raw bytes and the error the reader sent', () => {
      const raw = encoder.encode('{');
      const codecError = serializeError(new CodecError('json', 'payload is not valid JSON'));
      const out = batchToRecords(
        decodedBatch([
          { data: 1, partitionKey: 'a', sequenceNumber: seq(0), arrivalMs: ARRIVAL },
          { data: raw, partitionKey: 'a', sequenceNumber: seq(1), arrivalMs: ARRIVAL, error: codecError },
          { data: 2, partitionKey: 'a', sequenceNumber: seq(2), arrivalMs: ARRIVAL },
        ]),
        unusable,
      );
      expect(out.map((r) => r.ok)).to.deep.equal([true, false, true]);
      const { data, error } = poison(out[1]);
      expect(data).to.equal(raw);
      expect(error).to.deep.equal(codecError);
    });
  });
});
