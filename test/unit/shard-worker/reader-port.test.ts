import type { ShardlineError } from '@shardline/common';
import { codecs, ErrorCodes, PROTOCOL_VERSION, unpackRecords } from '@shardline/common';
import type { ShardReaderOptions } from '@shardline/shard-worker';
import { resolveShardReaderOptions, systemClock } from '@shardline/shard-worker';
import { expect } from 'chai';
import sinon from 'sinon';
import type { ReaderPortSettings } from '../../../packages/shard-worker/src/reader-port.js';
import { describeStart, isPort, ReaderPort } from '../../../packages/shard-worker/src/reader-port.js';
import type { UnpackedResponse } from '../../../packages/shard-worker/src/records.js';
import { unpackResponse } from '../../../packages/shard-worker/src/records.js';
import { CoordinatorEnd, jsonRecord, seq, settle } from './fake-kinesis.js';

const SHARD = 'shardId-000000000007';
const NO_COUNTERS = { throttled: 0, iteratorRefreshes: 0, transientErrors: 0 };

/** `n` JSON records `{ n }` from `from`, unpacked as a GetRecords response would be. */
function response(n: number, from = 0, options: { encoding?: 'bytes' | 'decoded' } = {}): UnpackedResponse {
  const records = Array.from({ length: n }, (_, i) => jsonRecord(from + i));
  return unpackResponse(records, codecs.json, options.encoding ?? 'decoded', undefined);
}

function emptyColumns(): UnpackedResponse['json'] {
  return {
    items: [],
    keys: new Map(),
    keyIndex: [],
    sequenceNumbers: [],
    arrivalMs: [],
    subSequenceNumbers: [],
    explicitHashKeys: [],
    traceContexts: [],
    anySubSequence: false,
    anyHashKey: false,
    anyTrace: false,
  };
}

