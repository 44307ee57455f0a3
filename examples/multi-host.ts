/**
 * Multi-host: three host processes share one stream through Redis leases. Watch the lease events as
 * hosts join (the first host hands leases over to newcomers until each has its fair share) and as one
 * leaves (it checkpoints and releases its leases; the others take them at once).
 *
 *   npm run build && npx tsx examples/multi-host.ts
 *
 * This process plays the operator: it starts `host-1`, `host-2`, `host-3` (this same file run with the
 * argument `host <id>`: each is what you would deploy on one machine), writes RECORDS records (default
 * 2,000), stops `host-1` half-way, and exits 0 only when every record was consumed by some host.
 * With no environment it starts its own local Kinesis: see support.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { setUpExample, waitUntil } from './support.js';

interface Item {
  run: string;
  id: number;
}

/** What a host tells the operator, over the IPC channel. */
type HostMessage =
  | { type: 'ready'; host: string }
  | { type: 'records'; host: string; ids: number[] }
  | {
      type: 'lease';
      host: string;
      event: 'acquired' | 'released' | 'lost';
      shardId: string;
      reason?: string;
    };

/** How a host is configured: what your deployment would give each machine. */
interface HostConfig {
  streamName: string;
  kinesis: KinesisClientConfig;
  redisUrl: string;
  keyPrefix: string;
  runId: string;
}

// Short for the example (renewal every second, failover within ~3 s); the default 10 s suits production.
const LEASE_DURATION_MS = 3_000;

if (process.argv[2] === 'host') await runHost(process.argv[3] ?? 'host');
else await runOperator();

/** One host of the consumer group: a coordinator with Redis leases, until SIGTERM or SIGINT. */
async function runHost(hostId: string): Promise<void> {
  const config = JSON.parse(process.env.EXAMPLE_HOST_CONFIG ?? '{}') as HostConfig;
  const send = (message: HostMessage) => process.send?.(message);
  const coordinator = await startCoordinator<Item>({
    streamName: config.streamName,
    group: 'multi-host',
    hostId,
    kinesis: config.kinesis,
    leases: { redis: config.redisUrl, keyPrefix: config.keyPrefix },
    leaseDurationMs: LEASE_DURATION_MS,
    checkpoint: { mode: 'auto', intervalMs: 1_000 },
    idleFetchIntervalMs: 200,
    workerThreads: 1,
    handler: (batch) => {
      const ids = batch.records.filter((r) => r.data.run === config.runId).map((r) => r.data.id);
      if (ids.length > 0) send({ type: 'records', host: hostId, ids });
    },
  });

  const log = (text: string) => console.log(`  [${hostId}] ${text}`);
  coordinator.on('lease.acquired', ({ shardId, counter, checkpoint }) => {
    log(
      `lease.acquired  ${shardId} (counter ${counter}${checkpoint ? ', resumes after its checkpoint' : ''})`,
    );
    send({ type: 'lease', host: hostId, event: 'acquired', shardId });
  });
  coordinator.on('lease.released', ({ shardId, reason }) => {
    log(`lease.released  ${shardId} (${reason})`);
    send({ type: 'lease', host: hostId, event: 'released', shardId, reason });
  });
  coordinator.on('lease.lost', ({ shardId, reason }) => {
    log(`lease.lost      ${shardId} (${reason})`);
    send({ type: 'lease', host: hostId, event: 'lost', shardId, reason });
  });

  // A graceful stop: finish the batches in flight, checkpoint, release the leases, leave the group.
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void coordinator.stop().then(() => process.disconnect?.());
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  send({ type: 'ready', host: hostId });
}

