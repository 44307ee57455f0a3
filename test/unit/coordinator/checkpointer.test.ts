import { SHARD_END, silentLogger } from '@shardline/common';
import { expect } from 'chai';
import sinon from 'sinon';
import { ShardCheckpointer } from '../../../packages/coordinator/src/checkpointer.js';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';
import { MemoryLeaseManager, MemoryLeaseStore } from '../../../packages/coordinator/src/leases/memory.js';
import { CrashGuard } from '../../../packages/coordinator/src/supervisor.js';
import { rejection } from '../../support/assertions.js';

describe('coordinator ShardCheckpointer', () => {
  let clock: sinon.SinonFakeTimers;
  let store: MemoryLeaseStore;
  let leases: MemoryLeaseManager;
  let counter: number;
  let lost: string[];
  let written: string[];

  beforeEach(async () => {
    clock = sinon.useFakeTimers({ now: 1_000_000 });
    store = new MemoryLeaseStore();
    leases = new MemoryLeaseManager({ hostId: 'me', leaseDurationMs: 10_000, store });
    await leases.ensureLeases([{ shardId: 's', parentShardIds: [] }]);
    counter = (await leases.acquire('s'))!.counter;
    lost = [];
    written = [];
  });

  afterEach(() => clock.restore());

  function checkpointer(mode: 'auto' | 'manual' = 'auto') {
    const events = new CoordinatorEvents(silentLogger);
    events.on('checkpoint', (e) =>
      written.push(
        e.subSequenceNumber === undefined ? e.sequenceNumber : `${e.sequenceNumber}:${e.subSequenceNumber}`,
      ),
    );
    return new ShardCheckpointer({
      shardId: 's',
      counter,
      leases,
      mode,
      intervalMs: 5_000,
      events,
      logger: silentLogger,
      initial: undefined,
      onLeaseLost: (e) => lost.push(e.code),
    });
  }

  it('auto: writes the latest processed position at most every intervalMs', async () => {
    const c = checkpointer();
    c.processed({ sequenceNumber: '10' });
    c.processed({ sequenceNumber: '20', subSequenceNumber: 3 });
    await clock.tickAsync(4_999);
    expect(written).to.deep.equal([]);
    await clock.tickAsync(1);
    expect(written).to.deep.equal(['20:3']);
    expect((await leases.getLease('s'))!.checkpoint).to.deep.equal({
      sequenceNumber: '20',
      subSequenceNumber: 3,
    });
    c.processed({ sequenceNumber: '30' });
    await c.flush();
    expect(written).to.deep.equal(['20:3', '30']);
    await clock.tickAsync(10_000);
    expect(written).to.deep.equal(['20:3', '30']);
  });

  it('never writes backwards, and SHARD_END is final', async () => {
    const c = checkpointer('manual');
    await c.write({ sequenceNumber: '20' });
    await c.write({ sequenceNumber: '20', subSequenceNumber: 1 });
    await c.write({ sequenceNumber: '9' });
    await c.end();
    await c.write({ sequenceNumber: '99' });
    expect(written).to.deep.equal(['20', SHARD_END]);
  });

  it('manual: processed positions are not written; flush() writes nothing', async () => {
    const c = checkpointer('manual');
    c.processed({ sequenceNumber: '10' });
    await clock.tickAsync(10_000);
    await c.flush();
    expect(written).to.deep.equal([]);
    expect(c.resumeFrom).to.deep.equal({ sequenceNumber: '10' });
  });

  it('a manual write after the lease was let go is refused with ERR_LEASE_LOST', async () => {
    const c = checkpointer('manual');
    c.close();
    const error = await rejection(c.write({ sequenceNumber: '10' }));
    expect(error.code).to.equal('ERR_LEASE_LOST');
    expect(written).to.deep.equal([]);
  });

  it('a write refused because the lease moved reports the loss and stops writing', async () => {
    const c = checkpointer();
    await clock.tickAsync(10_001);
    const other = new MemoryLeaseManager({ hostId: 'other', leaseDurationMs: 10_000, store });
    expect(await other.acquire('s')).to.not.equal(undefined);
    c.processed({ sequenceNumber: '10' });
    const error = await rejection(c.flush());
    expect(error.code).to.equal('ERR_LEASE_LOST');
    expect(lost).to.deep.equal(['ERR_LEASE_LOST']);
    expect(written).to.deep.equal([]);
  });
});

describe('coordinator CrashGuard', () => {
  it('allows restarts until maxCrashes within the window', () => {
    let now = 0;
    const guard = new CrashGuard(3, 60_000, () => now);
    expect(guard.crashed('a')).to.equal(true);
    expect(guard.crashed('a')).to.equal(true);
    expect(guard.crashed('b')).to.equal(true);
    expect(guard.crashed('a')).to.equal(false);
    now = 120_000;
    expect(guard.crashed('a')).to.equal(true);
  });
});
