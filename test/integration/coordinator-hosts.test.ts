/**
 * Two coordinators of one group in one process (two hosts sharing a MemoryLeaseStore), on kinesalite:
 * the second host gets its fair share by graceful handoff, and the records are delivered once overall.
 */
import type { Coordinator, RecordBatch } from '@shardline/coordinator';
import { MemoryLeaseStore, startCoordinator } from '@shardline/coordinator';
import { type LocalKinesis, startLocalKinesis } from '@shardline/testing';
import { expect } from 'chai';
import {
  expectExactlyOnceInOrder,
  type Item,
  keyedItems,
  putItems,
  readingShards,
  waitFor,
} from './coordinator-helpers.js';

describe('startCoordinator: two hosts, one group (kinesalite, shared memory leases)', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite' });
  });

  after(async () => {
    await kinesis?.stop();
  });

  it('a second host takes its fair share by handoff; every record is delivered once across both', async () => {
    const stream = `hosts-${process.pid}`;
    await kinesis.createStream(stream, { shards: 4 });
    const client = kinesis.client();
    const next = new Map<string, number>();
    const produced: Item[] = [];
    const produce = async (count: number) => {
      const items = keyedItems(count, 40, next);
      await putItems(client, stream, items);
      produced.push(...items);
    };
    await produce(400);

    const store = new MemoryLeaseStore();
    const received: Item[] = [];
    const released: string[] = [];
    const start = (hostId: string) =>
      startCoordinator<Item>({
        streamName: stream,
        group: 'hosts',
        hostId,
        kinesis: kinesis.clientConfig,
        leases: { store },
        leaseDurationMs: 3_000,
        idleFetchIntervalMs: 100,
        workerThreads: 1,
        checkpoint: { intervalMs: 100 },
        handler: (batch: RecordBatch<Item>) => {
          for (const r of batch.records) received.push(r.data);
        },
      });
    const coordinators: Coordinator<Item>[] = [];
    try {
      const a = await start('host-a');
      coordinators.push(a);
      a.on('lease.released', (e) => released.push(e.reason));
      await waitFor(
        () => readingShards(a).length === 4 && received.length >= 400,
        () => `${readingShards(a)} ${received.length}`,
      );
      const b = await start('host-b');
      coordinators.push(b);
      await waitFor(
        () => readingShards(a).length === 2 && readingShards(b).length === 2,
        () => `a ${readingShards(a)} b ${readingShards(b)}`,
      );
      expect(released).to.deep.equal(['handoff', 'handoff']);
      const status = b.status();
      expect(status.hosts.map((h) => h.hostId).sort()).to.deep.equal(['host-a', 'host-b']);
      expect(status.shards.filter((s) => s.state === 'leased-elsewhere').map((s) => s.owner)).to.deep.equal([
        'host-a',
        'host-a',
      ]);
      await produce(400);
      await waitFor(
        () => received.length >= produced.length,
        () => `${received.length} of ${produced.length}`,
      );
    } finally {
      await Promise.all(coordinators.map((c) => c.stop()));
    }
    expectExactlyOnceInOrder(received, produced);
  });
});
