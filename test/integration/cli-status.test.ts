/**
 * `shardline status`, run as a child process (the bin: bin/shardline.js, loading the built dist/bin.js)
 * against a local Kinesis and the test Redis, while a coordinator in this process holds the leases: the
 * table, --json, every lease state (held, expired, free, ended), the lag from Kinesis, --watch, and each
 * error case.
 */
import { SplitShardCommand } from '@aws-sdk/client-kinesis';
import { type Coordinator, RedisLeaseManager, startCoordinator } from '@shardline/coordinator';
import {
  getFreePort,
  type LocalKinesis,
  startLocalKinesis,
  type TestRedis,
  useTestRedis,
} from '@shardline/testing';
import { expect } from 'chai';
import type { StatusReport } from '../../packages/cli/src/commands/status.js';
import { type Child, exited, spawnCli, waitUntil } from '../support/child.js';
import { type Item, keyedItems, putItems } from './coordinator-helpers.js';

// The middle of shard 0 of a two-shard stream (0 .. 2^127 - 1).
const MID_HASH_KEY = (1n << 126n).toString();

const start = (args: readonly string[]) => spawnCli(args);
const finished = (child: Child, timeoutMs = 20_000) => exited(child, timeoutMs, 'shardline status');
const waitFor = (what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 20_000) =>
  waitUntil(what, condition, timeoutMs, 50);

