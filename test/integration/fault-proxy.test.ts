import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  type GetRecordsCommandOutput,
  GetShardIteratorCommand,
  KinesisClient,
  type KinesisClientConfig,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
  type PutRecordsRequestEntry,
  RegisterStreamConsumerCommand,
  SplitShardCommand,
  SubscribeToShardCommand,
} from '@aws-sdk/client-kinesis';
import { ErrorCodes } from '@shardline/common';
import {
  FaultProxy,
  type LocalKinesis,
  type LocalKinesisEngine,
  startLocalKinesis,
} from '@shardline/testing';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { expect } from 'chai';
import { rejection } from '../support/assertions.js';
import { seededRandom } from '../support/random.js';

type AwsError = Error & {
  code?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $retryable?: unknown;
};

const SHARD0 = 'shardId-000000000000';
const SHARD1 = 'shardId-000000000001';
let streamCounter = 0;
const uniqueStream = (prefix: string) => `${prefix}-${process.pid}-${++streamCounter}`;

for (const engine of ['kinesis-mock', 'kinesalite'] as LocalKinesisEngine[]) {
  describe(`FaultProxy through the AWS SDK (${engine})`, () => {
    let kinesis: LocalKinesis;
    let direct: KinesisClient;
    let proxy: FaultProxy;
    let client: KinesisClient;
    const clients: KinesisClient[] = [];
    const proxies: FaultProxy[] = [];
    const TWO = 'two-shards';

    /** A client through `p` (default: this test's proxy), with no SDK retries unless overridden. */
    function proxied(extra: Partial<KinesisClientConfig> = {}, p: FaultProxy = proxy): KinesisClient {
      const c = new KinesisClient({ ...p.clientConfig(kinesis.clientConfig), maxAttempts: 1, ...extra });
      clients.push(c);
      return c;
    }

    async function startProxy(options: Omit<Parameters<typeof FaultProxy.start>[0], 'target'> = {}) {
      const p = await FaultProxy.start({ target: kinesis.endpoint, ...options });
      proxies.push(p);
      return p;
    }

    async function iteratorFor(c: KinesisClient, stream: string, shardId: string): Promise<string> {
      const out = await c.send(
        new GetShardIteratorCommand({
          StreamName: stream,
          ShardId: shardId,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      );
      return out.ShardIterator!;
    }

    /** Every record of a shard, read straight from the emulator (not through the proxy). */
    async function readShard(stream: string, shardId: string): Promise<string[]> {
      let iterator: string | undefined = await iteratorFor(direct, stream, shardId);
      const data: string[] = [];
      for (let emptyReads = 0; iterator !== undefined && emptyReads < 2; ) {
        const out: GetRecordsCommandOutput = await direct.send(
          new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }),
        );
        const records = out.Records ?? [];
        if (records.length === 0) emptyReads++;
        for (const r of records) data.push(Buffer.from(r.Data!).toString('utf8'));
        iterator = out.NextShardIterator;
      }
      return data;
    }

    before(async () => {
      kinesis = await startLocalKinesis({ engine });
      direct = kinesis.client();
      await kinesis.createStream(TWO, { shards: 2 });
    });

    beforeEach(async () => {
      proxy = await startProxy();
      client = proxied();
    });

    afterEach(async () => {
      for (const c of clients.splice(0)) c.destroy();
      await Promise.all(proxies.splice(0).map((p) => p.stop()));
    });

    after(async () => {
      await kinesis?.stop();
    });

    it('throttles exactly `times` GetRecords calls on one shard, then lets them through; other shards unaffected', async () => {
      const it0 = await iteratorFor(client, TWO, SHARD0);
      const it1 = await iteratorFor(client, TWO, SHARD1);
      const rule = proxy.addRule({
        operation: 'GetRecords',
        shardId: SHARD0,
        times: 2,
        action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
      });

      expect(
        (await client.send(new GetRecordsCommand({ ShardIterator: it1 }))).$metadata.httpStatusCode,
      ).to.equal(200);
      for (let i = 0; i < 2; i++) {
        const err = await rejection<AwsError>(client.send(new GetRecordsCommand({ ShardIterator: it0 })));
        expect(err.name).to.equal('ProvisionedThroughputExceededException');
        expect(err.$metadata?.httpStatusCode).to.equal(400);
        expect(err.message).to.equal(
          `Rate exceeded for shard ${SHARD0} in stream ${TWO} under account 000000000000.`,
        );
      }
      const ok = await client.send(new GetRecordsCommand({ ShardIterator: it0 }));
      expect(ok.NextShardIterator).to.be.a('string');
      expect(
        (await client.send(new GetRecordsCommand({ ShardIterator: it1 }))).$metadata.httpStatusCode,
      ).to.equal(200);

      expect(rule.hits).to.equal(2);
      expect(rule.spent).to.equal(true);
      expect(proxy.counters.injected).to.deep.equal({ ProvisionedThroughputExceededException: 2 });
      expect(proxy.counters.requests.GetRecords).to.equal(5);
    });

    it('follows a shard through the NextShardIterator of each GetRecords answer', async () => {
      let iterator = await iteratorFor(client, TWO, SHARD1);
      for (let i = 0; i < 3; i++) {
        iterator = (await client.send(new GetRecordsCommand({ ShardIterator: iterator }))).NextShardIterator!;
      }
      proxy.addRule({ shardId: SHARD1, action: { type: 'error', error: 'ExpiredIteratorException' } });
      const err = await rejection<AwsError>(client.send(new GetRecordsCommand({ ShardIterator: iterator })));
      expect(err.name).to.equal('ExpiredIteratorException');
      expect(err.message).to.match(
        /^Iterator expired\. The iterator was created at time .* 300000 milliseconds\.$/,
      );
    });

    it('fires a probability rule on exactly the calls its seeded random picks', async () => {
      const seed = 20_261_126;
      const draws = seededRandom(seed);
      let expected = 0;
      for (let i = 0; i < 200; i++) if (draws() < 0.3) expected++;
      // What this seed yields: a fixed number, not a statistical hope (near 0.3 * 200 = 60).
      expect(expected).to.equal(55);

      const p = await startProxy({ random: seededRandom(seed) });
      const c = proxied({}, p);
      const rule = p.addRule({
        operation: 'DescribeStreamSummary',
        probability: 0.3,
        action: { type: 'error', error: 'LimitExceededException' },
      });
      let failed = 0;
      for (let i = 0; i < 200; i++) {
        try {
          await c.send(new DescribeStreamSummaryCommand({ StreamName: TWO }));
        } catch (error) {
          expect((error as Error).name).to.equal('LimitExceededException');
          failed++;
        }
      }
      expect(failed).to.equal(expected);
      expect(rule.hits).to.equal(expected);
      expect(p.counters.injected.LimitExceededException).to.equal(expected);
      expect(p.counters.requests.DescribeStreamSummary).to.equal(200);
    });

    it('answers InternalFailure with HTTP 500, which the SDK retries by default', async () => {
      proxy.addRule({
        operation: 'ListShards',
        times: 1,
        action: { type: 'error', error: 'InternalFailure' },
      });
      const err = await rejection<AwsError>(client.send(new ListShardsCommand({ StreamName: TWO })));
      expect(err.name).to.equal('InternalFailure');
      expect(err.$metadata?.httpStatusCode).to.equal(500);

      proxy.addRule({
        operation: 'ListShards',
        times: 1,
        action: { type: 'error', error: 'InternalFailure' },
      });
      const retrying = proxied({ maxAttempts: 3 });
      const out = await retrying.send(new ListShardsCommand({ StreamName: TWO }));
      expect(out.Shards).to.have.length(2);
      expect(out.$metadata.attempts).to.equal(2);
      expect(proxy.counters.injected.InternalFailure).to.equal(2);
    });

    it('shows the SDK retrying throttles up to maxAttempts (default 3)', async () => {
      const rule = proxy.addRule({
        operation: 'DescribeStreamSummary',
        times: 5,
        action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
      });
      const retrying = proxied({ maxAttempts: undefined });
      const err = await rejection<AwsError>(
        retrying.send(new DescribeStreamSummaryCommand({ StreamName: TWO })),
      );
      expect(err.name).to.equal('ProvisionedThroughputExceededException');
      expect(err.$metadata?.attempts).to.equal(3);
      expect(rule.hits).to.equal(3);
      const out = await retrying.send(new DescribeStreamSummaryCommand({ StreamName: TWO }));
      expect(out.$metadata.attempts).to.equal(3);
      expect(rule.hits).to.equal(5);
    });

    it('resets the connection: the SDK sees ECONNRESET, the next call works, default retries recover', async () => {
      proxy.addRule({ operation: 'ListShards', times: 1, action: { type: 'reset' } });
      const err = await rejection<AwsError>(client.send(new ListShardsCommand({ StreamName: TWO })));
      expect(err.code).to.equal('ECONNRESET');
      expect((await client.send(new ListShardsCommand({ StreamName: TWO }))).Shards).to.have.length(2);

      proxy.addRule({ operation: 'ListShards', times: 1, action: { type: 'reset' } });
      const out = await proxied({ maxAttempts: 3 }).send(new ListShardsCommand({ StreamName: TWO }));
      expect(out.$metadata.attempts).to.equal(2);
      expect(proxy.counters.resets).to.equal(2);
    });

    it('delays a call by a latency rule', async () => {
      await client.send(new ListShardsCommand({ StreamName: TWO })); // connection warm
      proxy.addRule({ operation: 'ListShards', times: 1, action: { type: 'latency', ms: 300 } });
      const started = performance.now();
      await client.send(new ListShardsCommand({ StreamName: TWO }));
      expect(performance.now() - started).to.be.at.least(300);
      expect(proxy.counters.injected.latency).to.equal(1);
    });

    it('injects ExpiredIteratorException on GetRecords and LimitExceededException on ListShards', async () => {
      const iterator = await iteratorFor(client, TWO, SHARD0);
      proxy.addRule({
        operation: 'GetRecords',
        times: 1,
        action: { type: 'error', error: 'ExpiredIteratorException' },
      });
      proxy.addRule({
        operation: 'ListShards',
        times: 1,
        action: { type: 'error', error: 'LimitExceededException' },
      });
      const expired = await rejection<AwsError>(
        client.send(new GetRecordsCommand({ ShardIterator: iterator })),
      );
      expect(expired.name).to.equal('ExpiredIteratorException');
      const limited = await rejection<AwsError>(client.send(new ListShardsCommand({ StreamName: TWO })));
      expect(limited.name).to.equal('LimitExceededException');
      expect(limited.message).to.equal(`Rate exceeded for stream ${TWO} under account 000000000000.`);
      expect(limited.$metadata?.httpStatusCode).to.equal(400);
      // Spent rules let the next calls through.
      await client.send(new GetRecordsCommand({ ShardIterator: iterator }));
      await client.send(new ListShardsCommand({ StreamName: TWO }));
    });

    it('fails a fraction of PutRecords entries per entry; only the others reach the stream', async () => {
      const stream = uniqueStream('partial');
      await kinesis.createStream(stream, { shards: 2 });
      const p = await startProxy({ random: seededRandom(7) });
      const c = proxied({}, p);
      p.addRule({ action: { type: 'partial-failure', fraction: 0.3 } });
      const entries: PutRecordsRequestEntry[] = Array.from({ length: 100 }, (_, i) => ({
        Data: Buffer.from(`record-${i}`),
        PartitionKey: `key-${i}`,
      }));
      const out = await c.send(new PutRecordsCommand({ StreamName: stream, Records: entries }));
      expect(out.Records).to.have.length(100);
      const failedIdx = out.Records!.flatMap((r, i) => (r.ErrorCode ? [i] : []));
      expect(failedIdx).to.have.length(30);
      expect(out.FailedRecordCount).to.equal(30);
      for (const i of failedIdx) {
        const r = out.Records![i]!;
        expect(r.ErrorCode).to.equal('ProvisionedThroughputExceededException');
        expect(r.ErrorMessage).to.match(
          new RegExp(
            `^Rate exceeded for shard shardId-00000000000[01] in stream ${stream} under account 000000000000\\.$`,
          ),
        );
        expect(r.SequenceNumber).to.equal(undefined);
      }
      const okByShard = new Map<string, string[]>();
      out.Records!.forEach((r, i) => {
        if (r.ErrorCode) return;
        expect(r.SequenceNumber).to.be.a('string');
        okByShard.set(r.ShardId!, [...(okByShard.get(r.ShardId!) ?? []), `record-${i}`]);
      });
      // Failed entries name the shard Kinesis routes them to (MD5 of the key against the ranges).
      const ranges = (await kinesis.listShards(stream)).map((s) => ({
        id: s.ShardId!,
        start: BigInt(s.HashKeyRange!.StartingHashKey!),
        end: BigInt(s.HashKeyRange!.EndingHashKey!),
      }));
      for (const i of failedIdx) {
        const h = BigInt(`0x${createHash('md5').update(`key-${i}`).digest('hex')}`);
        const shard = ranges.find((r) => r.start <= h && h <= r.end)!.id;
        expect(out.Records![i]!.ErrorMessage).to.contain(`for shard ${shard} in`);
      }
      for (const shardId of [SHARD0, SHARD1]) {
        expect(await readShard(stream, shardId)).to.deep.equal(okByShard.get(shardId) ?? []);
      }
      expect(p.counters.injected['partial-failure']).to.equal(1);
      expect(p.counters.injectedEntries).to.equal(30);
    });

    it('forward: true lets the write happen upstream and still answers the error', async () => {
      const stream = uniqueStream('forward');
      await kinesis.createStream(stream, { shards: 1 });
      proxy.addRule({
        operation: 'PutRecord',
        times: 1,
        action: { type: 'error', error: 'InternalFailure', forward: true },
      });
      const err = await rejection<AwsError>(
        client.send(
          new PutRecordCommand({
            StreamName: stream,
            Data: Buffer.from('written-anyway'),
            PartitionKey: 'k',
          }),
        ),
      );
      expect(err.name).to.equal('InternalFailure');
      expect(await readShard(stream, SHARD0)).to.deep.equal(['written-anyway']);
    });

    describe('limits mode', () => {
      it('lets about 5 GetRecords calls per second through on a shard, as fast as they come (real clock)', async () => {
        const p = await startProxy({ limits: true });
        const c = proxied({}, p);
        let iterator = await iteratorFor(c, TWO, SHARD0);
        const arrivals: number[] = [];
        p.on('request', (e) => {
          if (e.operation === 'GetRecords') arrivals.push(e.at);
        });
        let ok = 0;
        let throttled = 0;
        for (let i = 0; i < 20; i++) {
          try {
            iterator = (await c.send(new GetRecordsCommand({ ShardIterator: iterator }))).NextShardIterator!;
            ok++;
          } catch (error) {
            expect((error as Error).name).to.equal('ProvisionedThroughputExceededException');
            throttled++;
          }
        }
        const spanSeconds = (arrivals.at(-1)! - arrivals[0]!) / 1000;
        // A full bucket of 5 at the first call, refilled at 5/s while the calls kept coming.
        expect(ok).to.be.at.least(5);
        expect(ok).to.be.at.most(5 + Math.floor(5 * spanSeconds));
        expect(ok + throttled).to.equal(20);
        expect(p.counters.throttledCalls).to.equal(throttled);
        // The other shard has its own budget.
        await c.send(new GetRecordsCommand({ ShardIterator: await iteratorFor(c, TWO, SHARD1) }));
      });

      it('accepts about 1,000 of 3,000 records sent at one shard at once; exactly those are in the shard', async () => {
        const stream = uniqueStream('put-limit');
        await kinesis.createStream(stream, { shards: 1 });
        const p = await startProxy({ limits: true });
        const c = proxied({}, p);
        const arrivals: number[] = [];
        p.on('request', (e) => {
          if (e.operation === 'PutRecords') arrivals.push(e.at);
        });
        const calls = Array.from({ length: 6 }, (_, call) =>
          c.send(
            new PutRecordsCommand({
              StreamName: stream,
              Records: Array.from({ length: 500 }, (_, i) => ({
                Data: Buffer.from(`r-${call * 500 + i}`),
                PartitionKey: `k-${i}`,
              })),
            }),
          ),
        );
        const outs = await Promise.all(calls);
        const accepted: string[] = [];
        let failedCount = 0;
        outs.forEach((out, call) => {
          expect(out.Records).to.have.length(500);
          const failedHere = out.Records!.filter((r) => r.ErrorCode !== undefined);
          expect(out.FailedRecordCount).to.equal(failedHere.length);
          failedCount += failedHere.length;
          out.Records!.forEach((r, i) => {
            if (r.ErrorCode === undefined) {
              expect(r.SequenceNumber).to.be.a('string');
              accepted.push(`r-${call * 500 + i}`);
            } else {
              expect(r.ErrorCode).to.equal('ProvisionedThroughputExceededException');
              expect(r.ErrorMessage).to.equal(
                `Rate exceeded for shard ${SHARD0} in stream ${stream} under account 000000000000.`,
              );
            }
          });
        });
        const spanSeconds = (arrivals.at(-1)! - arrivals[0]!) / 1000;
        expect(accepted.length).to.be.at.least(1000);
        expect(accepted.length).to.be.at.most(1000 + Math.floor(1000 * spanSeconds));
        expect(failedCount).to.equal(3000 - accepted.length);
        expect(p.counters.throttledEntries).to.equal(failedCount);
        const inShard = await readShard(stream, SHARD0);
        expect([...inShard].sort()).to.deep.equal([...accepted].sort());
      });

      it('refills the GetRecords call budget at 5/s (controlled clock: exact counts)', async () => {
        let now = 0;
        const p = await startProxy({ limits: true, now: () => now });
        const c = proxied({}, p);
        const iterator = await iteratorFor(c, TWO, SHARD1);
        const attempt = async (n: number) => {
          let ok = 0;
          for (let i = 0; i < n; i++) {
            const res = await c.send(new GetRecordsCommand({ ShardIterator: iterator })).then(
              () => true,
              (error: Error) => {
                expect(error.name).to.equal('ProvisionedThroughputExceededException');
                return false;
              },
            );
            if (res) ok++;
          }
          return ok;
        };
        expect(await attempt(7)).to.equal(5);
        now += 200;
        expect(await attempt(2)).to.equal(1);
        now += 1_000;
        expect(await attempt(6)).to.equal(5);
        now += 10_000; // a full bucket holds one second's worth, not more
        expect(await attempt(6)).to.equal(5);
        expect(p.counters.throttledCalls).to.equal(2 + 1 + 1 + 1);
      });

      it('carries the byte debt of a large read over to the next calls (controlled clock)', async () => {
        const stream = uniqueStream('read-debt');
        await kinesis.createStream(stream, { shards: 1 });
        await direct.send(
          new PutRecordsCommand({
            StreamName: stream,
            Records: Array.from({ length: 20 }, () => ({ Data: Buffer.alloc(1_000, 1), PartitionKey: 'k' })),
          }),
        );
        let now = 0;
        const p = await startProxy({ limits: { readBytesPerSec: 10_000 }, now: () => now });
        const c = proxied({}, p);
        const first = await c.send(
          new GetRecordsCommand({ ShardIterator: await iteratorFor(c, stream, SHARD0), Limit: 100 }),
        );
        expect(first.Records).to.have.length(20); // 20 * (1000 + 1) = 20,020 bytes from a 10,000 bucket
        const next = () => c.send(new GetRecordsCommand({ ShardIterator: first.NextShardIterator! }));
        expect((await rejection<AwsError>(next())).name).to.equal('ProvisionedThroughputExceededException');
        now += 1_002; // -10,020 + 10,020 = 0: still no budget
        expect((await rejection<AwsError>(next())).name).to.equal('ProvisionedThroughputExceededException');
        now += 1;
        expect((await next()).Records).to.have.length(0);
      });

      it('refuses PutRecords entries beyond the byte budget and PutRecord calls beyond the record budget', async () => {
        const stream = uniqueStream('put-bytes');
        await kinesis.createStream(stream, { shards: 1 });
        let now = 0;
        const p = await startProxy({
          limits: { putBytesPerSec: 10_000, putRecordsPerSec: 7 },
          now: () => now,
        });
        const c = proxied({}, p);
        const out = await c.send(
          new PutRecordsCommand({
            StreamName: stream,
            // 1,999 bytes of data + 1 byte of key = 2,000: five fit in 10,000.
            Records: Array.from({ length: 10 }, (_, i) => ({
              Data: Buffer.alloc(1_999, 65 + i),
              PartitionKey: 'k',
            })),
          }),
        );
        expect(out.FailedRecordCount).to.equal(5);
        expect(out.Records!.map((r) => r.ErrorCode ?? 'ok')).to.deep.equal([
          ...Array(5).fill('ok'),
          ...Array(5).fill('ProvisionedThroughputExceededException'),
        ]);
        // 1 ms later: 10 bytes and 0.007 records more. 5 of 7 records used: two small (2-byte) PutRecord
        // calls pass, the third is refused as a whole for want of a record token.
        now += 1;
        await c.send(new PutRecordCommand({ StreamName: stream, Data: Buffer.from('a'), PartitionKey: 'k' }));
        await c.send(new PutRecordCommand({ StreamName: stream, Data: Buffer.from('b'), PartitionKey: 'k' }));
        const err = await rejection<AwsError>(
          c.send(new PutRecordCommand({ StreamName: stream, Data: Buffer.from('c'), PartitionKey: 'k' })),
        );
        expect(err.name).to.equal('ProvisionedThroughputExceededException');
        expect(err.$metadata?.httpStatusCode).to.equal(400);
        expect(p.counters.throttledCalls).to.equal(1);
        expect(p.counters.throttledEntries).to.equal(5);
        const inShard = await readShard(stream, SHARD0);
        expect(inShard.map((d) => d[0])).to.deep.equal(['A', 'B', 'C', 'D', 'E', 'a', 'b']);
        // Turning limits off lets everything through again.
        p.setLimits(false);
        await c.send(new PutRecordCommand({ StreamName: stream, Data: Buffer.from('c'), PartitionKey: 'k' }));
      });
    });

    it('routes by the current shards after a split that went through the proxy', async () => {
      const stream = uniqueStream('split');
      await kinesis.createStream(stream, { shards: 1 });
      const put = (ehk: string) =>
        client.send(
          new PutRecordsCommand({
            StreamName: stream,
            Records: [{ Data: Buffer.from(ehk), PartitionKey: 'k', ExplicitHashKey: ehk }],
          }),
        );
      const high = ((1n << 127n) + 5n).toString();
      proxy.addRule({ shardId: SHARD0, action: { type: 'partial-failure', fraction: 1 } });
      expect((await put(high)).FailedRecordCount).to.equal(1);
      proxy.clearRules();
      await client.send(
        new SplitShardCommand({
          StreamName: stream,
          ShardToSplit: SHARD0,
          NewStartingHashKey: (1n << 127n).toString(),
        }),
      );
      await kinesis.waitForStreamActive(stream);
      const rule = proxy.addRule({
        shardId: 'shardId-000000000002',
        action: { type: 'partial-failure', fraction: 1 },
      });
      const out = await put(high);
      expect(out.FailedRecordCount).to.equal(1);
      expect(out.Records![0]!.ErrorMessage).to.contain('shardId-000000000002');
      expect((await put('1')).FailedRecordCount).to.equal(0); // low half: shardId-000000000001
      expect(rule.hits).to.equal(1);
    });

    it('keeps one keep-alive connection for many SDK calls', async () => {
      const c = proxied({
        requestHandler: new NodeHttpHandler({ httpAgent: { keepAlive: true, maxSockets: 1 } }),
      });
      for (let i = 0; i < 50; i++) await c.send(new ListShardsCommand({ StreamName: TWO }));
      expect(proxy.counters.connections).to.equal(1);
      expect(proxy.counters.forwarded).to.equal(50);
    });

    it('survives malformed requests and passes them through for the upstream to answer', async () => {
      proxy.addRule({ shardId: SHARD0, action: { type: 'error', error: 'InternalFailure' } });
      proxy.addRule({ action: { type: 'partial-failure', fraction: 0.5 } });
      const { port } = new URL(proxy.endpoint);
      const raw = (target: string | undefined, body: string) =>
        new Promise<{ status: number; body: string }>((resolve, reject) => {
          const headers: Record<string, string> = {
            'content-type': 'application/x-amz-json-1.1',
            authorization:
              'AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0',
            'x-amz-date': '20260101T000000Z',
          };
          if (target !== undefined) headers['x-amz-target'] = target;
          const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/', headers }, (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
          });
          req.on('error', reject);
          req.end(body);
        });
      const bad = await raw('Kinesis_20131202.GetRecords', '{not json');
      expect(bad.status).to.equal(400);
      expect(JSON.parse(bad.body).__type).to.match(/SerializationException/);
      const notArray = await raw(
        'Kinesis_20131202.PutRecords',
        JSON.stringify({ StreamName: TWO, Records: 'x' }),
      );
      expect(notArray.status).to.equal(400);
      const unknownIterator = await raw(
        'Kinesis_20131202.GetRecords',
        JSON.stringify({ ShardIterator: 'nope' }),
      );
      expect(unknownIterator.status).to.be.oneOf([400, 500]); // the upstream's own answer, not a rule's
      const noTarget = await raw(undefined, '{}');
      expect(noTarget.status).to.be.within(400, 499);

      const garbage = await new Promise<string>((resolve) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
        let text = '';
        socket.on('data', (d) => {
          text += d.toString();
        });
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(text));
      });
      expect(garbage).to.match(/^HTTP\/1\.1 400/);

      proxy.clearRules();
      expect((await client.send(new ListShardsCommand({ StreamName: TWO }))).Shards).to.have.length(2);
    });

    if (engine === 'kinesis-mock') {
      it('relays SubscribeToShard event streams, and applies rules to them', async () => {
        const stream = uniqueStream('efo');
        const created = await kinesis.createStream(stream, { shards: 1 });
        const streamArn =
          created.streamArn ??
          (await direct.send(new DescribeStreamSummaryCommand({ StreamName: stream })))
            .StreamDescriptionSummary!.StreamARN!;
        const { Consumer } = await direct.send(
          new RegisterStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: 'proxy-test' }),
        );
        const consumerArn = Consumer!.ConsumerARN!;
        for (let i = 0; i < 200; i++) {
          const d = await direct.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumerArn }));
          if (d.ConsumerDescription?.ConsumerStatus === 'ACTIVE') break;
          await new Promise((r) => setTimeout(r, 25));
        }
        await direct.send(
          new PutRecordCommand({ StreamName: stream, Data: Buffer.from('via-efo'), PartitionKey: 'k' }),
        );
        const subscribe = () =>
          client.send(
            new SubscribeToShardCommand({
              ConsumerARN: consumerArn,
              ShardId: SHARD0,
              StartingPosition: { Type: 'TRIM_HORIZON' },
            }),
          );
        proxy.addRule({
          shardId: SHARD0,
          times: 1,
          action: { type: 'error', error: 'LimitExceededException' },
        });
        expect((await rejection<AwsError>(subscribe())).name).to.equal('LimitExceededException');

        const out = await subscribe();
        const seen: string[] = [];
        for await (const event of out.EventStream!) {
          for (const r of event.SubscribeToShardEvent?.Records ?? [])
            seen.push(Buffer.from(r.Data!).toString());
          if (seen.length > 0) break;
        }
        expect(seen).to.deep.equal(['via-efo']);
        expect(proxy.counters.requests.SubscribeToShard).to.equal(2);
      });

      it('matches streams addressed by StreamARN', async () => {
        const stream = uniqueStream('arn');
        const created = await kinesis.createStream(stream, { shards: 2 });
        const arn =
          created.streamArn ??
          (await direct.send(new DescribeStreamSummaryCommand({ StreamName: stream })))
            .StreamDescriptionSummary!.StreamARN!;
        proxy.addRule({
          streamName: stream,
          shardId: SHARD1,
          action: { type: 'partial-failure', fraction: 1 },
        });
        const out = await client.send(
          new PutRecordsCommand({
            StreamARN: arn,
            Records: [
              { Data: Buffer.from('low'), PartitionKey: 'k', ExplicitHashKey: '0' },
              {
                Data: Buffer.from('high'),
                PartitionKey: 'k',
                ExplicitHashKey: ((1n << 128n) - 1n).toString(),
              },
            ],
          }),
        );
        expect(out.Records!.map((r) => r.ErrorCode ?? r.ShardId)).to.deep.equal([
          SHARD0,
          'ProvisionedThroughputExceededException',
        ]);
        expect(await readShard(stream, SHARD0)).to.deep.equal(['low']);
        expect(await readShard(stream, SHARD1)).to.deep.equal([]);

        proxy.addRule({
          operation: 'GetRecords',
          streamName: stream,
          shardId: SHARD0,
          times: 1,
          action: { type: 'error', error: 'ProvisionedThroughputExceededException' },
        });
        const it0 = await client.send(
          new GetShardIteratorCommand({ StreamARN: arn, ShardId: SHARD0, ShardIteratorType: 'TRIM_HORIZON' }),
        );
        const err = await rejection<AwsError>(
          client.send(new GetRecordsCommand({ ShardIterator: it0.ShardIterator!, StreamARN: arn })),
        );
        expect(err.name).to.equal('ProvisionedThroughputExceededException');
        expect(err.message).to.contain(`shard ${SHARD0} in stream ${stream}`);
      });
    }
  });
}

