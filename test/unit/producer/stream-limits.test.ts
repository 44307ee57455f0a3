import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { ErrorCodes, type Logger, type ShardlineError, silentLogger } from '@shardline/common';
import { Producer, type ProducerOptions, type PutReceipt } from '@shardline/producer';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../../support/assertions.js';
import { awsError, evenShards, StubKinesis } from './stub-kinesis.js';

const MiB = 1_048_576;
let clock: sinon.SinonFakeTimers;
let stub: StubKinesis;
const producers: Producer<unknown>[] = [];

function make<T = unknown>(options: Partial<ProducerOptions<T>> = {}): Producer<T> {
  const producer = new Producer<T>({
    streamName: 'test',
    kinesis: stub as unknown as KinesisClient,
    shardRefreshIntervalMs: 0,
    lingerMs: 0,
    rateLimitPerShard: false,
    ...options,
  });
  producers.push(producer as Producer<unknown>);
  return producer;
}

function recordingLogger(): { logger: Logger; warnings: string[]; errors: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  return {
    warnings,
    errors,
    logger: {
      ...silentLogger,
      warn: (_obj: unknown, msg?: string) => void warnings.push(String(msg)),
      error: (_obj: unknown, msg?: string) => void errors.push(String(msg)),
    } as Logger,
  };
}

