/**
 * The producer following the stream's limits and record distribution, end to end: kinesis-mock's real
 * MaxRecordSizeInKiB (UpdateMaxRecordSize) with records over 1 MiB and requests over 5 MiB; kinesalite's
 * classic limits; and an AUTO stream, which neither emulator has, through a FaultProxy whose transform
 * rules answer DescribeStreamSummary with the strategy, place keyless entries as Kinesis would, and give
 * readers records without a PartitionKey.
 */
import { type KinesisClient, UpdateMaxRecordSizeCommand } from '@aws-sdk/client-kinesis';
import { ErrorCodes } from '@shardline/common';
import { MemoryLeaseStore, type RecordBatch, startCoordinator } from '@shardline/coordinator';
import { Producer, type ProducerEvents, type PutReceipt } from '@shardline/producer';
import { FaultProxy, type JsonBody, type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { rejection } from '../support/assertions.js';
import { waitFor } from './coordinator-helpers.js';
import { readStream } from './producer-helpers.js';

const MiB = 1_048_576;
let counter = 0;
const nextStream = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;

/** A payload of `bytes` bytes that says which record it is. */
function payload(i: number, bytes: number): Uint8Array {
  const data = new Uint8Array(bytes);
  data.set(new TextEncoder().encode(`#${i}#`));
  return data;
}
const indexOf = (data: Uint8Array): number =>
  Number(/^#(\d+)#/.exec(Buffer.from(data.subarray(0, 16)).toString('latin1'))![1]);

describe('producer: limits read from the stream (kinesis-mock, MaxRecordSizeInKiB)', function () {
  this.timeout(120_000);
  let kinesis: LocalKinesis;
  let direct: KinesisClient;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesis-mock' });
    direct = kinesis.client();
  });
  after(async () => {
    await kinesis?.stop();
  });

  it('writes records up to the raised limit in requests over 5 MiB, rejects a larger one naming it; a consumer reads each once', async () => {
    const stream = nextStream('large');
    const created = await kinesis.createStream(stream, { shards: 2 });
    await direct.send(
      new UpdateMaxRecordSizeCommand({ StreamARN: created.streamArn, MaxRecordSizeInKiB: 2048 }),
    );
    const producer = new Producer<Uint8Array>({
      streamName: stream,
      kinesis: kinesis.clientConfig,
      codec: 'raw',
      lingerMs: 50,
      // Large records burst over the 1 MiB/s shard rate on AWS; the emulator does not meter.
      rateLimitPerShard: false,
    });
    const puts: Array<ProducerEvents['put']> = [];
    producer.on('put', (e) => puts.push(e));
    try {
      const sizes = [
        ...Array.from({ length: 4 }, () => 1.5 * MiB),
        ...Array.from({ length: 60 }, () => 1000),
      ];
      const receipts = await Promise.all(
        sizes.map((bytes, i) => producer.put(payload(i, bytes), { partitionKey: `key-${i % 2}` })),
      );
      expect(producer.streamLimits).to.deep.include({
        source: 'stream',
        maxRecordSizeInKiB: 2048,
        maxRecordBytes: 2 * MiB,
        maxRequestBytes: 10 * MiB,
      });
      const tooLarge = await rejection(producer.put(payload(999, 2 * MiB), { partitionKey: 'key-0' }));
      expect(tooLarge.code).to.equal(ErrorCodes.INVALID_RECORD);
      expect(tooLarge.message).to.contain('MaxRecordSizeInKiB 2048 from DescribeStreamSummary');

      expect(Math.max(...puts.map((p) => p.bytes)), 'some request carried over 5 MiB').to.be.above(5 * MiB);
      expect(Math.max(...puts.map((p) => p.bytes)), 'no request over 10 MiB').to.be.at.most(10 * MiB);

      // A consumer reads them all, the large ones included, each once, where the receipts say.
      const sizesSeen = new Map<number, number>();
      const positions = new Map<number, string>();
      let duplicates = 0;
      const consumer = await startCoordinator<Uint8Array>({
        streamName: stream,
        group: 'large',
        kinesis: kinesis.clientConfig,
        codec: 'raw',
        leases: { store: new MemoryLeaseStore() },
        idleFetchIntervalMs: 100,
        workerThreads: 2,
        handler: (batch: RecordBatch<Uint8Array>) => {
          for (const r of batch.records) {
            const i = indexOf(r.data);
            if (sizesSeen.has(i)) duplicates++;
            sizesSeen.set(i, r.data.length);
            positions.set(i, `${batch.shardId}/${r.sequenceNumber}`);
          }
        },
      });
      try {
        await waitFor(
          () => sizesSeen.size >= sizes.length,
          () => `${sizesSeen.size} of ${sizes.length}`,
          60_000,
        );
      } finally {
        await consumer.stop();
      }
      expect(duplicates).to.equal(0);
      expect([...sizesSeen].sort((a, b) => a[0] - b[0])).to.deep.equal(sizes.map((bytes, i) => [i, bytes]));
      receipts.forEach((receipt: PutReceipt, i) => {
        expect(positions.get(i), `record ${i}`).to.equal(`${receipt.shardId}/${receipt.sequenceNumber}`);
      });
    } finally {
      await producer.close();
    }
  });
});

