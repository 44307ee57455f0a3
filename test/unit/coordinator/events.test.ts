import { ErrorCodes, type Logger, ShardlineError } from '@shardline/common';
import { expect } from 'chai';
import sinon from 'sinon';
import { COORDINATOR_EVENT_NAMES, CoordinatorEvents } from '../../../packages/coordinator/src/events.js';

function recordingLogger() {
  const errors: Array<{ fields: Record<string, unknown>; message: string | undefined }> = [];
  const logger: Logger = {
    debug() {},
    info() {},
    warn() {},
    error(fields: unknown, message?: unknown) {
      errors.push({ fields: fields as Record<string, unknown>, message: message as string | undefined });
    },
  };
  return { logger, errors };
}

describe('coordinator events', () => {
  it('delivers typed payloads to every listener, in subscription order', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const seen: string[] = [];
    events.on('lease.acquired', (p) => seen.push(`a:${p.shardId}:${p.counter}`));
    events.on('lease.acquired', (p) => seen.push(`b:${p.shardId}`));
    events.on('shard.ended', (p) => seen.push(`ended:${p.childShardIds.join(',')}`));
    events.emit('lease.acquired', { shardId: 's-1', counter: 3 });
    events.emit('shard.ended', { shardId: 's-1', childShardIds: ['s-2', 's-3'] });
    expect(seen).to.deep.equal(['a:s-1:3', 'b:s-1', 'ended:s-2,s-3']);
  });

  it('on() returns an idempotent unsubscribe that removes only that subscription', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const calls: string[] = [];
    const listener = (p: { shardId: string }) => calls.push(p.shardId);
    const first = events.on('throttled', listener);
    events.on('throttled', listener);
    expect(events.listenerCount('throttled')).to.equal(2);
    first();
    first();
    expect(events.listenerCount('throttled')).to.equal(1);
    events.emit('throttled', { shardId: 'x', delayMs: 10 });
    expect(calls).to.deep.equal(['x']);
  });

  it('once() fires a single time', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    let count = 0;
    events.once('checkpoint', () => count++);
    events.emit('checkpoint', { shardId: 's', sequenceNumber: '1', counter: 1 });
    events.emit('checkpoint', { shardId: 's', sequenceNumber: '2', counter: 1 });
    expect(count).to.equal(1);
    expect(events.listenerCount('checkpoint')).to.equal(0);
  });

  it('logs a throwing listener and still calls the others; emit never throws', () => {
    const { logger, errors } = recordingLogger();
    const events = new CoordinatorEvents(logger);
    const later: string[] = [];
    events.on('lease.lost', () => {
      throw new Error('listener bug');
    });
    events.on('lease.lost', (p) => later.push(p.reason));
    expect(() => events.emit('lease.lost', { shardId: 's', counter: 1, reason: 'fenced' })).to.not.throw();
    expect(later).to.deep.equal(['fenced']);
    expect(errors).to.have.length(1);
    expect(errors[0]!.message).to.include("'lease.lost' event listener threw");
    expect((errors[0]!.fields.err as { message: string }).message).to.equal('listener bug');
  });

  it('logs a listener whose promise rejects', async () => {
    const { logger, errors } = recordingLogger();
    const events = new CoordinatorEvents(logger);
    events.on('warning', async () => {
      throw new Error('async bug');
    });
    events.emit('warning', { code: 'insufficient-capacity', message: 'm' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).to.have.length(1);
    expect((errors[0]!.fields.err as { message: string }).message).to.equal('async bug');
  });

  it('survives a logger that throws too', () => {
    const events = new CoordinatorEvents({
      debug() {},
      info() {},
      warn() {},
      error() {
        throw new Error('logger down');
      },
    });
    events.on('error', () => {
      throw new Error('x');
    });
    const error = new ShardlineError(ErrorCodes.TRANSIENT, 'boom');
    expect(() => events.emit('error', { error })).to.not.throw();
  });

  it('does not throw for an error event without listeners (unlike EventEmitter)', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    expect(() =>
      events.emit('error', { error: new ShardlineError(ErrorCodes.INTERNAL, 'x') }),
    ).to.not.throw();
  });

  it('skips listeners removed during an emit and defers those added during it', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const calls: string[] = [];
    let offB: () => void = () => {};
    events.on('shard.started', () => {
      calls.push('a');
      offB();
      events.on('shard.started', () => calls.push('c'));
    });
    offB = events.on('shard.started', () => calls.push('b'));
    events.emit('shard.started', { shardId: 's', position: 'TRIM_HORIZON' });
    expect(calls).to.deep.equal(['a']);
    events.emit('shard.started', { shardId: 's', position: 'TRIM_HORIZON' });
    expect(calls).to.deep.equal(['a', 'a', 'c']);
  });

  it('rejects unknown event names and non-function listeners', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const bad = () => events.on('lease.acquire' as never, () => {});
    expect(bad).to.throw(/event must be one of 'lease.acquired'/);
    try {
      bad();
    } catch (error) {
      expect((error as ShardlineError).code).to.equal(ErrorCodes.INVALID_OPTION);
    }
    expect(() => events.on('error', 'nope' as never)).to.throw(/listener must be a function/);
  });

  it('knows every event API.md lists, plus warning', () => {
    expect([...COORDINATOR_EVENT_NAMES].sort()).to.deep.equal(
      [
        'lease.acquired',
        'lease.lost',
        'lease.released',
        'shard.ended',
        'shard.started',
        'batch.processed',
        'checkpoint',
        'throttled',
        'handler.failed',
        'worker.crashed',
        'error',
        'warning',
      ].sort(),
    );
    const events = new CoordinatorEvents(recordingLogger().logger);
    for (const name of COORDINATOR_EVENT_NAMES) {
      const spy = sinon.spy();
      events.on(name, spy);
      events.emit(name, {} as never);
      expect(spy.calledOnce, name).to.equal(true);
    }
  });

  it('clear() drops every listener', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const spy = sinon.spy();
    events.on('batch.processed', spy);
    events.clear();
    events.emit('batch.processed', { shardId: 's', records: 1, durationMs: 1 });
    expect(spy.called).to.equal(false);
  });
});
