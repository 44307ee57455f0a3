import { batchToRecords, codecs, ErrorCodes } from '@shardline/common';
import type { FirstAnswer, ShardReaderOptions } from '@shardline/shard-worker';
import { ShardReader } from '@shardline/shard-worker';
import { expect } from 'chai';
import sinon from 'sinon';
import { advance, CoordinatorEnd, FakeShard, jsonRecord, type StoredRecord } from './fake-kinesis.js';

const SHARD = 'shardId-000000000000';

/** A GetRecords answer body as Kinesis sends it: `records`, then the iterator at `next`. */
function body(records: StoredRecord[], next: string | undefined, behindMs = 5_000): Uint8Array {
  const answer: Record<string, unknown> = {
    MillisBehindLatest: behindMs,
    Records: records.map((r) => ({
      ApproximateArrivalTimestamp: r.ApproximateArrivalTimestamp.getTime() / 1_000,
      Data: Buffer.from(r.Data).toString('base64'),
      PartitionKey: r.PartitionKey,
      SequenceNumber: r.SequenceNumber,
    })),
  };
  if (next !== undefined) answer.NextShardIterator = next;
  return new Uint8Array(Buffer.from(JSON.stringify(answer)));
}

describe("ShardReader: a first answer fetched by the coordinator's thread", () => {
  let clock: sinon.SinonFakeTimers;
  let end: CoordinatorEnd;
  let readers: ShardReader[];

  beforeEach(() => {
    clock = sinon.useFakeTimers({
      now: 1_700_000_000_000,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    });
    end = new CoordinatorEnd();
    readers = [];
  });

  afterEach(async () => {
    await Promise.all(readers.map((r) => r.stop('test over')));
    end.close();
    clock.restore();
  });

  function reader(shard: FakeShard, first: FirstAnswer, options: Partial<ShardReaderOptions> = {}) {
    const r = new ShardReader(end.readerPort, shard, { streamName: 's', shardId: SHARD, first, ...options });
    readers.push(r);
    return r;
  }

  const delivered = () =>
    end
      .of('batch')
      .flatMap((b) => batchToRecords<{ n: number }>(b, codecs.json))
      .map((r) => (r.ok ? r.record.data.n : -1));

  it('takes it as its first GetRecords: no GetShardIterator of its own, reads on from its NextShardIterator, paced', async () => {
    const records = Array.from({ length: 10 }, (_, i) => jsonRecord(i));
    const shard = new FakeShard(records);
    const r = reader(shard, { body: body(records.slice(0, 3), 'it:3:99'), requestedAtMs: Date.now() });
    end.credit(1_000);
    r.start();
    await advance(clock, 2_000);
    expect(delivered()).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(shard.iteratorCalls).to.have.length(0);
    expect(shard.getRecordsCalls[0]?.input).to.include({ ShardIterator: 'it:3:99' });
    // The first answer counts as a call: the reader's own first one waits its turn (5 calls/s).
    expect(shard.getRecordsCalls[0]!.at - 1_700_000_000_000).to.be.at.least(200);
  });

  it('keeps the spacing from when the first call was made: a first answer that took longer than that is followed at once', async () => {
    const records = Array.from({ length: 10 }, (_, i) => jsonRecord(i));
    const shard = new FakeShard(records);
    // Made 900 ms ago (a large first answer takes that long on a busy endpoint).
    const r = reader(shard, { body: body(records.slice(0, 3), 'it:3:99'), requestedAtMs: Date.now() - 900 });
    end.credit(1_000);
    r.start();
    await advance(clock, 2_000);
    expect(delivered()).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(shard.getRecordsCalls[0]!.at - 1_700_000_000_000).to.be.below(50);
    // From there on, 5 calls/s.
    expect(shard.getRecordsCalls[1]!.at - shard.getRecordsCalls[0]!.at).to.be.at.least(200);
  });

  it("a first GetRecords that was throttled is the reader's throttle: counted, reported, backed off; then it reads all", async () => {
    const records = Array.from({ length: 5 }, (_, i) => jsonRecord(i));
    const shard = new FakeShard(records);
    const r = reader(shard, {
      failed: {
        operation: 'GetRecords',
        name: 'ProvisionedThroughputExceededException',
        message: 'Rate exceeded',
        httpStatusCode: 400,
        fault: 'client',
      },
      requestedAtMs: Date.now(),
    });
    end.credit(1_000);
    r.start();
    await advance(clock, 3_000);
    expect(r.status().throttled).to.equal(1);
    expect(end.of('throttled')).to.have.length(1);
    expect(shard.iteratorCalls.map((i) => i.ShardIteratorType)).to.deep.equal(['TRIM_HORIZON']);
    expect(delivered()).to.deep.equal([0, 1, 2, 3, 4]);
  });

  it('a first GetShardIterator that found no stream fails the reader as its own call would', async () => {
    const shard = new FakeShard([]);
    const r = reader(shard, {
      failed: {
        operation: 'GetShardIterator',
        name: 'ResourceNotFoundException',
        message: 'Stream s not found',
        httpStatusCode: 400,
      },
      requestedAtMs: Date.now(),
    });
    end.credit(1_000);
    r.start();
    await advance(clock, 100);
    const outcome = await r.finished;
    expect(outcome.state).to.equal('failed');
    expect(outcome.error?.code).to.equal(ErrorCodes.NOT_FOUND);
    expect(shard.calls).to.have.length(0);
  });

  it('a body it cannot read is dropped: the reader starts as usual', async () => {
    const records = Array.from({ length: 3 }, (_, i) => jsonRecord(i));
    const shard = new FakeShard(records);
    const r = reader(shard, { body: new Uint8Array(Buffer.from('<html>')), requestedAtMs: Date.now() });
    end.credit(1_000);
    r.start();
    await advance(clock, 1_000);
    expect(shard.iteratorCalls.map((i) => i.ShardIteratorType)).to.deep.equal(['TRIM_HORIZON']);
    expect(delivered()).to.deep.equal([0, 1, 2]);
  });

  it('refuses a malformed first option, naming it', () => {
    for (const first of [{}, { body: 'x', requestedAtMs: 1 }, { failed: { name: 'X' }, requestedAtMs: 1 }]) {
      expect(() => reader(new FakeShard(), first as FirstAnswer)).to.throw(/^first must be/);
    }
  });
});