describe('FaultProxy without an upstream', () => {
  it('rejects invalid options and rules, naming the field', async () => {
    const option = async (p: Promise<unknown>) => {
      const err = (await rejection<AwsError>(p)) as AwsError & { option?: string };
      expect(err.code).to.equal(ErrorCodes.INVALID_OPTION);
      return err.message;
    };
    expect(await option(FaultProxy.start({ target: 'ftp://127.0.0.1:1' }))).to.match(/^target /);
    expect(
      await option(FaultProxy.start({ target: 'http://127.0.0.1:1', limits: { getRecordsPerSec: 0 } })),
    ).to.match(/^limits\.getRecordsPerSec must be a finite number > 0/);
    expect(
      await option(FaultProxy.start({ target: 'http://127.0.0.1:1', limits: { bogus: 1 } as never })),
    ).to.match(/^limits\.bogus /);
    const p = await FaultProxy.start({ target: 'http://127.0.0.1:1' });
    try {
      const rule = (r: unknown) => option(Promise.resolve().then(() => p.addRule(r as never)));
      expect(await rule({ action: { type: 'partial-failure', fraction: 2 } })).to.match(
        /^rule\.action\.fraction /,
      );
      expect(
        await rule({ operation: 'GetRecords', action: { type: 'partial-failure', fraction: 0.5 } }),
      ).to.match(/^rule\.operation /);
      expect(await rule({ action: { type: 'latency', ms: -1 } })).to.match(/^rule\.action\.ms /);
      expect(await rule({ action: { type: 'explode' } })).to.match(/^rule\.action\.type /);
      expect(await rule({ times: 0, action: { type: 'reset' } })).to.match(/^rule\.times /);
      expect(await rule({ probability: 1.5, action: { type: 'reset' } })).to.match(/^rule\.probability /);
      expect(await rule({ action: { type: 'error', error: '' } })).to.match(/^rule\.action\.error /);
    } finally {
      await p.stop();
    }
  });

  it('answers errors in CBOR to CBOR clients', async () => {
    const p = await FaultProxy.start({ target: 'http://127.0.0.1:1' });
    try {
      p.addRule({ operation: 'GetRecords', action: { type: 'error', error: 'InternalFailure' } });
      const answer = await new Promise<{ status: number; type: string; body: Buffer }>((resolve, reject) => {
        const req = httpRequest(
          `${p.endpoint}/`,
          {
            method: 'POST',
            headers: {
              'content-type': 'application/x-amz-cbor-1.1',
              'x-amz-target': 'Kinesis_20131202.GetRecords',
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({
                status: res.statusCode!,
                type: res.headers['content-type']!,
                body: Buffer.concat(chunks),
              }),
            );
          },
        );
        req.on('error', reject);
        req.end(Buffer.from([0xa0])); // an empty CBOR map
      });
      expect(answer.status).to.equal(500);
      expect(answer.type).to.equal('application/x-amz-cbor-1.1');
      // {"__type": "InternalFailure"}: a map of 1, a text of 6, a text of 15.
      expect(answer.body.toString('hex')).to.equal(
        `a166${Buffer.from('__type').toString('hex')}6f${Buffer.from('InternalFailure').toString('hex')}`,
      );
    } finally {
      await p.stop();
    }
  });

  it('stop() does not wait for pending latency faults', async () => {
    const p = await FaultProxy.start({ target: 'http://127.0.0.1:1' });
    p.addRule({ action: { type: 'latency', ms: 60_000 } });
    const c = new KinesisClient({
      ...p.clientConfig({ region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } }),
      maxAttempts: 1,
    });
    try {
      const pending = rejection<AwsError>(c.send(new ListShardsCommand({ StreamName: 's' })));
      while ((p.counters.injected.latency ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
      const started = performance.now();
      await p.stop();
      expect(performance.now() - started).to.be.below(5_000);
      expect((await pending).code).to.equal('ECONNRESET');
    } finally {
      c.destroy();
    }
  });

  it('answers 502 when the upstream is down (the SDK sees a retriable server error), and stops idempotently', async () => {
    const p = await FaultProxy.start({ target: 'http://127.0.0.1:1' });
    const c = new KinesisClient({
      ...p.clientConfig({ region: 'us-east-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } }),
      maxAttempts: 1,
    });
    try {
      const err = await rejection<AwsError>(c.send(new ListShardsCommand({ StreamName: 's' })));
      expect(err.$metadata?.httpStatusCode).to.equal(502);
      expect(err.name).to.equal('FaultProxyUpstreamError');
    } finally {
      c.destroy();
      await Promise.all([p.stop(), p.stop()]);
      await p.stop();
    }
    const refused = await rejection<AwsError>(
      new Promise((resolve, reject) => {
        const socket = connect(Number(new URL(p.endpoint).port), '127.0.0.1', () =>
          resolve(socket.destroy()),
        );
        socket.on('error', reject);
      }),
    );
    expect(refused.code).to.equal('ECONNREFUSED');
  });
});
