/**
 * DeadLetterQueue against the real Redis and real BullMQ: the jobs a consumer of the queue reads, job
 * ids that BullMQ accepts and that dedupe a record sent again, the three connection forms (URL,
 * options, a ready instance left open), and Redis outages (a send fails promptly instead of hanging;
 * a queue whose Redis was down at start works once Redis is up; close() does not wait for Redis).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger, ShardlineError, ShardRecord } from '@shardline/common';
import { ErrorCodes, KplError, ShardlineError as Shardline } from '@shardline/common';
import {
  getFreePort,
  type RedisServer,
  startRedisServer,
  type TestRedis,
  useTestRedis,
} from '@shardline/testing';
import { Queue } from 'bullmq';
import { expect } from 'chai';
import type { DeadLetterJob, DeadLetterQueueOptions } from '../../packages/coordinator/src/dead-letter.js';
import { DeadLetterQueue } from '../../packages/coordinator/src/dead-letter.js';
import { rejection } from '../support/assertions.js';

const silent: Logger = { debug() {}, info() {}, warn() {}, error() {} };

function seq(i: number): string {
  return `49${String(i + 1).padStart(54, '0')}`;
}

function record<T>(i: number, data: T, extra: Partial<ShardRecord<T>> = {}): ShardRecord<T> {
  return {
    data,
    partitionKey: `pk-${i}`,
    sequenceNumber: seq(i),
    approximateArrivalTimestamp: new Date(1_700_000_000_000 + i),
    ...extra,
  };
}

const handlerError = () => new Shardline(ErrorCodes.HANDLER, 'the handler threw');

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(50);
  }
}

/** How long `promise` takes to settle, and how. */
async function timed(promise: Promise<unknown>): Promise<{ ms: number; error: ShardlineError | undefined }> {
  const started = Date.now();
  try {
    await promise;
    return { ms: Date.now() - started, error: undefined };
  } catch (error) {
    return { ms: Date.now() - started, error: error as ShardlineError };
  }
}

