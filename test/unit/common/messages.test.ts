import { once } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import {
  assertNever,
  type BytesBatchMessage,
  type CoordinatorMessage,
  deserializeError,
  ErrorCodes,
  isCoordinatorMessage,
  isWorkerMessage,
  type JsonBatchMessage,
  PROTOCOL_VERSION,
  packRecords,
  parseCoordinatorMessage,
  parseWorkerMessage,
  type RecordToPack,
  recordData,
  ShardlineError,
  serializeError,
  transferListOf,
  unpackRecords,
  type WorkerMessage,
} from '@shardline/common';
import { expect } from 'chai';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function thrown(fn: () => unknown): ShardlineError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(ShardlineError);
    return error as ShardlineError;
  }
  expect.fail('expected an error, but the call returned');
}

function sampleRecords(): RecordToPack[] {
  return [
    {
      data: encoder.encode('{"a":1}'),
      partitionKey: 'k1',
      sequenceNumber: '49590338271490256608559692538361571095921575989136588801',
      arrivalMs: 1_700_000_000_000,
    },
    {
      data: new Uint8Array(0),
      partitionKey: 'k2',
      sequenceNumber: '49590338271490256608559692538361571095921575989136588802',
      arrivalMs: 1_700_000_000_001,
    },
    {
      // A view into a larger buffer: only its own bytes must be packed.
      data: new Uint8Array(encoder.encode('xxhello worldxx').buffer, 2, 11),
      partitionKey: 'k3',
      sequenceNumber: '49590338271490256608559692538361571095921575989136588803',
      subSequenceNumber: 4,
      explicitHashKey: '340282366920938463463374607431768211455',
      arrivalMs: 1_700_000_000_002,
    },
  ];
}

function bytesBatch(): BytesBatchMessage {
  const packed = packRecords(sampleRecords());
  return {
    v: PROTOCOL_VERSION,
    type: 'batch',
    encoding: 'bytes',
    shardId: 'shardId-000000000003',
    batchId: 7,
    millisBehindLatest: 1_500,
    lastSequenceNumber: packed.records.at(-1)!.sequenceNumber,
    lastSubSequenceNumber: 4,
    bytes: packed.bytes,
    records: packed.records,
    buffer: packed.buffer,
  };
}

/** One valid message of every worker type. */
function jsonBatch(): JsonBatchMessage {
  return {
    v: 1,
    type: 'batch',
    encoding: 'json',
    shardId: 'shardId-000000000001',
    batchId: 1,
    lastSequenceNumber: '4',
    bytes: 12,
    json: '[{"a":1}]',
    count: 1,
    partitionKeys: ['k'],
    keyIndex: Uint32Array.of(0),
    sequenceNumbers: '2',
    arrivalMs: Float64Array.of(5),
    poison: [
      {
        before: 1,
        data: new Uint8Array([1, 2]),
        partitionKey: 'k',
        sequenceNumber: '4',
        arrivalMs: 5,
        error: serializeError(new ShardlineError(ErrorCodes.CODEC, 'undecodable')),
      },
    ],
  };
}

function everyWorkerMessage(): WorkerMessage[] {
  return [
    bytesBatch(),
    {
      v: 1,
      type: 'batch',
      encoding: 'decoded',
      shardId: 'shardId-000000000001',
      batchId: 0,
      lastSequenceNumber: '2',
      bytes: 10,
      records: [{ data: { a: 1 }, partitionKey: 'k', sequenceNumber: '2', arrivalMs: 5 }],
    },
    { v: 1, type: 'shard-end', shardId: 'shardId-000000000001', childShardIds: ['shardId-000000000004'] },
    { v: 1, type: 'shard-end', shardId: 'shardId-000000000001', childShardIds: undefined },
    {
      v: 1,
      type: 'error',
      shardId: 'shardId-000000000001',
      error: serializeError(new ShardlineError(ErrorCodes.NOT_FOUND, 'gone', { cause: new Error('inner') })),
      fatal: true,
    },
    { v: 1, type: 'throttled', shardId: 'shardId-000000000001', delayMs: 250, count: 1 },
    {
      v: 1,
      type: 'fetched',
      shardId: 'shardId-000000000001',
      lastFetchAtMs: Date.now(),
      records: 0,
      bytes: 0,
    },
    { v: 1, type: 'log', level: 'warn', message: 'slow', fields: { shardId: 'shardId-000000000001' } },
    { v: 1, type: 'started', shardId: 'shardId-000000000001', threadId: 3 },
    jsonBatch(),
  ];
}

