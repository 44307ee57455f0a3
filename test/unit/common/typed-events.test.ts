import { ErrorCodes, type Logger, type ShardlineError, TypedEvents } from '@shardline/common';
import { expect } from 'chai';

interface TestEvents {
  started: { id: string };
  stopped: { id: string; reason: string };
  error: { error: Error };
}

const NAMES = ['started', 'stopped', 'error'] as const;

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

function make(logger: Logger = recordingLogger().logger, label?: string) {
  return new TypedEvents<TestEvents>(NAMES, label === undefined ? { logger } : { logger, label });
}

describe('TypedEvents', () => {
  it('delivers each payload, unchanged, to the listeners of its event only, in subscription order', () => {
    const events = make();
    const seen: string[] = [];
    const payload = { id: 'a' };
    events.on('started', (p) => {
      expect(p).to.equal(payload);
      seen.push(`1:${p.id}`);
    });
    events.on('started', (p) => seen.push(`2:${p.id}`));
    events.on('stopped', (p) => seen.push(`stopped:${p.reason}`));
    events.emit('started', payload);
    events.emit('stopped', { id: 'a', reason: 'done' });
    expect(seen).to.deep.equal(['1:a', '2:a', 'stopped:done']);
  });

  it('on() returns an idempotent unsubscribe that removes only that subscription', () => {
    const events = make();
    const calls: string[] = [];
    const listener = (p: { id: string }) => calls.push(p.id);
    const first = events.on('started', listener);
    events.on('started', listener);
    expect(events.listenerCount('started')).to.equal(2);
    first();
    first();
    expect(events.listenerCount('started')).to.equal(1);
    events.emit('started', { id: 'x' });
    expect(calls).to.deep.equal(['x']);
  });

  it('once() fires a single time', () => {
    const events = make();
    let count = 0;
    events.once('started', () => count++);
    events.emit('started', { id: '1' });
    events.emit('started', { id: '2' });
    expect(count).to.equal(1);
    expect(events.listenerCount('started')).to.equal(0);
  });

  it('once() fires a single time even when its listener throws, and can be cancelled before it fires', () => {
    const { logger, errors } = recordingLogger();
    const events = make(logger);
    let throwing = 0;
    events.once('stopped', () => {
      throwing++;
      throw new Error('once bug');
    });
    let cancelled = 0;
    const cancel = events.once('stopped', () => cancelled++);
    cancel();
    cancel();
    events.emit('stopped', { id: 's', reason: 'a' });
    events.emit('stopped', { id: 's', reason: 'b' });
    expect(throwing).to.equal(1);
    expect(cancelled).to.equal(0);
    expect(errors).to.have.length(1);
    expect(events.listenerCount('stopped')).to.equal(0);
  });

  it('logs a throwing listener (event, error, label) and still calls the others; emit never throws', () => {
    const { logger, errors } = recordingLogger();
    const events = make(logger, 'my thing');
    const later: string[] = [];
    events.on('stopped', () => {
      throw new Error('listener bug');
    });
    events.on('stopped', (p) => later.push(p.reason));
    expect(() => events.emit('stopped', { id: 's', reason: 'fenced' })).to.not.throw();
    expect(later).to.deep.equal(['fenced']);
    expect(errors).to.have.length(1);
    expect(errors[0]!.message).to.equal("my thing: a 'stopped' event listener threw");
    expect(errors[0]!.fields.event).to.equal('stopped');
    expect((errors[0]!.fields.err as { message: string }).message).to.equal('listener bug');
  });

  it('logs a listener whose promise rejects', async () => {
    const { logger, errors } = recordingLogger();
    const events = make(logger);
    events.on('started', async () => {
      throw new Error('async bug');
    });
    events.emit('started', { id: 'a' });
    await new Promise((resolve) => setImmediate(resolve));
    expect(errors).to.have.length(1);
    expect(errors[0]!.message).to.equal("a 'started' event listener threw");
    expect((errors[0]!.fields.err as { message: string }).message).to.equal('async bug');
  });

  it('survives a logger that throws too, and is silent without a logger', () => {
    const events = make({
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
    expect(() => events.emit('error', { error: new Error('boom') })).to.not.throw();
    expect(later).to.deep.equal(['boom']);
    const silent = new TypedEvents<TestEvents>(NAMES);
    silent.on('started', () => {
      throw new Error('nobody hears this');
    });
    expect(() => silent.emit('started', { id: 'a' })).to.not.throw();
  });

  it('does not throw for an error event without listeners (unlike EventEmitter)', () => {
    expect(() => make().emit('error', { error: new Error('x') })).to.not.throw();
  });

  it('skips listeners removed during an emit and defers those added during it', () => {
    const events = make();
    const calls: string[] = [];
    let offB: () => void = () => {};
    events.on('started', () => {
      calls.push('a');
      offB();
      events.on('started', () => calls.push('c'));
    });
    offB = events.on('started', () => calls.push('b'));
    events.emit('started', { id: 's' });
    expect(calls).to.deep.equal(['a']);
    events.emit('started', { id: 's' });
    expect(calls).to.deep.equal(['a', 'a', 'c']);
  });

  it('rejects an unknown event name with a ShardlineOptionError naming the event and listing the known ones', () => {
    const events = make();
    for (const subscribe of [events.on.bind(events), events.once.bind(events)]) {
      const error = thrown(() => subscribe('start' as never, () => {}));
      expect(error.name).to.equal('ShardlineOptionError');
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.retriable).to.equal(false);
      expect(error.message).to.equal(`event must be one of 'started', 'stopped', 'error' (got "start")`);
      expect(error.details).to.deep.equal({ option: 'event' });
    }
    expect(thrown(() => events.on(42 as never, () => {})).message).to.include('(got 42)');
    expect(thrown(() => events.on('toString' as never, () => {})).message).to.include('(got "toString")');
    expect(events.listenerCount()).to.equal(0);
    const single = new TypedEvents<{ request: number }>(['request']);
    expect(thrown(() => single.on('requests' as never, () => {})).message).to.equal(
      `event must be 'request' (got "requests")`,
    );
  });

  it('rejects a listener that is not a function, naming it', () => {
    const events = make();
    const error = thrown(() => events.on('error', 'nope' as never));
    expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
    expect(error.message).to.equal('listener must be a function (got string)');
    expect(events.listenerCount('error')).to.equal(0);
  });

  it('listenerCount() without an event counts every subscription; names lists the events', () => {
    const events = make();
    events.on('started', () => {});
    events.once('stopped', () => {});
    events.on('stopped', () => {});
    expect(events.listenerCount()).to.equal(3);
    expect(events.listenerCount('error')).to.equal(0);
    expect(events.names).to.deep.equal(['started', 'stopped', 'error']);
    expect(Object.isFrozen(events.names)).to.equal(true);
  });

  it('clear() drops every listener: later emits reach none, new subscriptions work', () => {
    const events = make();
    const heard: string[] = [];
    events.on('started', (p) => heard.push(`started:${p.id}`));
    events.once('stopped', (p) => heard.push(`stopped:${p.id}`));
    events.clear();
    events.emit('started', { id: '1' });
    events.emit('stopped', { id: '1', reason: 'r' });
    expect(heard).to.deep.equal([]);
    expect(events.listenerCount()).to.equal(0);
    events.on('started', (p) => heard.push(`after:${p.id}`));
    events.emit('started', { id: '2' });
    expect(heard).to.deep.equal(['after:2']);
  });

  it('validates its construction', () => {
    expect(thrown(() => new TypedEvents<TestEvents>([] as never)).message).to.equal(
      'names must be a non-empty array of event names',
    );
    expect(thrown(() => new TypedEvents<TestEvents>([1] as never)).details).to.deep.equal({
      option: 'names',
    });
    expect(thrown(() => new TypedEvents<TestEvents>(NAMES, { logger: {} as never })).message).to.match(
      /^logger must have an error/,
    );
  });
});
