import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  ListShardsCommand,
  PutRecordsCommand,
  type Shard,
  SplitShardCommand,
} from '@aws-sdk/client-kinesis';
import {
  getFreePorts,
  isPortOpen,
  type LocalKinesis,
  type LocalKinesisOptions,
  resolveLocalKinesisOptions,
  startLocalKinesis,
} from '@shardline/testing';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { expect } from 'chai';
// Internal seam (not exported by the package): lets a test lose the port race on purpose.
import { startKinesisMock } from '../../packages/testing/src/kinesis-mock.js';
import { isProcessAlive } from '../support/process.js';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const MAX_HASH_KEY = (1n << 128n) - 1n;

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function expectRejection(
  promise: Promise<unknown>,
): Promise<Error & { code?: string; details?: Record<string, unknown> }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string; details?: Record<string, unknown> };
  }
  throw new Error('expected a rejection');
}

/**
 * Takes a port on every interface. A connection to it (a health probe of an emulator that could not
 * bind) is closed at once: left unread, it would keep the test process alive after the server closed.
 */
function listenOnAllInterfaces(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer((socket) => socket.destroy());
    server.listen(0, () => resolve(server));
  });
}

function portOf(server: Server): number {
  return (server.address() as { port: number }).port;
}

async function putRecords(client: KinesisClient, streamName: string, count: number, tag: string) {
  const response = await client.send(
    new PutRecordsCommand({
      StreamName: streamName,
      Records: Array.from({ length: count }, (_, i) => ({
        PartitionKey: `key-${tag}-${i}`,
        Data: Buffer.from(JSON.stringify({ tag, i })),
      })),
    }),
  );
  expect(response.FailedRecordCount ?? 0).to.equal(0);
  return response.Records ?? [];
}

/** Every record of each shard, from TRIM_HORIZON until a fetch comes back empty. */
async function readAll(client: KinesisClient, streamName: string, shards: Shard[]) {
  const byShard = new Map<string, string[]>();
  for (const shard of shards) {
    const { ShardIterator } = await client.send(
      new GetShardIteratorCommand({
        StreamName: streamName,
        ShardId: shard.ShardId,
        ShardIteratorType: 'TRIM_HORIZON',
      }),
    );
    const data: string[] = [];
    let iterator = ShardIterator;
    while (iterator !== undefined) {
      const page = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 1_000 }));
      const records = page.Records ?? [];
      data.push(...records.map((record) => Buffer.from(record.Data!).toString('utf8')));
      if (records.length === 0) break;
      iterator = page.NextShardIterator;
    }
    byShard.set(shard.ShardId!, data);
  }
  return byShard;
}

const engines: Array<{ label: string; options: LocalKinesisOptions; childProcess: boolean }> = [
  { label: 'kinesis-mock', options: { engine: 'kinesis-mock' }, childProcess: true },
  { label: 'kinesalite in process', options: { engine: 'kinesalite' }, childProcess: false },
  {
    label: 'kinesalite in a child process',
    options: { engine: 'kinesalite', inProcess: false },
    childProcess: true,
  },
];

