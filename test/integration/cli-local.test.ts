/**
 * The `shardline` bin (as npm links it) for a newcomer's local setup: `shardline local` (a local Kinesis
 * until Ctrl-C), the endpoint from the AWS SDK's variables, a loopback endpoint with no AWS credentials
 * at all, and the one `shardline:` prefix on every diagnostic, usage errors included.
 */
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { isPortOpen } from '@shardline/testing';
import { expect } from 'chai';
import { type Child, exited, type Run, SHARDLINE_BIN, spawnNode, waitUntil } from '../support/child.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A shell with no AWS settings at all (no credentials, region, profile or endpoint) and no ~/.aws. */
function bareEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (name.startsWith('AWS_') && name !== 'AWS_CA_BUNDLE') continue;
    env[name] = value;
  }
  // No shared config or credentials files, and no instance metadata probe: a laptop without AWS.
  env.AWS_CONFIG_FILE = '/nonexistent/aws/config';
  env.AWS_SHARED_CREDENTIALS_FILE = '/nonexistent/aws/credentials';
  env.AWS_EC2_METADATA_DISABLED = 'true';
  return { ...env, ...extra };
}

const start = (args: readonly string[], env: NodeJS.ProcessEnv = bareEnv()): Child =>
  spawnNode([SHARDLINE_BIN, ...args], { env });
