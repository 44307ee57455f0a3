import type { Logger, ShardRecord } from '@shardline/common';
import { CodecError, ErrorCodes, ShardlineError } from '@shardline/common';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import sinon from 'sinon';
import type {
  DeadLetterJobEntry,
  DeadLetterJobQueue,
  DeadLetterQueueOptions,
} from '../../../packages/coordinator/src/dead-letter.js';
import { DEAD_LETTER_DEFAULTS, DeadLetterQueue } from '../../../packages/coordinator/src/dead-letter.js';
import { rejection } from '../../support/assertions.js';

const NOW = Date.UTC(2026, 0, 2, 3, 4, 5);
const SEQ = '49650000000000000000000000000000000000000000000000000001';

function record<T>(data: T, extra: Partial<ShardRecord<T>> = {}): ShardRecord<T> {
  return {
    data,
    partitionKey: 'user-1',
    sequenceNumber: SEQ,
    approximateArrivalTimestamp: new Date(NOW - 60_000),
    ...extra,
  };
}

const handlerError = () => new ShardlineError(ErrorCodes.HANDLER, 'the handler threw: bad order');

describe('DeadLetterQueue (BullMQ queue stubbed)', () => {
  let sandbox: sinon.SinonSandbox;
  let clock: sinon.SinonFakeTimers;
  let queue: {
    addBulk: sinon.SinonStub<[DeadLetterJobEntry[]], Promise<unknown>>;
    close: sinon.SinonStub<[], Promise<void>>;
    on: sinon.SinonStub<[string, (error: unknown) => void], unknown>;
  };
  let createQueue: sinon.SinonStub<[string, unknown], DeadLetterJobQueue>;
  let warnings: Array<{ fields: unknown; message: string }>;
  let logger: Logger;
  // A ready ioredis instance: with lazyConnect it opens no socket, and the stubbed queue sends nothing.
  let client: Redis;
  let queues: DeadLetterQueue[];

  beforeEach(() => {
    sandbox = sinon.createSandbox();
    clock = sandbox.useFakeTimers({ now: NOW, toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    queue = {
      addBulk: sandbox.stub<[DeadLetterJobEntry[]], Promise<unknown>>().resolves([]),
      close: sandbox.stub<[], Promise<void>>().resolves(),
      on: sandbox.stub<[string, (error: unknown) => void], unknown>(),
    };
    createQueue = sandbox.stub<[string, unknown], DeadLetterJobQueue>().returns(queue);
    warnings = [];
    logger = {
      debug() {},
      info() {},
      warn(fields: unknown, message?: unknown) {
        warnings.push({ fields, message: String(message) });
      },
      error() {},
    };
    client = new Redis({ lazyConnect: true });
    queues = [];
  });

  afterEach(async () => {
    await Promise.all(queues.map((q) => q.close()));
    client.disconnect();
    sandbox.restore();
  });

  function dlq(options: Partial<DeadLetterQueueOptions> = {}): DeadLetterQueue {
    const q = new DeadLetterQueue({
      queue: 'orders-dlq',
      connection: client,
      group: 'billing',
      stream: 'orders',
      logger,
      createQueue,
      ...options,
    });
    queues.push(q);
    return q;
  }

  /** The jobs of the `call`-th addBulk. */
  function jobs(call = 0): DeadLetterJobEntry[] {
    return queue.addBulk.getCall(call).args[0];
  }

  it('opens the queue by its name on the client it was given', () => {
    dlq();
    expect(createQueue.calledOnceWithExactly('orders-dlq', client)).to.equal(true);
  });

  describe('job shape', () => {
    it("a multi-stream coordinator's shared queue names each record's stream, in the data and the job id", async () => {
      const q = dlq({ stream: 'orders,payments' });
      await q.send('shardId-000000000000', [record({ a: 1 })], handlerError(), 1, 'payments');
      await q.send('shardId-000000000000', [record({ a: 1 })], handlerError(), 1, 'orders');
      expect(jobs(0)[0]!.data.stream).to.equal('payments');
      expect(jobs(1)[0]!.data.stream).to.equal('orders');
      expect(jobs(0)[0]!.opts.jobId).to.equal(`billing/payments/shardId-000000000000/${SEQ}/`);
      expect(jobs(1)[0]!.opts.jobId).to.equal(`billing/orders/shardId-000000000000/${SEQ}/`);
    });

    it('a decoded record becomes a json job with its position, the error and the attempts', async () => {
      await dlq().send('shardId-000000000003', [record({ orderId: 7, total: 12.5 })], handlerError(), 4);
      expect(jobs()).to.deep.equal([
        {
          name: 'dead-letter',
          data: {
            group: 'billing',
            stream: 'orders',
            shardId: 'shardId-000000000003',
            partitionKey: 'user-1',
            sequenceNumber: SEQ,
            approximateArrivalTimestamp: new Date(NOW - 60_000).toISOString(),
            data: { orderId: 7, total: 12.5 },
            dataEncoding: 'json',
            error: {
              name: 'ShardlineError',
              code: ErrorCodes.HANDLER,
              message: 'the handler threw: bad order',
            },
            attempts: 4,
            deadLetteredAt: new Date(NOW).toISOString(),
          },
          opts: { jobId: `billing/orders/shardId-000000000003/${SEQ}/` },
        },
      ]);
    });

    it('keeps the sub-sequence number and explicit hash key when the record has them', async () => {
      await dlq().send(
        'shardId-000000000003',
        [record('x', { subSequenceNumber: 0, explicitHashKey: '340282366920938463463374607431768211455' })],
        handlerError(),
        1,
      );
      expect(jobs()[0]!.data).to.include({
        subSequenceNumber: 0,
        explicitHashKey: '340282366920938463463374607431768211455',
      });
      expect(jobs()[0]!.opts.jobId).to.equal(`billing/orders/shardId-000000000003/${SEQ}/0`);
    });

    it('leaves the optional fields out, not undefined, when the record has none', async () => {
      await dlq().send('s', [record(1)], handlerError(), 1);
      expect(jobs()[0]!.data).to.not.have.any.keys('subSequenceNumber', 'explicitHashKey');
    });

    it('bytes (a raw or poison record) go as base64, exactly', async () => {
      const bytes = new Uint8Array([0, 1, 2, 250, 255]);
      const poison = new CodecError('json', 'payload is not valid JSON');
      await dlq().send('s', [record(bytes), record(Buffer.from('{oops'))], poison, 1);
      const [first, second] = jobs().map((j) => j.data);
      expect(first).to.include({ dataEncoding: 'base64', data: Buffer.from(bytes).toString('base64') });
      expect(Buffer.from(first!.data as string, 'base64')).to.deep.equal(Buffer.from(bytes));
      expect(second).to.include({ dataEncoding: 'base64', data: Buffer.from('{oops').toString('base64') });
      expect(first!.error).to.deep.equal({
        name: poison.name,
        code: ErrorCodes.CODEC,
        message: poison.message,
      });
    });

    it('one job per record, in order, all in one addBulk call', async () => {
      const records = [0, 1, 2].map((i) => record({ i }, { subSequenceNumber: i }));
      await dlq().send('s', records, handlerError(), 2);
      expect(queue.addBulk.callCount).to.equal(1);
      expect(jobs().map((j) => (j.data.data as { i: number }).i)).to.deep.equal([0, 1, 2]);
      expect(new Set(jobs().map((j) => j.opts.jobId)).size).to.equal(3);
    });
  });

  describe('job ids', () => {
    it('are the same for the same record sent again (a restart from an older checkpoint makes no second job)', async () => {
      const q = dlq();
      await q.send('s', [record(1)], handlerError(), 1);
      clock.tick(60_000);
      await q.send('s', [record(1)], new ShardlineError(ErrorCodes.HANDLER, 'another message'), 3);
      expect(jobs(1)[0]!.opts.jobId).to.equal(jobs(0)[0]!.opts.jobId);
    });

    it('differ by group, stream, shard, sequence and sub-sequence number', async () => {
      const ids: string[] = [];
      for (const [group, stream, shardId, extra] of [
        ['billing', 'orders', 's-1', {}],
        ['shipping', 'orders', 's-1', {}],
        ['billing', 'refunds', 's-1', {}],
        ['billing', 'orders', 's-2', {}],
        ['billing', 'orders', 's-1', { sequenceNumber: `${SEQ}9` }],
        ['billing', 'orders', 's-1', { subSequenceNumber: 0 }],
        ['billing', 'orders', 's-1', { subSequenceNumber: 1 }],
      ] as const) {
        queue.addBulk.resetHistory();
        await dlq({ group, stream }).send(shardId, [record(1, extra)], handlerError(), 1);
        ids.push(jobs()[0]!.opts.jobId);
      }
      expect(new Set(ids).size).to.equal(ids.length);
    });

    it("never contain ':' (BullMQ refuses it), whatever the group name holds", async () => {
      await dlq({ group: 'team:billing / eu west' }).send('s', [record(1)], handlerError(), 1);
      const id = jobs()[0]!.opts.jobId;
      expect(id).to.not.include(':');
      expect(id).to.equal(`team%3Abilling%20/%20eu%20west/orders/s/${SEQ}/`);
      expect(jobs()[0]!.data.group, 'the job data keeps the name as it is').to.equal(
        'team:billing / eu west',
      );
    });
  });

  describe('errors', () => {
    it('a queue that cannot be written rejects with a retriable ERR_REDIS naming the queue, the cause kept', async () => {
      const cause = new Error('READONLY You can not write against a read only replica.');
      queue.addBulk.rejects(cause);
      const error = await rejection(
        dlq().send('shardId-000000000001', [record(1), record(2)], handlerError(), 1),
      );
      expect(error.code).to.equal(ErrorCodes.REDIS);
      expect(error.retriable).to.equal(true);
      expect(error.message).to.equal("dead-letter queue 'orders-dlq': adding jobs failed");
      expect(error.cause).to.equal(cause);
      expect(error.details).to.deep.equal({ shardId: 'shardId-000000000001', records: 2 });
    });

    it('a send Redis does not answer fails with ERR_REDIS after sendTimeoutMs, so the caller can retry or stop', async () => {
      queue.addBulk.returns(new Promise(() => {}));
      let settled: ShardlineError | undefined;
      void dlq()
        .send('s', [record(1)], handlerError(), 1)
        .catch((error: ShardlineError) => {
          settled = error;
        });
      await clock.tickAsync(DEAD_LETTER_DEFAULTS.sendTimeoutMs - 1);
      expect(settled).to.equal(undefined);
      await clock.tickAsync(1);
      if (settled === undefined) expect.fail('the send is still pending past sendTimeoutMs');
      expect(settled.code).to.equal(ErrorCodes.REDIS);
      expect(settled.retriable).to.equal(true);
      expect((settled.cause as Error).message).to.equal(
        `Redis did not answer within ${DEAD_LETTER_DEFAULTS.sendTimeoutMs} ms`,
      );
    });

    it('a send that succeeds leaves no timer behind', async () => {
      await dlq({ sendTimeoutMs: 50 }).send('s', [record(1)], handlerError(), 1);
      expect(clock.countTimers()).to.equal(0);
    });

    it('logs queue errors as warnings instead of throwing them', () => {
      dlq();
      const onError = queue.on.getCalls().find((c) => c.args[0] === 'error')?.args[1];
      expect(onError, 'an error listener').to.be.a('function');
      expect(() => onError!(new Error('ECONNRESET'))).to.not.throw();
      expect(warnings).to.have.length(1);
      expect(warnings[0]!.message).to.equal('dead-letter queue error');
      expect((warnings[0]!.fields as { err: { message: string } }).err.message).to.equal('ECONNRESET');
    });
  });

  describe('close()', () => {
    it('closes the queue but not a client it was given (the caller owns it)', async () => {
      const q = dlq();
      await q.close();
      expect(queue.close.calledOnce).to.equal(true);
      expect(client.status).to.equal('wait');
    });

    it('resolves even when closing the queue fails', async () => {
      queue.close.rejects(new Error('Connection is closed.'));
      await dlq().close();
    });
  });
});
