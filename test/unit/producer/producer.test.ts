import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { KinesisClient, PutRecordsCommandOutput } from '@aws-sdk/client-kinesis';
import {
  codecs,
  deaggregate,
  ErrorCodes,
  type Logger,
  type ShardlineError,
  silentLogger,
} from '@shardline/common';
import { Producer, type ProducerOptions, type PutReceipt } from '@shardline/producer';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../../support/assertions.js';
import { awsError, evenShards, StubKinesis } from './stub-kinesis.js';

let clock: sinon.SinonFakeTimers;
let stub: StubKinesis;
const producers: Producer<unknown>[] = [];

function make<T = unknown>(options: Partial<ProducerOptions<T>> = {}): Producer<T> {
  const producer = new Producer<T>({
    streamName: 'test',
    kinesis: stub as unknown as KinesisClient,
    shardRefreshIntervalMs: 0,
    ...options,
  });
  producers.push(producer as Producer<unknown>);
  return producer;
}

/** Settles the fake clock enough for microtasks, answers and lingering. */
async function tick(ms = 0): Promise<void> {
  await clock.tickAsync(ms);
}

/** A promise whose outcome can be read synchronously. */
function track<T>(promise: Promise<T>): { settled: boolean; value?: T; error?: unknown } {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => {
      state.settled = true;
      state.value = value;
    },
    (error: unknown) => {
      state.settled = true;
      state.error = error;
    },
  );
  return state;
}

/** A PutRecords answer the test releases when it wants. */
function deferredAnswers(): {
  pending: Array<{ release: () => void; input: unknown }>;
  handler: StubKinesis['onPut'];
} {
  const pending: Array<{ release: () => void; input: unknown }> = [];
  return {
    pending,
    handler: (input, _call, s) =>
      new Promise<PutRecordsCommandOutput>((resolve) => {
        pending.push({ input, release: () => resolve(s.succeed(input)) });
      }),
  };
}