describe('producer (unit, fake time): limits and distribution read from the stream', () => {
  beforeEach(() => {
    clock = sinon.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    });
    stub = new StubKinesis();
  });

  afterEach(async () => {
    for (const p of producers.splice(0)) {
      const closing = p.close();
      await clock.runAllAsync();
      await closing;
    }
    clock.restore();
  });

  describe('record and request sizes', () => {
    it('reads DescribeStreamSummary once before the first listing and names the stream', async () => {
      stub.summary = { MaxRecordSizeInKiB: 2048 };
      const producer = make({
        streamArn: 'arn:aws:kinesis:eu-west-1:123456789012:stream/test',
        streamName: undefined,
      });
      expect(producer.streamLimits).to.equal(undefined);
      await Promise.all([producer.put(1), clock.tickAsync(10)]);
      await Promise.all([producer.put(2), clock.tickAsync(10)]);
      expect(stub.describeCalls).to.deep.equal([
        { StreamARN: 'arn:aws:kinesis:eu-west-1:123456789012:stream/test' },
      ]);
      expect(producer.streamLimits).to.deep.include({
        maxRecordBytes: 2 * MiB,
        maxRequestBytes: 10 * MiB,
        maxRequestEntries: 500,
        source: 'stream',
        maxRecordSizeInKiB: 2048,
        distribution: 'USER_PARTITION_KEY',
      });
    });

    it('accepts records up to MaxRecordSizeInKiB and rejects a larger one, naming the limit and its source', async () => {
      stub.summary = { MaxRecordSizeInKiB: 2048 };
      const producer = make({ codec: 'raw' });
      // Put before the limits are known: checked against them once they are.
      const early = rejection(producer.put(new Uint8Array(2 * MiB), { partitionKey: 'k' }));
      const fits = producer.put(new Uint8Array(2 * MiB - 1), { partitionKey: 'k' });
      await clock.tickAsync(10);
      const error = await early;
      expect(error.code).to.equal(ErrorCodes.INVALID_RECORD);
      expect(error.message).to.contain(
        "over the stream's 2097152-byte record limit (MaxRecordSizeInKiB 2048 from DescribeStreamSummary)",
      );
      expect(error.details).to.deep.include({ bytes: 2 * MiB + 1, maxBytes: 2 * MiB, limitSource: 'stream' });
      expect((await fits).sequenceNumber).to.be.a('string');
      // Once known, put() checks at once.
      const late = await rejection(producer.put(new Uint8Array(3 * MiB), { partitionKey: 'k' }));
      expect(late.details).to.deep.include({ maxBytes: 2 * MiB, limitSource: 'stream' });
      expect(stub.written.map((w) => w.data.length)).to.deep.equal([2 * MiB - 1]);
      expect(producer.bufferedRecords).to.equal(0);
    });

    it('rejects at put() a record over the 10 MiB maximum before the limits are known', async () => {
      const producer = make({ codec: 'raw' });
      const error = await rejection(producer.put(new Uint8Array(10 * MiB), { partitionKey: 'k' }));
      expect(error.message).to.contain('over the 10485760-byte Kinesis maximum record size (10 MiB)');
      expect(error.details).to.deep.include({ limitSource: 'kinesis-maximum' });
      expect(stub.describeCalls, 'nothing was called for it').to.have.length(0);
    });

    it('fills requests up to 10 MiB on a stream that reports its limit, 5 MiB on one that does not', async () => {
      for (const summary of [{ MaxRecordSizeInKiB: 1024 }, {}]) {
        stub = new StubKinesis();
        stub.summary = summary;
        const producer = make({ codec: 'raw' });
        const receipts: Array<Promise<PutReceipt>> = [];
        // 12 records of 0.9 MiB (+ key): 11 fit 10 MiB, 5 fit 5 MiB.
        for (let i = 0; i < 12; i++) {
          receipts.push(producer.put(new Uint8Array(0.9 * MiB), { partitionKey: `k${i}` }));
        }
        await clock.tickAsync(50);
        await Promise.all(receipts);
        const sizes = stub.puts.map((p) => p.Records!.length);
        const maxBytes = Math.max(
          ...stub.puts.map((p) =>
            p.Records!.reduce((n, r) => n + r.Data!.length + r.PartitionKey!.length, 0),
          ),
        );
        if (summary.MaxRecordSizeInKiB === undefined) {
          expect(sizes, 'classic: 5 MiB per request').to.deep.equal([5, 5, 2]);
          expect(maxBytes).to.be.at.most(5 * MiB);
        } else {
          expect(sizes, '10 MiB per request').to.deep.equal([11, 1]);
          expect(maxBytes).to.be.at.most(10 * MiB);
        }
        expect(stub.written).to.have.length(12);
      }
    });

    it('keeps KPL aggregates within 1 MiB on a 10 MiB stream; a larger record goes plain', async () => {
      stub.summary = { MaxRecordSizeInKiB: 10_240 };
      const producer = make({ codec: 'raw', aggregate: true });
      const receipts: Array<Promise<PutReceipt>> = [];
      for (let i = 0; i < 30; i++)
        receipts.push(producer.put(new Uint8Array(100_000), { partitionKey: `k${i}` }));
      receipts.push(producer.put(new Uint8Array(3 * MiB), { partitionKey: 'big' }));
      await clock.tickAsync(50);
      const settled = await Promise.all(receipts);
      const entries = stub.puts.flatMap((p) => p.Records!);
      const sizes = entries.map((e) => e.Data!.length);
      expect(
        sizes.slice(0, -1).every((n) => n <= MiB),
        `aggregates within 1 MiB: ${sizes}`,
      ).to.equal(true);
      expect(sizes.at(-1), 'the 3 MiB record as put').to.equal(3 * MiB);
      expect(settled.at(-1)!.subSequenceNumber).to.equal(undefined);
      expect(settled.filter((r) => r.subSequenceNumber !== undefined)).to.have.length(30);
    });

    it('uses the classic limits, with a warning, when DescribeStreamSummary is not allowed', async () => {
      stub.describeError = awsError(
        'AccessDeniedException',
        'not authorized to perform kinesis:DescribeStreamSummary',
      );
      const { logger, warnings } = recordingLogger();
      const producer = make({ codec: 'raw', logger });
      const ok = producer.put(new Uint8Array(MiB - 1), { partitionKey: 'k' });
      const tooLarge = rejection(producer.put(new Uint8Array(MiB), { partitionKey: 'k' }));
      await clock.tickAsync(10);
      expect((await ok).sequenceNumber).to.be.a('string');
      expect((await tooLarge).details).to.deep.include({ maxBytes: MiB, limitSource: 'classic' });
      expect(producer.streamLimits?.source).to.equal('classic');
      expect(
        warnings.some((w) => w.includes('DescribeStreamSummary failed; using the classic limits')),
      ).to.equal(true);
    });

    it('retries a throttled DescribeStreamSummary before it falls back', async () => {
      let calls = 0;
      const send = stub.send.bind(stub);
      stub.send = async (command: unknown) => {
        if ((command as object).constructor.name === 'DescribeStreamSummaryCommand' && calls++ === 0) {
          throw awsError('LimitExceededException', 'Rate exceeded');
        }
        return send(command);
      };
      stub.summary = { MaxRecordSizeInKiB: 4096 };
      const producer = make();
      await Promise.all([producer.put(1), clock.tickAsync(1_000)]);
      expect(calls).to.equal(2);
      expect(producer.streamLimits?.maxRecordBytes).to.equal(4 * MiB);
    });
  });

  describe('RecordDistributionStrategy AUTO', () => {
    beforeEach(() => {
      stub = new StubKinesis(evenShards(2));
      stub.summary = { RecordDistributionStrategy: 'AUTO', StreamModeDetails: { StreamMode: 'ON_DEMAND' } };
    });

    it('sends a record put without a key without one, and keeps a key that was given', async () => {
      const producer = make();
      const receipts = [producer.put({ n: 1 }), producer.put({ n: 2 }, { partitionKey: 'mine' })];
      await clock.tickAsync(10);
      await Promise.all(receipts);
      const keys = stub.puts.flatMap((p) => p.Records!.map((r) => r.PartitionKey));
      expect(keys).to.have.members([undefined, 'mine']);
      expect(producer.streamLimits?.distribution).to.equal('AUTO');
    });

    it('never refreshes the shard map because Kinesis put a record on another shard than predicted', async () => {
      // The stub puts keyless entries on the first shard: on a keyed stream that is a misroute.
      const producer = make();
      const receipts: Array<Promise<PutReceipt>> = [];
      for (let i = 0; i < 20; i++) receipts.push(producer.put(i));
      await clock.tickAsync(3_000);
      await Promise.all(receipts);
      expect(stub.written).to.have.length(20);
      expect(stub.listShardsCalls, 'the initial listing only').to.have.length(1);
    });

    it('refuses aggregate: true: every record rejects with ERR_INVALID_OPTION naming aggregate', async () => {
      const { logger, errors } = recordingLogger();
      const producer = make({ aggregate: true, logger });
      const events: Array<{ error: ShardlineError; records: number }> = [];
      producer.on('error', (event) => events.push(event));
      const early = [rejection(producer.put(1)), rejection(producer.put(2, { partitionKey: 'k' }))];
      await clock.tickAsync(10);
      for (const p of early) {
        const error = await p;
        expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.contain("aggregate must be false for stream 'test'");
        expect(error.message).to.contain('RecordDistributionStrategy is AUTO');
      }
      const late = await rejection(producer.put(3));
      expect(late.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(stub.puts, 'nothing was sent').to.have.length(0);
      expect(events.reduce((n, e) => n + e.records, 0)).to.equal(2);
      expect(errors).to.have.length(1);
      expect(producer.bufferedRecords).to.equal(0);
      await producer.flush();
    });

    it('maxInFlightPerShard: 1 warns that no per-key order is kept, and does not hold records of one key back', async () => {
      const { logger, warnings } = recordingLogger();
      const producer = make({ maxInFlightPerShard: 1, logger });
      const receipts: Array<Promise<PutReceipt>> = [];
      for (let i = 0; i < 10; i++) receipts.push(producer.put(i, { partitionKey: 'same' }));
      await clock.tickAsync(10);
      await Promise.all(receipts);
      expect(warnings.some((w) => w.includes('keeps no per-key order'))).to.equal(true);
      // Keyed streams send one entry per key per request in ordered mode; AUTO streams need no such rule.
      expect(stub.puts.length, 'records of one key share requests').to.be.below(10);
      expect(stub.written).to.have.length(10);
    });
  });
});