describe('ReaderPort (the reader end of a shard data port)', () => {
  let sandbox: sinon.SinonSandbox;
  let clock: sinon.SinonFakeTimers;
  let end: CoordinatorEnd;
  let links: ReaderPort[];

  beforeEach(() => {
    sandbox = sinon.createSandbox();
    // setImmediate stays real: MessagePort deliveries need real event-loop turns.
    clock = sandbox.useFakeTimers({
      now: 1_700_000_000_000,
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date', 'performance'],
    });
    end = new CoordinatorEnd();
    links = [];
  });

  afterEach(async () => {
    await Promise.all(links.map((l) => l.stop('test over')));
    end.close();
    sandbox.restore();
  });

  function link(
    options: Partial<ShardReaderOptions> = {},
    settings: Partial<ReaderPortSettings> = {},
  ): ReaderPort {
    const l = new ReaderPort(
      end.readerPort,
      resolveShardReaderOptions({ streamName: 's', shardId: SHARD, ...options }),
      systemClock,
      { name: 'test reader', logFields: { consumer: 'test' }, abortOnPostFailure: false, ...settings },
    );
    links.push(l);
    return l;
  }

  /** Starts a loop that runs until the reader stops or `exit` is called. */
  function startIdle(l: ReaderPort): { exit(): void } {
    let exit!: () => void;
    const exited = new Promise<void>((resolve) => {
      exit = resolve;
    });
    l.start('starting', {}, async () => {
      await Promise.race([exited, new Promise((resolve) => l.signal.addEventListener('abort', resolve))]);
    });
    return { exit };
  }

  describe('credit', () => {
    it('starts at zero; credit messages add records and bytes, revoke takes records back', async () => {
      const l = link();
      expect(l.credit).to.deep.equal({ records: 0, bytes: 0 });
      end.credit(100, 1_000);
      end.credit(50, 500);
      await settle(clock);
      expect(l.credit).to.deep.equal({ records: 150, bytes: 1_500 });
      end.send({ v: PROTOCOL_VERSION, type: 'revoke', records: 200 });
      await settle(clock);
      // A fetch in flight may still bring its Limit: revoke can take the credit below zero.
      expect(l.credit).to.deep.equal({ records: -50, bytes: 1_500 });
      expect(l.status(NO_COUNTERS).credit).to.deep.equal({ records: -50, bytes: 1_500 });
    });

    it('charges each batch its records and its Kinesis bytes', async () => {
      const l = link();
      end.credit(10, 10_000);
      await settle(clock);
      const batch = response(4);
      l.sendBatch(batch);
      expect(l.credit).to.deep.equal({ records: 6, bytes: 10_000 - batch.bytes });
      // A batch larger than the credit overdraws it; the reader waits for grants to catch up.
      l.sendBatch(response(8, 4));
      expect(l.credit.records).to.equal(-2);
    });

    it('waitForCredit waits until both records and bytes are above zero, then resolves true', async () => {
      const l = link();
      let result: boolean | undefined;
      void l.waitForCredit().then((r) => {
        result = r;
      });
      await settle(clock);
      expect(result).to.equal(undefined);
      expect(l.state).to.equal('waiting-for-credit');

      end.credit(5, 0); // records but no bytes: still no credit
      await settle(clock);
      expect(result).to.equal(undefined);

      end.credit(0, 1_000);
      await settle(clock);
      expect(result).to.equal(true);
      expect(l.credit).to.deep.equal({ records: 5, bytes: 1_000 });
    });

    it('waitForCredit after a revoke to zero waits for the next grant', async () => {
      const l = link();
      end.credit(3, 1_000);
      await settle(clock);
      expect(await l.waitForCredit()).to.equal(true);
      end.send({ v: PROTOCOL_VERSION, type: 'revoke', records: 3 });
      await settle(clock);
      let woke = false;
      void l.waitForCredit().then(() => {
        woke = true;
      });
      await settle(clock);
      expect(woke).to.equal(false);
      end.credit(1, 0);
      await settle(clock);
      expect(woke).to.equal(true);
    });

    it('waitForCredit resolves false when the reader is stopped meanwhile', async () => {
      const l = link();
      const waiting = l.waitForCredit();
      await settle(clock);
      void l.stop('shutdown');
      expect(await waiting).to.equal(false);
    });

    it('waitForCredit also ends when `until` aborts, still running, so the caller can act on it', async () => {
      const l = link();
      const until = new AbortController();
      const waiting = l.waitForCredit(until.signal);
      await settle(clock);
      until.abort();
      expect(await waiting).to.equal(true);
      expect(l.running()).to.equal(true);
      expect(l.credit.records).to.equal(0);
    });
  });

  describe('acks', () => {
    it('remembers the highest batch acknowledged, whatever order acks arrive in', async () => {
      const l = link();
      expect(l.status(NO_COUNTERS).lastAckedBatchId).to.equal(undefined);
      for (const batchId of [0, 2, 1]) end.send({ v: PROTOCOL_VERSION, type: 'ack', batchId });
      await settle(clock);
      expect(l.status(NO_COUNTERS).lastAckedBatchId).to.equal(2);
    });
  });

  describe('messages out', () => {
    it("numbers batches from 0 and sends them with their last position ('bytes': payloads in the buffer)", async () => {
      const l = link({ encoding: 'bytes' });
      l.fetched(3, 100, 2_500);
      l.sendBatch(response(3, 0, { encoding: 'bytes' }));
      l.sendBatch(response(2, 3, { encoding: 'bytes' }));
      await settle(clock);
      const batches = end.of('batch');
      expect(batches.map((b) => [b.batchId, b.lastSequenceNumber, b.millisBehindLatest])).to.deep.equal([
        [0, seq(2), 2_500],
        [1, seq(4), 2_500],
      ]);
      const first = batches[0]!;
      if (first.encoding !== 'bytes') expect.fail('expected a bytes batch');
      const payloads = unpackRecords(first.records, first.buffer).map((r) =>
        new TextDecoder().decode(r.data),
      );
      expect(payloads).to.deep.equal(['{"n":0}', '{"n":1}', '{"n":2}']);
      const status = l.status({ throttled: 1, iteratorRefreshes: 2, transientErrors: 3 });
      expect(status).to.deep.include({
        shardId: SHARD,
        batchesSent: 2,
        recordsFetched: 5,
        millisBehindLatest: 2_500,
        throttled: 1,
        iteratorRefreshes: 2,
        transientErrors: 3,
      });
    });

    it('sends no batch when every record was skipped, and charges nothing', async () => {
      const l = link();
      end.credit(10, 1_000);
      await settle(clock);
      l.sendBatch({
        packed: [],
        decoded: [],
        json: emptyColumns(),
        poison: [],
        count: 0,
        last: undefined,
        bytes: 500,
        lastKinesisSequenceNumber: seq(0),
      });
      await settle(clock);
      expect(end.of('batch')).to.deep.equal([]);
      expect(l.credit).to.deep.equal({ records: 10, bytes: 1_000 });
      expect(l.status(NO_COUNTERS).batchesSent).to.equal(0);
    });

    it("carries the last record's sub-sequence number when it has one", async () => {
      const l = link({ codec: 'jsonl', encoding: 'decoded' });
      const records = [{ ...jsonRecord(0), Data: new TextEncoder().encode('1\n2\n3\n') }];
      l.sendBatch(unpackResponse(records, codecs.jsonl, 'decoded', undefined));
      await settle(clock);
      const batch = end.of('batch')[0]!;
      expect(batch).to.deep.include({ lastSequenceNumber: seq(0), lastSubSequenceNumber: 2 });
      if (batch.encoding !== 'decoded') expect.fail('expected a decoded batch');
      expect(batch.records.map((r) => r.data)).to.deep.equal([1, 2, 3]);
    });

    it('reports fetches with the time and lag, leaving out a lag that is not a valid number', async () => {
      const l = link();
      l.fetched(2, 64, 1_000);
      clock.tick(250);
      l.fetched(0, 0, -1, 2);
      await settle(clock);
      const fetched = end.of('fetched');
      expect(fetched[0]).to.deep.include({ records: 2, bytes: 64, millisBehindLatest: 1_000 });
      expect(fetched[0]!.lastFetchAtMs).to.equal(1_700_000_000_000);
      expect(fetched[0]).to.not.have.property('expiredIterators');
      expect(fetched[1]).to.not.have.property('millisBehindLatest');
      expect(fetched[1]).to.deep.include({ lastFetchAtMs: 1_700_000_000_250, expiredIterators: 2 });
      expect(l.millisBehindLatest).to.equal(undefined);
    });

    it('posts logs at or above logLevel, with the shard id and the reader fields', async () => {
      const l = link({ logLevel: 'warn' });
      l.log('info', 'not sent');
      l.log('warn', 'sent', { attempt: 2 });
      await settle(clock);
      expect(end.of('log')).to.deep.equal([
        {
          v: PROTOCOL_VERSION,
          type: 'log',
          level: 'warn',
          message: 'sent',
          fields: { shardId: SHARD, consumer: 'test', attempt: 2 },
        },
      ]);
    });
  });

  describe('bad coordinator messages', () => {
    it('are logged, not thrown, and the port keeps working', async () => {
      const l = link();
      end.port.postMessage({ v: PROTOCOL_VERSION, type: 'credit', records: 'lots' });
      end.port.postMessage({ v: 99, type: 'stop', reason: 'x' });
      end.credit(7, 70);
      await settle(clock);
      const logs = end.of('log').filter((m) => m.level === 'error');
      expect(logs).to.have.length(2);
      for (const log of logs) expect(log.message).to.match(/^ignored a bad message from the coordinator: /);
      expect(l.credit).to.deep.equal({ records: 7, bytes: 70 });
      expect(l.running()).to.equal(true);
    });
  });

  describe('lifecycle', () => {
    it('stop() before start: stopped at once, idempotent, same promise, no error sent', async () => {
      const l = link();
      const first = l.stop('shutdown');
      const second = l.stop('again');
      expect(second).to.equal(first);
      expect(await first).to.deep.equal({ shardId: SHARD, state: 'stopped' });
      expect(l.state).to.equal('stopped');
      expect(l.running()).to.equal(false);
      await settle(clock);
      expect(end.of('error')).to.deep.equal([]);
    });

    it('stop() aborts the signal with ERR_ABORTED naming the reader and the reason', () => {
      const l = link();
      void l.stop('lease lost');
      expect(l.signal.aborted).to.equal(true);
      const reason = l.signal.reason as ShardlineError;
      expect(reason.code).to.equal(ErrorCodes.ABORTED);
      expect(reason.message).to.equal('test reader stopped: lease lost');
    });

    it('start() runs the loop once; a stop while it runs resolves once the loop has exited', async () => {
      const l = link();
      let runs = 0;
      let release!: () => void;
      const loop = async () => {
        runs++;
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        expect(l.running(), 'the loop sees the stop at its next check').to.equal(false);
      };
      l.start('starting', {}, loop);
      l.start('starting again', {}, loop);
      expect(runs).to.equal(1);
      expect(l.state).to.equal('reading');
      let outcome: unknown;
      void l.stop('shutdown').then((o) => {
        outcome = o;
      });
      expect(l.state).to.equal('stopping');
      await settle(clock);
      expect(outcome, 'not before the loop exits').to.equal(undefined);
      release();
      await settle(clock);
      expect(outcome).to.deep.equal({ shardId: SHARD, state: 'stopped' });
      expect(l.state).to.equal('stopped');
    });

    it('start() after stop() does nothing', async () => {
      const l = link();
      await l.stop('shutdown');
      let ran = false;
      l.start('starting', {}, async () => {
        ran = true;
      });
      expect(ran).to.equal(false);
      expect(l.state).to.equal('stopped');
    });

    it('a stop message from the coordinator stops the reader; so does its port closing', async () => {
      const l = link();
      startIdle(l);
      end.send({ v: PROTOCOL_VERSION, type: 'stop', reason: 'handoff' });
      expect(await l.finished).to.deep.equal({ shardId: SHARD, state: 'stopped' });
      expect((l.signal.reason as ShardlineError).message).to.match(/handoff$/);

      const other = new CoordinatorEnd();
      try {
        const l2 = new ReaderPort(
          other.readerPort,
          resolveShardReaderOptions({ streamName: 's', shardId: SHARD }),
          systemClock,
          {
            name: 'test reader',
            logFields: {},
            abortOnPostFailure: false,
          },
        );
        links.push(l2);
        startIdle(l2);
        other.port.close();
        expect(await l2.finished).to.deep.equal({ shardId: SHARD, state: 'stopped' });
        expect((l2.signal.reason as ShardlineError).message).to.match(/port closed$/);
      } finally {
        other.close();
      }
    });

    it('endShard(): the outcome is ended with the children, after a shard-end message', async () => {
      const l = link();
      l.start('starting', {}, async () => {
        l.endShard(['shardId-000000000008', 'shardId-000000000009']);
      });
      const outcome = await l.finished;
      expect(outcome).to.deep.equal({
        shardId: SHARD,
        state: 'ended',
        childShardIds: ['shardId-000000000008', 'shardId-000000000009'],
      });
      expect(l.state).to.equal('ended');
      await settle(clock);
      expect(end.of('shard-end')).to.deep.equal([
        {
          v: PROTOCOL_VERSION,
          type: 'shard-end',
          shardId: SHARD,
          childShardIds: ['shardId-000000000008', 'shardId-000000000009'],
        },
      ]);
      // A stop after the end changes nothing.
      expect(await l.stop('late')).to.deep.equal(outcome);
    });

    it('fail(): the outcome is failed with the error, sent as a fatal error message', async () => {
      const l = link();
      l.start('starting', {}, async () => {
        const error = new Error('denied');
        error.name = 'AccessDeniedException';
        l.fail(error, 'GetRecords');
      });
      const outcome = await l.finished;
      expect(outcome.state).to.equal('failed');
      expect(outcome.error?.message).to.equal('denied');
      await settle(clock);
      const errors = end.of('error');
      expect(errors).to.have.length(1);
      expect(errors[0]!.fatal).to.equal(true);
      expect(errors[0]!.error).to.deep.equal(outcome.error);
      expect(end.of('log').map((m) => m.message)).to.include('fatal error in GetRecords: the reader stops');
    });

    it('a loop that throws unexpectedly fails the reader, reported as such', async () => {
      const l = link();
      l.start('starting', {}, async () => {
        throw new TypeError('a bug');
      });
      const outcome = await l.finished;
      expect(outcome.state).to.equal('failed');
      expect(outcome.error?.message).to.equal('a bug');
      await settle(clock);
      expect(end.of('error').map((m) => m.fatal)).to.deep.equal([true]);
      expect(end.of('log').map((m) => m.message)).to.include('fatal error in unexpected: the reader stops');
    });

    it('a loop that rejects because of the stop is a stop, never reported as an error', async () => {
      const l = link();
      l.start('starting', {}, async () => {
        await new Promise((_, reject) => l.signal.addEventListener('abort', () => reject(l.signal.reason)));
      });
      expect(await l.stop('shutdown')).to.deep.equal({ shardId: SHARD, state: 'stopped' });
      await settle(clock);
      expect(end.of('error')).to.deep.equal([]);
    });

    it('once finished it no longer listens to the port nor posts on it', async () => {
      const l = link();
      await l.stop('shutdown');
      end.credit(10, 10);
      l.fetched(1, 1, 0);
      l.log('error', 'after the end');
      await settle(clock);
      expect(l.credit).to.deep.equal({ records: 0, bytes: 0 });
      expect(end.messages).to.deep.equal([]);
    });
  });

  describe('a message that cannot be posted', () => {
    /** A decoded batch whose item cannot be structured-cloned (the built-in codecs never give one). */
    function uncloneable(): UnpackedResponse {
      return {
        packed: [],
        decoded: [{ data: () => 1, partitionKey: 'pk', sequenceNumber: seq(0), arrivalMs: 0 }],
        json: emptyColumns(),
        poison: [],
        count: 1,
        last: { sequenceNumber: seq(0) },
        bytes: 10,
        lastKinesisSequenceNumber: seq(0),
      };
    }

    for (const abortOnPostFailure of [false, true]) {
      it(`fails the reader with ERR_PROTOCOL and tells the coordinator (abortOnPostFailure: ${abortOnPostFailure})`, async () => {
        const l = link({ encoding: 'decoded' }, { abortOnPostFailure });
        const { exit } = startIdle(l);
        l.sendBatch(uncloneable());
        expect(l.running()).to.equal(false);
        expect(l.state).to.equal('failed');
        // Only the fan-out reader aborts at once; the GetRecords reader leaves at its next check.
        expect(l.signal.aborted).to.equal(abortOnPostFailure);
        if (abortOnPostFailure)
          expect((l.signal.reason as { code: string }).code).to.equal(ErrorCodes.PROTOCOL);
        exit();
        const outcome = await l.finished;
        expect(outcome.state).to.equal('failed');
        expect(outcome.error?.code).to.equal(ErrorCodes.PROTOCOL);
        expect(outcome.error?.message).to.equal("cannot post a 'batch' message");
        await settle(clock);
        const errors = end.of('error');
        expect(errors).to.have.length(1);
        expect(errors[0]).to.deep.include({ fatal: true, shardId: SHARD });
        expect(errors[0]!.error.code).to.equal(ErrorCodes.PROTOCOL);
        expect(end.of('batch')).to.deep.equal([]);
      });
    }

    it('a log that cannot be posted is dropped: the reader carries on', async () => {
      const l = link();
      l.log('warn', 'with a function field', { callback: () => 1 });
      expect(l.running()).to.equal(true);
      l.sendBatch(response(1));
      await settle(clock);
      expect(end.of('batch')).to.have.length(1);
      expect(end.of('error')).to.deep.equal([]);
    });

    it('after a stop was asked for, a failed post does not turn the stop into a failure', async () => {
      const l = link();
      startIdle(l);
      const stopped = l.stop('shutdown');
      l.sendBatch(uncloneable());
      expect(await stopped).to.deep.equal({ shardId: SHARD, state: 'stopped' });
      await settle(clock);
      expect(end.of('error')).to.deep.equal([]);
    });

    it('when the port refuses every post, the reader still fails cleanly and the outcome tells', async () => {
      const l = link();
      const { exit } = startIdle(l);
      sandbox.stub(end.readerPort, 'postMessage').throws(new Error('port is gone'));
      expect(() => l.fetched(1, 1, 0)).to.not.throw();
      expect(l.running()).to.equal(false);
      exit();
      const outcome = await l.finished;
      expect(outcome.state).to.equal('failed');
      expect(outcome.error?.message).to.equal("cannot post a 'fetched' message");
    });
  });

  describe('helpers', () => {
    it('isPort accepts a MessagePort and refuses what is not one', () => {
      expect(isPort(end.readerPort)).to.equal(true);
      for (const bad of [undefined, null, 5, {}, { postMessage() {} }, { postMessage() {}, on() {} }]) {
        expect(isPort(bad), String(bad)).to.equal(false);
      }
    });

    it('describeStart names the iterator type and where it starts', () => {
      expect(describeStart({ type: 'TRIM_HORIZON' })).to.equal('TRIM_HORIZON');
      expect(describeStart({ type: 'LATEST' })).to.equal('LATEST');
      expect(describeStart({ type: 'AT_TIMESTAMP', timestamp: new Date(0) })).to.equal(
        'AT_TIMESTAMP 1970-01-01T00:00:00.000Z',
      );
      expect(describeStart({ type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: '42' })).to.equal(
        'AFTER_SEQUENCE_NUMBER 42',
      );
      expect(
        describeStart({ type: 'AT_SEQUENCE_NUMBER', sequenceNumber: '42', skipThroughSubSequence: 3 }),
      ).to.equal('AT_SEQUENCE_NUMBER 42 (skipping sub-sequences <= 3)');
    });
  });
});
