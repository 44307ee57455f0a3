/**
 * Shard discovery against an endpoint that never answers: it gives up after `connectTimeoutMs` (the
 * client's `kinesis.connectTimeoutMs`), not after the whole retry budget, and says where it tried, how
 * long and how many requests. A clock and a sleep that advances it stand in for time.
 */
import type { ListShardsCommandInput, ListShardsCommandOutput } from '@aws-sdk/client-kinesis';
import { createKinesisClient, ErrorCodes, type KinesisError } from '@shardline/common';
import { expect } from 'chai';
import {
  type ListShardsApi,
  listShardsApi,
  ShardDiscovery,
} from '../../../packages/coordinator/src/shard-discovery.js';
import { rejection } from '../../support/assertions.js';

const ENDPOINT = 'http://127.0.0.1:1';

/** What the SDK throws after its own 3 attempts at a port nobody listens on. */
function refused(): Error {
  return Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), {
    code: 'ECONNREFUSED',
    $metadata: { attempts: 3, totalRetryDelay: 150 },
  });
}

function answeredWith(name: string, status: number): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    $metadata: { httpStatusCode: status, attempts: 1 },
  });
}

/** A clock the sleeps advance, and an api that plays `answers` (errors are thrown). */
function scene(answers: Array<Error | Partial<ListShardsCommandOutput>>) {
  let clock = 1_000_000;
  const waits: number[] = [];
  const calls: ListShardsCommandInput[] = [];
  const api: ListShardsApi = {
    endpoint: ENDPOINT,
    connectTimeoutMs: 1_000,
    async listShards(input) {
      calls.push(input);
      const next = answers.length > 1 ? answers.shift()! : answers[0]!;
      if (next instanceof Error) throw next;
      return { $metadata: {}, ...next } as ListShardsCommandOutput;
    },
  };
  return {
    api,
    calls,
    waits,
    now: () => clock,
    sleep: async (ms: number) => {
      waits.push(ms);
      clock += ms;
    },
    random: () => 1,
  };
}

