import type { BatchMessage, ShardlineError } from '@shardline/common';
import { aggregate, batchToRecords, codecs, ErrorCodes } from '@shardline/common';
import type { ShardReaderOptions } from '@shardline/shard-worker';
import { ShardReader } from '@shardline/shard-worker';
import { expect } from 'chai';
import sinon from 'sinon';
import {
  advance,
  awsError,
  CoordinatorEnd,
  FakeShard,
  jsonRecord,
  rawRecord,
  type StoredRecord,
  seq,
  settle,
} from './fake-kinesis.js';

const SHARD = 'shardId-000000000000';
const encoder = new TextEncoder();

function thrown(fn: () => unknown): ShardlineError {
  try {
    fn();
  } catch (error) {
    return error as ShardlineError;
  }
  expect.fail('expected an error, but the call returned');
}

function jsonRecords(n: number, from = 0): StoredRecord[] {
  return Array.from({ length: n }, (_, i) => jsonRecord(from + i));
}

/** The `n` of every record delivered, in order. */
function delivered(end: CoordinatorEnd): number[] {
  return end
    .of('batch')
    .flatMap((b) => batchToRecords<{ n: number }>(b, codecs.json))
    .map((r) => (r.ok ? r.record.data.n : -1));
}

describe('ShardReader', () => {
  let clock: sinon.SinonFakeTimers;
  let end: CoordinatorEnd;
  let readers: ShardReader[];

  beforeEach(() => {
    // setImmediate stays real: MessagePort deliveries need real event-loop turns.
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

  function reader(
    shard: FakeShard,
    options: Partial<ShardReaderOptions> = {},
    random = () => 0.5,
  ): ShardReader {
    const r = new ShardReader(
      end.readerPort,
      shard,
      { streamName: 's', shardId: SHARD, ...options },
      { random },
    );
    readers.push(r);
    return r;
  }

  describe('rate limits', () => {
    function maxInAnySecond(times: number[]): number {
      let max = 0;
      for (const t of times) max = Math.max(max, times.filter((u) => u >= t && u < t + 1_000).length);
      return max;
    }

    it('never makes more than fetchRatePerShard GetRecords calls in any second', async () => {
      const shard = new FakeShard(jsonRecords(10_000));
      const r = reader(shard, { maxRecordsPerFetch: 1 });
      end.credit(1_000_000);
      r.start();
      await advance(clock, 5_000);
      const times = shard.getRecordsCalls.map((c) => c.at);
      expect(times.length).to.be.within(24, 26);
      expect(maxInAnySecond(times)).to.equal(5);
      expect(delivered(end)).to.deep.equal(Array.from({ length: times.length }, (_, i) => i));
    });

    it('a lower fetchRatePerShard spaces calls further', async () => {
      const shard = new FakeShard(jsonRecords(1_000));
      const r = reader(shard, { maxRecordsPerFetch: 1, fetchRatePerShard: 2 });
      end.credit(1_000_000);
      r.start();
      await advance(clock, 5_000);
      const times = shard.getRecordsCalls.map((c) => c.at);
      expect(times.length).to.be.within(10, 11);
      expect(maxInAnySecond(times)).to.equal(2);
    });

    it('waits out the byte budget after a large response', async () => {
      // Two records of 1.5 MiB per call against 2 MiB/s: the second call waits until the debt is paid.
      const big = new Uint8Array(3 * 512 * 1024).fill(0x31); // "111..." is valid JSON
      const shard = new FakeShard(Array.from({ length: 10 }, (_, i) => rawRecord(i, big)));
      const r = reader(shard, { maxRecordsPerFetch: 2 });
      end.credit(1_000_000);
      r.start();
      await advance(clock, 3_000);
      const times = shard.getRecordsCalls.map((c) => c.at - shard.getRecordsCalls[0]!.at);
      // 3 MiB per call at 2 MiB/s (2 MiB burst): a 1 MiB debt (0.5 s), then 3 MiB debts (1.5 s each).
      expect(times.slice(0, 3)).to.deep.equal([0, 500, 2_000]);
    });
  });

  describe('idle shard', () => {
    it('spaces calls by idleFetchIntervalMs while the shard returns nothing at the tip (no backoff when max = interval)', async () => {
      const shard = new FakeShard([]);
      const r = reader(shard, { idleFetchIntervalMs: 1_000, idleFetchMaxIntervalMs: 1_000 });
      end.credit(100);
      r.start();
      await advance(clock, 5_050);
      const times = shard.getRecordsCalls.map((c) => c.at);
      expect(times.length).to.equal(6);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).to.be.at.least(1_000);
      expect(end.of('batch')).to.have.length(0);
      expect(end.of('fetched')).to.have.length(6);
    });

    it('an idle shard backs off (after 3 empty answers, doubling up to idleFetchMaxIntervalMs) and is back at full speed with the first record', async () => {
      const shard = new FakeShard([]);
      const r = reader(shard, { idleFetchIntervalMs: 1_000, idleFetchMaxIntervalMs: 5_000 });
      end.credit(100);
      r.start();
      await advance(clock, 25_100);
      const times = shard.getRecordsCalls.map((c) => c.at - shard.getRecordsCalls[0]!.at);
      expect(times.slice(0, 8)).to.deep.equal([0, 1_000, 2_000, 3_000, 5_000, 9_000, 14_000, 19_000]);
      // Records arrive: the next call (at most idleFetchMaxIntervalMs later) has them, and the pauses are
      // back to idleFetchIntervalMs.
      const arrivedAt = clock.now;
      shard.records.push(
        ...jsonRecords(3).map((x, i) => ({ ...x, SequenceNumber: `9${String(i).padStart(20, '0')}` })),
      );
      await advance(clock, 7_100);
      expect(end.of('batch')).to.have.length(1);
      const after = shard.getRecordsCalls.map((c) => c.at).filter((t) => t > arrivedAt);
      expect(after[0]! - arrivedAt, 'the records waited at most the longest pause').to.be.at.most(5_000);
      // After the answer with records the next call comes at the call rate (200 ms), then 1 s pauses.
      expect(after.slice(1, 3).map((t, i) => t - after[i]!)).to.deep.equal([200, 1_000]);
    });

    it('keeps the fetch rate while empty answers say the reader is behind', async () => {
      const shard = new FakeShard([]);
      shard.fixedBehindMs = 60_000;
      const r = reader(shard, { idleFetchIntervalMs: 1_000 });
      end.credit(100);
      r.start();
      await advance(clock, 2_000);
      expect(shard.getRecordsCalls.length).to.be.within(10, 11);
    });
  });

  describe('expired iterators', () => {
    it('re-acquires AFTER the last record handed out: no record lost, none repeated', async () => {
      const shard = new FakeShard(jsonRecords(10));
      shard.fault = (call) => {
        if (call.op === 'GetRecords' && shard.getRecordsCalls.length === 3)
          throw awsError('ExpiredIteratorException');
      };
      const r = reader(shard, { maxRecordsPerFetch: 3 });
      end.credit(1_000);
      r.start();
      await advance(clock, 3_000);
      expect(shard.iteratorCalls.map((i) => [i.ShardIteratorType, i.StartingSequenceNumber])).to.deep.equal([
        ['TRIM_HORIZON', undefined],
        ['AFTER_SEQUENCE_NUMBER', seq(5)],
      ]);
      expect(delivered(end)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(r.status().iteratorRefreshes).to.equal(1);
      expect(end.of('error'), 'an expired iterator is routine, not an error').to.have.length(0);
      // Reported (for metrics) with the first call that succeeds after it, once.
      const fetched = end.of('fetched') as Array<{ expiredIterators?: number }>;
      expect(fetched.map((m) => m.expiredIterators ?? 0).reduce((a, b) => a + b, 0)).to.equal(1);
      expect(fetched[2]?.expiredIterators).to.equal(1);
    });

    it('before anything was handed out, re-acquires at the start position (the checkpoint)', async () => {
      const shard = new FakeShard(jsonRecords(6));
      let expired = false;
      shard.fault = (call) => {
        if (call.op === 'GetRecords' && !expired) {
          expired = true;
          throw awsError('ExpiredIteratorException');
        }
      };
      const r = reader(shard, { checkpoint: { sequenceNumber: seq(2) } });
      end.credit(1_000);
      r.start();
      await advance(clock, 1_000);
      expect(shard.iteratorCalls.map((i) => [i.ShardIteratorType, i.StartingSequenceNumber])).to.deep.equal([
        ['AFTER_SEQUENCE_NUMBER', seq(2)],
        ['AFTER_SEQUENCE_NUMBER', seq(2)],
      ]);
      expect(delivered(end)).to.deep.equal([3, 4, 5]);
    });

    it('a LATEST reader whose iterator expires before any record resumes AT_TIMESTAMP of its start (less 5 s)', async () => {
      const shard = new FakeShard([]);
      let expired = false;
      shard.fault = (call) => {
        if (call.op === 'GetRecords' && !expired) {
          expired = true;
          throw awsError('ExpiredIteratorException');
        }
      };
      const startedAt = Date.now();
      const r = reader(shard, { initialPosition: 'LATEST' });
      end.credit(1_000);
      r.start();
      await advance(clock, 500);
      const calls = shard.iteratorCalls;
      expect(calls.map((c) => c.ShardIteratorType)).to.deep.equal(['LATEST', 'AT_TIMESTAMP']);
      expect((calls[1]!.Timestamp as Date).getTime()).to.equal(startedAt - 5_000);
    });

    it('an iterator that is expired again at once is retried with backoff, not in a hot loop', async () => {
      const shard = new FakeShard(jsonRecords(3));
      shard.fault = (call) => {
        if (call.op === 'GetRecords') throw awsError('ExpiredIteratorException');
      };
      const r = reader(shard, { errorBackoffMs: { initial: 1_000, max: 1_000 } }, () => 0.999);
      end.credit(1_000);
      r.start();
      await advance(clock, 5_000);
      expect(shard.getRecordsCalls.length).to.be.within(5, 7);
    });
  });

  describe('throttling and errors', () => {
    it('backs off exponentially (full jitter) on throttling, reports it, and resets after a success', async () => {
      const shard = new FakeShard(jsonRecords(100));
      const throttleAt = new Set([1, 2, 3, 4, 6]); // GetRecords call numbers (1-based) to throttle
      shard.fault = (call) => {
        if (call.op === 'GetRecords' && throttleAt.has(shard.getRecordsCalls.length)) {
          throw awsError('ProvisionedThroughputExceededException', 'Rate exceeded for shard');
        }
      };
      const r = reader(
        shard,
        { maxRecordsPerFetch: 1, throttleBackoffMs: { initial: 1_000, max: 5_000 } },
        () => 0.5,
      );
      end.credit(1_000);
      r.start();
      await advance(clock, 12_000);
      const throttled = end.of('throttled');
      expect(throttled.map((t) => t.delayMs)).to.deep.equal([500, 1_000, 2_000, 2_500, 500]);
      expect(throttled.every((t) => t.count === 1 && t.shardId === SHARD)).to.equal(true);
      // Each retry came after its backoff.
      const calls = shard.getRecordsCalls.map((c) => c.at);
      expect(calls[1]! - calls[0]!).to.be.at.least(500);
      expect(calls[4]! - calls[3]!).to.be.at.least(2_500);
      expect(r.status().throttled).to.equal(5);
      expect(delivered(end).slice(0, 3)).to.deep.equal([0, 1, 2]);
      expect(end.of('error')).to.have.length(0);
    });

    it('retries transient errors (5xx, network) with backoff and reports them as non-fatal', async () => {
      const shard = new FakeShard(jsonRecords(4));
      let failures = 0;
      shard.fault = (call) => {
        if (call.op !== 'GetRecords' || failures >= 3) return;
        failures++;
        if (failures === 1) throw awsError('InternalFailure');
        if (failures === 2) throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
        throw Object.assign(awsError('ServiceUnavailable'), { $metadata: { httpStatusCode: 503 } });
      };
      const r = reader(shard, { errorBackoffMs: { initial: 100, max: 1_000 } });
      end.credit(1_000);
      r.start();
      await advance(clock, 3_000);
      const errors = end.of('error');
      expect(errors.map((e) => [e.fatal, e.error.code])).to.deep.equal([
        [false, ErrorCodes.TRANSIENT],
        [false, ErrorCodes.TRANSIENT],
        [false, ErrorCodes.TRANSIENT],
      ]);
      expect(delivered(end)).to.deep.equal([0, 1, 2, 3]);
      expect(r.status()).to.include({ transientErrors: 3, state: 'reading' });
    });

    for (const [name, code] of [
      ['ResourceNotFoundException', ErrorCodes.NOT_FOUND],
      ['AccessDeniedException', ErrorCodes.ACCESS_DENIED],
      ['InvalidArgumentException', ErrorCodes.INVALID_REQUEST],
    ] as const) {
      it(`stops on ${name} with a fatal error, and never calls again`, async () => {
        const shard = new FakeShard(jsonRecords(4));
        shard.fault = (call) => {
          if (call.op === 'GetRecords') throw awsError(name);
        };
        const r = reader(shard);
        end.credit(1_000);
        r.start();
        const outcome = await r.finished;
        await advance(clock, 60_000, 1_000);
        expect(shard.getRecordsCalls).to.have.length(1);
        expect(outcome).to.deep.include({ shardId: SHARD, state: 'failed' });
        expect(outcome.error?.code).to.equal(code);
        const errors = end.of('error');
        expect(errors.map((e) => [e.fatal, e.error.code])).to.deep.equal([[true, code]]);
        expect(r.status().state).to.equal('failed');
      });
    }

    it('a fatal GetShardIterator error stops the reader too', async () => {
      const shard = new FakeShard(jsonRecords(4));
      shard.fault = (call) => {
        if (call.op === 'GetShardIterator') throw awsError('ResourceNotFoundException', 'Shard not found');
      };
      const r = reader(shard);
      r.start();
      const outcome = await r.finished;
      expect(outcome.state).to.equal('failed');
      expect(shard.calls).to.have.length(1);
      await settle(clock);
      expect(end.of('error')[0]).to.deep.include({ fatal: true });
    });
  });

  describe('credit', () => {
    it('does not call GetRecords without credit, and asks for no more records than it has', async () => {
      const shard = new FakeShard(jsonRecords(10));
      const r = reader(shard);
      r.start();
      await advance(clock, 5_000, 100);
      expect(shard.getRecordsCalls).to.have.length(0);
      expect(r.status().state).to.equal('waiting-for-credit');

      end.credit(3);
      await advance(clock, 2_000);
      expect(shard.getRecordsCalls.map((c) => (c.input as { Limit?: number }).Limit)).to.deep.equal([3]);
      expect(delivered(end)).to.deep.equal([0, 1, 2]);
      expect(r.status().credit.records).to.equal(0);

      end.send({ v: 1, type: 'ack', batchId: 0 });
      end.credit(3);
      await advance(clock, 2_000);
      expect(delivered(end)).to.deep.equal([0, 1, 2, 3, 4, 5]);
      const status = r.status();
      expect(status).to.include({
        shardId: SHARD,
        lastAckedBatchId: 0,
        batchesSent: 2,
        recordsFetched: 6,
        millisBehindLatest: 5_000,
        lastFetchAtMs: shard.getRecordsCalls[1]!.at,
      });
      expect(end.of('fetched').map((f) => [f.records, f.millisBehindLatest])).to.deep.equal([
        [3, 5_000],
        [3, 5_000],
      ]);
    });

    it('revoked credit is taken off: the next call asks for less, none while the credit is below zero', async () => {
      const shard = new FakeShard(jsonRecords(10));
      const r = reader(shard);
      // (A credit wakes the reader at once: a revoke sent after it could find the call already made.)
      end.send({ v: 1, type: 'revoke', records: 2 });
      end.credit(3);
      r.start();
      await advance(clock, 2_000);
      expect(shard.getRecordsCalls.map((c) => (c.input as { Limit?: number }).Limit)).to.deep.equal([1]);
      expect(delivered(end)).to.deep.equal([0]);
      // A revoke larger than the credit left (as when a fetch was in flight): below zero, no call until
      // grants bring it above.
      end.send({ v: 1, type: 'revoke', records: 2 });
      await advance(clock, 2_000);
      expect(r.status().credit.records).to.equal(-2);
      expect(shard.getRecordsCalls).to.have.length(1);
      end.credit(3);
      await advance(clock, 2_000);
      expect(r.status().credit.records).to.equal(0);
      expect(shard.getRecordsCalls.map((c) => (c.input as { Limit?: number }).Limit)).to.deep.equal([1, 1]);
      expect(delivered(end)).to.deep.equal([0, 1]);
    });

    it('no byte credit, no fetch; a batch is charged its records after deaggregation and its bytes', async () => {
      const subs = Array.from({ length: 5 }, (_, i) => ({
        partitionKey: `k${i}`,
        data: encoder.encode(JSON.stringify({ n: i })),
      }));
      const [agg] = aggregate(subs);
      const shard = new FakeShard([rawRecord(0, agg!.data), jsonRecord(1, { n: 5 })]);
      const r = reader(shard);
      end.credit(2, 0);
      r.start();
      await advance(clock, 1_000);
      expect(shard.getRecordsCalls).to.have.length(0);
      end.credit(0, 10_000);
      await advance(clock, 1_000);
      expect(delivered(end)).to.deep.equal([0, 1, 2, 3, 4, 5]);
      const batch = end.of('batch')[0]!;
      expect(batch.bytes).to.equal(agg!.data.byteLength + 7);
      // Over-drawn by the aggregate: no further call until the coordinator grants more.
      expect(r.status().credit).to.deep.equal({ records: 2 - 6, bytes: 10_000 - batch.bytes });
      const calls = shard.getRecordsCalls.length;
      await advance(clock, 3_000, 100);
      expect(shard.getRecordsCalls).to.have.length(calls);
    });
  });

  describe('shard end', () => {
    for (const children of [['shardId-000000000004', 'shardId-000000000005'], undefined]) {
      it(`sends the last records, then shard-end with ${children ? 'the ChildShards' : 'no children (kinesalite)'}`, async () => {
        const shard = new FakeShard(jsonRecords(5));
        shard.closed = true;
        shard.childShardIds = children;
        const r = reader(shard, { maxRecordsPerFetch: 3 });
        end.credit(1_000);
        r.start();
        await advance(clock, 1_000);
        const outcome = await r.finished;
        await settle(clock);
        expect(
          end.messages.filter((m) => m.type !== 'fetched' && m.type !== 'log').map((m) => m.type),
        ).to.deep.equal(['batch', 'batch', 'shard-end']);
        expect(delivered(end)).to.deep.equal([0, 1, 2, 3, 4]);
        expect(end.of('shard-end')[0]!.childShardIds).to.deep.equal(children);
        expect(outcome.state).to.equal('ended');
        expect(outcome.childShardIds).to.deep.equal(children);
        expect(r.status().state).to.equal('ended');
      });
    }
  });

  describe('start positions', () => {
    function aggregateOf(n: number, first: number): Uint8Array {
      const subs = Array.from({ length: n }, (_, i) => ({
        partitionKey: `k${first + i}`,
        data: encoder.encode(JSON.stringify({ n: first + i })),
      }));
      return aggregate(subs)[0]!.data;
    }

    it('a checkpoint mid-aggregate resumes AT its sequence number and skips exactly the processed sub-records', async () => {
      // record 0: n=0; record 1: aggregate of n=1..5 (sub-sequences 0..4); record 2: n=6
      const shard = new FakeShard([jsonRecord(0), rawRecord(1, aggregateOf(5, 1)), jsonRecord(2, { n: 6 })]);
      const r = reader(shard, { checkpoint: { sequenceNumber: seq(1), subSequenceNumber: 2 } });
      end.credit(1_000);
      r.start();
      await advance(clock, 1_000);
      expect(shard.iteratorCalls[0]).to.include({
        ShardIteratorType: 'AT_SEQUENCE_NUMBER',
        StartingSequenceNumber: seq(1),
      });
      expect(delivered(end)).to.deep.equal([4, 5, 6]);
      const records = batchToRecords(end.of('batch')[0]!, codecs.json).map((x) => x.record);
      expect(records.map((x) => [x.sequenceNumber, x.subSequenceNumber])).to.deep.equal([
        [seq(1), 3],
        [seq(1), 4],
        [seq(2), undefined],
      ]);
      expect(end.of('batch')[0]).to.include({ lastSequenceNumber: seq(2) });
      expect(end.of('batch')[0]).to.not.have.property('lastSubSequenceNumber');
    });

    it('a checkpoint on the last sub-record skips the whole aggregate', async () => {
      const shard = new FakeShard([rawRecord(0, aggregateOf(3, 0)), jsonRecord(1, { n: 3 })]);
      const r = reader(shard, { checkpoint: { sequenceNumber: seq(0), subSequenceNumber: 2 } });
      end.credit(1_000);
      r.start();
      await advance(clock, 1_000);
      expect(delivered(end)).to.deep.equal([3]);
    });

    it('a checkpoint without sub-sequence resumes AFTER it; initial positions map to iterator types', async () => {
      const shard = new FakeShard(jsonRecords(4));
      const r = reader(shard, { checkpoint: { sequenceNumber: seq(1) }, initialPosition: 'LATEST' });
      end.credit(1_000);
      r.start();
      await advance(clock, 500);
      expect(delivered(end)).to.deep.equal([2, 3]);
      await r.stop();

      for (const [position, type] of [
        ['LATEST', 'LATEST'],
        ['TRIM_HORIZON', 'TRIM_HORIZON'],
        [{ timestamp: new Date(1_002) }, 'AT_TIMESTAMP'],
      ] as const) {
        const other = new CoordinatorEnd();
        const s = new FakeShard(jsonRecords(4));
        const rr = new ShardReader(other.readerPort, s, {
          streamArn: 'arn:aws:kinesis:x',
          shardId: SHARD,
          initialPosition: position,
        });
        rr.start();
        await settle(clock);
        await rr.stop();
        other.close();
        expect(s.iteratorCalls[0]).to.include({ ShardIteratorType: type, StreamARN: 'arn:aws:kinesis:x' });
        if (type === 'AT_TIMESTAMP')
          expect((s.iteratorCalls[0]!.Timestamp as Date).getTime()).to.equal(1_002);
      }
    });

    it('framed codecs number items per record, and a mid-record checkpoint skips the processed items', async () => {
      const lines = (ns: number[]) => encoder.encode(ns.map((n) => JSON.stringify({ n })).join('\n'));
      const shard = new FakeShard([rawRecord(0, lines([0, 1, 2])), rawRecord(1, lines([3, 4]))]);
      const r = reader(shard, {
        codec: 'jsonl',
        checkpoint: { sequenceNumber: seq(0), subSequenceNumber: 0 },
      });
      end.credit(1_000);
      r.start();
      await advance(clock, 500);
      const records = end.of('batch').flatMap((b) => batchToRecords<{ n: number }>(b, codecs.jsonl));
      expect(records.map((x) => [x.record.data, x.record.subSequenceNumber])).to.deep.equal([
        [{ n: 1 }, 1],
        [{ n: 2 }, 2],
        [{ n: 3 }, 0],
        [{ n: 4 }, 1],
      ]);
      expect(end.of('batch')[0]).to.include({ lastSequenceNumber: seq(1), lastSubSequenceNumber: 1 });
    });
  });

  describe('bad data', () => {
    it('reports an undecodable payload and a malformed KPL aggregate as records with an error, and reads on', async () => {
      const malformed = new Uint8Array([0xf3, 0x89, 0x9a, 0xc2, ...new Uint8Array(30).fill(7)]);
      const shard = new FakeShard([
        jsonRecord(0),
        rawRecord(1, encoder.encode('{not json')),
        rawRecord(2, malformed),
        jsonRecord(3, { n: 3 }),
      ]);
      const r = reader(shard, { maxRecordsPerFetch: 2 });
      end.credit(1_000);
      r.start();
      await advance(clock, 1_000);
      const records = end.of('batch').flatMap((b) => batchToRecords<{ n: number }>(b, codecs.json));
      expect(records.map((x) => (x.ok ? x.record.data.n : x.error.code))).to.deep.equal([
        0,
        ErrorCodes.CODEC,
        ErrorCodes.KPL_MALFORMED,
        3,
      ]);
      const poison = records[1]!;
      if (poison.ok) expect.fail('expected a poison record');
      expect(new TextDecoder().decode(poison.record.data)).to.equal('{not json');
      expect(poison.record.sequenceNumber).to.equal(seq(1));
      const bad = records[2]!;
      if (bad.ok) expect.fail('expected a poison record');
      expect(bad.record.data).to.deep.equal(malformed);
      expect(bad.record).to.not.have.property('subSequenceNumber');
      expect(end.of('error')).to.have.length(0);
      expect(r.status().state).to.equal('reading');
    });

    it("with encoding 'bytes', KPL errors come from the reader and codec errors from batchToRecords", async () => {
      const malformed = new Uint8Array([0xf3, 0x89, 0x9a, 0xc2, ...new Uint8Array(30).fill(7)]);
      const shard = new FakeShard([
        jsonRecord(0),
        rawRecord(1, encoder.encode('nope')),
        rawRecord(2, malformed),
      ]);
      const r = reader(shard, { encoding: 'bytes' });
      end.credit(1_000);
      r.start();
      await advance(clock, 500);
      const batch = end.of('batch')[0]! as BatchMessage;
      expect(batch.encoding).to.equal('bytes');
      const records = batchToRecords<{ n: number }>(batch, codecs.json);
      expect(records.map((x) => (x.ok ? x.record.data.n : x.error.code))).to.deep.equal([
        0,
        ErrorCodes.CODEC,
        ErrorCodes.KPL_MALFORMED,
      ]);
    });
  });

  describe('stop', () => {
    it('aborts a pending GetRecords, resolves, sends nothing more and reports no error', async () => {
      const shard = new FakeShard(jsonRecords(3));
      shard.hold = new Promise(() => {});
      const r = reader(shard);
      end.credit(1_000);
      r.start();
      await settle(clock);
      expect(shard.getRecordsCalls).to.have.length(1);
      expect(r.state).to.equal('reading');
      const first = r.stop('lease lost');
      const second = r.stop();
      expect(r.state).to.equal('stopping');
      const outcome = await first;
      expect(await second).to.equal(outcome);
      expect(outcome).to.deep.equal({ shardId: SHARD, state: 'stopped' });
      await advance(clock, 5_000, 500);
      expect(shard.getRecordsCalls).to.have.length(1);
      expect(end.messages.filter((m) => m.type !== 'log')).to.deep.equal([]);
      expect(r.status().state).to.equal('stopped');
    });

    it('a stop message from the coordinator stops the reader during a backoff', async () => {
      const shard = new FakeShard(jsonRecords(3));
      shard.fault = (call) => {
        if (call.op === 'GetRecords') throw awsError('ProvisionedThroughputExceededException');
      };
      const r = reader(shard, { throttleBackoffMs: { initial: 60_000, max: 60_000 } });
      end.credit(1_000);
      r.start();
      await settle(clock);
      expect(r.state).to.equal('backing-off');
      end.send({ v: 1, type: 'stop', reason: 'shutdown' });
      const outcome = await r.finished;
      expect(outcome.state).to.equal('stopped');
      expect(shard.getRecordsCalls).to.have.length(1);
    });

    it('stop while waiting for credit, and closing the coordinator end of the port, stop the reader', async () => {
      const shard = new FakeShard(jsonRecords(3));
      const r = reader(shard);
      r.start();
      await settle(clock);
      expect(r.state).to.equal('waiting-for-credit');
      expect((await r.stop()).state).to.equal('stopped');

      const other = new CoordinatorEnd();
      const r2 = new ShardReader(other.readerPort, new FakeShard(jsonRecords(3)), {
        streamName: 's',
        shardId: SHARD,
      });
      r2.start();
      await settle(clock);
      other.port.close();
      expect((await r2.finished).state).to.equal('stopped');
    });

    it('stop before start resolves at once; start after stop does nothing', async () => {
      const shard = new FakeShard(jsonRecords(3));
      const r = reader(shard);
      expect((await r.stop()).state).to.equal('stopped');
      r.start();
      await settle(clock);
      expect(shard.calls).to.have.length(0);
    });

    it('ignores a malformed coordinator message, logging it', async () => {
      const shard = new FakeShard(jsonRecords(3));
      const r = reader(shard);
      end.port.postMessage({ v: 1, type: 'credit', records: -1, bytes: 5 });
      r.start();
      await settle(clock);
      expect(end.of('log').map((l) => [l.level, l.message])).to.deep.equal([
        [
          'error',
          "ignored a bad message from the coordinator: coordinator message 'credit': records must be an integer >= 0 (got -1)",
        ],
      ]);
      expect(r.status().credit).to.deep.equal({ records: 0, bytes: 0 });
    });
  });

  describe('options', () => {
    const base = { streamName: 's', shardId: SHARD };
    const cases: Array<[Partial<ShardReaderOptions> & Record<string, unknown>, RegExp]> = [
      [{ streamName: undefined }, /^streamName or streamArn is required/],
      [{ streamArn: 'arn' }, /^streamName and streamArn are exclusive/],
      [{ shardId: '' }, /^shardId must be a non-empty string \(got ''\)/],
      [
        { maxRecordsPerFetch: 10_001 },
        /^maxRecordsPerFetch must be an integer from 1 to 10000 \(got 10001\)/,
      ],
      [{ fetchRatePerShard: 6 }, /^fetchRatePerShard must be a number > 0 and <= 5/],
      [{ fetchRatePerShard: 0 }, /^fetchRatePerShard must be a number > 0 and <= 5/],
      [{ idleFetchIntervalMs: -1 }, /^idleFetchIntervalMs must be a number >= 0 \(got -1\)/],
      [{ codec: 'yaml' as never }, /^codec must be one of 'json'/],
      [{ codec: codecs.json as never }, /^codec must be a codec name such as 'json'/],
      [{ codec: 'jsonl', encoding: 'bytes' }, /^encoding 'bytes' needs a codec that is not framed/],
      [
        { checkpoint: { sequenceNumber: 'abc' } },
        /^checkpoint\.sequenceNumber must be a Kinesis sequence number/,
      ],
      [
        { checkpoint: { sequenceNumber: '1', subSequenceNumber: -1 } },
        /^checkpoint\.subSequenceNumber must be an integer >= 0/,
      ],
      [
        { initialPosition: 'AT_TIMESTAMP' as never },
        /^initialPosition must be 'TRIM_HORIZON', 'LATEST' or \{ timestamp: Date \}/,
      ],
      [
        { initialPosition: { timestamp: new Date(Number.NaN) } },
        /^initialPosition\.timestamp must be a valid Date/,
      ],
      [
        { throttleBackoffMs: { initial: 10, max: 1 } },
        /^throttleBackoffMs\.max must be >= throttleBackoffMs\.initial/,
      ],
      [{ logLevel: 'trace' as never }, /^logLevel must be one of debug, info, warn, error/],
    ];
    for (const [options, message] of cases) {
      it(`refuses ${JSON.stringify(options)}`, () => {
        const error = thrown(
          () =>
            new ShardReader(end.readerPort, new FakeShard(), { ...base, ...options } as ShardReaderOptions),
        );
        expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(message);
      });
    }

    it('refuses a port or client of the wrong shape', () => {
      expect(thrown(() => new ShardReader({} as never, new FakeShard(), base)).message).to.match(
        /^port must be a MessagePort/,
      );
      expect(thrown(() => new ShardReader(end.readerPort, {} as never, base)).message).to.match(
        /^client must have getShardIterator/,
      );
    });

    it("defaults: json decoded in the worker and sent as JSON text, 'decoded' for msgpack, 'bytes' for raw", () => {
      const json = reader(new FakeShard());
      expect(json.options).to.include({
        encoding: 'json',
        maxRecordsPerFetch: 10_000,
        fetchRatePerShard: 5,
        idleFetchIntervalMs: 1_000,
      });
      expect(json.options.codec.name).to.equal('json');
      expect(json.options.start).to.deep.equal({ type: 'TRIM_HORIZON' });
      const raw = reader(new FakeShard(), { codec: 'raw' });
      expect(raw.options.encoding).to.equal('bytes');
      expect(Object.isFrozen(raw.options)).to.equal(true);
      expect(reader(new FakeShard(), { codec: 'msgpack' }).options.encoding).to.equal('decoded');
      for (const codec of ['jsonl', 'json-array', 'string'] as const) {
        expect(reader(new FakeShard(), { codec }).options.encoding, codec).to.equal('json');
      }
      expect(() => reader(new FakeShard(), { codec: 'msgpack', encoding: 'json' })).to.throw(
        /encoding.*'json' needs a codec whose items are JSON values/,
      );
    });
  });
});
