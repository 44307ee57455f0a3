/**
 * The programs in examples/, run as a user runs them (`tsx examples/<name>.ts`, as child processes) with
 * zero setup: each starts its own local Kinesis and uses the test Redis under a key prefix of this run.
 * Each must exit 0 with its summary line, the counts in that line must hold, and it must leave no
 * Redis key behind.
 */
import { fileURLToPath } from 'node:url';
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { type LocalKinesis, startLocalKinesis, type TestRedis, useTestRedis } from '@shardline/testing';
import { expect } from 'chai';
import { type Child, exited, keysWithPrefix, type Run, spawnNode, waitUntil } from '../support/child.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLE_TIMEOUT_MS = 90_000;

/** The environment a user has on a fresh clone: no Kinesis endpoint, no stream; Redis from the test. */
function exampleEnv(redis: TestRedis, keyPrefix: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, REDIS_URL: redis.url, EXAMPLE_KEY_PREFIX: keyPrefix };
  for (const name of ['KINESIS_ENDPOINT', 'STREAM_NAME', 'KINESIS_ENGINE', 'RECORDS']) delete env[name];
  return env;
}

// `node --import tsx file` is what `npx tsx file` runs, without npx's start-up cost.
const start = (name: string, env: NodeJS.ProcessEnv) =>
  spawnNode(['--import', 'tsx', `examples/${name}`], { cwd: ROOT, env });
const finished = (child: Child, name: string, timeoutMs = EXAMPLE_TIMEOUT_MS) =>
  exited(child, timeoutMs, name);
const waitFor = (what: string, condition: () => boolean, timeoutMs = 30_000) =>
  waitUntil(what, condition, timeoutMs);

/** The example's summary line (`<name>: OK: ...`), matched against `pattern`; fails with the output. */
function summary(run: Run, pattern: RegExp): number[] {
  const match = pattern.exec(run.stdout);
  expect(
    match,
    `no summary line matching ${pattern}\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`,
  ).to.not.equal(null);
  return match!.slice(1).map(Number);
}

