import { Readable } from 'node:stream';
import { GetRecordsCommand, type GetRecordsCommandOutput, KinesisClient } from '@aws-sdk/client-kinesis';
import { aggregate, codecs } from '@shardline/common';
import { type GetRecordsResult, kinesisGetRecordsClient } from '@shardline/shard-worker';
import { expect } from 'chai';
import {
  parseGetRecordsBody,
  readGetRecordsBody,
} from '../../../packages/shard-worker/src/get-records-body.js';
import { unpackResponse } from '../../../packages/shard-worker/src/records.js';
import { rejection } from '../../support/assertions.js';

/** A KinesisClient whose every call is answered with `status` and `body` (no network). */
function answering(
  status: number,
  body: string | Buffer,
  type = 'application/x-amz-json-1.1',
): KinesisClient {
  return new KinesisClient({
    region: 'us-east-1',
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    maxAttempts: 1,
    requestHandler: {
      handle: async () => ({
        response: {
          statusCode: status,
          reason: '',
          headers: { 'content-type': type, 'x-amzn-requestid': 'r' },
          body: Readable.from([Buffer.from(body)]),
        },
      }),
    } as never,
  });
}

const b64 = (data: string | Uint8Array): string => Buffer.from(data).toString('base64');
const seq = (i: number): string => `49${String(i + 1).padStart(54, '0')}`;

/** The fields the reader reads, as plain values, for comparing two answers. */
function plain(out: GetRecordsResult) {
  return {
    records: (out.Records ?? []).map((r) => ({
      data: r.Data === undefined ? undefined : [...r.Data],
      key: r.PartitionKey,
      seq: r.SequenceNumber,
      at: r.ApproximateArrivalTimestamp?.getTime(),
      encryption: r.EncryptionType,
    })),
    next: out.NextShardIterator,
    behind: out.MillisBehindLatest,
    children: out.ChildShards,
  };
}

/** The SDK's answer, and this package's (the raw body read: `taken` says whether it was). */
async function both(status: number, body: string, type?: string) {
  const sdk = await answering(status, body, type).send(new GetRecordsCommand({ ShardIterator: 'it' }));
  const command = new GetRecordsCommand({ ShardIterator: 'it' });
  const slot: { result?: GetRecordsResult } = {};
  readGetRecordsBody(command, slot);
  const output = await answering(status, body, type).send(command);
  return { sdk, ours: slot.result ?? (output as GetRecordsCommandOutput), taken: slot.result !== undefined };
}

const aggregated = aggregate([
  { partitionKey: 'u-0', data: new TextEncoder().encode('{"a":1}') },
  { partitionKey: 'u-1', data: new TextEncoder().encode('{"a":2}') },
])[0]!.data;

const busyAnswer = JSON.stringify({
  MillisBehindLatest: 1234,
  NextShardIterator: 'next-it',
  Records: [
    {
      ApproximateArrivalTimestamp: 1.7000000012e9,
      Data: b64('{"n":1}'),
      PartitionKey: 'k-1',
      SequenceNumber: seq(0),
    },
    // Not ASCII: a partition key, and a payload.
    {
      ApproximateArrivalTimestamp: 1700000002,
      Data: b64('{"s":"é"}'),
      PartitionKey: 'clé',
      SequenceNumber: seq(1),
    },
    {
      ApproximateArrivalTimestamp: 1700000003.5,
      Data: b64(aggregated),
      PartitionKey: 'agg',
      SequenceNumber: seq(2),
    },
    {
      ApproximateArrivalTimestamp: 1700000004,
      Data: '',
      PartitionKey: 'k-4',
      SequenceNumber: seq(3),
      EncryptionType: 'KMS',
    },
  ],
});

