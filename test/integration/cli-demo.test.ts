/**
 * `shardline demo`, run as a child process (the built packages/cli/dist/bin.js): the whole pipeline
 * with a split half-way, with Redis leases and in memory, its tally, its cleanup and Ctrl-C.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type TestRedis, useTestRedis } from '@shardline/testing';
import { expect } from 'chai';
import type { DemoResult } from '../../packages/cli/src/commands/demo.js';

const BIN = fileURLToPath(new URL('../../packages/cli/dist/bin.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

type Child = ChildProcess & { out: () => string; err: () => string };

function start(args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(process.execPath, [BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return Object.assign(child, { out: () => stdout, err: () => stderr });
}

function finished(child: Child, timeoutMs = 40_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`shardline demo did not exit within ${timeoutMs} ms; stderr: ${child.err()}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: child.out(), stderr: child.err() });
    });
  });
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function keysWithPrefix(redis: TestRedis, prefix: string): Promise<string[]> {
  const client = redis.client();
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1_000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
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
  });

  it('prints a readable tally without --json', async () => {
    const run = await finished(start(['demo', '--records', '100', '--rate', '200', '--shards', '2'], env));
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^shardline demo: OK\n/);
    expect(run.stdout).to.match(/consumed {2}100 unique, 0 duplicates, 0 lost/);
    expect(run.stdout).to.include('order     kept for every key');
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
    expect(await keysWithPrefix(redis, 'shardline-demo')).to.deep.equal([]);
  });

  it('rejects bad options with exit 2, before starting anything', async () => {
    for (const args of [
      ['demo', '--records', '0'],
      ['demo', '--shards', '65'],
      ['demo', '--rate', 'fast'],
    ]) {
      const run = await finished(start(args, env), 10_000);
      expect(run.code, args.join(' ')).to.equal(2);
      expect(run.stderr).to.match(/error: option '--(records|shards|rate) <n>' argument '.*' is invalid/);
      expect(run.stderr).not.to.include('starting a local Kinesis');
    }
  });
});
