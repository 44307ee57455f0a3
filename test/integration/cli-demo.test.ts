/**
 * `shardline demo`, run as a child process (the bin: bin/shardline.js, loading the built dist/bin.js):
 * the whole pipeline with a split half-way, with Redis leases and in memory, its tally, its cleanup and Ctrl-C.
 */
import { createServer } from 'node:net';
import { COORDINATOR_METRIC_NAMES } from '@shardline/coordinator';
import { PRODUCER_METRIC_NAMES } from '@shardline/producer';
import { getFreePort, type TestRedis, useTestRedis } from '@shardline/testing';
import { expect } from 'chai';
import type { DemoResult } from '../../packages/cli/src/demo/result.js';
import {
  type Child,
  exited,
  keysWithPrefix,
  type Run,
  SHARDLINE_BIN,
  spawnNode,
  waitUntil,
} from '../support/child.js';
import { isProcessAlive } from '../support/process.js';

const start = (args: readonly string[], env: NodeJS.ProcessEnv) =>
  spawnNode([SHARDLINE_BIN, ...args], { env });
const finished = (child: Child, timeoutMs = 40_000) => exited(child, timeoutMs, 'shardline demo');
const waitFor = (what: string, condition: () => boolean, timeoutMs = 30_000) =>
  waitUntil(what, condition, timeoutMs);

/** The demo's Redis key prefix, from its start line on stderr (other runs may share the Redis). */
function demoKeyPrefix(stderr: string): string {
  const prefix = /\(keys (shardline-demo:[0-9a-f]+):\*\)/.exec(stderr)?.[1];
  expect(prefix, `key prefix in: ${stderr}`).to.be.a('string');
  return prefix!;
}

/** The checks every successful demo must pass: nothing lost, order kept, the split followed. */
function expectCompleteRun(run: Run, records: number): DemoResult {
  expect(run.code, run.stderr).to.equal(0);
  const result = JSON.parse(run.stdout) as DemoResult;
  expect(result.ok, result.reason).to.equal(true);
  expect(result.produced).to.equal(records);
  expect(result.failedPuts).to.equal(0);
  expect(result.consumed.unique).to.equal(records);
  expect(result.lost).to.equal(0);
  expect(result.orderKept).to.equal(true);
  expect(result.outOfOrder).to.equal(0);
  expect(result.keys).to.equal(32);
  // The rate reached is shown beside the one asked for (never above it by more than pacing slack).
  expect(result.rate.achieved).to.be.greaterThan(0);
  expect(result.rate.achieved).to.be.at.most(result.rate.requested * 1.5);

  // Two shards at start, one split: the parent ended, its two children were read after it.
  const split = result.split!;
  expect(split.children).to.have.length(2);
  expect(result.shards).to.have.length(4);
  const byId = new Map(result.shards.map((s) => [s.shardId, s]));
  const parent = byId.get(split.parent)!;
  expect(parent.state).to.equal('ended');
  expect(parent.checkpoint).to.equal('SHARD_END');
  for (const id of split.children) {
    const child = byId.get(id)!;
    expect(child.parentShardIds).to.deep.equal([split.parent]);
    expect(child.state).to.equal('reading');
    expect(child.recordsDelivered, `records read from ${id}`).to.be.greaterThan(0);
  }
  const delivered = result.shards.reduce((sum, s) => sum + s.recordsDelivered, 0);
  expect(delivered).to.equal(result.consumed.total);
  return result;
}