async function runOperator(): Promise<void> {
  const RECORDS = Number(process.env.RECORDS ?? 2_000);
  const SHARDS = 4;
  // Ctrl-C reaches the hosts too (they stop gracefully); this process then waits for them and cleans up.
  const interrupted = new AbortController();
  process.once('SIGINT', () => interrupted.abort());
  const env = await setUpExample('multi-host', { shards: SHARDS, redis: true });
  console.log(`multi-host: ${env.description}`);

  // Plain settings only: each host builds its own Kinesis client (HTTP/1.1 keep-alive) from them.
  const { endpoint, region, credentials } = env.kinesis;
  const config: HostConfig = {
    streamName: env.streamName,
    kinesis: { endpoint, region, credentials } as KinesisClientConfig,
    redisUrl: env.redisUrl,
    keyPrefix: env.keyPrefix,
    runId: env.runId,
  };

  const owners = new Map<string, string>(); // shardId -> host holding its lease
  const consumedBy = new Map<string, number>();
  const seen = new Set<number>();
  let deliveries = 0;
  const leaseEvents = { acquired: 0, released: 0, lost: 0, handoffs: 0 };
  const hosts = new Map<string, ChildProcess>();
  const exited = new Map<string, Promise<number | null>>();
  const held = (host: string) => [...owners.values()].filter((h) => h === host).length;

  const startHost = (host: string) => {
    const child = spawn(
      process.execPath,
      [...process.execArgv, fileURLToPath(import.meta.url), 'host', host],
      {
        env: { ...process.env, EXAMPLE_HOST_CONFIG: JSON.stringify(config) },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      },
    );
    hosts.set(host, child);
    exited.set(host, new Promise((resolve) => child.once('exit', (code) => resolve(code))));
    child.on('message', (message: HostMessage) => {
      if (message.type === 'records') {
        for (const id of message.ids) {
          deliveries++;
          seen.add(id);
        }
        consumedBy.set(host, (consumedBy.get(host) ?? 0) + message.ids.length);
      } else if (message.type === 'lease') {
        leaseEvents[message.event]++;
        if (message.reason === 'handoff') leaseEvents.handoffs++;
        if (message.event === 'acquired') owners.set(message.shardId, host);
        else if (owners.get(message.shardId) === host) owners.delete(message.shardId);
      }
    });
    console.log(`multi-host: started ${host}`);
  };
  const stopped = new Set<string>();
  const stopHost = async (host: string): Promise<number | null> => {
    hosts.get(host)?.kill('SIGTERM');
    const code = (await exited.get(host)) ?? null;
    if (!stopped.has(host)) console.log(`multi-host: ${host} stopped (exit code ${code})`);
    stopped.add(host);
    return code;
  };

  const producer = new Producer<Item>({ streamName: env.streamName, kinesis: env.kinesis });
  const produce = async (from: number, to: number) => {
    const puts: Promise<unknown>[] = [];
    for (let id = from; id < to; id++)
      puts.push(producer.put({ run: env.runId, id }, { partitionKey: `key-${id % 64}` }));
    await Promise.all(puts);
    console.log(`multi-host: produced records ${from}..${to - 1}`);
  };

  let ok = false;
  const exitCodes: Array<number | null> = [];
  try {
    startHost('host-1');
    await waitUntil(
      'host-1 to hold every lease',
      () => held('host-1') === SHARDS,
      30_000,
      interrupted.signal,
    );

    startHost('host-2');
    await waitUntil(
      'host-1 to hand two leases to host-2',
      () => held('host-2') === SHARDS / 2,
      30_000,
      interrupted.signal,
    );
    await produce(0, Math.floor(RECORDS / 2));

    startHost('host-3');
    await waitUntil('host-3 to get a lease', () => held('host-3') >= 1, 30_000, interrupted.signal);
    await produce(Math.floor(RECORDS / 2), RECORDS);
    await producer.close();

    // host-1 leaves: its final checkpoints are written and its leases released, so the others resume
    // exactly where it stopped (no duplicates); a crashed host's leases would be taken after ~leaseDurationMs.
    exitCodes.push(await stopHost('host-1'));
    await waitUntil(
      'host-2 and host-3 to take over every lease',
      () => owners.size === SHARDS,
      30_000,
      interrupted.signal,
    );
    await waitUntil(
      `all ${RECORDS} records to be consumed`,
      () => seen.size === RECORDS,
      60_000,
      interrupted.signal,
    );
    ok = true;
  } catch (error) {
    if (!interrupted.signal.aborted) throw error;
  } finally {
    for (const host of hosts.keys()) if (!stopped.has(host)) exitCodes.push(await stopHost(host));
    await producer.close();
    await env.close();
  }

  if (interrupted.signal.aborted) {
    console.log(`multi-host: stopped by SIGINT: consumed ${seen.size} of ${RECORDS} records`);
    process.exitCode = 130;
    return;
  }
  ok = ok && seen.size === RECORDS && exitCodes.every((code) => code === 0);
  const perHost = [...consumedBy].map(([host, n]) => `${host}: ${n}`).join(', ');
  console.log(
    `multi-host: ${ok ? 'OK' : 'FAILED'}: consumed ${seen.size} of ${RECORDS} records (${deliveries - seen.size} duplicates) ` +
      `across ${hosts.size} hosts (${perHost}); lease events: ${leaseEvents.acquired} acquired, ` +
      `${leaseEvents.released} released (${leaseEvents.handoffs} handoffs), ${leaseEvents.lost} lost`,
  );
  process.exitCode = ok ? 0 : 1;
}
