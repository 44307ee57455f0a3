/**
 * The Supervisor over a real piscina pool (2 threads) running a tiny fixture task that plays a reader
 * (fixtures/supervisor-worker.mjs), and the CrashGuard with an injected clock.
 */
import { fileURLToPath } from 'node:url';
import {
  ErrorCodes,
  type Logger,
  PROTOCOL_VERSION,
  type ShardlineError,
  silentLogger,
  type WorkerMessage,
} from '@shardline/common';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import { expect } from 'chai';
import type { ModuleWorkerMessage } from '../../../packages/coordinator/src/module-protocol.js';
import { CrashGuard, SUPERVISOR_DEFAULTS, Supervisor } from '../../../packages/coordinator/src/supervisor.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/supervisor-worker.mjs', import.meta.url));

interface Script {
  logs?: number;
  invalid?: boolean;
  end: 'finish' | 'stop' | 'hang';
}

/** Task options for the fixture: the reader options it ignores, and its script. */
function task(shardId: string, script: Script): ShardReaderTaskOptions {
  return { streamName: 's', shardId, kinesis: { region: 'us-east-1' }, script } as ShardReaderTaskOptions;
}

type Received = WorkerMessage | ModuleWorkerMessage;

function logText(message: Received): string | undefined {
  return message.type === 'log' ? (message as { message: string }).message : undefined;
}

/** Resolves with the first message `test` accepts among those received so far or later. */
function waitFor(received: Received[], test: (m: Received) => boolean, timeoutMs = 5_000): Promise<Received> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const found = received.find(test);
      if (found !== undefined) return resolve(found);
      if (Date.now() - started > timeoutMs) return reject(new Error('timed out waiting for a message'));
      setTimeout(poll, 5);
    };
    poll();
  });
}

describe('CrashGuard', () => {
  it('lets a shard restart until it crashed maxCrashes times within the window', () => {
    let now = 0;
    const guard = new CrashGuard(3, 60_000, () => now);
    expect(guard.crashed('a')).to.equal(true);
    now = 10_000;
    expect(guard.crashed('a')).to.equal(true);
    expect(guard.crashed('b'), 'another shard counts apart').to.equal(true);
    now = 20_000;
    expect(guard.crashed('a'), 'the third crash within 60 s').to.equal(false);
    expect(guard.crashed('a')).to.equal(false);
  });

  it('forgets crashes older than the window', () => {
    let now = 0;
    const guard = new CrashGuard(2, 1_000, () => now);
    expect(guard.crashed('a')).to.equal(true);
    now = 1_000; // exactly one window later: the first crash no longer counts
    expect(guard.crashed('a')).to.equal(true);
    now = 1_500;
    expect(guard.crashed('a')).to.equal(false);
    now = 10_000;
    expect(guard.crashed('a')).to.equal(true);
  });

  it('defaults to SUPERVISOR_DEFAULTS (3 crashes in 60 s)', () => {
    let now = 0;
    const guard = new CrashGuard(undefined, undefined, () => now);
    expect(SUPERVISOR_DEFAULTS).to.include({ maxCrashes: 3, crashWindowMs: 60_000 });
    expect([guard.crashed('a'), guard.crashed('a')]).to.deep.equal([true, true]);
    now = 59_999;
    expect(guard.crashed('a')).to.equal(false);
  });
});