describe('shard discovery: an endpoint that never answers', () => {
  it('gives up at connectTimeoutMs, with the endpoint, the time and the requests in the message', async () => {
    const s = scene([refused()]);
    const discovery = new ShardDiscovery({
      api: s.api,
      streamName: 'orders',
      now: s.now,
      sleep: s.sleep,
      random: s.random,
    });
    const error = await rejection<KinesisError>(discovery.list());
    // 100 + 200 + 400 ms of backoff, then the last wait is cut to the 300 ms left.
    expect(s.waits).to.deep.equal([100, 200, 400, 300]);
    expect(s.calls).to.have.length(4);
    expect(error.code).to.equal(ErrorCodes.TRANSIENT);
    expect(error.retriable).to.equal(true);
    expect(error.message).to.equal(
      "ListShards: cannot reach Kinesis at http://127.0.0.1:1 (stream 'orders'): nothing answered 12 requests in 1.0 s " +
        "(4 calls, with the SDK's own retries): connect ECONNREFUSED 127.0.0.1:1; kinesis.connectTimeoutMs (1000 ms) bounds how long it tries",
    );
    expect(error.details).to.deep.equal({
      stream: 'orders',
      endpoint: ENDPOINT,
      elapsedMs: 1_000,
      attempts: 4,
      requests: 12,
      connectTimeoutMs: 1_000,
    });
    expect((error.cause as Error).message).to.equal('connect ECONNREFUSED 127.0.0.1:1');
  });

  it('says the same when the retries run out first', async () => {
    const s = scene([refused()]);
    const error = await rejection<KinesisError>(
      new ShardDiscovery({
        api: s.api,
        streamName: 'orders',
        connectTimeoutMs: 60_000,
        retry: { retries: 2, backoffMs: { initial: 10, max: 10 } },
        now: s.now,
        sleep: s.sleep,
      }).list(),
    );
    expect(s.calls).to.have.length(3);
    expect(error.message).to.match(
      /^ListShards: cannot reach Kinesis at http:\/\/127\.0\.0\.1:1 .*nothing answered 9 requests in 0\.0 s/,
    );
    expect(error.details).to.include({ attempts: 3, requests: 9, connectTimeoutMs: 60_000 });
  });

  it('an endpoint that answered once is retried as before, whatever the time', async () => {
    const s = scene([answeredWith('InternalFailure', 500), refused()]);
    const error = await rejection<KinesisError>(
      new ShardDiscovery({
        api: s.api,
        streamName: 'orders',
        retry: { retries: 5, backoffMs: { initial: 1_000, max: 1_000 } },
        now: s.now,
        sleep: s.sleep,
        random: s.random,
      }).list(),
    );
    // 6 calls over 5 s, well past connectTimeoutMs: the endpoint had answered, so only the retries count.
    expect(s.calls).to.have.length(6);
    expect(s.waits).to.deep.equal([1_000, 1_000, 1_000, 1_000, 1_000]);
    expect(error.code).to.equal(ErrorCodes.TRANSIENT);
    expect(error.message).to.match(/^ListShards: Error: connect ECONNREFUSED/);
  });

  it('an endpoint that answers after refusals is no failure', async () => {
    const s = scene([refused(), refused(), { Shards: [] }]);
    const shards = await new ShardDiscovery({
      api: s.api,
      streamName: 'orders',
      now: s.now,
      sleep: s.sleep,
    }).list();
    expect(shards).to.deep.equal([]);
    expect(s.calls).to.have.length(3);
  });

  it('connectTimeoutMs 0 leaves only the retries', async () => {
    const s = scene([refused()]);
    const error = await rejection<KinesisError>(
      new ShardDiscovery({
        api: s.api,
        streamName: 'orders',
        connectTimeoutMs: 0,
        retry: { retries: 3, backoffMs: { initial: 10_000, max: 10_000 } },
        now: s.now,
        sleep: s.sleep,
        random: s.random,
      }).list(),
    );
    expect(s.waits).to.deep.equal([10_000, 10_000, 10_000]);
    expect(error.message).to.match(
      /nothing answered 12 requests in 30\.0 s \(4 calls, .*\): connect ECONNREFUSED 127\.0\.0\.1:1$/,
    );
  });

  it('aborts a request that hangs at the deadline (connected, no response)', async () => {
    const api: ListShardsApi = {
      endpoint: ENDPOINT,
      listShards: (_input, signal) =>
        new Promise((_resolve, reject) => {
          signal?.addEventListener('abort', () =>
            reject(Object.assign(new Error('Request aborted'), { name: 'AbortError' })),
          );
        }),
    };
    const error = await rejection<KinesisError>(
      new ShardDiscovery({ api, streamName: 'orders', connectTimeoutMs: 50 }).list(),
    );
    expect(error.code).to.equal(ErrorCodes.TRANSIENT);
    expect(error.message).to.match(
      /^ListShards: cannot reach Kinesis at http:\/\/127\.0\.0\.1:1 \(stream 'orders'\): nothing answered 1 request in 0\.\d s: a request was still waiting for a response; kinesis\.connectTimeoutMs \(50 ms\)/,
    );
  });

  it("still reports the caller's abort as ERR_ABORTED", async () => {
    const controller = new AbortController();
    const s = scene([refused()]);
    const discovery = new ShardDiscovery({
      api: s.api,
      streamName: 'orders',
      now: s.now,
      sleep: async () => {
        controller.abort();
      },
    });
    expect((await rejection(discovery.list(controller.signal))).code).to.equal(ErrorCodes.ABORTED);
  });

  it('takes the endpoint and connectTimeoutMs from a createKinesisClient client; names the region without an endpoint', () => {
    const client = createKinesisClient({ region: 'eu-west-1', endpoint: ENDPOINT, connectTimeoutMs: 1_234 });
    try {
      const api = listShardsApi(client);
      expect([api.endpoint, api.region, api.connectTimeoutMs]).to.deep.equal([ENDPOINT, 'eu-west-1', 1_234]);
    } finally {
      client.destroy();
    }
    const regional = createKinesisClient({ region: 'eu-west-1' });
    try {
      const api = listShardsApi(regional);
      expect([api.endpoint, api.connectTimeoutMs]).to.deep.equal([undefined, 10_000]);
    } finally {
      regional.destroy();
    }
  });

  it('validates connectTimeoutMs', () => {
    const s = scene([]);
    expect(() => new ShardDiscovery({ api: s.api, streamName: 'a', connectTimeoutMs: -1 })).to.throw(
      /^connectTimeoutMs must be a finite number of milliseconds >= 0 \(got -1\)/,
    );
  });
});