for (const { label, options, childProcess } of engines) {
  describe(`startLocalKinesis: ${label}`, () => {
    let kinesis: LocalKinesis;
    let client: KinesisClient;

    before(async () => {
      kinesis = await startLocalKinesis(options);
      client = kinesis.client();
    });

    after(async () => {
      await kinesis?.stop();
    });

    it('describes itself and hands out HTTP/1.1 client configs', () => {
      expect(kinesis.engine).to.equal(options.engine);
      expect(kinesis.endpoint).to.match(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(kinesis.region).to.equal('us-east-1');
      if (childProcess) expect(kinesis.pid).to.be.a('number').and.not.equal(process.pid);
      else expect(kinesis.pid).to.equal(undefined);
      const first = kinesis.clientConfig;
      const second = kinesis.clientConfig;
      expect(first.endpoint).to.equal(kinesis.endpoint);
      expect(first.region).to.equal('us-east-1');
      expect(first.requestHandler).to.be.instanceOf(NodeHttpHandler);
      // Separate handlers: destroying one client must not cut another's sockets.
      expect(first.requestHandler).to.not.equal(second.requestHandler);
    });

    it('creates a 4-shard stream that is ACTIVE and covers the whole hash key range', async () => {
      const created = await kinesis.createStream('covering', { shards: 4 });
      expect(created.streamName).to.equal('covering');
      expect(created.streamArn).to.match(/^arn:aws:kinesis:us-east-1:\d{12}:stream\/covering$/);
      expect(created.shards).to.have.length(4);
      const summary = await client.send(new DescribeStreamSummaryCommand({ StreamName: 'covering' }));
      expect(summary.StreamDescriptionSummary?.StreamStatus).to.equal('ACTIVE');
      const ranges = created.shards
        .map((shard) => [
          BigInt(shard.HashKeyRange!.StartingHashKey!),
          BigInt(shard.HashKeyRange!.EndingHashKey!),
        ])
        .sort((a, b) => (a[0]! < b[0]! ? -1 : 1));
      expect(ranges[0]![0]).to.equal(0n);
      expect(ranges.at(-1)![1]).to.equal(MAX_HASH_KEY);
      for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).to.equal(ranges[i - 1]![1]! + 1n);
    });

    it('puts 100 records and reads exactly those 100 back across the shards', async () => {
      const { shards } = await kinesis.createStream('hundred', { shards: 4 });
      const written = await putRecords(client, 'hundred', 100, 'h');
      const byShard = await readAll(client, 'hundred', shards);
      const all = [...byShard.values()].flat();
      expect(all).to.have.length(100);
      expect(new Set(all).size).to.equal(100);
      expect(all.map((data) => JSON.parse(data).i).sort((a, b) => a - b)).to.deep.equal(
        Array.from({ length: 100 }, (_, i) => i),
      );
      // Records were routed by key: more than one shard got some, and each landed where PutRecords said.
      const shardsUsed = [...byShard.values()].filter((records) => records.length > 0).length;
      expect(shardsUsed).to.be.greaterThan(1);
      for (const [shardId, records] of byShard) {
        expect(records.length).to.equal(written.filter((result) => result.ShardId === shardId).length);
      }
    });

    it('lists the shards with ListShards and listShards()', async () => {
      const { shards } = await kinesis.createStream('listed', { shards: 3 });
      const listed = await client.send(new ListShardsCommand({ StreamName: 'listed' }));
      const ids = (listed.Shards ?? []).map((shard) => shard.ShardId).sort();
      expect(ids).to.have.length(3);
      expect(ids).to.deep.equal(shards.map((shard) => shard.ShardId).sort());
      expect((await kinesis.listShards('listed')).map((shard) => shard.ShardId).sort()).to.deep.equal(ids);
    });

    it('splits a shard; waitForStreamActive resolves and the children take new records', async () => {
      const { shards } = await kinesis.createStream('split', { shards: 2 });
      const parent = shards[0]!;
      const start = BigInt(parent.HashKeyRange!.StartingHashKey!);
      const end = BigInt(parent.HashKeyRange!.EndingHashKey!);
      await client.send(
        new SplitShardCommand({
          StreamName: 'split',
          ShardToSplit: parent.ShardId,
          NewStartingHashKey: ((start + end) / 2n).toString(),
        }),
      );
      await kinesis.waitForStreamActive('split');
      const after = await kinesis.listShards('split');
      expect(after).to.have.length(4);
      const children = after.filter((shard) => shard.ParentShardId === parent.ShardId);
      expect(children).to.have.length(2);
      const closedParent = after.find((shard) => shard.ShardId === parent.ShardId)!;
      expect(closedParent.SequenceNumberRange?.EndingSequenceNumber).to.be.a('string');
      const written = await putRecords(client, 'split', 40, 's');
      const childIds = new Set(children.map((shard) => shard.ShardId));
      expect(written.some((result) => childIds.has(result.ShardId))).to.equal(true);
      expect(written.some((result) => result.ShardId === parent.ShardId)).to.equal(false);
      const byShard = await readAll(client, 'split', after);
      expect([...byShard.values()].flat()).to.have.length(40);
    });

    it('deletes a stream, and deleting a missing stream is not an error', async () => {
      await kinesis.createStream('doomed');
      await kinesis.deleteStream('doomed');
      const error = await expectRejection(
        client.send(new DescribeStreamSummaryCommand({ StreamName: 'doomed' })),
      );
      expect(error.name).to.equal('ResourceNotFoundException');
      await kinesis.deleteStream('doomed');
    });

    it('rejects bad createStream arguments with the option named', async () => {
      const error = await expectRejection(kinesis.createStream('bad', { shards: 0 }));
      expect(error.code).to.equal('ERR_INVALID_OPTION');
      expect(error.message).to.match(/^shards must be a positive integer/);
      const nameError = await expectRejection(kinesis.createStream(''));
      expect(nameError.code).to.equal('ERR_INVALID_OPTION');
    });

    it('stop() ends the emulator, closes the port and refuses further use; it is idempotent', async () => {
      const port = Number(new URL(kinesis.endpoint).port);
      const pid = kinesis.pid;
      expect(await isPortOpen(port)).to.equal(true);
      await Promise.all([kinesis.stop(), kinesis.stop()]);
      await kinesis.stop();
      expect(await isPortOpen(port)).to.equal(false);
      if (pid !== undefined) expect(isProcessAlive(pid)).to.equal(false);
      const error = await expectRejection(kinesis.createStream('late'));
      expect(error.code).to.equal('ERR_CLOSED');
    });
  });
}