const shardline = (args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Run> =>
  exited(start(args, env), 30_000, `shardline ${args.join(' ')}`);

interface LocalReady {
  engine: string;
  endpoint: string;
  port: number;
  region: string;
  pid?: number;
  streams: Array<{ streamName: string; shards: number }>;
  env: Record<string, string>;
}

describe('shardline local, endpoints from the environment, loopback credentials', function () {
  this.timeout(90_000);
  const children: Child[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  });

  /** `shardline local ...args --json` until it printed its line. */
  async function local(
    args: readonly string[],
  ): Promise<{ child: Child; ready: LocalReady; done: Promise<Run> }> {
    const child = start(['--json', 'local', ...args]);
    children.push(child);
    const done = exited(child, 60_000, 'shardline local');
    await waitUntil(
      'shardline local to be ready',
      () => child.out().includes('\n') || child.exitCode !== null,
      45_000,
    );
    expect(child.out(), child.err()).to.match(/\n$/);
    return { child, ready: JSON.parse(child.out()) as LocalReady, done };
  }

  it('local --engine kinesalite: creates the streams, prints endpoint and environment; Ctrl-C stops it (130)', async () => {
    const { child, ready, done } = await local([
      '--engine',
      'kinesalite',
      '--port',
      '0',
      '--stream',
      'a',
      '--stream',
      'b',
      '--shards',
      '3',
    ]);
    expect(ready).to.include({ engine: 'kinesalite', region: 'us-east-1' });
    expect(ready.endpoint).to.equal(`http://127.0.0.1:${ready.port}`);
    expect(ready.streams).to.deep.equal([
      { streamName: 'a', shards: 3 },
      { streamName: 'b', shards: 3 },
    ]);
    expect(ready.env).to.deep.equal({
      AWS_ENDPOINT_URL_KINESIS: ready.endpoint,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'shardline-local',
      AWS_SECRET_ACCESS_KEY: 'shardline-local',
    });
    // Everything it printed to export, in a shell of its own: the streams are there.
    const described = await shardline(['--json', 'describe', 'b'], bareEnv(ready.env));
    expect(described.code, described.stderr).to.equal(0);
    expect((JSON.parse(described.stdout) as { openShardCount: number }).openShardCount).to.equal(3);

    child.kill('SIGINT');
    const run = await done;
    expect(run.code, run.stderr).to.equal(130);
    expect(run.stderr).to.equal(
      'shardline: local: starting kinesalite...\nshardline: local: kinesalite stopped\n',
    );
    expect(await isPortOpen(ready.port)).to.equal(false);
  });

  it('local (kinesis-mock, the default) prints the exports to copy; list works with them', async () => {
    const child = start(['local', '--port', '0', '--stream', 'orders']);
    children.push(child);
    const done = exited(child, 60_000, 'shardline local');
    await waitUntil('the exports', () => child.out().includes('Ctrl-C stops it'), 45_000);
    const out = child.out();
    expect(out).to.match(/^local Kinesis \(kinesis-mock\) at http:\/\/127\.0\.0\.1:\d+, region us-east-1\n/);
    expect(out).to.include('stream orders: 1 shard, ACTIVE\n');
    const exports = Object.fromEntries(
      [...out.matchAll(/^ {2}export (\w+)=(\S+)$/gm)].map((m) => [m[1]!, m[2]!] as const),
    );
    expect(Object.keys(exports)).to.deep.equal([
      'AWS_ENDPOINT_URL_KINESIS',
      'AWS_REGION',
      'AWS_ACCESS_KEY_ID',
      'AWS_SECRET_ACCESS_KEY',
    ]);
    const list = await shardline(['list'], bareEnv(exports));
    expect([list.code, list.stdout, list.stderr]).to.deep.equal([0, 'orders\n', '']);
    child.kill('SIGINT');
    expect((await done).code).to.equal(130);
  });

  it('your own code with the exported environment and no kinesis config: Producer and startCoordinator, every record read in order per key', async () => {
    const { child, ready, done } = await local([
      '--engine',
      'kinesalite',
      '--port',
      '0',
      '--stream',
      'orders',
      '--shards',
      '2',
    ]);
    // What a newcomer's application does: no endpoint, region or credentials in the code.
    const program = `
      import { startCoordinator } from '@shardline/coordinator';
      import { Producer } from '@shardline/producer';
      const seen = new Set();
      const last = new Map();
      let outOfOrder = 0;
      const coordinator = await startCoordinator({
        streamName: 'orders', group: 'app', workerThreads: 1, idleFetchIntervalMs: 100,
        handler: async (batch) => {
          for (const { data } of batch.records) {
            if ((last.get(data.key) ?? -1) >= data.seq) outOfOrder++;
            last.set(data.key, data.seq);
            seen.add(data.key + '/' + data.seq);
          }
        },
      });
      const producer = new Producer({ streamName: 'orders', maxInFlightPerShard: 1 });
      await Promise.all(Array.from({ length: 200 }, (_, i) =>
        producer.put({ key: 'k' + (i % 8), seq: Math.floor(i / 8) }, { partitionKey: 'k' + (i % 8) })));
      await producer.close();
      const deadline = Date.now() + 20000;
      while (seen.size < 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await coordinator.stop();
      console.log(JSON.stringify({ consumed: seen.size, keys: last.size, outOfOrder }));`;
    const app = spawnNode(['--input-type=module', '-e', program], { env: bareEnv(ready.env), cwd: ROOT });
    children.push(app);
    const run = await exited(app, 40_000, 'the application');
    expect(run.code, run.stderr).to.equal(0);
    expect(JSON.parse(run.stdout)).to.deep.equal({ consumed: 200, keys: 8, outOfOrder: 0 });
    child.kill('SIGINT');
    await done;
  });

  it('local: an emulator that dies by itself ends the command with exit 1, saying so', async () => {
    const { ready, done } = await local(['--port', '0']);
    const { pid } = ready;
    expect(pid, 'kinesis-mock runs as a child process').to.be.a('number');
    process.kill(pid!, 'SIGKILL');
    const run = await done;
    expect(run.code, run.stderr).to.equal(1);
    expect(run.stderr).to.include(`shardline: local: kinesis-mock (pid ${pid}) exited on its own\n`);
  });

  it('a loopback --endpoint needs no AWS credentials or region; AWS_ENDPOINT_URL(_KINESIS) give the endpoint', async () => {
    const { child, ready, done } = await local([
      '--engine',
      'kinesalite',
      '--port',
      '0',
      '--stream',
      'orders',
    ]);
    const localhost = ready.endpoint.replace('127.0.0.1', 'localhost');
    for (const [args, env] of [
      [['--endpoint', ready.endpoint, 'list'], bareEnv()],
      [['--endpoint', localhost, 'list'], bareEnv()],
      [['list'], bareEnv({ AWS_ENDPOINT_URL_KINESIS: ready.endpoint })],
      [['list'], bareEnv({ AWS_ENDPOINT_URL: ready.endpoint })],
      // The service's own variable wins over the general one, as in the AWS SDK.
      [
        ['list'],
        bareEnv({ AWS_ENDPOINT_URL_KINESIS: ready.endpoint, AWS_ENDPOINT_URL: 'http://127.0.0.1:1' }),
      ],
    ] as const) {
      const run = await shardline(args, env);
      expect(
        [run.code, run.stdout, run.stderr],
        `${args.join(' ')} ${JSON.stringify(env.AWS_ENDPOINT_URL_KINESIS ?? env.AWS_ENDPOINT_URL ?? '')}`,
      ).to.deep.equal([0, 'orders\n', '']);
    }
    child.kill('SIGINT');
    await done;
  });

  it('an endpoint that is not on this machine still takes credentials from the SDK chain: none is exit 5', async () => {
    // 192.0.2.0/24 is reserved for documentation: nothing answers there, and nothing is sent (no credentials).
    const run = await shardline(['--endpoint', 'http://192.0.2.1:4567', 'list']);
    expect(run.code, run.stderr).to.equal(5);
    expect(run.stderr).to.match(
      /^shardline: no AWS credentials: .* \(set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE\)\n$/,
    );
  });

  it('--help documents the endpoint variables and the loopback credentials', async () => {
    const help = await shardline(['--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/--endpoint <url>\s+Kinesis endpoint/);
    for (const text of [
      'AWS_ENDPOINT_URL_KINESIS',
      'AWS_ENDPOINT_URL',
      'dummy credentials',
      'shardline local',
    ]) {
      expect(help.stdout).to.include(text);
    }
  });

  it('local: a port in use and a bad stream name are usage errors (exit 2) before anything starts', async () => {
    const server: Server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    try {
      const busy = await shardline(['local', '--port', String(port)]);
      expect(busy.code).to.equal(2);
      expect(busy.stderr).to.equal(
        `shardline: local: port ${port} is in use (a local Kinesis already running?): pass --port <port>, or --port 0 for a free one\n`,
      );
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    const bad = await shardline(['local', '--stream', 'no/slash']);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(
      /^shardline: option '--stream <name>' argument 'no\/slash' is invalid\. must be a stream name/,
    );
  });

  it('every diagnostic line starts with "shardline: ", usage errors too; the whole bad value is quoted', async () => {
    const cases: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
      [
        ['--endpoint', 'localhost:4567', 'list'],
        bareEnv(),
        /'localhost:4567' is invalid\. must be an http:\/\/ or https:\/\/ URL: did you mean http:\/\/localhost:4567 \?/,
      ],
      [
        ['list'],
        bareEnv({ AWS_ENDPOINT_URL_KINESIS: 'localhost:4567' }),
        /^shardline: AWS_ENDPOINT_URL_KINESIS='localhost:4567' must be/,
      ],
      [['frobnicate'], bareEnv(), /^shardline: unknown command 'frobnicate'/],
      [['list', '--bogus'], bareEnv(), /^shardline: unknown option '--bogus'/],
      [['describe'], bareEnv(), /^shardline: missing required argument 'stream'/],
      [
        ['status', 's', '--redis', 'redis://127.0.0.1:1'],
        bareEnv(),
        /^shardline: required option '--group <group>' not specified/,
      ],
      [
        ['tail', 's', '-n', 'x'],
        bareEnv(),
        /^shardline: option '-n, --count <count>' argument 'x' is invalid/,
      ],
    ];
    for (const [args, env, message] of cases) {
      const run = await shardline(args, env);
      const what = args.join(' ');
      expect(run.code, `${what}: ${run.stderr}`).to.equal(2);
      expect(run.stdout, what).to.equal('');
      expect(run.stderr, what).to.match(message);
      for (const line of run.stderr.trimEnd().split('\n')) expect(line, what).to.match(/^shardline: /);
    }
  });
});