describe('shardline demo', function () {
  this.timeout(60_000);
  let redis: TestRedis;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    redis = await useTestRedis('cli-demo');
    env = { ...process.env, REDIS_URL: redis.url };
  });
  after(async () => {
    await redis?.cleanup();
  });

  it('with Redis leases: every record consumed once, in order per key, across a split; keys removed', async () => {
    const run = await finished(
      start(['--json', 'demo', '--records', '400', '--rate', '400', '--shards', '2'], env),
    );
    const result = expectCompleteRun(run, 400);
    expect(result.leases.store).to.equal('redis');
    expect(result.leases.url).to.equal(redis.url);
    expect(result.leases.keyPrefix).to.be.a('string');
    expect(await keysWithPrefix(redis, result.leases.keyPrefix!)).to.deep.equal([]);
  });

  it('--no-redis: in-memory leases, the same guarantees', async () => {
    const run = await finished(
      start(['--json', 'demo', '--records', '400', '--rate', '400', '--shards', '2', '--no-redis'], env),
    );
    const result = expectCompleteRun(run, 400);
    expect(result.leases).to.deep.equal({ store: 'memory' });
    expect(result.rate.requested).to.equal(400);
  });

  it('prints a readable tally without --json', async () => {
    const run = await finished(start(['demo', '--records', '100', '--rate', '200', '--shards', '2'], env));
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^shardline demo: OK\n/);
    expect(run.stdout).to.match(/consumed {2}100 unique, 0 duplicates, 0 lost/);
    expect(run.stdout).to.include('order     kept for every key');
    expect(run.stdout).to.match(/^ {2}rate {6}\d+ records\/s \(asked for 200\/s\)/m);
    expect(run.stderr).to.match(/demo: 100 records produced \(\d+\/s, asked for 200\/s\)/);
    expect(run.stdout).to.match(/shardId-000000000000 +ended/);
  });

  it('Ctrl-C stops gracefully: exit 130, Redis keys removed, nothing printed on stdout', async () => {
    const child = start(['demo', '--records', '2000', '--rate', '100', '--shards', '2'], env);
    const done = finished(child);
    await waitFor('production to start', () => /records at 100\/s/.test(child.err()));
    // Let the coordinator take its leases, so there is something to clean up.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    child.kill('SIGINT');
    const run = await done;
    expect(run.code, run.stderr).to.equal(130);
    expect(run.stdout).to.equal('');
    expect(await keysWithPrefix(redis, demoKeyPrefix(run.stderr))).to.deep.equal([]);
  });

  /** The checks of a multi-host run: nothing lost, order kept, split followed, every host consumed. */
  function expectHostsRun(run: Run, records: number, hosts: number): DemoResult {
    expect(run.code, run.stderr).to.equal(0);
    const result = JSON.parse(run.stdout) as DemoResult;
    expect(result.ok, result.reason).to.equal(true);
    expect(result.produced).to.equal(records);
    expect(result.consumed.unique).to.equal(records);
    expect(result.consumed.total).to.equal(records + result.consumed.duplicates);
    expect(result.lost).to.equal(0);
    expect(result.orderKept).to.equal(true);
    expect(result.leases.store).to.equal('redis');
    expect(result.hosts!.map((h) => h.hostId)).to.deep.equal(
      Array.from({ length: hosts }, (_, i) => `host-${i + 1}`),
    );
    // What the hosts handed to the handler is every delivery the tally counted, redeliveries included.
    expect(result.hosts!.reduce((sum, h) => sum + h.records, 0)).to.equal(result.consumed.total);
    const byId = new Map(result.shards.map((s) => [s.shardId, s]));
    expect(byId.get(result.split!.parent)?.state).to.equal('ended');
    for (const id of result.split!.children) expect(byId.get(id)?.state).to.equal('reading');
    return result;
  }

  it('--hosts 3: three host processes share the leases; every record once, in order, spread over the hosts', async () => {
    const run = await finished(
      start(['--json', 'demo', '--records', '900', '--rate', '300', '--shards', '4', '--hosts', '3'], env),
      60_000,
    );
    const result = expectHostsRun(run, 900, 3);
    expect(result.consumed.duplicates).to.equal(0);
    for (const host of result.hosts!) {
      expect(host.killed).to.equal(false);
      expect(host.records, `${host.hostId} consumed`).to.be.greaterThan(0);
    }
    expect(result).not.to.have.property('failover');
    expect(run.stderr).to.match(/3 hosts started \(host-1 pid \d+, host-2 pid \d+, host-3 pid \d+\)/);
    expect(await keysWithPrefix(redis, result.leases.keyPrefix!)).to.deep.equal([]);
  });

  it('--kill-one: one host SIGKILLed part-way, its shards taken over, nothing lost, duplicates counted', async () => {
    const run = await finished(
      start(
        [
          '--json',
          'demo',
          '--records',
          '900',
          '--rate',
          '300',
          '--shards',
          '4',
          '--hosts',
          '3',
          '--kill-one',
        ],
        env,
      ),
      60_000,
    );
    const result = expectHostsRun(run, 900, 3);
    const killed = result.hosts!.filter((h) => h.killed);
    expect(killed).to.have.length(1);
    const failover = result.failover!;
    expect(failover.hostId).to.equal(killed[0]!.hostId);
    expect(failover.shards.length, 'shards the killed host was reading').to.be.greaterThan(0);
    expect(failover.takenOver.map((t) => t.shardId)).to.have.members(failover.shards);
    for (const t of failover.takenOver) {
      expect(t.by).not.to.equal(failover.hostId);
      // The demo's leases last 3 s: a dead host's shards move within a few seconds.
      expect(t.afterMs).to.be.lessThan(10_000);
    }
    expect(result.consumed.duplicates).to.be.at.least(0);
    expect(run.stderr).to.match(new RegExp(`SIGKILLed ${failover.hostId} at \\d+\\.\\ds, reading shardId-`));
    expect(run.stderr).to.match(
      new RegExp(`took over shardId-\\d+ \\d+\\.\\ds after ${failover.hostId} was killed`),
    );

    expect(await keysWithPrefix(redis, result.leases.keyPrefix!)).to.deep.equal([]);
  });

  it('--kill-one, readable tally: names the killed host, its shards and who took them', async () => {
    const run = await finished(
      start(
        ['demo', '--records', '600', '--rate', '300', '--shards', '2', '--hosts', '2', '--kill-one'],
        env,
      ),
      60_000,
    );
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^shardline demo: OK\n/);
    expect(run.stdout).to.match(/consumed {2}600 unique, \d+ duplicates, 0 lost/);
    expect(run.stdout).to.match(/hosts {5}host-1 \d+ records(?: \(killed\))?, host-2 \d+ records/);
    expect(run.stdout).to.match(
      /failover {2}host-\d SIGKILLed at \d+\.\ds holding \d shards?: shardId-\d+ -> host-\d after \d+\.\ds/,
    );
  });

  it('--metrics-port: GET /metrics answers 200 with shardline_ metrics while the demo runs', async () => {
    const port = await getFreePort();
    const child = start(
      [
        'demo',
        '--records',
        '1500',
        '--rate',
        '300',
        '--shards',
        '2',
        '--hosts',
        '2',
        '--metrics-port',
        String(port),
      ],
      env,
    );
    const done = finished(child, 60_000);
    await waitFor('the hosts to start', () => /2 hosts started/.test(child.err()));
    // Scrape until the run shows up in the numbers (the hosts answer through the parent).
    let response: Response | undefined;
    let body = '';
    const deadline = Date.now() + 20_000;
    while (!/^shardline_demo_consumed_records [1-9]/m.test(body) && Date.now() < deadline) {
      response = await fetch(`http://127.0.0.1:${port}/metrics`);
      body = await response.text();
      if (response.status !== 200) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(response?.status).to.equal(200);
    expect(response?.headers.get('content-type')).to.match(/^text\/plain/);
    expect(body).to.match(/^# HELP shardline_/m);
    expect(body).to.match(/^shardline_demo_produced_records \d+$/m);
    expect(body).to.match(/^shardline_demo_consumed_records \d+$/m);
    // The hosts' own series come through the parent, told apart by their host label.
    for (const hostId of ['host-1', 'host-2']) {
      expect(body).to.match(new RegExp(`^shardline_(?!demo_)\\w+\\{[^}]*host="${hostId}"[^}]*\\} \\d`, 'm'));
    }
    expect((await fetch(`http://127.0.0.1:${port}/other`)).status).to.equal(404);
    const run = await done;
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.include(`metrics   http://127.0.0.1:${port}/metrics`);
    // The server is closed with the demo.
    const after = await fetch(`http://127.0.0.1:${port}/metrics`).then(
      () => 'answered',
      () => 'refused',
    );
    expect(after).to.equal('refused');
  });

  it('--metrics-port with one in-process host: the library metrics of the run, no host label', async () => {
    const port = await getFreePort();
    const child = start(
      ['demo', '--records', '1200', '--rate', '300', '--shards', '2', '--metrics-port', String(port)],
      env,
    );
    const done = finished(child, 60_000);
    let body = '';
    const deadline = Date.now() + 20_000;
    while (!/^shardline_demo_consumed_records [1-9]/m.test(body) && Date.now() < deadline) {
      body = await fetch(`http://127.0.0.1:${port}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(body).to.match(/^shardline_demo_consumed_records [1-9]\d*$/m);
    expect(body).not.to.include('host="');
    // Every documented metric is served, and the run shows in the main ones.
    for (const name of [
      ...Object.values(COORDINATOR_METRIC_NAMES),
      ...Object.values(PRODUCER_METRIC_NAMES),
    ]) {
      expect(body).to.match(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    const sum = (name: string) =>
      [...body.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    const consumed = sum('shardline_demo_consumed_records');
    const processed = sum(COORDINATOR_METRIC_NAMES.recordsProcessed);
    expect(processed, 'records processed').to.be.greaterThan(0).and.at.most(consumed);
    expect(sum(PRODUCER_METRIC_NAMES.recordsPut), 'records put').to.be.greaterThan(0).and.at.most(1200);
    expect(sum(COORDINATOR_METRIC_NAMES.currentLeases), 'current leases').to.be.within(1, 3);
    expect(sum(`${COORDINATOR_METRIC_NAMES.handlerDuration}_count`), 'handler calls').to.be.greaterThan(0);
    const run = await done;
    expect(run.code, run.stderr).to.equal(0);
  });

  it('--hosts, Ctrl-C: the hosts stop gracefully, exit 130, Redis keys removed, no host process left', async () => {
    const child = start(['demo', '--records', '3000', '--rate', '100', '--shards', '2', '--hosts', '2'], env);
    const done = finished(child);
    await waitFor('the hosts to start', () => /2 hosts started/.test(child.err()));
    const pids = [...child.err().matchAll(/host-\d pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids).to.have.length(2);
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    // A terminal's Ctrl-C reaches the whole process group: the hosts get it too, and must wait for
    // the parent to stop them.
    for (const pid of pids) process.kill(pid, 'SIGINT');
    child.kill('SIGINT');
    const run = await done;
    expect(run.code, run.stderr).to.equal(130);
    expect(run.stdout).to.equal('');
    expect(await keysWithPrefix(redis, demoKeyPrefix(run.stderr))).to.deep.equal([]);
    for (const pid of pids) expect(isProcessAlive(pid), `host pid ${pid}`).to.equal(false);
  });

  it('rejects bad combinations with exit 2, before starting anything', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const busyPort = (busy.address() as { port: number }).port;
    const deadRedis = `redis://127.0.0.1:${await getFreePort()}`;
    try {
      const cases: Array<{ args: string[]; env?: NodeJS.ProcessEnv; message: RegExp }> = [
        { args: ['demo', '--kill-one'], message: /--kill-one needs --hosts 2 or more \(got 1\)/ },
        { args: ['demo', '--hosts', '1', '--kill-one'], message: /--kill-one needs --hosts 2 or more/ },
        {
          args: ['demo', '--hosts', '3', '--no-redis'],
          message: /--hosts 3 needs Redis leases .*: drop --no-redis/,
        },
        {
          args: ['demo', '--hosts', '2'],
          env: { ...env, REDIS_URL: deadRedis },
          message: new RegExp(`--hosts 2 needs a Redis: none answered at ${deadRedis} \\(set REDIS_URL\\)`),
        },
        { args: ['demo', '--hosts', '17'], message: /option '--hosts <n>' argument '17' is invalid/ },
        { args: ['demo', '--hosts', '0'], message: /option '--hosts <n>' argument '0' is invalid/ },
        {
          args: ['demo', '--metrics-port', '70000'],
          message: /option '--metrics-port <port>' argument '70000' is invalid/,
        },
        {
          args: ['demo', '--metrics-port', String(busyPort)],
          message: new RegExp(`--metrics-port ${busyPort}: .*EADDRINUSE`),
        },
      ];
      for (const { args, env: caseEnv, message } of cases) {
        const run = await finished(start(args, caseEnv ?? env), 10_000);
        expect(run.code, `${args.join(' ')}: ${run.stderr}`).to.equal(2);
        expect(run.stderr, args.join(' ')).to.match(message);
        expect(run.stderr, args.join(' ')).not.to.include('starting a local Kinesis');
        expect(run.stdout).to.equal('');
      }
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
  });

  it('rejects bad options with exit 2, before starting anything', async () => {
    for (const args of [
      ['demo', '--records', '0'],
      ['demo', '--shards', '65'],
      ['demo', '--rate', 'fast'],
    ]) {
      const run = await finished(start(args, env), 10_000);
      expect(run.code, args.join(' ')).to.equal(2);
      expect(run.stderr).to.match(
        /^shardline: option '--(records|shards|rate) <n>' argument '.*' is invalid/,
      );
      expect(run.stderr).not.to.include('starting a local Kinesis');
    }
  });
});
