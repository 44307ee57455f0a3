/**
 * The coordinator's event names and payloads. The emitter's rules (unsubscribe, once, listeners that
 * throw, unknown names) are the shared TypedEvents', tested in test/unit/common/typed-events.test.ts.
 */
import { ErrorCodes, type Logger, ShardlineError, TypedEvents } from '@shardline/common';
import { expect } from 'chai';
import { COORDINATOR_EVENT_NAMES, CoordinatorEvents } from '../../../packages/coordinator/src/events.js';

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
  it('is the shared TypedEvents emitter, over the coordinator event names', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    expect(events).to.be.instanceOf(TypedEvents);
    expect(events.names).to.deep.equal(COORDINATOR_EVENT_NAMES);
  });

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

  it('logs a throwing listener naming the event, and still calls the others', () => {
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
    expect(errors[0]!.message).to.equal("a 'lease.lost' event listener threw");
    expect((errors[0]!.fields.err as { message: string }).message).to.equal('listener bug');
  });

  it('does not throw for an error event without listeners (the coordinator logs errors itself)', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    expect(() =>
      events.emit('error', { error: new ShardlineError(ErrorCodes.INTERNAL, 'x') }),
    ).to.not.throw();
  });

  it('rejects an unknown event name, listing the coordinator events', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    for (const subscribe of [events.on.bind(events), events.once.bind(events)]) {
      const error = thrown(() => subscribe('lease.acquire' as never, () => {}));
      expect(error.name).to.equal('ShardlineOptionError');
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.message).to.equal(
        `event must be one of ${COORDINATOR_EVENT_NAMES.map((n) => `'${n}'`).join(', ')} (got "lease.acquire")`,
      );
      expect(error.message).to.match(/^event must be one of 'lease\.acquired', /);
    }
    expect(events.listenerCount('lease.acquired')).to.equal(0);
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
      'record.expired',
      'worker.crashed',
      'error',
      'warning',
    ] as const;
    expect([...COORDINATOR_EVENT_NAMES].sort()).to.deep.equal([...documented].sort());
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

  it('once() and clear() work on coordinator events', () => {
    const events = new CoordinatorEvents(recordingLogger().logger);
    const heard: string[] = [];
    events.once('checkpoint', (p) => heard.push(`checkpoint:${p.sequenceNumber}`));
    events.emit('checkpoint', { shardId: 's', sequenceNumber: '1', counter: 1 });
    events.emit('checkpoint', { shardId: 's', sequenceNumber: '2', counter: 1 });
    events.on('batch.processed', (p) => heard.push(`batch:${p.records}`));
    events.clear();
    events.emit('batch.processed', { shardId: 's', records: 1, durationMs: 1 });
    expect(heard).to.deep.equal(['checkpoint:1']);
    expect(events.listenerCount('batch.processed')).to.equal(0);
  });
});