describe('startLocalKinesis: options', () => {
  const cases: Array<[LocalKinesisOptions, string]> = [
    [{ engine: 'kinesis' as never }, "engine must be 'kinesis-mock' or 'kinesalite'"],
    [{ engine: 'kinesis-mock', inProcess: true }, 'inProcess must not be true'],
    [{ inProcess: 'yes' as never }, 'inProcess must be a boolean'],
    [{ shardLimit: 0 }, 'shardLimit must be a positive integer (got 0)'],
    [{ shardLimit: 2.5 }, 'shardLimit must be a positive integer'],
    [{ region: '' }, 'region must be a non-empty string'],
    [{ port: 70_000 }, 'port must be an integer from 1 to 65535 (got 70000)'],
    [{ startupTimeoutMs: -1 }, 'startupTimeoutMs must be a positive integer'],
    [{ logger: {} as never }, 'logger must be'],
  ];
  for (const [options, message] of cases) {
    it(`rejects ${JSON.stringify(options)}`, async () => {
      const error = await expectRejection(startLocalKinesis(options));
      expect(error.code).to.equal('ERR_INVALID_OPTION');
      expect(error.message).to.include(message);
    });
  }

  it('applies the defaults', () => {
    const resolved = resolveLocalKinesisOptions({});
    expect(resolved).to.include({
      engine: 'kinesis-mock',
      inProcess: false,
      shardLimit: 1000,
      region: 'us-east-1',
      startupTimeoutMs: 30_000,
    });
    expect(resolveLocalKinesisOptions({ engine: 'kinesalite' }).inProcess).to.equal(true);
    expect(Object.isFrozen(resolved)).to.equal(true);
  });
});

describe('startLocalKinesis: failures', () => {
  it('kinesis-mock on a taken port fails with its output and leaves no process', async () => {
    const blocker = await listenOnAllInterfaces();
    try {
      const error = await expectRejection(
        startLocalKinesis({ engine: 'kinesis-mock', port: portOf(blocker) }),
      );
      expect(error.code).to.equal('ERR_INTERNAL');
      expect(error.message).to.match(/kinesis-mock exited with code \d+ before it was ready/);
      expect(error.message).to.match(/EADDRINUSE|Address already in use/);
      expect(isProcessAlive(error.details?.pid as number)).to.equal(false);
    } finally {
      blocker.close();
    }
  });

  it('kinesis-mock retries with other ports when a picked port is taken before it binds', async () => {
    const blocker = await listenOnAllInterfaces();
    const picks: number[][] = [];
    try {
      const handle = await startKinesisMock(resolveLocalKinesisOptions({ engine: 'kinesis-mock' }), {
        async getFreePorts(count) {
          const ports = await getFreePorts(count);
          if (picks.length === 0) ports[0] = portOf(blocker);
          picks.push(ports);
          return ports;
        },
      });
      try {
        expect(picks).to.have.length(2);
        expect(handle.port).to.equal(picks[1]![0]);
        expect(handle.port).to.not.equal(portOf(blocker));
        expect(await isPortOpen(handle.port)).to.equal(true);
      } finally {
        await handle.stop();
      }
      expect(isProcessAlive(handle.pid!)).to.equal(false);
    } finally {
      blocker.close();
    }
  });

  it('kinesis-mock that is not healthy within startupTimeoutMs is killed', async () => {
    const error = await expectRejection(startLocalKinesis({ engine: 'kinesis-mock', startupTimeoutMs: 1 }));
    expect(error.code).to.equal('ERR_INTERNAL');
    expect(error.message).to.include('did not become healthy');
    expect(error.message).to.include('startupTimeoutMs');
    expect(isProcessAlive(error.details?.pid as number)).to.equal(false);
  });

  it('kinesalite in process on a taken port fails clearly', async () => {
    const blocker = await listenOnAllInterfaces();
    try {
      const error = await expectRejection(startLocalKinesis({ engine: 'kinesalite', port: portOf(blocker) }));
      expect(error.code).to.equal('ERR_INTERNAL');
      expect(error.message).to.include(`could not listen on 127.0.0.1:${portOf(blocker)}`);
    } finally {
      blocker.close();
    }
  });

  it('kinesalite in a child process on a taken port fails with its output and leaves no process', async () => {
    const blocker = await listenOnAllInterfaces();
    try {
      const error = await expectRejection(
        startLocalKinesis({ engine: 'kinesalite', inProcess: false, port: portOf(blocker) }),
      );
      expect(error.code).to.equal('ERR_INTERNAL');
      expect(error.message).to.match(/EADDRINUSE/);
      expect(isProcessAlive(error.details?.pid as number)).to.equal(false);
    } finally {
      blocker.close();
    }
  });
  it('logs when a child emulator dies on its own, and stop() still works', async () => {
    const errors: unknown[][] = [];
    const noop = () => {};
    const logger = { debug: noop, info: noop, warn: noop, error: (...args: unknown[]) => errors.push(args) };
    const kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false, logger });
    process.kill(kinesis.pid!, 'SIGKILL');
    await waitFor('the error log', () => errors.length > 0);
    expect(errors[0]![0]).to.include({ pid: kinesis.pid });
    expect(errors[0]![1]).to.equal('kinesalite was killed by SIGKILL');
    await kinesis.stop();
    expect(errors).to.have.length(1);
  });
});