for (const engine of ['kinesalite', 'kinesis-mock'] as const) {
  describe(`shardline status (${engine})`, function () {
    this.timeout(90_000);
    let kinesis: LocalKinesis;
    let redis: TestRedis;
    let coordinator: Coordinator<Item> | undefined;
    let g: string[];
    const stream = `cli-status-${process.pid}`;
    const group = 'status-group';
    const received: Item[] = [];

    const status = (...args: string[]) =>
      finished(
        start([
          ...g,
          ...args,
          'status',
          stream,
          '--group',
          group,
          '--redis',
          redis.url,
          '--key-prefix',
          redis.keyPrefix,
        ]),
      );

    before(async () => {
      kinesis = await startLocalKinesis({ engine });
      redis = await useTestRedis('cli-status');
      g = ['--endpoint', kinesis.endpoint];
      await kinesis.createStream(stream, { shards: 2 });
      coordinator = await startCoordinator<Item>({
        streamName: stream,
        group,
        hostId: 'status-host',
        kinesis: kinesis.clientConfig,
        leases: { redis: redis.url, keyPrefix: redis.keyPrefix },
        workerThreads: 1,
        idleFetchIntervalMs: 100,
        shardSyncIntervalMs: 1_000,
        checkpoint: { mode: 'auto', intervalMs: 200 },
        handler: (batch) => {
          for (const r of batch.records) received.push(r.data);
        },
      });
      const client = kinesis.client();
      await putItems(client, stream, keyedItems(60, 8));
      await waitFor('the first 60 records', () => received.length >= 60);
      // A split: the parent is read to its end (SHARD_END) and its children leased.
      await client.send(
        new SplitShardCommand({
          StreamName: stream,
          ShardToSplit: 'shardId-000000000000',
          NewStartingHashKey: MID_HASH_KEY,
        }),
      );
      await kinesis.waitForStreamActive(stream);
      await putItems(client, stream, keyedItems(40, 8, new Map()));
      await waitFor(
        'the split followed and every record read',
        () => {
          const shards = coordinator!.status().shards;
          return (
            received.length >= 100 &&
            shards.find((s) => s.shardId === 'shardId-000000000000')?.state === 'ended' &&
            shards.filter((s) => s.state === 'reading').length === 3 &&
            shards.every((s) => s.state !== 'reading' || s.checkpoint !== undefined)
          );
        },
        40_000,
      );
    });
    after(async () => {
      await coordinator?.stop();
      await redis?.cleanup();
      await kinesis?.stop();
    });

    it('prints every lease (owner, counter, checkpoint, state, lag) and the live hosts; --json the same', async () => {
      const run = await status('--json');
      expect(run.code, run.stderr).to.equal(0);
      const report = JSON.parse(run.stdout) as StatusReport;
      expect(report.group).to.equal(group);
      expect(report.stream).to.equal(stream);
      expect(report.keyPrefix).to.equal(redis.keyPrefix);
      const byId = new Map(report.shards.map((s) => [s.shardId, s]));
      expect([...byId.keys()].sort()).to.deep.equal([
        'shardId-000000000000',
        'shardId-000000000001',
        'shardId-000000000002',
        'shardId-000000000003',
      ]);
      const parent = byId.get('shardId-000000000000')!;
      expect(parent.state).to.equal('ended');
      expect(parent.checkpoint).to.equal('SHARD_END');
      expect(parent.childShardIds).to.have.members(['shardId-000000000002', 'shardId-000000000003']);
      expect(parent.millisBehindLatest).to.equal(undefined);
      expect(parent.lagUnavailable).to.equal('ended');
      for (const id of ['shardId-000000000001', 'shardId-000000000002', 'shardId-000000000003']) {
        const shard = byId.get(id)!;
        expect(shard.state, id).to.equal('held');
        expect(shard.owner, id).to.equal('status-host');
        expect(shard.counter, id).to.be.at.least(1);
        expect(shard.checkpoint, id).to.match(/^\d+$/);
        expect(shard.expiresInMs, id).to.be.greaterThan(0);
        // Every record was read and checkpointed: the checkpoint is at the tip of the shard.
        expect(shard.millisBehindLatest, `${id} lag (${shard.lagUnavailable})`).to.equal(0);
      }
      expect(byId.get('shardId-000000000002')!.parentShardIds).to.deep.equal(['shardId-000000000000']);
      expect(report.hosts).to.have.length(1);
      expect(report.hosts[0]!.hostId).to.equal('status-host');
      expect(report.hosts[0]!.leasesHeld).to.equal(3);

      const table = await status();
      expect(table.code, table.stderr).to.equal(0);
      expect(table.stdout).to.include(`group ${group} on stream ${stream}`);
      expect(table.stdout).to.include('4 leases: 1 ended, 3 held');
      expect(table.stdout).to.match(/shardId-000000000000 +ended +- +1 +SHARD_END +- +-\n/);
      expect(table.stdout).to.match(
        /shardId-000000000001 +held +status-host +\d+ +\d+ +in \d+\.\ds +0\.0s\n/,
      );
      expect(table.stdout).to.match(
        /1 live host\nhost +shards +held now +last seen\nstatus-host +3 +3 +\d+\.\ds ago\n/,
      );
    });

    it('shows a lease whose owner stopped renewing as expired, a lease nobody took as free, lag from the trim horizon', async () => {
      // Another group on the same stream: a host that took a lease and died (a 200 ms lease, never renewed).
      const other = 'status-dead-host';
      const manager = new RedisLeaseManager({
        redis: redis.url,
        group: other,
        stream,
        hostId: 'dead-host',
        keyPrefix: redis.keyPrefix,
        leaseDurationMs: 200,
      });
      try {
        await manager.ensureLeases([
          { shardId: 'shardId-000000000001', parentShardIds: [] },
          { shardId: 'shardId-000000000003', parentShardIds: [] },
        ]);
        expect(await manager.acquire('shardId-000000000001')).to.not.equal(undefined);
        await new Promise((resolve) => setTimeout(resolve, 400));
      } finally {
        await manager.close();
      }
      const run = await finished(
        start([
          ...g,
          '--json',
          'status',
          stream,
          '--group',
          other,
          '--redis',
          redis.url,
          '--key-prefix',
          redis.keyPrefix,
        ]),
      );
      expect(run.code, run.stderr).to.equal(0);
      const report = JSON.parse(run.stdout) as StatusReport;
      expect(report.shards.map((s) => s.shardId)).to.deep.equal([
        'shardId-000000000001',
        'shardId-000000000003',
      ]);
      const free = report.shards[1]!;
      expect(free.state).to.equal('free');
      expect(free.owner).to.equal(undefined);
      expect(free.counter).to.equal(0);
      const shard = report.shards[0]!;
      expect(shard.state).to.equal('expired');
      expect(shard.owner).to.equal('dead-host');
      expect(shard.counter).to.equal(1);
      expect(shard.expiresInMs).to.be.lessThan(0);
      expect(shard.checkpoint).to.equal(undefined);
      // Read from the trim horizon: the records put on shard 1 are all behind.
      expect(shard.millisBehindLatest, shard.lagUnavailable).to.be.a('number');
      expect(report.hosts).to.deep.equal([]);
    });

    it('a group with no leases: says so, exit 0 (--json: shards [])', async () => {
      const args = [
        ...g,
        'status',
        stream,
        '--group',
        'nobody',
        '--redis',
        redis.url,
        '--key-prefix',
        redis.keyPrefix,
      ];
      const run = await finished(start(args));
      expect(run.code, run.stderr).to.equal(0);
      expect(run.stdout).to.include('no leases: no consumer of this group has started on this stream');
      const json = await finished(start([...g, '--json', ...args.slice(2)]));
      expect(json.code, json.stderr).to.equal(0);
      const report = JSON.parse(json.stdout) as StatusReport;
      expect(report.shards).to.deep.equal([]);
      expect(report.hosts).to.deep.equal([]);
    });

    it('--watch redraws until Ctrl-C, then exits 130', async () => {
      const child = start([
        ...g,
        '--json',
        'status',
        stream,
        '--group',
        group,
        '--redis',
        redis.url,
        '--key-prefix',
        redis.keyPrefix,
        '--watch',
        '0.5',
      ]);
      const done = finished(child);
      await waitFor(
        'two refreshes',
        () =>
          child
            .out()
            .split('\n')
            .filter((l) => l !== '').length >= 2,
      );
      child.kill('SIGINT');
      const run = await done;
      expect(run.code, run.stderr).to.equal(130);
      const reports = run.stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as StatusReport);
      expect(reports.length).to.be.at.least(2);
      for (const report of reports) expect(report.shards).to.have.length(4);
      expect(Date.parse(reports[1]!.readAt)).to.be.greaterThan(Date.parse(reports[0]!.readAt));
    });

    it('a shard stopped after a failure shows as failed: who stopped it, where and why (table and --json)', async () => {
      const failedGroup = 'status-failed';
      const manager = new RedisLeaseManager({
        redis: redis.url,
        group: failedGroup,
        stream,
        hostId: 'host-x',
        keyPrefix: redis.keyPrefix,
      });
      try {
        await manager.ensureLeases([{ shardId: 'shardId-000000000001', parentShardIds: [] }]);
        const lease = (await manager.acquire('shardId-000000000001'))!;
        await manager.release('shardId-000000000001', lease.counter, {
          hostId: 'host-x',
          reason: 'handler',
          code: 'ERR_CODEC',
          message: "codec 'json': payload is not valid JSON",
          sequenceNumber: '49000000000000000000000000000000000000000000000000000001',
          atMs: Date.UTC(2026, 11, 3),
        });
      } finally {
        await manager.close();
      }
      const args = [
        'status',
        stream,
        '--group',
        failedGroup,
        '--redis',
        redis.url,
        '--key-prefix',
        redis.keyPrefix,
      ];
      const json = await finished(start([...g, '--json', ...args]));
      expect(json.code, json.stderr).to.equal(0);
      const shard = (JSON.parse(json.stdout) as StatusReport).shards[0]!;
      expect(shard.state).to.equal('failed');
      expect(shard.failure).to.deep.equal({
        hostId: 'host-x',
        reason: 'handler',
        code: 'ERR_CODEC',
        message: "codec 'json': payload is not valid JSON",
        sequenceNumber: '49000000000000000000000000000000000000000000000000000001',
        at: '2026-12-03T00:00:00.000Z',
      });
      const table = await finished(start([...g, ...args]));
      expect(table.code, table.stderr).to.equal(0);
      expect(table.stdout).to.include('1 failed');
      expect(table.stdout).to.include(
        "shardId-000000000001 stopped on host-x at sequence number 49000000000000000000000000000000000000000000000000000001 (2026-12-03T00:00:00.000Z): ERR_CODEC: codec 'json': payload is not valid JSON",
      );
    });

    it('errors: missing --group or --redis exit 2, unreachable Redis 4 (quickly), missing stream 3', async () => {
      const noGroup = await finished(start([...g, 'status', stream, '--redis', redis.url]));
      expect(noGroup.code).to.equal(2);
      expect(noGroup.stderr).to.include("required option '--group <group>' not specified");
      const noRedis = await finished(start([...g, 'status', stream, '--group', group]));
      expect(noRedis.code).to.equal(2);
      expect(noRedis.stderr).to.include("required option '--redis <url>' not specified");
      const badWatch = await finished(
        start([...g, 'status', stream, '--group', group, '--redis', redis.url, '--watch', 'x']),
      );
      expect(badWatch.code).to.equal(2);
      expect(badWatch.stderr).to.include("option '--watch [seconds]' argument 'x' is invalid");

      const badGroup = await finished(
        start([...g, 'status', stream, '--group', 'a{b', '--redis', redis.url]),
      );
      expect(badGroup.code, badGroup.stderr).to.equal(2);
      expect(badGroup.stderr).to.match(/^shardline: group .*\{/);

      const port = await getFreePort();
      const down = await finished(
        start([...g, 'status', stream, '--group', group, '--redis', `redis://127.0.0.1:${port}`]),
      );
      expect(down.code, down.stderr).to.equal(4);
      expect(down.stderr).to.match(
        new RegExp(
          `^shardline: cannot reach Redis at redis://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\)\\n$`,
        ),
      );
      expect(down.ms).to.be.lessThan(10_000);

      const missing = await finished(
        start([
          ...g,
          'status',
          'no-such-stream',
          '--group',
          group,
          '--redis',
          redis.url,
          '--key-prefix',
          redis.keyPrefix,
        ]),
      );
      expect(missing.code, missing.stderr).to.equal(3);
      expect(missing.stderr).to.equal("shardline: stream 'no-such-stream' not found\n");
    });
  });
}
