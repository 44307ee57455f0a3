/**
 * startCoordinator() failing to start: bad options, a stream that does not exist. Kinesis is an
 * in-process request handler answering like the service would, so no service is needed; the worker
 * pool is real (it starts its threads with the coordinator), which is what a failed start must not leak.
 */
import { createHook } from 'node:async_hooks';
import { ErrorCodes, type ShardlineError } from '@shardline/common';
import { startCoordinator } from '@shardline/coordinator';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../../support/assertions.js';

/** Answers every Kinesis call with a 400 ResourceNotFoundException, as Kinesis does for a missing stream. */
class MissingStreamHandler {
  readonly requests: Array<{ target: string | undefined; body: string }> = [];

  async handle(request: { headers: Record<string, string>; body?: string | Uint8Array }) {
    const body =
      typeof request.body === 'string'
        ? request.body
        : new TextDecoder().decode(request.body ?? new Uint8Array());
    this.requests.push({ target: request.headers['x-amz-target'], body });
    const answer = JSON.stringify({
      __type: 'ResourceNotFoundException',
      message: 'Stream orders under account 000000000000 not found.',
    });
    return {
      response: {
        statusCode: 400,
        reason: 'Bad Request',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'test-request' },
        body: new TextEncoder().encode(answer),
      },
    };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {}
}

/** Worker threads alive in this process, by their async resources (a Worker is one until it exits). */
function trackWorkerThreads() {
  const live = new Set<number>();
  const hook = createHook({
    init(asyncId, type) {
      if (type === 'WORKER') live.add(asyncId);
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  return {
    started: 0,
    get alive(): number {
      return live.size;
    },
    record(): void {
      this.started = Math.max(this.started, live.size);
    },
    disable: () => hook.disable(),
  };
}

/** Real event-loop turns (fake timers leave setImmediate alone): a terminated thread's resource goes. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('startCoordinator()', () => {
  let sandbox: sinon.SinonSandbox;
  let clock: sinon.SinonFakeTimers;

  const base = {
    streamName: 'orders',
    group: 'g',
    kinesis: {
      region: 'eu-west-1',
      endpoint: 'http://127.0.0.1:1',
      credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
    },
  };

  beforeEach(() => {
    sandbox = sinon.createSandbox();
    // Timers only: the coordinator's renew and sync intervals, retries and sleeps become countable.
    clock = sandbox.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'],
    });
  });

  afterEach(() => {
    sandbox.restore();
  });

  describe('invalid options', () => {
    const cases: Array<[string, Record<string, unknown>, RegExp]> = [
      ['maxBufferedRecords', { maxBufferedRecords: 0 }, /^maxBufferedRecords /],
      ['group', { group: '' }, /^group must be a non-empty string/],
      ['streamName', { streamName: undefined }, /streamName/],
      ['workerThreads', { workerThreads: 1.5 }, /^workerThreads /],
      ['maxBufferedRecord (a typo)', { maxBufferedRecord: 10 }, /maxBufferedRecord\b/],
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      ['onHandlerError.then', { onHandlerError: { then: 'dead-letter' } }, /^deadLetter is required/],
    ];
    for (const [what, options, message] of cases) {
      it(`reject (not throw) naming the option: ${what}`, async () => {
        let promise: Promise<unknown> | undefined;
        expect(() => {
          promise = startCoordinator({ ...base, ...options } as never);
        }).to.not.throw();
        const error = await rejection(promise!);
        expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.retriable).to.equal(false);
        expect(error.message).to.match(message);
        // Nothing was started: no interval, no timeout left behind.
        expect(clock.countTimers()).to.equal(0);
      });
    }
  });

  describe('a stream that does not exist', () => {
    let threads: ReturnType<typeof trackWorkerThreads>;

    beforeEach(() => {
      threads = trackWorkerThreads();
    });

    afterEach(() => {
      threads.disable();
    });

    it('rejects with ERR_NOT_FOUND naming the stream, and leaves no worker thread or timer running', async () => {
      const handler = new MissingStreamHandler();
      const starting = startCoordinator({
        ...base,
        workerThreads: 2,
        kinesis: { ...base.kinesis, requestHandler: handler },
      });
      // The pool starts its threads with the coordinator, before the first ListShards answers.
      threads.record();
      const error = await rejection<ShardlineError>(starting);
      expect(error.code).to.equal(ErrorCodes.NOT_FOUND);
      expect(error.retriable).to.equal(false);
      expect(error.message).to.match(/ListShards/);
      expect(error.message).to.match(/Stream orders .*not found/);
      // It asked Kinesis about this stream, and did not retry an answer that will not change.
      expect(handler.requests).to.have.length(1);
      expect(handler.requests[0]!.target).to.equal('Kinesis_20131202.ListShards');
      expect(JSON.parse(handler.requests[0]!.body)).to.include({ StreamName: 'orders' });

      expect(threads.started, 'the worker pool did start threads').to.equal(2);
      await turns(10);
      expect(threads.alive, 'worker threads left running').to.equal(0);
      expect(clock.countTimers(), 'timers left running').to.equal(0);
    });
  });
});