interface ParentReport {
  pids: number[];
  ports?: number[];
}

/** Runs `script` (ESM, resolving @shardline/testing from the repo) in a child Node and waits for its JSON line. */
async function startParent(script: string): Promise<{ parent: ChildProcess; report: ParentReport }> {
  const parent = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  parent.stderr!.on('data', (chunk) => {
    stderr += chunk;
  });
  const report = await new Promise<ParentReport>((resolve, reject) => {
    let stdout = '';
    parent.stdout!.on('data', (chunk) => {
      stdout += chunk;
      const newline = stdout.indexOf('\n');
      if (newline >= 0) resolve(JSON.parse(stdout.slice(0, newline)));
    });
    parent.once('exit', (code) =>
      reject(new Error(`parent exited with ${code} before reporting:\n${stderr}`)),
    );
  });
  return { parent, report };
}

describe('startLocalKinesis: no orphans', () => {
  it('children die when their parent is SIGKILLed (kinesis-mock, kinesalite child, redis-server)', async () => {
    const { parent, report } = await startParent(`
      import { startLocalKinesis, startRedisServer } from '@shardline/testing';
      const mock = await startLocalKinesis({ engine: 'kinesis-mock' });
      const lite = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
      const redis = await startRedisServer();
      const port = (url) => Number(new URL(url).port);
      process.stdout.write(JSON.stringify({
        pids: [mock.pid, lite.pid, redis.pid],
        ports: [port(mock.endpoint), port(lite.endpoint), redis.port],
      }) + '\\n');
      setInterval(() => {}, 1000);
    `);
    const pids = report.pids;
    const ports = report.ports ?? [];
    expect(pids).to.have.length(3);
    for (const pid of pids) expect(isProcessAlive(pid), `pid ${pid} before`).to.equal(true);
    const exited = new Promise((resolve) => parent.once('exit', resolve));
    parent.kill('SIGKILL');
    await exited;
    await waitFor('the children of the SIGKILLed parent to die', () =>
      pids.every((pid) => !isProcessAlive(pid)),
    );
    // A dying multi-threaded process can show as a zombie a moment before its last thread closes its sockets.
    await waitFor('their ports to close', async () => {
      for (const port of ports) if (await isPortOpen(port)) return false;
      return true;
    });
  });

  it('children die when their parent exits without calling stop()', async () => {
    const { parent, report } = await startParent(`
      import { startLocalKinesis, startRedisServer } from '@shardline/testing';
      const mock = await startLocalKinesis({ engine: 'kinesis-mock' });
      const redis = await startRedisServer();
      process.stdout.write(JSON.stringify({ pids: [mock.pid, redis.pid] }) + '\\n');
      setTimeout(() => process.exit(0), 100);
    `);
    const code = await new Promise((resolve) => parent.once('exit', resolve));
    expect(code).to.equal(0);
    const pids = report.pids;
    await waitFor('the children of the exited parent to die', () =>
      pids.every((pid) => !isProcessAlive(pid)),
    );
  });
});