describe('examples/', function () {
  this.timeout(EXAMPLE_TIMEOUT_MS + 30_000);
  let redis: TestRedis;
  const children: Child[] = [];

  before(async () => {
    redis = await useTestRedis('examples');
  });
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });
  after(async () => {
    await redis?.cleanup();
  });

  async function runExample(name: string): Promise<{ run: Run; keyPrefix: string }> {
    const keyPrefix = `${redis.keyPrefix}:${name.replace(/\..*$/, '')}`;
    const child = start(name, exampleEnv(redis, keyPrefix));
    children.push(child);
    const run = await finished(child, name);
    expect(run.code, `${name} exit code\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`).to.equal(0);
    expect(await keysWithPrefix(redis, keyPrefix), 'Redis keys left behind').to.deep.equal([]);
    return { run, keyPrefix };
  }

  it('basic-consumer: consumes every record, in order per key, and checkpoints', async () => {
    const { run } = await runExample('basic-consumer.ts');
    const [consumed, produced, duplicates, outOfOrder, checkpoints] = summary(
      run,
      /^basic-consumer: OK: consumed (\d+) of (\d+) records \((\d+) duplicates, (\d+) out of order\), (\d+) checkpoints written/m,
    );
    expect(produced).to.equal(1_000);
    expect(consumed).to.equal(produced);
    expect(outOfOrder).to.equal(0);
    // One consumer that was never interrupted redelivers nothing.
    expect(duplicates).to.equal(0);
    // At least the final checkpoint of each of the 2 shards, written by stop().
    expect(checkpoints).to.be.at.least(2);
  });

  it('basic-consumer: SIGINT stops it gracefully, with exit code 130 and its summary', async () => {
    const keyPrefix = `${redis.keyPrefix}:basic-consumer-sigint`;
    const child = start('basic-consumer.ts', exampleEnv(redis, keyPrefix));
    children.push(child);
    const exit = finished(child, 'basic-consumer.ts');
    // The first line is printed once the local Kinesis runs; the signal handlers were installed before.
    await waitFor('the first line of basic-consumer', () => child.out().includes('basic-consumer: stream'));
    child.kill('SIGINT');
    const run = await exit;
    const [consumed, produced] = summary(
      run,
      /^basic-consumer: (?:OK|stopped by SIGINT): consumed (\d+) of (\d+) records/m,
    );
    expect(run.stdout).to.include('basic-consumer: SIGINT: stopping gracefully');
    // Interrupted before every record was consumed: 130, like a shell; a run that finished anyway: 0.
    expect(run.code).to.equal(consumed < produced ? 130 : 0);
    expect(run.signal).to.equal(null);
    expect(await keysWithPrefix(redis, keyPrefix), 'Redis keys left behind').to.deep.equal([]);
  });

  // The examples that have no Ctrl-C handling of their own get it from support.ts: their README
  // promises that they clean up. Run against a Kinesis of the test's own, to see their stream deleted too.
  for (const name of ['cpu-heavy', 'dead-letter', 'producer-aggregation']) {
    it(`${name}: Ctrl-C (SIGINT) stops it with exit 130 and deletes its stream and Redis keys`, async () => {
      let kinesis: LocalKinesis | undefined;
      try {
        kinesis = await startLocalKinesis({ engine: 'kinesalite' });
        const keyPrefix = `${redis.keyPrefix}:${name}-sigint`;
        const env = { ...exampleEnv(redis, keyPrefix), KINESIS_ENDPOINT: kinesis.endpoint };
        const child = start(`${name}.ts`, env);
        children.push(child);
        const exit = finished(child, name);
        await waitFor(`the first line of ${name}`, () => child.out().includes(`${name}: stream `));
        const runId = new RegExp(`stream shardline-example-${name}-([0-9a-f]+) `).exec(child.out())?.[1];
        child.kill('SIGINT');
        const run = await exit;
        // Interrupted, or (on a fast machine) done before it noticed: either way, its own summary line.
        summary(run, new RegExp(`^${name}: (?:OK|stopped by SIGINT): `, 'm'));
        const stopped = run.stdout.includes(`${name}: stopped by SIGINT: `);
        expect(run.code, `${run.stdout}\n${run.stderr}`).to.equal(stopped ? 130 : 0);
        expect(run.signal).to.equal(null);
        expect(await keysWithPrefix(redis, keyPrefix), 'Redis keys left behind').to.deep.equal([]);
        expect(
          await keysWithPrefix(redis, `bull:orders-dlq-${runId}`),
          'queue keys left behind',
        ).to.deep.equal([]);
        const client = kinesis.client();
        const streams = (await client.send(new ListStreamsCommand({}))).StreamNames ?? [];
        expect(
          streams.filter((s) => s.startsWith(`shardline-example-${name}-`)),
          'streams left behind',
        ).to.deep.equal([]);
      } finally {
        await kinesis?.stop();
      }
    });
  }

  it('multi-host: three host processes share the stream through Redis leases', async () => {
    const { run } = await runExample('multi-host.ts');
    const [consumed, produced, , hosts, acquired, released, handoffs, lost] = summary(
      run,
      /^multi-host: OK: consumed (\d+) of (\d+) records \((\d+) duplicates\) across (\d+) hosts .*lease events: (\d+) acquired, (\d+) released \((\d+) handoffs\), (\d+) lost/m,
    );
    expect(produced).to.equal(2_000);
    expect(consumed).to.equal(produced);
    expect(hosts).to.equal(3);
    // host-1 handed leases to host-2 and host-3 as they joined. Every lease taken was given up in the
    // end: released, or (on a machine stalled past the 3 s leases) lost, never left held.
    expect(handoffs).to.be.at.least(2);
    expect(released + lost).to.equal(acquired);
    for (const host of ['host-1', 'host-2', 'host-3']) {
      expect(run.stdout).to.match(new RegExp(`\\[${host}\\] lease\\.acquired`));
    }
  });

  it('cpu-heavy: the handlerModule scores every record in the worker threads', async () => {
    const { run } = await runExample('cpu-heavy.ts');
    const [scored, produced, , duplicates, onMainThread] = summary(
      run,
      /^cpu-heavy: OK: scored (\d+) of (\d+) records in (\d+) batches \((\d+) duplicates, (\d+) batches on the main thread\)/m,
    );
    expect(produced).to.equal(1_000);
    expect(scored).to.equal(produced);
    expect(duplicates).to.equal(0);
    expect(onMainThread).to.equal(0);
  });

  it('producer-aggregation: receipts, writable() and aggregates read back in full', async () => {
    const { run } = await runExample('producer-aggregation.ts');
    const [read, produced, unpacked, receipts, sent, kinesisRecords] = summary(
      run,
      /^producer-aggregation: OK: read back (\d+) of (\d+) records \((\d+) unpacked from aggregates\); (\d+) receipts; (\d+) records sent as (\d+) Kinesis records/m,
    );
    expect(produced).to.equal(2_000);
    expect(read).to.equal(produced);
    expect(sent).to.equal(produced);
    expect(receipts).to.equal(500);
    // Every record travelled inside an aggregate, and aggregates held many records each.
    expect(unpacked).to.equal(produced);
    expect(kinesisRecords).to.be.below(produced / 10);
  });

  it('dead-letter: bad records reach the BullMQ queue and a Worker reads them', async () => {
    const { run } = await runExample('dead-letter.ts');
    const [processed, valid, dead, bad, rejected, undecodable] = summary(
      run,
      /^dead-letter: OK: processed (\d+) of (\d+) valid orders; dead-lettered (\d+) of (\d+) bad records \((\d+) rejected by the handler, (\d+) undecodable\)/m,
    );
    expect(valid).to.equal(490);
    expect(processed).to.equal(valid);
    expect(bad).to.equal(11);
    expect(dead).to.equal(bad);
    expect(rejected).to.equal(10);
    expect(undecodable).to.equal(1);
    expect(run.stdout.match(/^ {2}dead letter: /gm)?.length).to.equal(bad);
    // The example deletes its queue (BullMQ's default prefix 'bull'): no key of it is left.
    const runId = /stream shardline-example-dead-letter-([0-9a-f]+) /.exec(run.stdout)?.[1];
    expect(runId, 'run id in the first line').to.be.a('string');
    expect(await keysWithPrefix(redis, `bull:orders-dlq-${runId}`), 'queue keys left behind').to.deep.equal(
      [],
    );
  });
});