describe('GetRecords answers read from the raw body', () => {
  it('reads a busy answer as the SDK does: payloads, keys, positions, arrival times, MillisBehindLatest', async () => {
    const { sdk, ours, taken } = await both(200, busyAnswer);
    expect(taken).to.equal(true);
    expect(plain(ours)).to.deep.equal(plain(sdk));
    expect(plain(ours).records).to.have.length(4);
  });

  it('reads the last answer of a closed shard as the SDK does: no next iterator, the children', async () => {
    const body = JSON.stringify({
      MillisBehindLatest: 0,
      Records: [],
      ChildShards: [
        {
          ShardId: 'shardId-000000000002',
          ParentShards: ['shardId-000000000000'],
          HashKeyRange: { StartingHashKey: '0', EndingHashKey: '99' },
        },
      ],
    });
    const { sdk, ours, taken } = await both(200, body);
    expect(taken).to.equal(true);
    expect(plain(ours)).to.deep.equal(plain(sdk));
    expect(ours.NextShardIterator).to.equal(undefined);
    expect(ours.ChildShards?.[0]?.ShardId).to.equal('shardId-000000000002');
  });

  it('decodes to the same batch records as the SDK output does, with each payload a view of one buffer', async () => {
    const { sdk, ours } = await both(200, busyAnswer);
    for (const encoding of ['json', 'bytes'] as const) {
      const codec = encoding === 'json' ? codecs.json : codecs.raw;
      const a = unpackResponse(sdk.Records ?? [], codec, encoding, undefined);
      const b = unpackResponse(ours.Records ?? [], codec, encoding, undefined);
      // The errors' stacks differ by the line of the call; everything else is the same.
      const noStack = (key: string, value: unknown) => (key === 'stack' ? undefined : value);
      expect(JSON.stringify(b, noStack)).to.equal(JSON.stringify(a, noStack));
    }
    const buffers = new Set((ours.Records ?? []).map((r) => r.Data!.buffer));
    expect(buffers.size).to.equal(1);
  });

  it('leaves error answers to the SDK: a throttle is still ProvisionedThroughputExceededException', async () => {
    const body = JSON.stringify({
      __type: 'ProvisionedThroughputExceededException',
      message: 'Rate exceeded',
    });
    const command = new GetRecordsCommand({ ShardIterator: 'it' });
    const slot: { result?: GetRecordsResult } = {};
    readGetRecordsBody(command, slot);
    const error = await rejection(answering(400, body).send(command));
    expect(error.name).to.equal('ProvisionedThroughputExceededException');
    expect(slot.result).to.equal(undefined);
  });

  for (const [what, body] of [
    ['a body that is not JSON', '<html>proxy error</html>'],
    [
      'a payload that is not base64',
      JSON.stringify({ Records: [{ Data: 'no*base64', SequenceNumber: '1' }] }),
    ],
  ] as const) {
    it(`hands ${what} back to the SDK, which fails as it did before`, async () => {
      const sdkError = await rejection(
        answering(200, body).send(new GetRecordsCommand({ ShardIterator: 'it' })),
      );
      const command = new GetRecordsCommand({ ShardIterator: 'it' });
      const slot: { result?: GetRecordsResult } = {};
      readGetRecordsBody(command, slot);
      const error = await rejection(answering(200, body).send(command));
      expect(slot.result).to.equal(undefined);
      expect(error.name).to.equal(sdkError.name);
      expect(error.message).to.equal(sdkError.message);
    });
  }

  it('kinesisGetRecordsClient answers with the parsed body', async () => {
    const out = await kinesisGetRecordsClient(answering(200, busyAnswer)).getRecords({ ShardIterator: 'it' });
    expect(out.NextShardIterator).to.equal('next-it');
    expect(out.Records?.map((r) => r.PartitionKey)).to.deep.equal(['k-1', 'clé', 'agg', 'k-4']);
  });

  it('parseGetRecordsBody refuses shapes it does not know, so that the SDK reads them', () => {
    for (const body of ['[]', '"x"', '{"Records":{}}', '{"Records":[1]}', '{"NextShardIterator":5}']) {
      expect(parseGetRecordsBody(Buffer.from(body)), body).to.equal(undefined);
    }
    expect(parseGetRecordsBody(Buffer.from('{}'))?.Records).to.deep.equal([]);
  });
});
