import type { Shard } from '@aws-sdk/client-kinesis';
import { expect } from 'chai';
import { type DemoRun, demoResult } from '../../../packages/cli/src/demo/result.js';
import { planSplit } from '../../../packages/cli/src/demo/split.js';
import { DeliveryTally } from '../../../packages/cli/src/demo/tally.js';

function run(fields: Partial<DemoRun> = {}): DemoRun {
  return {
    stream: 'shardline-demo',
    redisUrl: undefined,
    keyPrefix: 'p',
    requested: 4,
    requestedRate: 100,
    achievedRate: 90,
    produced: 4,
    failedPuts: 0,
    firstPutError: undefined,
    tally: new DeliveryTally(),
    reason: undefined,
    hostFailures: [],
    split: undefined,
    shards: [],
    hosts: undefined,
    failover: undefined,
    metricsUrl: undefined,
    durationMs: 1_000,
    ...fields,
  };
}

describe('demo result', () => {
  it('holds when every produced record was delivered once per key in order', () => {
    const tally = new DeliveryTally();
    for (const seq of [0, 1]) for (const key of ['a', 'b']) tally.add({ key, seq });
    tally.add({ key: 'a', seq: 1 }); // a redelivery: at-least-once, not a failure
    const result = demoResult(run({ tally, redisUrl: 'redis://127.0.0.1:6379' }));
    expect(result).to.deep.include({
      ok: true,
      produced: 4,
      lost: 0,
      orderKept: true,
      keys: 2,
      consumed: { unique: 4, duplicates: 1, total: 5 },
      leases: { store: 'redis', url: 'redis://127.0.0.1:6379', keyPrefix: 'p' },
      rate: { requested: 100, achieved: 90 },
    });
    expect(result).to.not.have.property('reason');
  });

  it('fails naming every problem: lost records, failed puts, broken order, failed hosts', () => {
    const tally = new DeliveryTally();
    tally.add({ key: 'a', seq: 1 });
    tally.add({ key: 'a', seq: 0 });
    const result = demoResult(
      run({ tally, failedPuts: 2, firstPutError: new Error('throttled'), hostFailures: ['host-2: exit 1'] }),
    );
    expect(result.ok).to.equal(false);
    expect(result.lost).to.equal(2);
    expect(result.orderKept).to.equal(false);
    expect(result.reason).to.match(
      /^2 puts failed \(throttled\); 2 records lost; per-key order broken: .*; hosts failed: host-2: exit 1$/,
    );
    expect(result.leases).to.deep.equal({ store: 'memory' });
  });

  it('a timeout is the reason, not the records it left undelivered', () => {
    const result = demoResult(
      run({ reason: 'timed out after 60s waiting for the consumer (0 of 4 records delivered)' }),
    );
    expect(result.reason).to.equal('timed out after 60s waiting for the consumer (0 of 4 records delivered)');
    expect(result.lost).to.equal(4);
  });
});

describe('demo split plan', () => {
  const shard = (id: string, start: string, end: string, closed = false): Shard => ({
    ShardId: id,
    HashKeyRange: { StartingHashKey: start, EndingHashKey: end },
    SequenceNumberRange: { StartingSequenceNumber: '1', ...(closed ? { EndingSequenceNumber: '2' } : {}) },
  });

  it('splits the open shard with the lowest id in the middle of its range', () => {
    const plan = planSplit([
      shard('shardId-2', '0', '99'),
      shard('shardId-0', '0', '9', true),
      shard('shardId-1', '10', '20'),
    ]);
    expect(plan).to.deep.equal({ parent: 'shardId-1', hashKey: '16', children: [] });
  });

  it('refuses a stream without an open shard', () => {
    expect(() => planSplit([shard('shardId-0', '0', '9', true)])).to.throw(/no open shard to split/);
  });
});
