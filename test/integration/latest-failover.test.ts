/**
 * A group that starts at LATEST, on a shard whose first owner dies before it wrote a checkpoint: the
 * next owner must read what arrived after the first owner began, not start at LATEST again (which
 * skips everything put between the two). Hosts are real child processes (fixtures/host.mjs) on the real
 * Redis and a kinesalite child process.
 */
import { type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { type LocalKinesis, startLocalKinesis, type TestRedis, useTestRedis } from '@shardline/testing';
import { expect } from 'chai';
import { type Item, waitFor } from './coordinator-helpers.js';
import { deliveries, describeHosts, HostProcess } from './host-processes.js';

const LEASE_MS = 3_000;
const encoder = new TextEncoder();

describe('LATEST start, first owner killed before its first checkpoint', function () {
  this.timeout(60_000);
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  let redis: TestRedis;
  let hosts: HostProcess[] = [];

  before(async () => {
    kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
    client = kinesis.client();
  });

  after(async () => {
    client?.destroy();
    await kinesis?.stop();
  });

  beforeEach(async () => {
    redis = await useTestRedis('latest-failover');
    hosts = [];
  });

  afterEach(async function () {
    if (this.currentTest?.state === 'failed') console.error(describeHosts(hosts));
    await Promise.all(hosts.map((h) => h.kill()));
    await redis.cleanup();
  });

  async function put(streamName: string, items: readonly Item[]): Promise<void> {
    const out = await client.send(
      new PutRecordsCommand({
        StreamName: streamName,
        Records: items.map((item) => ({ Data: encoder.encode(JSON.stringify(item)), PartitionKey: item.k })),
      }),
    );
    expect(out.FailedRecordCount ?? 0).to.equal(0);
  }

  function delivered(k: string): number[] {
    return deliveries(hosts)
      .filter((d) => d.k === k)
      .map((d) => d.i);
  }

  it('the next owner reads from the first acquisition: nothing put in between is skipped', async () => {
    const streamName = `latest-failover-${process.pid}`;
    await kinesis.createStream(streamName, { shards: 1 });
    const config = kinesis.clientConfig;
    const host = (hostId: string) => {
      const h = new HostProcess({
        hostId,
        streamName,
        group: 'latest',
        kinesis: {
          endpoint: String(config.endpoint),
          region: String(config.region),
          credentials: config.credentials as { accessKeyId: string; secretAccessKey: string },
        },
        redisUrl: redis.url,
        keyPrefix: redis.keyPrefix,
        leaseDurationMs: LEASE_MS,
        initialPosition: 'LATEST',
        // No checkpoint before the kill: the case where LATEST again would skip records.
        checkpointIntervalMs: 600_000,
      });
      hosts.push(h);
      return h;
    };

    // Host a reads at LATEST: a probe put once its iterator is in place is delivered.
    const a = host('host-a');
    await waitFor(
      () => a.events('lease.acquired').length > 0,
      () => 'host-a never acquired the lease',
      20_000,
    );
    let probes = 0;
    await waitFor(
      () => delivered('probe').length > 0,
      () => `host-a delivered no probe of ${probes}`,
      20_000,
      250,
      async () => {
        await put(streamName, [{ k: 'probe', i: probes++ }]);
      },
    );
    expect(a.events('checkpoint'), 'host-a wrote no checkpoint').to.have.length(0);

    // Killed before any checkpoint; records arrive before anyone else holds the lease.
    await a.kill();
    const gap = Array.from({ length: 20 }, (_, i) => ({ k: 'gap', i }));
    await put(streamName, gap);

    const b = host('host-b');
    await waitFor(
      () => b.events('lease.acquired').length > 0,
      () => 'host-b never acquired the lease',
      LEASE_MS + 15_000,
    );
    // Once b delivers a record put after it took over, it has read everything before it too.
    let after = 0;
    await waitFor(
      () => delivered('after').length > 0,
      () => `host-b delivered no record put after its takeover (${after} put)`,
      20_000,
      250,
      async () => {
        await put(streamName, [{ k: 'after', i: after++ }]);
      },
    );
    const started = b.events('shard.started').map((e) => e.payload.position);
    expect(delivered('gap'), 'records put between the two owners').to.deep.equal(gap.map((g) => g.i));
    // Read from before the first acquisition: a's probes again (a never checkpointed them), allowed.
    const probesByB = b.batches().flatMap((bt) => bt.records.filter((r) => r.k === 'probe'));
    expect(probesByB.length, 'probes re-read by host-b').to.be.at.most(probes);
    expect(started, "host-b's reader start").to.deep.equal(['AT_TIMESTAMP']);
  });
});
