import { ErrorCodes, type Logger, ShardlineError } from '@shardline/common';
import { expect } from 'chai';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';

function thrown(fn: () => unknown): ShardlineError {
  try {
    fn();
  } catch (error) {
    return error as ShardlineError;
  }
  expect.fail('expected an error, but the call returned');
}

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
    const later: string[] = [];
    events.on('error', (p) => later.push(p.error.message));
    const error = new ShardlineError(ErrorCodes.TRANSIENT, 'boom');
    expect(() => events.emit('error', { error })).to.not.throw();
    expect(later).to.deep.equal(['boom']);
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

  it('once() fires a single time even when its listener throws, and can be cancelled before it fires', () => {
    const { logger, errors } = recordingLogger();
    const events = new CoordinatorEvents(logger);
    let throwing = 0;
    events.once('throttled', () => {
      throwing++;
      throw new Error('once bug');
    });
    let cancelled = 0;
    const cancel = events.once('throttled', () => cancelled++);
    cancel();
    events.emit('throttled', { shardId: 's', delayMs: 1 });
    events.emit('throttled', { shardId: 's', delayMs: 2 });
    expect(throwing).to.equal(1);
    expect(cancelled).to.equal(0);
    expect(errors).to.have.length(1);
    expect(events.listenerCount('throttled')).to.equal(0);
  });

  it('rejects an unknown event name with a ShardlineOptionError naming the event and the valid ones', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    for (const subscribe of [events.on.bind(events), events.once.bind(events)]) {
      const error = thrown(() => subscribe('lease.acquire' as never, () => {}));
      expect(error.name).to.equal('ShardlineOptionError');
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.retriable).to.equal(false);
      expect(error.message).to.match(/^event must be one of 'lease\.acquired', /);
      expect(error.message).to.include(`(got "lease.acquire")`);
      expect(error.details).to.deep.equal({ option: 'event' });
    }
    expect(thrown(() => events.on(42 as never, () => {})).message).to.include('(got 42)');
    expect(events.listenerCount('lease.acquired')).to.equal(0);
  });

  it('rejects a listener that is not a function, naming it', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const error = thrown(() => events.on('error', 'nope' as never));
    expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
    expect(error.message).to.equal('listener must be a function (got string)');
    expect(events.listenerCount('error')).to.equal(0);
  });

  it('accepts every event of the public contract, and a listener hears only its own event', () => {
    // The names users subscribe to (API.md, plus 'warning'): renaming one breaks their code.
    const documented = [
      'lease.acquired',
      'lease.lost',
      'lease.released',
      'shard.started',
      'shard.ended',
      'batch.processed',
      'checkpoint',
      'throttled',
      'handler.failed',
      'worker.crashed',
      'error',
      'warning',
    ] as const;
    const events = new CoordinatorEvents(recordingLogger().logger);
    const heard: Array<[string, unknown]> = [];
    for (const name of documented) events.on(name, (payload) => heard.push([name, payload]));
    const payloads = documented.map((name) => ({ sent: name }));
    documented.forEach((name, i) => {
      events.emit(name, payloads[i] as never);
    });
    expect(heard).to.have.length(documented.length);
    heard.forEach(([name, payload], i) => {
      expect(name).to.equal(documented[i]);
      expect(payload, `${name} gets the very payload emitted`).to.equal(payloads[i]);
    });
  });

  it('clear() drops every listener: later emits reach none, new subscriptions work', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const heard: string[] = [];
    events.on('batch.processed', (p) => heard.push(`batch:${p.records}`));
    events.once('checkpoint', (p) => heard.push(`checkpoint:${p.sequenceNumber}`));
    events.clear();
    events.emit('batch.processed', { shardId: 's', records: 1, durationMs: 1 });
    events.emit('checkpoint', { shardId: 's', sequenceNumber: '1', counter: 1 });
    expect(heard).to.deep.equal([]);
    expect(events.listenerCount('batch.processed')).to.equal(0);
    events.on('batch.processed', (p) => heard.push(`after:${p.records}`));
    events.emit('batch.processed', { shardId: 's', records: 2, durationMs: 1 });
    expect(heard).to.deep.equal(['after:2']);
  });
});