describe('producer: the classic limits where the stream reports none (kinesalite)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });
  after(async () => {
    await kinesis?.stop();
  });

  it('accepts a record of exactly 1 MiB with its key, rejects one byte more naming the classic limit', async () => {
    const stream = nextStream('classic');
    await kinesis.createStream(stream);
    const producer = new Producer<Uint8Array>({
      streamName: stream,
      kinesis: kinesis.clientConfig,
      codec: 'raw',
    });
    try {
      const ok = await producer.put(payload(0, MiB - 1), { partitionKey: 'k' });
      expect(producer.streamLimits).to.deep.include({ source: 'classic', maxRequestBytes: 5 * MiB });
      const error = await rejection(producer.put(payload(1, MiB), { partitionKey: 'k' }));
      expect(error.message).to.contain('over the classic 1048576-byte Kinesis record limit');
      expect(error.details).to.deep.include({ limitSource: 'classic' });
      const read = await readStream(kinesis, kinesis.client(), stream);
      expect(read.map((r) => [r.sequenceNumber, r.data.length])).to.deep.equal([
        [ok.sequenceNumber, MiB - 1],
      ]);
    } finally {
      await producer.close();
    }
  });
});

describe('producer and consumer on an AUTO stream (kinesalite behind a FaultProxy)', function () {
  this.timeout(90_000);
  let kinesis: LocalKinesis;
  let proxy: FaultProxy;
  /** Entries that reached the proxy without a PartitionKey. */
  let keyless = 0;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });
  beforeEach(async () => {
    keyless = 0;
    proxy = await FaultProxy.start({ target: kinesis.endpoint });
    proxy.addRule({
      operation: 'DescribeStreamSummary',
      action: {
        type: 'transform',
        response: (answer) => ({
          ...answer,
          StreamDescriptionSummary: {
            ...(answer.StreamDescriptionSummary as JsonBody),
            RecordDistributionStrategy: 'AUTO',
            StreamModeDetails: { StreamMode: 'ON_DEMAND' },
          },
        }),
      },
    });
    // Kinesis places a keyless entry itself; kinesalite needs a key: a marked random one spreads them.
    proxy.addRule({
      operation: 'PutRecords',
      action: {
        type: 'transform',
        request: (body) => ({
          ...body,
          Records: (body.Records as JsonBody[]).map((r) => {
            if (r.PartitionKey !== undefined) return r;
            keyless++;
            return { ...r, PartitionKey: `auto-${Math.random()}` };
          }),
        }),
      },
    });
    // Readers of an AUTO stream get no PartitionKey for a record written without one.
    proxy.addRule({
      operation: 'GetRecords',
      action: {
        type: 'transform',
        response: (answer) => ({
          ...answer,
          Records: (answer.Records as JsonBody[]).map((r) => {
            if (typeof r.PartitionKey !== 'string' || !r.PartitionKey.startsWith('auto-')) return r;
            const { PartitionKey: _none, ...rest } = r;
            return rest;
          }),
        }),
      },
    });
  });
  afterEach(async () => {
    await proxy?.stop();
  });
  after(async () => {
    await kinesis?.stop();
  });

  it('writes keyless records without a key, never refreshes on "misrouted" answers; a consumer gets each once with an empty key', async () => {
    const stream = nextStream('auto');
    await kinesis.createStream(stream, { shards: 4 });
    const producer = new Producer<{ i: number }>({
      streamName: stream,
      kinesis: proxy.clientConfig(kinesis.clientConfig),
      lingerMs: 20,
      maxInFlightPerShard: 1,
    });
    const n = 1_200;
    const keyed = 200;
    try {
      await Promise.all(
        Array.from({ length: n }, (_, i) =>
          producer.put({ i }, i < keyed ? { partitionKey: `key-${i % 10}` } : {}),
        ),
      );
      expect(producer.streamLimits?.distribution).to.equal('AUTO');
    } finally {
      await producer.close();
    }
    expect(keyless, 'keyless entries reached Kinesis without a key').to.equal(n - keyed);
    expect(
      proxy.counters.requests.ListShards,
      'one listing: answers on other shards are not misroutes',
    ).to.equal(1);
    expect(proxy.counters.requests.DescribeStreamSummary).to.equal(1);

    const received = new Map<number, string>();
    let duplicates = 0;
    const consumer = await startCoordinator<{ i: number }>({
      streamName: stream,
      group: 'auto',
      kinesis: { ...kinesis.clientConfig, endpoint: proxy.endpoint },
      leases: { store: new MemoryLeaseStore() },
      idleFetchIntervalMs: 100,
      workerThreads: 2,
      handler: (batch: RecordBatch<{ i: number }>) => {
        for (const r of batch.records) {
          if (received.has(r.data.i)) duplicates++;
          received.set(r.data.i, r.partitionKey);
        }
      },
    });
    try {
      await waitFor(
        () => received.size >= n,
        () => `${received.size} of ${n}`,
      );
    } finally {
      await consumer.stop();
    }
    expect(duplicates).to.equal(0);
    expect(received.size).to.equal(n);
    for (const [i, key] of received) expect(key, `record ${i}`).to.equal(i < keyed ? `key-${i % 10}` : '');
  });

  it('refuses aggregate: true: every record rejects with ERR_INVALID_OPTION, nothing is written', async () => {
    const stream = nextStream('auto-agg');
    await kinesis.createStream(stream, { shards: 2 });
    const producer = new Producer<{ i: number }>({
      streamName: stream,
      kinesis: proxy.clientConfig(kinesis.clientConfig),
      aggregate: true,
    });
    try {
      const errors = await Promise.all(Array.from({ length: 50 }, (_, i) => rejection(producer.put({ i }))));
      for (const error of errors) {
        expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(
          /^aggregate must be false for stream '.*': its RecordDistributionStrategy is AUTO/,
        );
      }
      expect((await rejection(producer.put({ i: 50 }))).code).to.equal(ErrorCodes.INVALID_OPTION);
    } finally {
      await producer.close();
    }
    expect(proxy.counters.requests.PutRecords ?? 0).to.equal(0);
    expect(await readStream(kinesis, kinesis.client(), stream)).to.have.length(0);
  });
});
