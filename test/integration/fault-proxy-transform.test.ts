import {
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  KinesisClient,
  PutRecordsCommand,
} from '@aws-sdk/client-kinesis';
import { ErrorCodes } from '@shardline/common';
import { FaultProxy, type JsonBody, type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { rejection } from '../support/assertions.js';

const SHARD0 = 'shardId-000000000000';

describe('FaultProxy transform rules (kinesalite)', () => {
  let kinesis: LocalKinesis;
  let proxy: FaultProxy;
  let client: KinesisClient;
  let streamCounter = 0;
  const uniqueStream = () => `transform-${process.pid}-${++streamCounter}`;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  beforeEach(async () => {
    proxy = await FaultProxy.start({ target: kinesis.endpoint });
    client = new KinesisClient({ ...proxy.clientConfig(kinesis.clientConfig), maxAttempts: 1 });
  });

  afterEach(async () => {
    client.destroy();
    await proxy.stop();
  });

  after(async () => {
    await kinesis?.stop();
  });

  it('rewrites a DescribeStreamSummary answer: the SDK sees fields the emulator does not send', async () => {
    const stream = uniqueStream();
    await kinesis.createStream(stream);
    const before = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    expect(before.StreamDescriptionSummary?.MaxRecordSizeInKiB, 'kinesalite has no such field').to.equal(
      undefined,
    );
    const seen: JsonBody[] = [];
    const rule = proxy.addRule({
      operation: 'DescribeStreamSummary',
      streamName: stream,
      times: 1,
      action: {
        type: 'transform',
        response: (answer, request) => {
          seen.push(request);
          const summary = answer.StreamDescriptionSummary as JsonBody;
          return {
            ...answer,
            StreamDescriptionSummary: {
              ...summary,
              MaxRecordSizeInKiB: 4096,
              RecordDistributionStrategy: 'AUTO',
              StreamModeDetails: { StreamMode: 'ON_DEMAND' },
            },
          };
        },
      },
    });
    const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    const summary = out.StreamDescriptionSummary!;
    expect(summary.MaxRecordSizeInKiB).to.equal(4096);
    expect(summary.RecordDistributionStrategy).to.equal('AUTO');
    expect(summary.StreamModeDetails?.StreamMode).to.equal('ON_DEMAND');
    expect(summary.StreamName, 'the rest of the real answer kept').to.equal(stream);
    expect(summary.StreamStatus).to.equal('ACTIVE');
    expect(seen).to.deep.equal([{ StreamName: stream }]);
    expect(rule.hits).to.equal(1);
    expect(rule.spent).to.equal(true);
    expect(proxy.counters.injected.transform).to.equal(1);
    const after = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
    expect(after.StreamDescriptionSummary?.MaxRecordSizeInKiB, 'spent after `times`').to.equal(undefined);
  });

  it('rewrites PutRecords requests and GetRecords answers; iterators are still followed', async () => {
    const stream = uniqueStream();
    await kinesis.createStream(stream);
    // Entries without a PartitionKey (as on an AUTO stream) would be refused by the emulator: the request
    // transform gives each a marked key, and the GetRecords transform takes marked keys away again.
    proxy.addRule({
      operation: 'PutRecords',
      action: {
        type: 'transform',
        request: (body) => ({
          ...body,
          Records: (body.Records as JsonBody[]).map((r, i) => ({
            ...r,
            PartitionKey: r.PartitionKey ?? `auto-${i}`,
          })),
        }),
        response: (answer, request) => {
          expect((request.Records as JsonBody[]).every((r) => typeof r.PartitionKey === 'string')).to.equal(
            true,
          );
          return answer;
        },
      },
    });
    const stripMarkedKeys = {
      operation: 'GetRecords',
      action: {
        type: 'transform',
        response: (answer: JsonBody) => ({
          ...answer,
          Records: (answer.Records as JsonBody[]).map((r) => {
            if (typeof r.PartitionKey !== 'string' || !r.PartitionKey.startsWith('auto-')) return r;
            const { PartitionKey: _dropped, ...rest } = r;
            return rest;
          }),
        }),
      },
    } as const;
    proxy.addRule(stripMarkedKeys);
    const put = await client.send(
      new PutRecordsCommand({
        StreamName: stream,
        Records: Array.from({ length: 10 }, (_, i) => ({
          Data: Buffer.from(`r${i}`),
          ...(i % 2 === 0 ? {} : { PartitionKey: `key-${i}` }),
        })),
      }),
    );
    expect(put.FailedRecordCount).to.equal(0);
    expect(put.Records).to.have.length(10);
    let iterator = (
      await client.send(
        new GetShardIteratorCommand({
          StreamName: stream,
          ShardId: SHARD0,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      )
    ).ShardIterator;
    const records: Array<{ data: string; key: string | undefined }> = [];
    let throttled = 0;
    let throttle: ReturnType<FaultProxy['addRule']> | undefined;
    for (let reads = 0; iterator !== undefined && reads < 5; reads++) {
      try {
        const out = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 4 }));
        for (const r of out.Records ?? []) {
          records.push({ data: Buffer.from(r.Data!).toString('utf8'), key: r.PartitionKey });
        }
        iterator = out.NextShardIterator;
      } catch (error) {
        expect((error as Error).name).to.equal('ProvisionedThroughputExceededException');
        throttled++;
      }
      if (reads === 0) {
        // A fault on the shard of an iterator learnt from a transformed answer: the proxy still knows it.
        proxy.clearRules();
        throttle = proxy.addRule({
          operation: 'GetRecords',
          shardId: SHARD0,
          times: 1,
          action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
        });
        proxy.addRule(stripMarkedKeys);
      }
    }
    expect(throttled).to.equal(1);
    expect(throttle?.hits).to.equal(1);
    expect(records.map((r) => r.data)).to.deep.equal(Array.from({ length: 10 }, (_, i) => `r${i}`));
    expect(records.map((r) => r.key)).to.deep.equal(
      Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? undefined : `key-${i}`)),
    );
  });

  it('answers 502 when a transform throws, and refuses bad transform rules naming the field', async () => {
    const stream = uniqueStream();
    await kinesis.createStream(stream);
    proxy.addRule({
      operation: 'DescribeStreamSummary',
      times: 1,
      action: {
        type: 'transform',
        response: () => {
          throw new Error('boom');
        },
      },
    });
    const error = await rejection<Error & { $metadata?: { httpStatusCode?: number } }>(
      client.send(new DescribeStreamSummaryCommand({ StreamName: stream })),
    );
    expect(error.$metadata?.httpStatusCode).to.equal(502);
    expect(error.message).to.contain('boom');
    const rule = async (r: unknown) => {
      const e = await rejection(Promise.resolve().then(() => proxy.addRule(r as never)));
      expect(e.code).to.equal(ErrorCodes.INVALID_OPTION);
      return e.message;
    };
    expect(await rule({ action: { type: 'transform' } })).to.match(/^rule\.action must have a request/);
    expect(await rule({ action: { type: 'transform', response: 42 } })).to.match(/^rule\.action\.response /);
    expect(
      await rule({
        operation: 'SubscribeToShard',
        action: { type: 'transform', response: (a: JsonBody) => a },
      }),
    ).to.match(/^rule\.operation /);
  });
});
