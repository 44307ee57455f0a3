/**
 * One host of `shardline demo --hosts N`: a Coordinator in its own process (forked by the demo), sharing
 * the Redis leases with the other hosts. It reports every record it handles, its status and its lease
 * acquisitions to the parent over IPC, and stops gracefully when the parent says so (or goes away).
 */
import { assertNever } from '@shardline/common';
import { startCoordinator } from '@shardline/coordinator';
import { Registry } from 'prom-client';
import { DEMO_HOST_ENV, type DemoHostConfig, type HostMessage, isParentMessage } from './host-protocol.js';
import type { DemoItem } from './tally.js';

const config = JSON.parse(process.env[DEMO_HOST_ENV] ?? '{}') as DemoHostConfig;
const { hostId } = config;

/** Resolves once the message is written to the IPC channel; a lost parent makes it a no-op. */
function send(message: HostMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

// Ctrl-C on the terminal reaches the whole process group: the parent decides when hosts stop.
process.on('SIGINT', () => {});

const registry = config.metrics ? new Registry() : undefined;
// Each host's series carry its id, so the parent's aggregate keeps them apart.
registry?.setDefaultLabels({ host: hostId });

let stopping: Promise<void> | undefined;
/** Set when the parent asks to stop (or leaves) before the coordinator has started. */
let stopRequested = false;
let stop = (): Promise<void> => {
  stopRequested = true;
  return Promise.resolve();
};
// Before the coordinator runs there is nothing to report, but the parent's scrape should not wait.
let answerMetrics = (id: number): void => {
  void send({ v: 1, type: 'metrics', hostId, id, metrics: [] });
};

process.on('message', (message: unknown) => {
  if (!isParentMessage(message)) return;
  switch (message.type) {
    case 'stop':
      void stop();
      break;
    case 'metrics':
      answerMetrics(message.id);
      break;
    default:
      assertNever(message);
  }
});
// The parent died (or closed the channel): stop rather than read on as an orphan.
process.on('disconnect', () => {
  void stop().finally(() => process.exit(0));
});

try {
  const coordinator = await startCoordinator<DemoItem>({
    streamName: config.streamName,
    group: config.group,
    hostId,
    kinesis: config.kinesis,
    leases: { redis: config.redisUrl, keyPrefix: config.keyPrefix },
    leaseDurationMs: config.leaseDurationMs,
    workerThreads: 1,
    idleFetchIntervalMs: 200,
    checkpoint: { mode: 'auto', intervalMs: 500 },
    ...(registry === undefined ? {} : { metrics: { registry } }),
    // The handler returns once the parent's channel has the records: a record is checkpointed only
    // after the parent could count it, so a SIGKILL never loses one from the tally.
    handler: (batch) =>
      send({
        v: 1,
        type: 'batch',
        hostId,
        shardId: batch.shardId,
        records: batch.records.map((r) => r.data),
      }),
  });
  coordinator.on('lease.acquired', ({ shardId, counter }) => {
    void send({ v: 1, type: 'lease', hostId, shardId, counter, atMs: Date.now() });
  });
  const statusTimer = setInterval(() => {
    void send({ v: 1, type: 'status', hostId, status: coordinator.status() });
  }, config.statusIntervalMs);

  stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(statusTimer);
      await coordinator.stop();
      await send({ v: 1, type: 'status', hostId, status: coordinator.status() });
      await send({ v: 1, type: 'stopped', hostId });
      process.disconnect?.();
    })();
    return stopping;
  };
  answerMetrics = (id) => {
    void (async () => {
      const metrics = registry === undefined ? [] : await registry.getMetricsAsJSON();
      await send({ v: 1, type: 'metrics', hostId, id, metrics });
    })();
  };
  if (stopRequested || !process.connected) {
    await stop();
    process.exit(0);
  }
  await send({ v: 1, type: 'ready', hostId, pid: process.pid });
} catch (error) {
  await send({ v: 1, type: 'failed', hostId, message: (error as Error).message });
  process.exit(1);
}