describe('DeadLetterQueue (real Redis, real BullMQ)', () => {
  let redis: TestRedis;
  let queueName: string;
  let inspect: Queue;
  let opened: DeadLetterQueue[];

  before(async () => {
    redis = await useTestRedis('dead-letter');
  });

  after(async () => {
    await redis?.cleanup();
  });

  beforeEach(() => {
    // BullMQ keys are `bull:<queue>:...`: a queue name of its own per test keeps tests apart.
    queueName = `test-dlq-${randomBytes(6).toString('hex')}`;
    inspect = new Queue(queueName, { connection: redis.client({ maxRetriesPerRequest: null }) as never });
    opened = [];
  });

  afterEach(async () => {
    await Promise.all(opened.map((q) => q.close()));
    await inspect.obliterate({ force: true });
    await inspect.close();
  });

  function dlq(options: Partial<DeadLetterQueueOptions> = {}): DeadLetterQueue {
    const q = new DeadLetterQueue({
      queue: queueName,
      connection: redis.url,
      group: 'billing',
      stream: 'orders',
      logger: silent,
      ...options,
    });
    opened.push(q);
    return q;
  }

  async function waitingJobs(): Promise<
    Array<{ id: string | undefined; name: string; data: DeadLetterJob }>
  > {
    const jobs = await inspect.getJobs(['waiting']);
    return jobs
      .map((j) => ({ id: j.id, name: j.name, data: j.data as DeadLetterJob }))
      .sort((a, b) => String(a.id).localeCompare(String(b.id)));
  }

  it('writes one waiting job per record, with the record, its position and the error', async () => {
    const q = dlq();
    await q.send(
      'shardId-000000000001',
      [
        record(0, { orderId: 1 }),
        record(1, new Uint8Array([0, 255, 1]), { subSequenceNumber: 2, explicitHashKey: '42' }),
      ],
      handlerError(),
      3,
    );
    const jobs = await waitingJobs();
    expect(jobs.map((j) => [j.id, j.name])).to.deep.equal([
      [`billing/orders/shardId-000000000001/${seq(0)}/`, 'dead-letter'],
      [`billing/orders/shardId-000000000001/${seq(1)}/2`, 'dead-letter'],
    ]);
    const [json, bytes] = jobs.map((j) => j.data);
    expect(json).to.deep.include({
      group: 'billing',
      stream: 'orders',
      shardId: 'shardId-000000000001',
      partitionKey: 'pk-0',
      sequenceNumber: seq(0),
      approximateArrivalTimestamp: new Date(1_700_000_000_000).toISOString(),
      data: { orderId: 1 },
      dataEncoding: 'json',
      error: { name: 'ShardlineError', code: ErrorCodes.HANDLER, message: 'the handler threw' },
      attempts: 3,
    });
    expect(Date.parse(json!.deadLetteredAt)).to.be.closeTo(Date.now(), 60_000);
    expect(bytes).to.deep.include({ subSequenceNumber: 2, explicitHashKey: '42', dataEncoding: 'base64' });
    expect([...Buffer.from(bytes!.data as string, 'base64')]).to.deep.equal([0, 255, 1]);
  });

  it('a record dead-lettered again (a restart from an older checkpoint) makes no second job', async () => {
    const q = dlq();
    const records = [0, 1, 2].map((i) => record(i, { i }));
    await q.send('shardId-000000000001', records, handlerError(), 1);
    await q.send('shardId-000000000001', records.slice(1), new KplError('again'), 5);
    // A second DeadLetterQueue (another host, or this one restarted) too.
    await dlq().send('shardId-000000000001', records, handlerError(), 1);
    const jobs = await waitingJobs();
    expect(jobs.map((j) => j.data.sequenceNumber)).to.deep.equal([seq(0), seq(1), seq(2)]);
    // The first write wins: the job keeps the error it was dead-lettered with.
    expect(jobs.every((j) => j.data.error.code === ErrorCodes.HANDLER)).to.equal(true);
  });

  it("accepts a group name with ':' (BullMQ refuses it in job ids), '/' and spaces", async () => {
    const q = dlq({ group: 'team:billing / eu' });
    await q.send('shardId-000000000001', [record(0, 'x')], handlerError(), 1);
    const [job] = await waitingJobs();
    expect(job!.data.group).to.equal('team:billing / eu');
    expect(job!.id).to.equal(`team%3Abilling%20/%20eu/orders/shardId-000000000001/${seq(0)}/`);
  });

  it('connects with ioredis options as well as a URL', async () => {
    const { hostname, port } = new URL(redis.url);
    const q = dlq({ connection: { host: hostname, port: Number(port) } });
    await q.send('shardId-000000000001', [record(0, 1)], handlerError(), 1);
    expect(await waitingJobs()).to.have.length(1);
  });

  it('uses a ready ioredis instance as it is, and close() leaves it open for its owner', async () => {
    const client = redis.client({ maxRetriesPerRequest: null });
    const q = dlq({ connection: client });
    await q.send('shardId-000000000001', [record(0, 1)], handlerError(), 1);
    expect(await waitingJobs()).to.have.length(1);
    await q.close();
    expect(await client.ping()).to.equal('PONG');
  });

  describe('Redis outages', () => {
    let port: number;
    let server: RedisServer | undefined;

    beforeEach(async () => {
      port = await getFreePort({ host: '127.0.0.1' });
      server = undefined;
    });

    afterEach(async () => {
      await server?.stop();
    });

    it('a queue whose Redis was down at start fails sends promptly, then works once Redis is up', async () => {
      const q = dlq({ connection: `redis://127.0.0.1:${port}`, sendTimeoutMs: 500 });
      const down = await timed(q.send('shardId-000000000001', [record(0, 1)], handlerError(), 1));
      expect(down.error?.code).to.equal(ErrorCodes.REDIS);
      expect(down.error?.retriable).to.equal(true);
      expect(down.ms).to.be.below(5_000);

      server = await startRedisServer({ port });
      // What the coordinator does: retry the send until it goes through.
      await waitFor('a send to succeed after Redis came up', async () => {
        const attempt = await timed(q.send('shardId-000000000001', [record(1, 2)], handlerError(), 1));
        return attempt.error === undefined;
      });
      const onServer = new Queue(queueName, { connection: { port, maxRetriesPerRequest: null } });
      try {
        const ids = (await onServer.getJobs(['waiting'])).map((j) => j.data.sequenceNumber as string);
        expect(ids).to.include(seq(1));
      } finally {
        await onServer.close();
      }
    });

    it('a send while Redis is down fails after sendTimeoutMs instead of hanging, and close() does not wait', async () => {
      server = await startRedisServer({ port });
      const q = dlq({ connection: server.url, sendTimeoutMs: 500 });
      await q.send('shardId-000000000001', [record(0, 1)], handlerError(), 1);
      await server.stop();
      const down = await timed(q.send('shardId-000000000001', [record(1, 2)], handlerError(), 1));
      if (down.error === undefined) expect.fail('the send succeeded while Redis was down');
      expect(down.error.code).to.equal(ErrorCodes.REDIS);
      expect((down.error.cause as Error).message).to.match(/did not answer within 500 ms/);
      expect(down.ms).to.be.within(400, 5_000);
      const closing = await timed(q.close());
      expect(closing.error).to.equal(undefined);
      expect(closing.ms).to.be.below(2_000);
    });

    it('a send after close() fails with ERR_REDIS', async () => {
      const q = dlq();
      await q.close();
      const error = await rejection(q.send('shardId-000000000001', [record(0, 1)], handlerError(), 1));
      expect(error.code).to.equal(ErrorCodes.REDIS);
    });
  });
});
