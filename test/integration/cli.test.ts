/**
 * The `shardline` bin (bin/shardline.js, loading the built dist/bin.js), run as a child process against
 * a local Kinesis: each command's stdout and exit code, and each error case.
 */
import { PutRecordsCommand, SplitShardCommand } from '@aws-sdk/client-kinesis';
import { wrapTraceEnvelope } from '@shardline/common';
import { getFreePort, type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { type Child, exited, type Run, spawnCli, waitUntil } from '../support/child.js';

const MID_HASH_KEY = ((1n << 127n) - 1n).toString();

const start = (args: readonly string[]) => spawnCli(args, { stdin: 'pipe' });
const finished = (child: Child, timeoutMs = 20_000) => exited(child, timeoutMs, 'shardline');

/** Runs `shardline ...args` to its end, with `input` on stdin (stdin closed either way). */
function shardline(args: readonly string[], input?: string): Promise<Run> {
  const child = start(args);
  child.stdin!.end(input ?? '');
  return finished(child);
}

const waitFor = (what: string, condition: () => boolean, timeoutMs = 10_000) =>
  waitUntil(what, condition, timeoutMs);

interface TailLine {
  shardId: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  partitionKey: string;
  arrival: string;
  data: unknown;
}

function jsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

describe('shardline CLI (kinesalite)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  let g: string[];
  let n = 0;
  const streamName = () => `cli-${process.pid}-${++n}`;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
    g = ['--endpoint', kinesis.endpoint];
  });
  after(async () => {
    await kinesis?.stop();
  });

  it('list prints the stream names, one per line or a JSON array with --json', async () => {
    const a = streamName();
    const b = streamName();
    await kinesis.createStream(a, { shards: 1 });
    await kinesis.createStream(b, { shards: 1 });
    const plain = await shardline([...g, 'list']);
    expect(plain.code, plain.stderr).to.equal(0);
    expect(plain.stdout.split('\n')).to.include.members([a, b]);
    const json = await shardline([...g, '--json', 'list']);
    expect(json.code).to.equal(0);
    expect(JSON.parse(json.stdout)).to.be.an('array').that.includes.members([a, b]);
  });

  it('describe prints the shards with their hash ranges, open, as a table or JSON', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 2 });
    const table = await shardline([...g, 'describe', name]);
    expect(table.code, table.stderr).to.equal(0);
    expect(table.stdout).to.match(new RegExp(`^stream  ${name} \\(ACTIVE, 2 open of 2 shards`));
    expect(table.stdout).to.match(
      /shardId-000000000000\s+open\s+-\s+0-170141183460469231731687303715884105727/,
    );
    const json = await shardline([...g, '--json', 'describe', name]);
    expect(json.code).to.equal(0);
    const described = JSON.parse(json.stdout) as {
      streamName: string;
      openShardCount: number;
      shards: Array<{ shardId: string; open: boolean; parentShardIds: string[]; hashKeyRange: object }>;
    };
    expect(described.streamName).to.equal(name);
    expect(described.openShardCount).to.equal(2);
    expect(described.shards.map((s) => [s.shardId, s.open, s.parentShardIds])).to.deep.equal([
      ['shardId-000000000000', true, []],
      ['shardId-000000000001', true, []],
    ]);
    expect(described.shards[1]!.hashKeyRange).to.deep.equal({
      start: '170141183460469231731687303715884105728',
      end: '340282366920938463463374607431768211455',
    });
  });

  it('put --data sends one record that tail -n 1 prints', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 2 });
    const put = await shardline([...g, '--json', 'put', name, '--data', '{"id":1}', '-k', 'user-1']);
    expect(put.code, put.stderr).to.equal(0);
    const receipt = JSON.parse(put.stdout) as { shardId: string; sequenceNumber: string };
    const tail = await shardline([...g, 'tail', name, '-n', '1']);
    expect(tail.code, tail.stderr).to.equal(0);
    const [line, ...rest] = jsonLines<TailLine>(tail.stdout);
    expect(rest).to.have.length(0);
    expect(line).to.include({
      shardId: receipt.shardId,
      sequenceNumber: receipt.sequenceNumber,
      partitionKey: 'user-1',
    });
    expect(line!.data).to.deep.equal({ id: 1 });
    expect(Date.parse(line!.arrival)).to.be.closeTo(Date.now(), 60_000);
  });

  it('put reads JSON lines from stdin (receipts with --json), tail without --follow stops when caught up', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 3 });
    const lines = Array.from({ length: 20 }, (_, i) => JSON.stringify({ i }));
    const put = await shardline([...g, '--json', 'put', name], `${lines.join('\n')}\n\n`);
    expect(put.code, put.stderr).to.equal(0);
    const receipts = jsonLines<{ line: number; shardId: string }>(put.stdout);
    expect(receipts.map((r) => r.line)).to.deep.equal(lines.map((_, i) => i + 1));
    const summary = await shardline([...g, 'put', name], '"one"\n"two"\n');
    expect(summary.code).to.equal(0);
    expect(summary.stdout).to.match(new RegExp(`^put 2 records to '${name}' \\(\\d shards?\\)\\n$`));

    const tail = await shardline([...g, 'tail', name]);
    expect(tail.code, tail.stderr).to.equal(0);
    const read = jsonLines<TailLine>(tail.stdout);
    expect(read.map((r) => r.data)).to.have.deep.members([...lines.map((l) => JSON.parse(l)), 'one', 'two']);
    // Each shard's records in sequence order.
    for (const shardId of new Set(read.map((r) => r.shardId))) {
      const seqs = read.filter((r) => r.shardId === shardId).map((r) => BigInt(r.sequenceNumber));
      expect(seqs).to.deep.equal([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    }
  });

  it('put --aggregate sends KPL aggregates that tail deaggregates (sub-sequence numbers)', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    const put = await shardline([...g, 'put', name, '--aggregate', '-k', 'k'], '{"a":1}\n{"a":2}\n{"a":3}\n');
    expect(put.code, put.stderr).to.equal(0);
    const tail = await shardline([...g, 'tail', name]);
    expect(tail.code, tail.stderr).to.equal(0);
    const read = jsonLines<TailLine>(tail.stdout);
    expect(read.map((r) => [r.data, r.subSequenceNumber, r.partitionKey])).to.deep.equal([
      [{ a: 1 }, 0, 'k'],
      [{ a: 2 }, 1, 'k'],
      [{ a: 3 }, 2, 'k'],
    ]);
    expect(new Set(read.map((r) => r.sequenceNumber)).size).to.equal(1);
  });

  it('tail strips trace envelopes: the payload as data, the traceparent as traceContext', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    const traceparent = `00-${'ab'.repeat(16)}-${'cd'.repeat(8)}-01`;
    const encoder = new TextEncoder();
    await kinesis.client().send(
      new PutRecordsCommand({
        StreamName: name,
        Records: [
          { Data: wrapTraceEnvelope(traceparent, encoder.encode('{"a":1}')), PartitionKey: 'k' },
          { Data: encoder.encode('{"a":2}'), PartitionKey: 'k' },
        ],
      }),
    );
    const tail = await shardline([...g, 'tail', name]);
    expect(tail.code, tail.stderr).to.equal(0);
    const read = jsonLines<TailLine & { traceContext?: string }>(tail.stdout);
    expect(read.map((r) => [r.data, r.traceContext])).to.deep.equal([
      [{ a: 1 }, traceparent],
      [{ a: 2 }, undefined],
    ]);
  });

  it('tail --codec string --format raw prints the payloads only; --timestamp starts at an arrival time', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    expect((await shardline([...g, 'put', name, '--codec', 'string', '--data', 'first line'])).code).to.equal(
      0,
    );
    const raw = await shardline([...g, 'tail', name, '--codec', 'string', '--format', 'raw']);
    expect(raw.code, raw.stderr).to.equal(0);
    expect(raw.stdout).to.equal('first line\n');

    const [first] = jsonLines<TailLine>((await shardline([...g, 'tail', name, '--codec', 'string'])).stdout);
    const after = Date.parse(first!.arrival) + 1;
    await waitFor('the clock to pass the first arrival', () => Date.now() > after + 5);
    expect((await shardline([...g, 'put', name, '--codec', 'string', '--data', 'second'])).code).to.equal(0);
    const since = await shardline([
      ...g,
      'tail',
      name,
      '--codec',
      'string',
      '--format',
      'raw',
      '--timestamp',
      new Date(after).toISOString(),
    ]);
    expect(since.code, since.stderr).to.equal(0);
    expect(since.stdout).to.equal('second\n');
  });

  it('a missing stream: "stream \'x\' not found" on stderr, exit 3, for describe, tail and put', async () => {
    const name = `missing-${process.pid}`;
    for (const args of [
      ['describe', name],
      ['tail', name],
      ['put', name, '--data', '1'],
    ]) {
      const run = await shardline([...g, ...args]);
      expect(run.code, `${args[0]}: ${run.stderr}`).to.equal(3);
      expect(run.stderr).to.equal(`shardline: stream '${name}' not found\n`);
      expect(run.stdout).to.equal('');
    }
  });

  it('an unreachable endpoint: a clear message without a stack, exit 4 (the stack only with -v)', async () => {
    const port = await getFreePort();
    const endpoint = `http://127.0.0.1:${port}`;
    const run = await shardline(['--endpoint', endpoint, 'list']);
    expect(run.code).to.equal(4);
    expect(run.stderr).to.equal(`shardline: cannot reach Kinesis at ${endpoint} (ECONNREFUSED)\n`);
    const verbose = await shardline(['--endpoint', endpoint, '-v', 'describe', 'x']);
    expect(verbose.code).to.equal(4);
    expect(verbose.stderr).to.match(/^shardline: cannot reach Kinesis at .*\n.*\n\s+at /);
  });

  it('a bad JSON line on stdin: exit 2 naming the line; the lines before it are sent and reported', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    const run = await shardline([...g, '--json', 'put', name], '{"ok":1}\n\n{"ok":2}\n{"ok":\n{"ok":4}\n');
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/^shardline: stdin line 4: .*JSON.*\n$/);
    expect(jsonLines<{ line: number }>(run.stdout).map((r) => r.line)).to.deep.equal([1, 3]);
    const tail = await shardline([...g, 'tail', name]);
    expect(jsonLines<TailLine>(tail.stdout).map((r) => r.data)).to.deep.equal([{ ok: 1 }, { ok: 2 }]);
  });

  it('a record the producer refuses is reported with its stdin line and exits with its code', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    const run = await shardline([...g, 'put', name, '--codec', 'string', '-k', 'x'.repeat(257)], 'a\n');
    expect(run.code).to.equal(2);
    expect(run.stderr).to.equal(
      'shardline: stdin line 1: partitionKey must be at most 256 characters (UTF-16 code units), got 257\n' +
        'shardline: 1 record not sent\n',
    );
    expect(run.stdout).to.equal(`put 0 records to '${name}' (0 shards)\n`);
  });

  it('invalid options and arguments exit 2 with a usage message, nothing on stdout', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[...g, 'tail', 's', '--format', 'xml'], /argument 'xml' is invalid/],
      [[...g, 'tail', 's', '-n', '0'], /must be an integer >= 1/],
      [[...g, 'tail', 's', '--timestamp', 'yesterday'], /must be an ISO 8601 date/],
      [[...g, 'tail', 's', '--from', 'timestamp'], /--from timestamp needs --timestamp/],
      [[...g, 'put', 's', '--codec', 'yaml'], /argument 'yaml' is invalid/],
      [['--endpoint', 'not a url', 'list'], /must be a URL/],
      [[...g, 'describe'], /missing required argument 'stream'/],
      [[...g, 'frobnicate'], /unknown command 'frobnicate'/],
      [[...g, 'list', '--bogus'], /unknown option '--bogus'/],
    ];
    for (const [args, message] of cases) {
      const run = await shardline(args);
      expect(run.code, args.join(' ')).to.equal(2);
      expect(run.stderr, args.join(' ')).to.match(message);
      expect(run.stderr).not.to.match(/\n\s+at /);
      expect(run.stdout).to.equal('');
    }
    const help = await shardline(['--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/Usage: shardline/);
  });

  it('tail --follow prints records as they arrive and exits 130 promptly on Ctrl-C (SIGINT)', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 2 });
    const child = start([...g, '-v', 'tail', name, '--follow']);
    const done = finished(child);
    await waitFor(
      'both readers to start',
      () => (child.err().match(/reading from LATEST/g) ?? []).length === 2,
    );
    // LATEST is taken when the first GetShardIterator answers; only then is a new record "after" it.
    await waitFor('both iterators', () => (child.err().match(/shard iterator acquired/g) ?? []).length === 2);
    expect((await shardline([...g, 'put', name, '--data', '"live"'])).code).to.equal(0);
    await waitFor('the live record on stdout', () => child.out().includes('"data":"live"'));
    const signalledAt = Date.now();
    child.kill('SIGINT');
    const run = await done;
    expect(run.code, run.stderr).to.equal(130);
    expect(Date.now() - signalledAt).to.be.below(3_000);
    expect(run.stderr).not.to.match(/\n\s+at /);
  });

  it('put reports receipts while stdin is still open, and exits 130 on Ctrl-C', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    const child = start([...g, '--json', 'put', name]);
    const done = finished(child);
    child.stdin!.write('{"n":1}\n');
    await waitFor('the first receipt', () => child.out().includes('"line":1'));
    child.kill('SIGINT');
    const run = await done;
    expect(run.code, run.stderr).to.equal(130);
    expect(jsonLines<{ line: number }>(run.stdout).map((r) => r.line)).to.deep.equal([1]);
  });

  it('a closed stdout (tail | head) ends tail quietly with exit 0', async () => {
    const name = streamName();
    await kinesis.createStream(name, { shards: 1 });
    const lines = Array.from({ length: 200 }, (_, i) => `{"i":${i}}`).join('\n');
    expect((await shardline([...g, 'put', name], lines)).code).to.equal(0);
    const child = start([...g, 'tail', name, '--follow', '--from', 'trim-horizon']);
    const done = finished(child);
    await waitFor('the first record', () => child.out().includes('"i":0'));
    child.stdout!.destroy();
    // Like `tail -f | head`, the closed pipe shows at the next write.
    expect((await shardline([...g, 'put', name, '--data', '"next"'])).code).to.equal(0);
    const run = await done;
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stderr).to.equal('');
  });
});