describe('Supervisor (a real pool of 2 threads, a fixture task)', () => {
  let supervisor: Supervisor;
  const logged: unknown[] = [];
  const logger: Logger = { ...silentLogger, error: (...args: unknown[]) => void logged.push(args) };

  beforeEach(() => {
    logged.length = 0;
    supervisor = new Supervisor({ workerThreads: 2, logger, filename: FIXTURE });
  });

  afterEach(async () => {
    await supervisor.close();
  });

  describe('first answers fetched on this thread while no thread is up', () => {
    let fetches: Array<{ shardId: string; limit: number }>;
    let cold: Supervisor;
    let closed: number;

    beforeEach(() => {
      fetches = [];
      closed = 0;
      cold = new Supervisor({
        workerThreads: 2,
        logger,
        filename: FIXTURE,
        firstFetch: {
          fetch: async (options, limit) => {
            fetches.push({ shardId: options.shardId, limit });
            return { body: new Uint8Array(7), requestedAtMs: Date.now() };
          },
          close: () => void closed++,
        },
      });
    });

    afterEach(async () => {
      await cold.close();
    });

    it('fetches it with the credit granted as the limit, and the task gets it; once a thread is up, no more', async () => {
      const received: Received[] = [];
      const handle = cold.start(task('shard-f', { end: 'finish' }), (m) => received.push(m));
      // As the reader's credit account does, right after start().
      handle.send({ v: PROTOCOL_VERSION, type: 'credit', records: 123, bytes: 1_000 });
      await handle.exited;
      expect(fetches).to.deep.equal([{ shardId: 'shard-f', limit: 123 }]);
      expect(received.map(logText)).to.include('first 7');
      expect(closed, "the fetcher's client is closed once a thread is up").to.be.at.least(1);
      const later: Received[] = [];
      const next = cold.start(task('shard-g', { end: 'finish' }), (m) => later.push(m));
      next.send({ v: PROTOCOL_VERSION, type: 'credit', records: 5, bytes: 5 });
      await next.exited;
      expect(fetches).to.have.length(1);
      expect(later.map(logText)).to.not.include('first 7');
    });

    it(`fetches for at most maxFirstFetches (${SUPERVISOR_DEFAULTS.maxFirstFetches}) readers, and none without credit`, async () => {
      const handles = Array.from({ length: SUPERVISOR_DEFAULTS.maxFirstFetches + 4 }, (_, i) => {
        const handle = cold.start(task(`shard-${i}`, { end: 'finish' }), () => {});
        if (i > 0) handle.send({ v: PROTOCOL_VERSION, type: 'credit', records: 10, bytes: 10 });
        return handle;
      });
      await Promise.all(handles.map((h) => h.exited));
      expect(fetches.map((f) => f.shardId)).to.not.include('shard-0');
      expect(fetches.length).to.equal(SUPERVISOR_DEFAULTS.maxFirstFetches - 1);
    });
  });

  it('starts every thread at once', () => {
    expect(supervisor.threads).to.equal(2);
  });

  it("threads: 'on-demand' starts a thread with the first reader and another once each holds readersPerThread", async () => {
    const lazy = new Supervisor({
      workerThreads: 2,
      threads: 'on-demand',
      readersPerThread: 2,
      logger,
      filename: FIXTURE,
    });
    try {
      expect(lazy.threads).to.equal(0);
      const threadOf = new Map<string, number>();
      const hang = (shardId: string) =>
        lazy.start(task(shardId, { end: 'hang' }), (m) => {
          if (m.type === 'started') threadOf.set(shardId, (m as { threadId: number }).threadId);
        });
      const handles = [hang('a'), hang('b')];
      expect(lazy.readersPerThread).to.deep.equal([2]);
      handles.push(hang('c'));
      expect(lazy.readersPerThread).to.deep.equal([2, 1]);
      handles.push(hang('d'), hang('e'));
      // At the most threads: the readers go on the thread holding the fewest.
      expect(lazy.readersPerThread).to.deep.equal([3, 2]);
      const deadline = Date.now() + 10_000;
      while (threadOf.size < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      expect(threadOf.size).to.equal(5);
      expect(new Set(threadOf.values()).size).to.equal(2);
      expect(threadOf.get('a')).to.equal(threadOf.get('b'));
      expect(threadOf.get('c')).to.not.equal(threadOf.get('a'));
      // A reader that exits leaves room on its thread: the next one goes there.
      await lazy.terminateThread(lazy.threadIndex(threadOf.get('c')!)!);
      const exits = await Promise.all([handles[2]!.exited, handles[3]!.exited]);
      expect(exits.map((e) => e.kind)).to.deep.equal(['crashed', 'crashed']);
      expect(lazy.readersPerThread).to.deep.equal([3, 0]);
      hang('f');
      expect(lazy.readersPerThread).to.deep.equal([3, 1]);
    } finally {
      await lazy.close();
    }
  });

  it('delivers every message in order, and exited resolves only after the last one was received', async () => {
    const received: Received[] = [];
    const handle = supervisor.start(task('shard-a', { logs: 500, end: 'finish' }), (m) => received.push(m));
    expect(handle.shardId).to.equal('shard-a');
    const exit = await handle.exited;
    expect(exit).to.deep.equal({
      kind: 'finished',
      outcome: { shardId: 'shard-a', state: 'ended', childShardIds: [] },
    });
    expect(received).to.have.length(501);
    expect(received[0]).to.include({ v: PROTOCOL_VERSION, type: 'started', shardId: 'shard-a' });
    expect(received.slice(1).map(logText)).to.deep.equal(Array.from({ length: 500 }, (_, i) => `log ${i}`));
  });

  it('reports a message that fails validation as a non-fatal error message of the shard', async () => {
    const received: Received[] = [];
    const handle = supervisor.start(task('shard-v', { invalid: true, end: 'finish' }), (m) =>
      received.push(m),
    );
    await handle.exited;
    expect(received.map((m) => m.type)).to.deep.equal(['started', 'error']);
    expect(received[1]).to.include({ shardId: 'shard-v', fatal: false });
  });

  it("stop() calls the reader's control stop() once however often it is called; sends after the exit are ignored", async () => {
    const received: Received[] = [];
    const handle = supervisor.start(task('shard-s', { end: 'stop' }), (m) => received.push(m));
    await waitFor(received, (m) => m.type === 'started');
    handle.stop('first');
    handle.stop('second');
    // Both calls would be posted at once on the control port, so a second one is in by the time the
    // reader answers the first with a log on the data port.
    await waitFor(received, (m) => logText(m) === 'stop called');
    handle.send({ v: PROTOCOL_VERSION, type: 'credit', records: 1, bytes: 1 });
    const exit = await handle.exited;
    expect(exit).to.deep.equal({ kind: 'finished', outcome: { shardId: 'shard-s', state: 'stopped' } });
    expect(received.map(logText).filter((t) => t !== undefined)).to.deep.equal([
      'stop called',
      'stops: first',
    ]);
    expect(() => handle.send({ v: PROTOCOL_VERSION, type: 'stop', reason: 'late' })).to.not.throw();
    handle.stop('after the exit');
  });

  it('threadIndex() maps a thread id to its pool index; a terminated thread is a crash (ERR_WORKER_CRASHED)', async () => {
    const received: Received[] = [];
    const handle = supervisor.start(task('shard-c', { end: 'hang' }), (m) => received.push(m));
    const started = (await waitFor(received, (m) => m.type === 'started')) as { threadId: number };
    const index = supervisor.threadIndex(started.threadId);
    expect(index).to.be.oneOf([0, 1]);
    expect(supervisor.threadIndex(-1)).to.equal(undefined);
    await supervisor.terminateThread(index!);
    const exit = await handle.exited;
    expect(exit.kind).to.equal('crashed');
    const error = (exit as { error: ShardlineError }).error;
    expect(error.code).to.equal(ErrorCodes.WORKER_CRASHED);
    expect(error.retriable).to.equal(true);
    expect(error.details).to.deep.equal({ shardId: 'shard-c' });
    expect(error.message).to.equal('the worker thread reading shard-c failed');
    expect(error.cause).to.not.equal(undefined);
    // piscina replaces the thread: the pool still runs readers.
    const next = supervisor.start(task('shard-d', { end: 'finish' }), () => {});
    expect((await next.exited).kind).to.equal('finished');
  });

  it('close() is idempotent, and start() after it throws ERR_CLOSED', async () => {
    await supervisor.close();
    await supervisor.close();
    let error: ShardlineError | undefined;
    try {
      supervisor.start(task('shard-x', { end: 'finish' }), () => {});
    } catch (e) {
      error = e as ShardlineError;
    }
    expect(error?.code).to.equal(ErrorCodes.CLOSED);
    expect(error?.message).to.equal('the worker pool is closed');
  });
});
