/**
 * The worker entry (compiled dist/worker.js) in a real piscina pool: one thread holding several shard
 * readers, controlled through comlink, reading a real local Kinesis.
 */
import { createRequire } from 'node:module';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import type { WorkerMessage } from '@shardline/common';
import {
  batchSize,
  batchToRecords,
  codecs,
  PROTOCOL_VERSION,
  parseWorkerMessage,
  portableClientConfig,
} from '@shardline/common';
import type { ShardReaderOutcome, ShardReaderTask } from '@shardline/shard-worker';
import { connectShardReaderControl } from '@shardline/shard-worker';
import { type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import { releaseProxy } from 'comlink';
import { Piscina } from 'piscina';

const PER_SHARD = 300;
const encoder = new TextEncoder();

describe('shard-worker entry in a piscina pool (kinesalite)', () => {
  let kinesis: LocalKinesis;
  let pool: Piscina;
  const ports: MessagePort[] = [];

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  afterEach(async () => {
    for (const port of ports.splice(0)) port.close();
    await pool?.destroy();
  });

  after(async () => {
    await kinesis?.stop();
  });

  it('runs 3 shard readers on one thread (maxThreads 1, concurrentTasksPerWorker 8), controlled via comlink', async () => {
    const stream = `worker-${process.pid}`;
    const { shards } = await kinesis.createStream(stream, { shards: 3 });
    const admin = kinesis.client();
    await Promise.all(
      shards.map((shard, s) =>
        admin.send(
          new PutRecordsCommand({
            StreamName: stream,
            Records: Array.from({ length: PER_SHARD }, (_, i) => ({
              Data: encoder.encode(JSON.stringify({ s, i })),
              PartitionKey: `k${i}`,
              ExplicitHashKey: shard.HashKeyRange!.StartingHashKey!,
            })),
          }),
        ),
      ),
    );

    const filename = createRequire(import.meta.url).resolve('@shardline/shard-worker/worker');
    expect(filename).to.match(/packages\/shard-worker\/dist\/worker\.js$/);
    pool = new Piscina({ filename, minThreads: 1, maxThreads: 1, concurrentTasksPerWorker: 8 });

    const received = new Map<string, number[]>();
    const kinesisConfig = portableClientConfig(kinesis.clientConfig);
    const running = shards.map((shard) => {
      const shardId = shard.ShardId!;
      received.set(shardId, []);
      const data = new MessageChannel();
      const control = new MessageChannel();
      ports.push(data.port1, control.port1);
      data.port1.on('message', (raw) => {
        const message: WorkerMessage = parseWorkerMessage(raw);
        if (message.type !== 'batch') return;
        for (const r of batchToRecords<{ i: number }>(message, codecs.json)) {
          if (r.ok) received.get(shardId)!.push(r.record.data.i);
        }
        data.port1.postMessage({ v: PROTOCOL_VERSION, type: 'ack', batchId: message.batchId });
        data.port1.postMessage({
          v: PROTOCOL_VERSION,
          type: 'credit',
          records: batchSize(message),
          bytes: message.bytes,
        });
      });
      data.port1.postMessage({ v: PROTOCOL_VERSION, type: 'credit', records: 100, bytes: 1 << 26 });
      const task: ShardReaderTask = {
        port: data.port2,
        controlPort: control.port2,
        options: { streamName: stream, shardId, idleFetchIntervalMs: 100, kinesis: kinesisConfig },
      };
      const done: Promise<ShardReaderOutcome> = pool.run(task, { transferList: [data.port2, control.port2] });
      return { shardId, done, control: connectShardReaderControl(control.port1) };
    });

    const deadline = Date.now() + 30_000;
    while ([...received.values()].some((items) => items.length < PER_SHARD)) {
      if (Date.now() > deadline) expect.fail(`timed out: ${[...received.values()].map((v) => v.length)}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    // One thread ran all three: tasks never finish by themselves, so they ran concurrently.
    expect(pool.threads).to.have.length(1);
    for (const items of received.values()) {
      expect(items).to.deep.equal(Array.from({ length: PER_SHARD }, (_, i) => i));
    }

    for (const { shardId, control } of running) {
      const status = await control.status();
      expect(status).to.include({ shardId, recordsFetched: PER_SHARD, throttled: 0 });
      expect(['reading', 'waiting-for-credit']).to.include(status.state);
      expect(status.lastAckedBatchId).to.be.a('number');
    }

    // Stop one reader: its task resolves; the other two keep running on the same thread.
    const [first, ...rest] = running;
    const outcome = await first!.control.stop('test');
    expect(outcome).to.deep.equal({ shardId: first!.shardId, state: 'stopped' });
    expect(await first!.done).to.deep.equal(outcome);
    for (const { control } of rest) expect((await control.status()).state).to.not.equal('stopped');

    // The rest stop through a `stop` message on the data port, as the coordinator may also do.
    for (const [index, { done }] of rest.entries()) {
      ports[(index + 1) * 2]!.postMessage({ v: PROTOCOL_VERSION, type: 'stop', reason: 'shutdown' });
      expect((await done).state).to.equal('stopped');
    }
    for (const { control } of running) control[releaseProxy]();
  });
});