describe('shardline CLI (kinesis-mock)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesis-mock' });
  });
  after(async () => {
    await kinesis?.stop();
  });

  it('describe shows parents after a split; tail reads the parent before its children', async () => {
    const name = `cli-split-${process.pid}`;
    const g = ['--endpoint', kinesis.endpoint];
    await kinesis.createStream(name, { shards: 1 });
    const before = await shardline([...g, 'put', name, '-k', 'key'], '"b1"\n"b2"\n"b3"\n');
    expect(before.code, before.stderr).to.equal(0);
    const client = kinesis.client();
    await client.send(
      new SplitShardCommand({
        StreamName: name,
        ShardToSplit: 'shardId-000000000000',
        NewStartingHashKey: MID_HASH_KEY,
      }),
    );
    await kinesis.waitForStreamActive(name);
    const afterPut = await shardline([...g, 'put', name, '-k', 'key'], '"a1"\n"a2"\n');
    expect(afterPut.code, afterPut.stderr).to.equal(0);

    const json = await shardline([...g, '--json', 'describe', name]);
    expect(json.code, json.stderr).to.equal(0);
    const shards = (
      JSON.parse(json.stdout) as {
        shards: Array<{ shardId: string; open: boolean; parentShardIds: string[] }>;
      }
    ).shards;
    expect(shards.map((s) => [s.shardId, s.open, s.parentShardIds])).to.deep.equal([
      ['shardId-000000000000', false, []],
      ['shardId-000000000001', true, ['shardId-000000000000']],
      ['shardId-000000000002', true, ['shardId-000000000000']],
    ]);
    const table = await shardline([...g, 'describe', name]);
    expect(table.stdout).to.match(/shardId-000000000000\s+closed\s+-\s/);
    expect(table.stdout).to.match(/shardId-000000000001\s+open\s+shardId-000000000000\s/);

    const tail = await shardline([...g, 'tail', name]);
    expect(tail.code, tail.stderr).to.equal(0);
    expect(jsonLines<TailLine>(tail.stdout).map((r) => r.data)).to.deep.equal(['b1', 'b2', 'b3', 'a1', 'a2']);
  });
});