// The fake clock and stub are per test of this file only: hooks at the root would apply to every
// test of the run.
describe('producer (unit, fake time)', () => {
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

  describe('producer: put() input validation', () => {
    const bad: Array<[string, unknown, unknown, string, string]> = [
      [
        'an empty partition key',
        { a: 1 },
        { partitionKey: '' },
        ErrorCodes.INVALID_RECORD,
        'partitionKey must not be empty',
      ],
      [
        'a 257-character key',
        { a: 1 },
        { partitionKey: 'k'.repeat(257) },
        ErrorCodes.INVALID_RECORD,
        'at most 256',
      ],
      [
        'a non-string key',
        { a: 1 },
        { partitionKey: 42 },
        ErrorCodes.INVALID_RECORD,
        'partitionKey must be a string',
      ],
      [
        'a lone surrogate key',
        { a: 1 },
        { partitionKey: '\ud800' },
        ErrorCodes.INVALID_RECORD,
        'well-formed',
      ],
      [
        'a negative explicit hash key',
        { a: 1 },
        { explicitHashKey: '-1' },
        ErrorCodes.INVALID_RECORD,
        'explicitHashKey',
      ],
      [
        'an explicit hash key over 2^128-1',
        { a: 1 },
        { explicitHashKey: (1n << 128n).toString() },
        ErrorCodes.INVALID_RECORD,
        'explicitHashKey must be at most',
      ],
      ['an item the codec cannot encode', { n: 1n }, undefined, ErrorCodes.CODEC, "codec 'json'"],
      [
        'data over 1 MiB with its key',
        'x'.repeat(1_048_576 - 2 - 3),
        { partitionKey: 'abcd' },
        ErrorCodes.INVALID_RECORD,
        'over the classic 1048576-byte Kinesis record limit (the stream reported no MaxRecordSizeInKiB)',
      ],
      [
        'options that are not an object',
        { a: 1 },
        'key',
        ErrorCodes.INVALID_RECORD,
        'options must be an object',
      ],
    ];
    for (const [name, data, options, code, message] of bad) {
      it(`rejects ${name} without affecting other records`, async () => {
        const producer = make({ lingerMs: 0 });
        const good1 = producer.put({ ok: 1 }, { partitionKey: 'a' });
        const error = await rejection(producer.put(data, options as never));
        const good2 = producer.put({ ok: 2 }, { partitionKey: 'a' });
        expect(error.code).to.equal(code);
        expect(error.message).to.contain(message);
        await tick(10);
        expect((await good1).shardId).to.equal('shardId-000000000000');
        expect((await good2).shardId).to.equal('shardId-000000000000');
        expect(stub.puts.flatMap((p) => p.Records)).to.have.length(2);
        expect(producer.bufferedRecords).to.equal(0);
      });
    }

    it('accepts a record of exactly 1 MiB with its key', async () => {
      const producer = make({ lingerMs: 0, codec: 'raw' });
      const receipt = producer.put(new Uint8Array(1_048_576 - 4), { partitionKey: 'abcd' });
      await tick(10);
      expect((await receipt).sequenceNumber).to.be.a('string');
    });

    it('sends, with aggregate: true, a record too large to aggregate as a plain record, between aggregates', async () => {
      const producer = make({ lingerMs: 0, codec: 'raw', aggregate: true });
      const small1 = producer.put(new Uint8Array([1]), { partitionKey: 'a' });
      const big = producer.put(new Uint8Array(1_048_576 - 10), { partitionKey: 'abcd' });
      const small2 = producer.put(new Uint8Array([2]), { partitionKey: 'b' });
      // The big record waits for a full byte bucket (1 MiB/s) after the first aggregate spent some of it.
      await tick(3_000);
      const receipts = await Promise.all([small1, big, small2]);
      const entries = stub.puts.flatMap((p) => p.Records!);
      expect(entries.map((e) => e.Data!.length)).to.have.length(3);
      expect(entries[1]!.Data!.length, 'the big record as it was put').to.equal(1_048_576 - 10);
      expect(entries[1]!.PartitionKey).to.equal('abcd');
      expect(receipts[1]!.subSequenceNumber, 'a plain record has no sub-sequence').to.equal(undefined);
      expect(receipts[0]!.subSequenceNumber).to.equal(0);
      expect(receipts[2]!.subSequenceNumber).to.equal(0);
    });

    it('gives each record without a key its own random key', async () => {
      const producer = make({ lingerMs: 0 });
      await Promise.all([producer.put(1), producer.put(2), tick(10)]);
      const keys = stub.puts.flatMap((p) => p.Records!.map((r) => r.PartitionKey));
      expect(keys).to.have.length(2);
      expect(keys[0]).to.match(/^[0-9a-f-]{36}$/);
      expect(keys[0]).to.not.equal(keys[1]);
    });
  });

  describe('producer: batching', () => {
    it('waits lingerMs for the oldest record, then sends one batch', async () => {
      const producer = make({ lingerMs: 100 });
      const receipts = [producer.put(1), producer.put(2), producer.put(3)];
      await tick(99);
      expect(stub.puts).to.have.length(0);
      await tick(1);
      expect(stub.puts).to.have.length(1);
      expect(stub.puts[0]!.Records).to.have.length(3);
      expect(stub.puts[0]!.StreamName).to.equal('test');
      const all = await Promise.all(receipts);
      expect(new Set(all.map((r) => r.sequenceNumber)).size).to.equal(3);
    });

    it('sends full batches of 500 at once and lingers for the rest', async () => {
      const producer = make({ lingerMs: 1_000, rateLimitPerShard: false });
      const receipts = Array.from({ length: 1_200 }, (_, i) => producer.put(i));
      await tick(0);
      expect(stub.puts.map((p) => p.Records!.length)).to.deep.equal([500, 500]);
      await tick(999);
      expect(stub.puts.map((p) => p.Records!.length)).to.deep.equal([500, 500]);
      await tick(1);
      expect(stub.puts.map((p) => p.Records!.length)).to.deep.equal([500, 500, 200]);
      await Promise.all(receipts);
    });

    it('keeps each request within 5 MiB', async () => {
      const producer = make({ lingerMs: 0, codec: 'raw', rateLimitPerShard: false });
      const receipts = Array.from({ length: 12 }, () => producer.put(new Uint8Array(900_000)));
      await tick(10);
      await Promise.all(receipts);
      for (const put of stub.puts) {
        const bytes = put.Records!.reduce((n, r) => n + r.Data!.length + r.PartitionKey!.length, 0);
        expect(bytes).to.be.at.most(5 * 1024 * 1024);
      }
      expect(stub.puts.length).to.be.at.least(3);
    });

    it('keeps at most maxInFlightRequests calls in flight', async () => {
      stub = new StubKinesis(evenShards(4));
      const answers = deferredAnswers();
      stub.onPut = answers.handler;
      const producer = make({ lingerMs: 0, maxInFlightRequests: 2, rateLimitPerShard: false });
      const receipts = Array.from({ length: 3_000 }, (_, i) => producer.put(i));
      await tick(1);
      expect(answers.pending).to.have.length(2);
      expect(producer.status().inFlightRequests).to.equal(2);
      while (answers.pending.length > 0) {
        answers.pending.shift()!.release();
        await tick(1);
        expect(answers.pending.length).to.be.at.most(2);
      }
      expect((await Promise.all(receipts)).length).to.equal(3_000);
    });

    it('paces each shard to rateLimitPerShard', async () => {
      const producer = make({ lingerMs: 0, rateLimitPerShard: { records: 100 } });
      const receipts = Array.from({ length: 300 }, (_, i) => producer.put(i));
      await tick(1);
      // A full bucket less the 5% reserve, then the refill (100/s) in batches of 5% of the bucket.
      expect(stub.written.length).to.equal(95);
      await tick(500);
      expect(stub.written.length).to.be.within(135, 150);
      expect(
        stub.puts.slice(1).every((p) => p.Records!.length >= 5),
        'no call for a single token',
      ).to.equal(true);
      await tick(1_600);
      expect(stub.written.length).to.equal(300);
      await Promise.all(receipts);
    });
  });

  describe('producer: failures and retries', () => {
    it('retries only the failed entries of a partial failure, then resolves every record', async () => {
      stub.onPut = (input, call, s) =>
        s.succeed(input, (i) =>
          call === 0 && i === 1 ? 'ProvisionedThroughputExceededException' : undefined,
        );
      const producer = make({ lingerMs: 0, retry: { backoffMs: { initial: 10, max: 10 } } });
      const retries: unknown[] = [];
      const throttles: unknown[] = [];
      producer.on('retry', (e) => retries.push(e));
      producer.on('throttled', (e) => throttles.push(e));
      const receipts = [producer.put('a'), producer.put('b'), producer.put('c')];
      // A throttle also spends the shard's buckets: the retry waits for fresh tokens (~51 ms here).
      await tick(20);
      expect(stub.puts).to.have.length(1);
      await tick(100);
      expect(stub.puts.map((p) => p.Records!.map((r) => new TextDecoder().decode(r.Data)))).to.deep.equal([
        ['"a"', '"b"', '"c"'],
        ['"b"'],
      ]);
      const all = await Promise.all(receipts);
      expect(all.map((r) => r.sequenceNumber)).to.have.length(3);
      expect(retries).to.have.length(1);
      expect(retries[0]).to.include({
        records: 1,
        attempt: 1,
        errorCode: 'ProvisionedThroughputExceededException',
      });
      expect(throttles).to.deep.equal([
        { shardId: 'shardId-000000000000', entries: 1, errorCode: 'ProvisionedThroughputExceededException' },
      ]);
    });

    it('rejects a record out of retries with the AWS error code, leaving the others written', async () => {
      stub.onPut = (input, _call, s) =>
        s.succeed(input, (i) =>
          new TextDecoder().decode(input.Records![i]!.Data) === '"bad"'
            ? 'ProvisionedThroughputExceededException'
            : undefined,
        );
      const producer = make({ lingerMs: 0, retry: { retries: 2, backoffMs: { initial: 5, max: 5 } } });
      const good = producer.put('good');
      const bad = producer.put('bad');
      const errorPromise = rejection(bad);
      await tick(1_000);
      const error = await errorPromise;
      expect(error.code).to.equal(ErrorCodes.THROTTLED);
      expect(error.details).to.include({ errorCode: 'ProvisionedThroughputExceededException', attempts: 3 });
      expect(stub.puts).to.have.length(3);
      expect((await good).sequenceNumber).to.be.a('string');
    });

    it('rejects at once an entry that failed with a non-retriable code', async () => {
      stub.onPut = (input, _call, s) => s.succeed(input, () => 'InvalidArgumentException');
      const producer = make({ lingerMs: 0 });
      const error = rejection(producer.put('x'));
      await tick(10);
      expect((await error).code).to.equal(ErrorCodes.INVALID_REQUEST);
      expect(stub.puts).to.have.length(1);
    });

    it('retries every entry of a call that failed with a retriable error', async () => {
      stub.onPut = (input, call, s) => {
        if (call === 0) throw awsError('InternalFailure', 'boom', 500);
        return s.succeed(input);
      };
      const producer = make({ lingerMs: 0, retry: { backoffMs: { initial: 5, max: 5 } } });
      const receipts = [producer.put(1), producer.put(2)];
      await tick(20);
      await Promise.all(receipts);
      expect(stub.puts.map((p) => p.Records!.length)).to.deep.equal([2, 2]);
    });

    for (const [name, code] of [
      ['AccessDeniedException', ErrorCodes.ACCESS_DENIED],
      ['ResourceNotFoundException', ErrorCodes.NOT_FOUND],
      ['ValidationException', ErrorCodes.INVALID_REQUEST],
    ] as const) {
      it(`rejects the call's records at once on ${name}, without retrying`, async () => {
        stub.onPut = () => {
          throw awsError(name);
        };
        const producer = make({ lingerMs: 0 });
        const errors: unknown[] = [];
        producer.on('error', (e) => errors.push(e));
        const a = rejection(producer.put(1));
        const b = rejection(producer.put(2));
        await tick(1_000);
        expect((await a).code).to.equal(code);
        expect((await b).code).to.equal(code);
        expect(stub.puts).to.have.length(1);
        expect(errors).to.have.length(1);
      });
    }

    it('rejects with a clear ERR_NOT_FOUND when the stream does not exist', async () => {
      stub.listShardsError = awsError(
        'ResourceNotFoundException',
        'Stream test under account 000000000000 not found.',
      );
      const producer = make({ lingerMs: 0 });
      const error = rejection(producer.put(1));
      await tick(10);
      const e = await error;
      expect(e.code).to.equal(ErrorCodes.NOT_FOUND);
      expect(e.message).to.contain("stream 'test' not found");
      expect(stub.listShardsCalls).to.have.length(1);
      expect(producer.status()).to.include({ bufferedRecords: 0, queuedRecords: 0 });
    });
  });

  describe('producer: ordering with maxInFlightPerShard: 1', () => {
    it('keeps per-key order through random partial failures', async () => {
      stub = new StubKinesis(evenShards(2));
      let seed = 7;
      const random = () => {
        seed = (seed * 16807) % 2147483647;
        return seed / 2147483647;
      };
      stub.onPut = (input, _call, s) =>
        s.succeed(input, () => (random() < 0.3 ? 'ProvisionedThroughputExceededException' : undefined));
      const producer = make({
        lingerMs: 5,
        maxInFlightPerShard: 1,
        rateLimitPerShard: false,
        retry: { backoffMs: { initial: 1, max: 5 } },
      });
      const receipts: Promise<PutReceipt>[] = [];
      for (let i = 0; i < 600; i++) receipts.push(producer.put(i, { partitionKey: `k${i % 5}` }));
      for (let i = 0; i < 200; i++) await tick(10);
      await Promise.all(receipts);
      for (const put of stub.puts) {
        const keys = put.Records!.map((r) => r.PartitionKey);
        expect(new Set(keys).size, 'no two entries of one key in a request').to.equal(keys.length);
      }
      const seen = new Map<string, number>();
      for (const w of stub.written) {
        const value = Number(new TextDecoder().decode(w.data));
        const last = seen.get(w.partitionKey) ?? -1;
        expect(value, `order of ${w.partitionKey}`).to.be.greaterThan(last);
        seen.set(w.partitionKey, value);
      }
      expect(stub.written).to.have.length(600);
    });
  });

  describe('producer: backpressure, flush and close', () => {
    it('holds at most maxBufferedRecords accepted records; put() waits FIFO for room', async () => {
      const answers = deferredAnswers();
      stub.onPut = answers.handler;
      const producer = make({ lingerMs: 0, maxBufferedRecords: 10, rateLimitPerShard: false });
      const states = Array.from({ length: 25 }, (_, i) => track(producer.put(i)));
      await tick(1);
      expect(producer.status()).to.include({ bufferedRecords: 10, waitingPuts: 15 });
      let maxBuffered = 0;
      while (states.some((s) => !s.settled)) {
        answers.pending.shift()?.release();
        await tick(1);
        maxBuffered = Math.max(maxBuffered, producer.bufferedRecords);
      }
      expect(maxBuffered).to.be.at.most(10);
      const written = stub.written.map((w) => Number(new TextDecoder().decode(w.data)));
      expect(written).to.deep.equal(Array.from({ length: 25 }, (_, i) => i));
    });

    it('flush() resolves once the records before it are settled, not those after', async () => {
      const answers = deferredAnswers();
      stub.onPut = answers.handler;
      const producer = make({ lingerMs: 10_000, rateLimitPerShard: false });
      const before = [track(producer.put(1)), track(producer.put(2))];
      const flushed = track(producer.flush());
      await tick(1);
      expect(answers.pending, 'flush skips lingering').to.have.length(1);
      const after = track(producer.put(3));
      await tick(1);
      expect(answers.pending).to.have.length(2);
      expect(flushed.settled).to.equal(false);
      answers.pending.shift()!.release();
      await tick(1);
      expect(before.every((s) => s.settled)).to.equal(true);
      expect(flushed.settled).to.equal(true);
      expect(after.settled).to.equal(false);
      const empty = track(producer.flush());
      await tick(1);
      answers.pending.shift()?.release();
      await tick(1);
      expect(empty.settled).to.equal(true);
    });

    it('flush() also waits for puts still waiting for room and for rejected ones', async () => {
      stub.onPut = (input, call, s) => {
        if (call === 0) throw awsError('AccessDeniedException');
        return s.succeed(input);
      };
      const producer = make({ lingerMs: 10_000, maxBufferedRecords: 1 });
      const a = track(producer.put(1));
      const b = track(producer.put(2));
      const flushed = track(producer.flush());
      await tick(10);
      expect(flushed.settled).to.equal(true);
      expect((a.error as ShardlineError).code).to.equal(ErrorCodes.ACCESS_DENIED);
      expect(b.value?.sequenceNumber).to.be.a('string');
    });

    it('close() settles pending puts, then put() rejects ERR_CLOSED; close is idempotent', async () => {
      const producer = make({ lingerMs: 10_000 });
      const pending = [track(producer.put(1)), track(producer.put(2))];
      const closing = producer.close();
      expect(producer.close()).to.equal(closing);
      const late = await rejection(producer.put(3));
      expect(late.code).to.equal(ErrorCodes.CLOSED);
      await tick(10);
      await closing;
      expect(pending.every((s) => s.value?.sequenceNumber !== undefined)).to.equal(true);
      expect(stub.destroyed, 'a client given by the caller is not destroyed').to.equal(false);
    });

    it('aborting the signal rejects pending records with ERR_ABORTED', async () => {
      const answers = deferredAnswers();
      stub.onPut = answers.handler;
      const controller = new AbortController();
      const producer = make({ lingerMs: 0, maxBufferedRecords: 2, signal: controller.signal });
      const states = Array.from({ length: 4 }, (_, i) => track(producer.put(i)));
      await tick(1);
      controller.abort();
      await tick(1);
      for (const s of states) expect((s.error as ShardlineError).code).to.equal(ErrorCodes.ABORTED);
      expect((await rejection(producer.put(9))).code).to.equal(ErrorCodes.ABORTED);
      answers.pending.shift()?.release();
      await tick(1);
      await producer.close();
    });
  });

  describe('producer: writable()', () => {
    it('writes { data, partitionKey } objects with backpressure and finishes after every ack', async () => {
      const producer = make({ lingerMs: 5, maxBufferedRecords: 7, rateLimitPerShard: false });
      let maxBuffered = 0;
      producer.on('put', () => {
        maxBuffered = Math.max(maxBuffered, producer.bufferedRecords);
      });
      const source = Readable.from(
        Array.from({ length: 50 }, (_, i) => ({ data: { i }, partitionKey: `k${i % 3}` })),
      );
      const done = track(pipeline(source, producer.writable({ highWaterMark: 4 })));
      for (let i = 0; i < 100 && !done.settled; i++) await tick(5);
      expect(done.settled).to.equal(true);
      expect(done.error).to.equal(undefined);
      expect(stub.written).to.have.length(50);
      expect(maxBuffered).to.be.at.most(7);
    });

    it('refuses a bad highWaterMark', () => {
      const producer = make();
      expect(() => producer.writable({ highWaterMark: 0 })).to.throw(
        'highWaterMark must be an integer >= 1 (got 0)',
      );
    });

    it('fails the stream on a chunk that is not a record', async () => {
      const producer = make({ lingerMs: 0 });
      const done = track(pipeline(Readable.from([{ data: 1 }, 'oops']), producer.writable()));
      await tick(10);
      expect((done.error as ShardlineError).code).to.equal(ErrorCodes.INVALID_RECORD);
    });
  });

  describe('producer: aggregation and framed codecs', () => {
    it("aggregate: true packs a shard's records into one KPL record; receipts carry sub-sequence numbers", async () => {
      stub = new StubKinesis(evenShards(2));
      const producer = make({ lingerMs: 0, aggregate: true });
      const receipts = Array.from({ length: 40 }, (_, i) =>
        producer.put({ i }, { partitionKey: `key-${i}` }),
      );
      await tick(10);
      const all = await Promise.all(receipts);
      expect(stub.puts).to.have.length(1);
      expect(stub.puts[0]!.Records!.length).to.equal(2);
      for (const entry of stub.puts[0]!.Records!) {
        const subs = deaggregate({
          data: entry.Data!,
          partitionKey: entry.PartitionKey!,
          sequenceNumber: '1',
        });
        const written = stub.written.find((w) => w.data === entry.Data)!;
        for (const sub of subs) {
          const i = (JSON.parse(new TextDecoder().decode(sub.data)) as { i: number }).i;
          expect(sub.partitionKey).to.equal(`key-${i}`);
          expect(all[i]).to.deep.equal({
            shardId: written.shardId,
            sequenceNumber: written.sequenceNumber,
            subSequenceNumber: sub.subSequenceNumber,
          });
        }
      }
    });

    for (const codec of ['jsonl', 'msgpack', 'json-array'] as const) {
      it(`${codec}: packs several items per record; the first item's key is the record's`, async () => {
        const producer = make({ lingerMs: 0, codec });
        const receipts = [1, 2, 3].map((n) => producer.put({ n }, { partitionKey: `p${n}` }));
        await tick(10);
        const all = await Promise.all(receipts);
        expect(stub.puts[0]!.Records).to.have.length(1);
        const entry = stub.puts[0]!.Records![0]!;
        expect(entry.PartitionKey).to.equal('p1');
        expect(codecs[codec].decode(entry.Data!)).to.deep.equal([{ n: 1 }, { n: 2 }, { n: 3 }]);
        expect(all.map((r) => r.subSequenceNumber)).to.deep.equal([0, 1, 2]);
      });
    }
  });

  describe('producer: shard map and events', () => {
    it('refreshes the shard map when a record lands on another shard than predicted', async () => {
      const producer = make({ lingerMs: 0 });
      await Promise.all([producer.put(1), tick(10)]);
      expect(stub.listShardsCalls).to.have.length(1);
      // The stream was resharded behind the producer's back.
      stub.shards = evenShards(2, 'shardId-9');
      const refreshed: string[][] = [];
      producer.on('shards.refreshed', (e) => refreshed.push(e.shardIds));
      const receipt = producer.put(2, { partitionKey: 'x' });
      await tick(10);
      expect((await receipt).shardId).to.match(/^shardId-9/);
      expect(stub.listShardsCalls).to.have.length(2);
      expect(refreshed).to.have.length(1);
      expect(producer.status().shards).to.equal(2);
    });

    it('follows ListShards pages, names the stream only on the first, and skips closed shards', async () => {
      const shards = evenShards(5);
      shards.push({
        ShardId: 'shardId-closed',
        HashKeyRange: { StartingHashKey: '0', EndingHashKey: '10' },
        SequenceNumberRange: { StartingSequenceNumber: '0', EndingSequenceNumber: '5' },
      });
      stub = new StubKinesis(shards);
      stub.pageSize = 2;
      const producer = make({ lingerMs: 0 });
      await Promise.all([producer.put(1), tick(10)]);
      expect(stub.listShardsCalls).to.deep.equal([
        { StreamName: 'test' },
        { NextToken: '2' },
        { NextToken: '4' },
      ]);
      expect(producer.status().shards).to.equal(5);
    });

    it('on() refuses an unknown event name, listing the producer events, and a listener that is no function', () => {
      const producer = make();
      let error: ShardlineError | undefined;
      try {
        producer.on('puts' as never, () => {});
      } catch (e) {
        error = e as ShardlineError;
      }
      expect(error?.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error?.message).to.equal(
        `event must be one of 'put', 'retry', 'throttled', 'error', 'shards.refreshed' (got "puts")`,
      );
      expect(() => producer.on('put', 'x' as never)).to.throw(/^listener must be a function \(got string\)$/);
    });

    it('on() returns an unsubscribe; a throwing listener is logged, not fatal', async () => {
      const logged: unknown[] = [];
      const logger: Logger = { ...silentLogger, error: (...args: unknown[]) => void logged.push(args) };
      const producer = make({ lingerMs: 0, logger });
      let calls = 0;
      const off = producer.on('put', () => {
        calls++;
        throw new Error('listener bug');
      });
      await Promise.all([producer.put(1), tick(10)]);
      off();
      await Promise.all([producer.put(2), tick(10)]);
      expect(calls).to.equal(1);
      expect(logged).to.have.length(1);
    });
  });
});
