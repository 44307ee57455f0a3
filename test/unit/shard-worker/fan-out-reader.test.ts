import type { ShardlineError } from '@shardline/common';
import { batchToRecords, codecs, ErrorCodes } from '@shardline/common';
import type { FanOutReaderOptions } from '@shardline/shard-worker';
import { FanOutReader } from '@shardline/shard-worker';
import { expect } from 'chai';
import sinon from 'sinon';
import { FakeFanOut } from './fake-fan-out.js';
import {
  advance,
  awsError,
  CoordinatorEnd,
  jsonRecord,
  type StoredRecord,
  seq,
  settle,
} from './fake-kinesis.js';

const SHARD = 'shardId-000000000000';
const CONSUMER_ARN = 'arn:aws:kinesis:us-east-1:000000000000:stream/s/consumer/c:1700000000';

function records(n: number, from = 0): StoredRecord[] {
  return Array.from({ length: n }, (_, i) => jsonRecord(from + i));
}

/** The `n` of every record delivered, in order. */
function delivered(end: CoordinatorEnd): number[] {
  return end
    .of('batch')
    .flatMap((b) => batchToRecords<{ n: number }>(b, codecs.json))
    .map((r) => (r.ok ? r.record.data.n : -1));
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

describe('FanOutReader', () => {
  let clock: sinon.SinonFakeTimers;
  let end: CoordinatorEnd;
  let readers: FanOutReader[];

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
    const stopping = Promise.all(readers.map((r) => r.stop('test over')));
    await settle(clock);
    await stopping;
    end.close();
    clock.restore();
  });

  function reader(fake: FakeFanOut, options: Partial<FanOutReaderOptions> = {}, probe = false): FanOutReader {
    const r = new FanOutReader(
      end.readerPort,
      fake,
      { streamName: 's', shardId: SHARD, consumerArn: CONSUMER_ARN, ...options },
      { random: () => 0.5, ...(probe ? { shardEndProbe: fake } : {}) },
    );
    readers.push(r);
    return r;
  }

  it('delivers every record in order, one batch per event, and resumes after the service ends a subscription from the last continuation', async () => {
    const fake = new FakeFanOut(records(30));
    fake.eventsPerSubscription = 2;
    const r = reader(fake);
    end.credit(1_000);
    r.start();
    await advance(clock, 12_000, 100);
    expect(delivered(end)).to.deep.equal(range(30));
    expect(fake.calls[0]!.input.StartingPosition).to.deep.equal({ Type: 'TRIM_HORIZON' });
    expect(fake.calls[0]!.input.ConsumerARN).to.equal(CONSUMER_ARN);
    // Each later subscription starts right after the last record of the previous one (no gap, no repeat).
    expect(fake.calls[1]!.input.StartingPosition).to.deep.equal({
      Type: 'AFTER_SEQUENCE_NUMBER',
      SequenceNumber: seq(5),
    });
    expect(fake.calls.length).to.be.greaterThan(4);
    expect(end.of('error')).to.deep.equal([]);
    expect(end.of('fetched').length).to.be.greaterThan(9);
    expect(r.status()).to.include({ recordsFetched: 30, state: 'reading' });
  });

  it('renews the subscription before subscriptionRenewMs (fake time), from the continuation, losing nothing', async () => {
    const fake = new FakeFanOut(records(12));
    fake.perEvent = 1;
    const r = reader(fake, { subscriptionRenewMs: 3_500 });
    end.credit(1_000);
    r.start();
    await advance(clock, 4_000, 100);
    // Renewed at 3.5 s after 3 events (records 0..2): the new subscription starts after record 2.
    expect(fake.calls).to.have.length(2);
    expect(fake.calls[1]!.at - fake.calls[0]!.at).to.equal(3_500);
    expect(fake.calls[1]!.input.StartingPosition).to.deep.equal({
      Type: 'AFTER_SEQUENCE_NUMBER',
      SequenceNumber: seq(2),
    });
    await advance(clock, 12_000, 100);
    expect(delivered(end)).to.deep.equal(range(12));
    expect(r.status().iteratorRefreshes).to.be.greaterThan(2);
    expect(end.of('error')).to.deep.equal([]);
  });

  it('ResourceInUseException while the previous subscription is still open: backs off with jitter and subscribes again, not reported as an error', async () => {
    const fake = new FakeFanOut(records(9));
    fake.eventsPerSubscription = 1;
    fake.holdMs = 2_000;
    const r = reader(fake, { errorBackoffMs: { initial: 400, max: 1_000 } });
    end.credit(1_000);
    r.start();
    await advance(clock, 20_000, 100);
    expect(delivered(end)).to.deep.equal(range(9));
    const inUse = fake.inUseAnswers;
    expect(inUse, 'ResourceInUse answers').to.be.greaterThan(2);
    // Backoff: with random() = 0.5 the waits are 200, 400, 500, 500 ms: never a hot loop.
    const gaps = fake.calls.slice(1).map((c, i) => c.at - fake.calls[i]!.at);
    expect(Math.min(...gaps)).to.be.at.least(200);
    expect(end.of('error')).to.deep.equal([]);
    expect(r.status().transientErrors).to.equal(inUse);
  });

  it('a dropped stream (ECONNRESET mid-subscription) is a non-fatal error; the reader resumes after the last record handed out', async () => {
    const fake = new FakeFanOut(records(15));
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    fake.drops.push({ afterEvents: 2, error: reset });
    const r = reader(fake);
    end.credit(1_000);
    r.start();
    await advance(clock, 10_000, 100);
    expect(delivered(end)).to.deep.equal(range(15));
    const errors = end.of('error');
    expect(errors).to.have.length(1);
    expect(errors[0]).to.include({ fatal: false });
    expect(errors[0]!.error.code).to.equal(ErrorCodes.TRANSIENT);
    expect(fake.calls[1]!.input.StartingPosition).to.deep.equal({
      Type: 'AFTER_SEQUENCE_NUMBER',
      SequenceNumber: seq(5),
    });
  });

  it('LimitExceededException (too many subscribe calls) is a throttle: a throttled message, backoff, then reading on', async () => {
    const fake = new FakeFanOut(records(3));
    fake.failures.push(awsError('LimitExceededException', 'Rate exceeded'));
    const r = reader(fake);
    end.credit(1_000);
    r.start();
    await advance(clock, 4_000, 100);
    expect(end.of('throttled')).to.have.length(1);
    expect(delivered(end)).to.deep.equal(range(3));
    expect(r.status().throttled).to.equal(1);
  });

  it('out of credit it stops pulling events, and goes on from there when credit comes', async () => {
    const fake = new FakeFanOut(records(30));
    const r = reader(fake);
    end.credit(5);
    r.start();
    await advance(clock, 10_000, 100);
    // Two events of 3: the second batch overdraws the credit; nothing more is pulled.
    expect(delivered(end)).to.deep.equal(range(6));
    expect(r.state).to.equal('waiting-for-credit');
    expect(r.status().credit.records).to.equal(-1);
    // Credit revoked below zero: a grant that does not bring it above zero pulls nothing.
    end.send({ v: 1, type: 'revoke', records: 4 });
    end.credit(5);
    await advance(clock, 4_000, 100);
    expect(r.status().credit.records).to.equal(0);
    expect(delivered(end)).to.deep.equal(range(6));
    end.credit(100);
    await advance(clock, 12_000, 100);
    expect(delivered(end)).to.deep.equal(range(30));
    expect(fake.calls, 'the subscription was kept').to.have.length(1);
  });

  it('credit exhausted past the renewal time: the subscription is renewed from where it stopped once credit comes', async () => {
    const fake = new FakeFanOut(records(12));
    const r = reader(fake, { subscriptionRenewMs: 5_000 });
    end.credit(3);
    r.start();
    await advance(clock, 8_000, 100);
    expect(delivered(end)).to.deep.equal(range(3));
    end.credit(100);
    await advance(clock, 8_000, 100);
    expect(delivered(end)).to.deep.equal(range(12));
    expect(fake.calls.length).to.be.at.least(2);
    expect(fake.calls[1]!.input.StartingPosition).to.deep.equal({
      Type: 'AFTER_SEQUENCE_NUMBER',
      SequenceNumber: seq(2),
    });
  });

  it('shard end from the subscription: ChildShards in the event with no continuation', async () => {
    const fake = new FakeFanOut(records(5));
    fake.closed = true;
    fake.children = ['shardId-000000000001', 'shardId-000000000002'];
    const r = reader(fake);
    end.credit(1_000);
    r.start();
    await advance(clock, 3_000, 100);
    const outcome = await r.finished;
    expect(outcome).to.deep.equal({
      shardId: SHARD,
      state: 'ended',
      childShardIds: ['shardId-000000000001', 'shardId-000000000002'],
    });
    expect(delivered(end)).to.deep.equal(range(5));
    expect(end.of('shard-end')).to.have.length(1);
    expect(end.of('shard-end')[0]!.childShardIds).to.deep.equal(fake.children);
  });

  it('shard end where the service sends no ChildShards: found by the shard-end probe, only after an idle event that follows it', async () => {
    const fake = new FakeFanOut(records(6));
    // An open subscription that never ends the shard itself (kinesis-mock).
    fake.endsShard = false;
    const r = reader(fake, { shardEndCheckIntervalMs: 2_000 }, true);
    end.credit(1_000);
    r.start();
    await advance(clock, 6_000, 100);
    expect(delivered(end)).to.deep.equal(range(6));
    expect(end.of('shard-end')).to.have.length(0);
    expect(fake.probes).to.be.greaterThan(0);
    fake.closed = true;
    fake.records.push(...records(2, 6)); // written just before the close
    await advance(clock, 8_000, 100);
    const outcome = await r.finished;
    expect(outcome.state).to.equal('ended');
    expect(outcome.childShardIds).to.deep.equal(['shardId-000000000009']);
    expect(delivered(end)).to.deep.equal(range(8));
  });

  it('starts AT_SEQUENCE_NUMBER from a KPL sub-sequence checkpoint, AT_TIMESTAMP and LATEST as polling does', async () => {
    const fake = new FakeFanOut(records(3));
    reader(fake, { checkpoint: { sequenceNumber: seq(1), subSequenceNumber: 0 } }).start();
    const at = new Date(1_600_000_000_000);
    const end2 = new CoordinatorEnd();
    const r2 = new FanOutReader(end2.readerPort, fake, {
      streamName: 's',
      shardId: SHARD,
      consumerArn: CONSUMER_ARN,
      initialPosition: { timestamp: at },
    });
    readers.push(r2);
    end.credit(10);
    end2.credit(10);
    await settle(clock);
    r2.start();
    await settle(clock);
    expect(fake.calls[0]!.input.StartingPosition).to.deep.equal({
      Type: 'AT_SEQUENCE_NUMBER',
      SequenceNumber: seq(1),
    });
    expect(fake.calls[1]!.input.StartingPosition).to.deep.equal({ Type: 'AT_TIMESTAMP', Timestamp: at });
    end2.close();
  });

  it('ResourceNotFoundException is fatal: an error message with fatal: true and a failed outcome', async () => {
    const fake = new FakeFanOut([]);
    fake.failures.push(awsError('ResourceNotFoundException', 'Consumer not found'));
    const r = reader(fake);
    end.credit(10);
    r.start();
    await settle(clock);
    const outcome = await r.finished;
    expect(outcome.state).to.equal('failed');
    expect(outcome.error?.code).to.equal(ErrorCodes.NOT_FOUND);
    expect(end.of('error')[0]).to.include({ fatal: true });
  });

  it('stop() ends the open subscription; idempotent; no message after it', async () => {
    const fake = new FakeFanOut(records(30));
    const r = reader(fake);
    end.credit(1_000);
    r.start();
    await advance(clock, 2_500, 100);
    const count = end.messages.length;
    const stopping = r.stop('test');
    await settle(clock);
    expect(await stopping).to.deep.equal({ shardId: SHARD, state: 'stopped' });
    expect(await r.stop()).to.deep.equal({ shardId: SHARD, state: 'stopped' });
    await advance(clock, 3_000, 100);
    expect(end.messages.length).to.equal(count);
    expect(fake.active).to.equal(0);
  });

  it('rejects bad options, naming them', () => {
    const fake = new FakeFanOut([]);
    const make = (options: Partial<FanOutReaderOptions>) => () =>
      new FanOutReader(end.readerPort, fake, {
        streamName: 's',
        shardId: SHARD,
        consumerArn: CONSUMER_ARN,
        ...options,
      } as FanOutReaderOptions);
    const thrown = (fn: () => unknown): ShardlineError => {
      try {
        fn();
      } catch (error) {
        return error as ShardlineError;
      }
      expect.fail('expected an error');
    };
    expect(thrown(make({ consumerArn: 'nope' })).message).to.contain('consumerArn');
    expect(thrown(make({ subscriptionRenewMs: 0 })).message).to.contain('subscriptionRenewMs');
    expect(thrown(make({ subscriptionRenewMs: 301_000 })).message).to.contain('subscriptionRenewMs');
    expect(thrown(make({ shardEndCheckIntervalMs: -1 })).message).to.contain('shardEndCheckIntervalMs');
    expect(thrown(make({ shardId: '' })).code).to.equal(ErrorCodes.INVALID_OPTION);
  });
});