/** A switch with assertNever: fails to compile if a worker message type is not handled. */
function describeMessage(message: WorkerMessage): string {
  switch (message.type) {
    case 'started':
      return `started on thread ${message.threadId}`;
    case 'batch':
      return `batch ${message.batchId} (${message.encoding})`;
    case 'shard-end':
      return 'shard-end';
    case 'error':
      return `error ${message.error.code}`;
    case 'throttled':
      return 'throttled';
    case 'fetched':
      return 'fetched';
    case 'log':
      return `log ${message.level}`;
    default:
      return assertNever(message);
  }
}

describe('common/messages', () => {
  describe('packRecords / unpackRecords', () => {
    it('packs every record into one buffer and gives views back without copying', () => {
      const input = sampleRecords();
      const { records, buffer, bytes } = packRecords(input);
      expect(bytes).to.equal(7 + 0 + 11);
      expect(buffer.byteLength).to.equal(bytes);
      expect(records.map((r) => [r.offset, r.length])).to.deep.equal([
        [0, 7],
        [7, 0],
        [7, 11],
      ]);
      expect(records[0]).to.not.have.property('subSequenceNumber');
      expect(records[2]).to.include({
        subSequenceNumber: 4,
        explicitHashKey: '340282366920938463463374607431768211455',
      });

      const out = unpackRecords(records, buffer);
      expect(out.map((r) => decoder.decode(r.data))).to.deep.equal(['{"a":1}', '', 'hello world']);
      for (const [i, r] of out.entries()) {
        expect(r.data.buffer, 'a view of the batch buffer').to.equal(buffer);
        expect(r.partitionKey).to.equal(input[i]!.partitionKey);
        expect(r.sequenceNumber).to.equal(input[i]!.sequenceNumber);
        expect(r.arrivalMs).to.equal(input[i]!.arrivalMs);
      }
      expect(out[2]).to.include({ subSequenceNumber: 4 });
      new Uint8Array(buffer)[0] = 0x5b; // '['
      expect(decoder.decode(out[0]!.data), 'shares memory with the buffer').to.equal('["a":1}');
      expect(recordData(buffer, records[2]!)).to.deep.equal(encoder.encode('hello world'));
    });

    it('a record that could not be unpacked carries its SerializedError through pack and unpack', () => {
      const error = serializeError(new ShardlineError(ErrorCodes.KPL_MALFORMED, 'bad MD5'));
      const input = [{ ...sampleRecords()[0]!, error }];
      const { records, buffer } = packRecords(input);
      expect(records[0]!.error).to.deep.equal(error);
      expect(unpackRecords(records, buffer)[0]!.error).to.deep.equal(error);
      expect(packRecords(sampleRecords()).records[0]).to.not.have.property('error');
    });

    it('an empty batch packs to an empty buffer', () => {
      const { records, buffer, bytes } = packRecords([]);
      expect([records.length, buffer.byteLength, bytes]).to.deep.equal([0, 0, 0]);
      expect(unpackRecords(records, buffer)).to.deep.equal([]);
    });

    it('refuses data that is not a Uint8Array, and metadata beyond the buffer', () => {
      const bad = [{ ...sampleRecords()[0]!, data: 'text' as unknown as Uint8Array }];
      const error = thrown(() => packRecords(bad));
      expect(error.code).to.equal(ErrorCodes.PROTOCOL);
      expect(error.message).to.match(/records\[0\]\.data must be a Uint8Array \(got string\)/);
      const { records } = packRecords(sampleRecords());
      const tooShort = thrown(() => unpackRecords(records, new ArrayBuffer(10)));
      expect(tooShort.message).to.match(/records\[2\] spans bytes 7\.\.18 beyond the buffer \(10 bytes\)/);
    });

    it('a packed batch crosses a real MessageChannel intact, and the sender buffer is transferred', async () => {
      const { port1, port2 } = new MessageChannel();
      try {
        const message = bytesBatch();
        const sent = message.buffer;
        expect(transferListOf(message)).to.deep.equal([sent]);
        const received = once(port2, 'message');
        port1.postMessage(message, transferListOf(message));
        expect(sent.byteLength, 'detached on the sending side').to.equal(0);
        const [data] = (await received) as [unknown];

        const parsed = parseWorkerMessage(data);
        expect(parsed.type).to.equal('batch');
        if (parsed.type !== 'batch' || parsed.encoding !== 'bytes') expect.fail('expected a bytes batch');
        expect(parsed.buffer).to.not.equal(sent);
        expect(parsed.buffer.byteLength).to.equal(18);
        expect(parsed).to.include({
          shardId: 'shardId-000000000003',
          batchId: 7,
          millisBehindLatest: 1_500,
          bytes: 18,
        });
        const records = unpackRecords(parsed.records, parsed.buffer);
        expect(records.map((r) => decoder.decode(r.data))).to.deep.equal(['{"a":1}', '', 'hello world']);
        expect(records.map((r) => r.sequenceNumber)).to.deep.equal(
          sampleRecords().map((r) => r.sequenceNumber),
        );
        expect(records[2]).to.include({
          subSequenceNumber: 4,
          explicitHashKey: '340282366920938463463374607431768211455',
        });
      } finally {
        port1.close();
        port2.close();
      }
    });

    it('a stale (already transferred) buffer is caught by the guard, not by a RangeError later', () => {
      const message = bytesBatch();
      structuredClone(message.buffer, { transfer: [message.buffer] });
      const error = thrown(() => parseWorkerMessage(message));
      expect(error.message).to.match(
        /records\[0\] spans bytes 0\.\.7 beyond the buffer \(0 bytes; a detached buffer has 0\)/,
      );
    });
  });

  describe('guards', () => {
    it('accepts one valid message of every worker type, also after structuredClone', () => {
      for (const message of everyWorkerMessage()) {
        expect(isWorkerMessage(message), message.type).to.equal(true);
        expect(isWorkerMessage(structuredClone(message)), `${message.type} cloned`).to.equal(true);
        expect(parseWorkerMessage(message)).to.equal(message);
        expect(isCoordinatorMessage(message)).to.equal(false);
      }
      expect(everyWorkerMessage().map(describeMessage)).to.deep.equal([
        'batch 7 (bytes)',
        'batch 0 (decoded)',
        'shard-end',
        'shard-end',
        `error ${ErrorCodes.NOT_FOUND}`,
        'throttled',
        'fetched',
        'log warn',
        'started on thread 3',
        'batch 1 (json)',
      ]);
    });

    it('a fetched message may report expired iterators (optional: older readers omit it)', () => {
      const fetched = everyWorkerMessage()[6]!;
      expect(isWorkerMessage({ ...fetched, expiredIterators: 2 })).to.equal(true);
      expect(isWorkerMessage(fetched)).to.equal(true);
    });

    it('an error message carries a SerializedError that rebuilds the cause chain', () => {
      const message = everyWorkerMessage()[4]!;
      if (message.type !== 'error') expect.fail('expected an error message');
      const error = deserializeError(structuredClone(message).error);
      expect(error.code).to.equal(ErrorCodes.NOT_FOUND);
      expect((error.cause as Error).message).to.equal('inner');
    });

    it('accepts the coordinator messages', () => {
      const messages: CoordinatorMessage[] = [
        { v: 1, type: 'credit', records: 500, bytes: 1_048_576 },
        { v: 1, type: 'revoke', records: 250 },
        { v: 1, type: 'ack', batchId: 7 },
        { v: 1, type: 'stop', reason: 'lease-lost' },
      ];
      for (const message of messages) {
        expect(isCoordinatorMessage(message), message.type).to.equal(true);
        expect(parseCoordinatorMessage(structuredClone(message))).to.deep.equal(message);
        expect(isWorkerMessage(message)).to.equal(false);
      }
    });

    it('says what is wrong: version, type, field', () => {
      const valid = everyWorkerMessage();
      const cases: Array<[unknown, RegExp]> = [
        [null, /^worker message: message must be an object \(got null\)/],
        ['batch', /message must be an object \(got string\)/],
        [
          { ...valid[0]!, v: 2 },
          /^worker message 'batch': unsupported protocol version 2 \(this side speaks v1\)/,
        ],
        [{ type: 'log', level: 'info', message: 'x' }, /unsupported protocol version undefined/],
        [
          { v: 1, type: 'hello' },
          /^worker message 'hello': unknown type 'hello' \(expected 'started', 'batch', 'shard-end'/,
        ],
        [
          { v: 1, type: 'started', shardId: 'shardId-000000000001', threadId: -1 },
          /threadId must be an integer >= 0 \(got -1\)/,
        ],
        [{ v: 1, type: 7 }, /type must be a string \(got number\)/],
        [{ ...valid[0]!, shardId: '' }, /shardId must be a non-empty string \(got ''\)/],
        [{ ...valid[0]!, batchId: -1 }, /batchId must be an integer >= 0 \(got -1\)/],
        [{ ...valid[0]!, batchId: '7' }, /batchId must be an integer >= 0 \(got string\)/],
        [{ ...valid[0]!, encoding: 'text' }, /encoding must be 'bytes', 'decoded' or 'json' \(got 'text'\)/],
        [{ ...jsonBatch(), json: 5 }, /json must be a string \(got number\)/],
        [{ ...jsonBatch(), count: -1 }, /count must be an integer >= 0 \(got -1\)/],
        [{ ...jsonBatch(), keyIndex: [0] }, /keyIndex must be a Uint32Array \(got array\)/],
        [{ ...jsonBatch(), arrivalMs: new Float64Array(2) }, /arrivalMs must hold count 1 values \(got 2/],
        [{ ...jsonBatch(), partitionKeys: [1] }, /partitionKeys must be an array of strings/],
        [{ ...jsonBatch(), poison: {} }, /poison must be an array \(got object\)/],
        [
          { ...jsonBatch(), poison: [{ ...jsonBatch().poison[0]!, before: 2 }] },
          /poison\[0\]\.before must be from 0 to count 1 \(got 2\)/,
        ],
        [
          { ...jsonBatch(), poison: [{ ...jsonBatch().poison[0]!, error: undefined }] },
          /poison\[0\]\.error is missing/,
        ],
        [
          { ...valid[0]!, buffer: new Uint8Array(18) },
          /buffer must be an ArrayBuffer \(got object: send view\.buffer\)/,
        ],
        [{ ...valid[0]!, records: {} }, /records must be an array \(got object\)/],
        [{ ...valid[0]!, lastSequenceNumber: 5 }, /lastSequenceNumber must be a string \(got number\)/],
        [
          { ...valid[0]!, millisBehindLatest: -3 },
          /millisBehindLatest must be a finite number >= 0 \(got -3\)/,
        ],
        [
          {
            ...(valid[0] as BytesBatchMessage),
            records: [{ ...(valid[0] as BytesBatchMessage).records[0]!, sequenceNumber: 1 }],
          },
          /records\[0\]\.sequenceNumber must be a string \(got number\)/,
        ],
        [
          {
            ...(valid[0] as BytesBatchMessage),
            records: [{ ...(valid[0] as BytesBatchMessage).records[0]!, subSequenceNumber: 1.5 }],
          },
          /records\[0\]\.subSequenceNumber must be an integer >= 0 \(got 1\.5\)/,
        ],
        [
          { ...(valid[0] as BytesBatchMessage), records: [null] },
          /records\[0\] must be an object \(got null\)/,
        ],
        [
          { ...valid[1]!, records: [{ partitionKey: 'k', sequenceNumber: '1', arrivalMs: 1 }] },
          /records\[0\]\.data is missing/,
        ],
        [
          { ...valid[2]!, childShardIds: 'shardId-1' },
          /childShardIds must be an array or undefined \(got string\)/,
        ],
        [{ ...valid[2]!, childShardIds: ['a', 2] }, /childShardIds\[1\] must be a string \(got number\)/],
        [
          {
            ...(valid[0] as BytesBatchMessage),
            records: [{ ...(valid[0] as BytesBatchMessage).records[0]!, error: new Error('raw') }],
          },
          /records\[0\]\.error\.code must be a string \(got undefined\)/,
        ],
        [{ ...valid[4]!, error: new Error('raw') }, /error\.code must be a string \(got undefined\)/],
        [{ ...valid[4]!, error: 'boom' }, /error must be a SerializedError object \(got string\)/],
        [
          {
            ...valid[4]!,
            error: { name: 'E', code: 'X', message: 'm', retriable: false, cause: { name: 'E' } },
          },
          /error\.cause\.code must be a string/,
        ],
        [{ ...valid[4]!, fatal: 'yes' }, /fatal must be a boolean \(got string\)/],
        [{ ...valid[5]!, delayMs: Number.NaN }, /delayMs must be a finite number >= 0 \(got NaN\)/],
        [
          { ...valid[6]!, lastFetchAtMs: undefined },
          /lastFetchAtMs must be a finite number \(got undefined\)/,
        ],
        [{ ...valid[6]!, expiredIterators: -1 }, /expiredIterators must be an integer >= 0 \(got -1\)/],
        [{ ...valid[7]!, level: 'trace' }, /level must be one of debug, info, warn, error \(got 'trace'\)/],
        [{ ...valid[7]!, fields: [] }, /fields must be an object \(got array\)/],
      ];
      for (const [input, message] of cases) {
        expect(isWorkerMessage(input), String(message)).to.equal(false);
        const error = thrown(() => parseWorkerMessage(input));
        expect(error.code).to.equal(ErrorCodes.PROTOCOL);
        expect(error.message).to.match(message);
      }
    });

    it('says what is wrong with a coordinator message', () => {
      const cases: Array<[unknown, RegExp]> = [
        [
          { v: 1, type: 'credit', records: 1 },
          /^coordinator message 'credit': bytes must be an integer >= 0 \(got undefined\)/,
        ],
        [{ v: 1, type: 'ack', batchId: 1.2 }, /batchId must be an integer >= 0 \(got 1\.2\)/],
        [{ v: 1, type: 'stop' }, /reason must be a string \(got undefined\)/],
        [{ v: 1, type: 'revoke', records: -1 }, /records must be an integer >= 0 \(got -1\)/],
        [{ v: 1, type: 'batch' }, /unknown type 'batch' \(expected 'credit', 'revoke', 'ack' or 'stop'\)/],
        [{ v: 0, type: 'ack', batchId: 1 }, /unsupported protocol version 0/],
      ];
      for (const [input, message] of cases) {
        expect(isCoordinatorMessage(input)).to.equal(false);
        const error = thrown(() => parseCoordinatorMessage(input));
        expect(error.code).to.equal(ErrorCodes.PROTOCOL);
        expect(error.message).to.match(message);
      }
    });

    it('assertNever throws for a value a switch did not handle', () => {
      const error = thrown(() => assertNever({ type: 'future' } as never));
      expect(error.code).to.equal(ErrorCodes.INTERNAL);
      expect(error.message).to.match(/unexpected value of type 'future'/);
    });
  });
});
