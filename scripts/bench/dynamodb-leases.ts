/**
 * DynamoDB lease benchmark (issue 14). Run: `npx tsx scripts/bench/dynamodb-leases.ts` (after `npx tsc -b`).
 *
 * Hosts are child processes running test/integration/fixtures/host.mjs with `leases.dynamodb` on
 * dynalite (its own process); kinesalite in its own process. Beside each DynamoDB figure, the same
 * measure on Redis in the same run (the baseline):
 * 1. failover: 3 hosts on 6 shards under continuous production, SIGKILL one, time until its shards are
 *    read again (3 runs), and rebalance when a 4th joins; leaseDurationMs 3,000.
 * 2. an idle host's calls: 1 host holding all leases of a 16- and a 64-shard stream (default
 *    leaseDurationMs 10,000), DynamoDB calls by operation counted by a FaultProxy in front of dynalite
 *    (no rule: it only counts), Redis commands from `INFO commandstats` on a private redis-server.
 * 3. the DynamoDB request units those calls cost per month at 16 and 200 shards (linear in the leases
 *    held: fitted from 16 and 64), at on-demand prices.
 * Prints the figures and writes them as the "DynamoDB leases" section of BENCHMARKS.md.
 */
import os from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import {
  FaultProxy,
  type LocalDynamoDb,
  type LocalKinesis,
  startLocalDynamoDb,
  startLocalKinesis,
  useTestRedis,
} from '@shardline/testing';
import { QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';
import {
  type BenchStore,
  failoverAndRebalance,
  Group,
  killChildren,
  median,
  redisCommands,
  s,
} from './lib-leases.js';

const FAILOVER_LEASE_MS = 3_000;
const IDLE_LEASE_MS = 10_000;
const REPEATS = QUICK ? 1 : 3;
const IDLE_SHARDS = QUICK ? [16] : [16, 64];
const IDLE_WINDOW_MS = QUICK ? 3_000 : 20_000;
/**
 * On-demand prices assumed, us-east-1, USD per million request units, as on the DynamoDB pricing page
 * since the price cut of 2024-11-01 (check it for your region): writes 0.625, reads 0.125.
 */
const PRICE = { date: '2024-11-01', region: 'us-east-1', perMillionWrite: 0.625, perMillionRead: 0.125 };
const SECONDS_PER_MONTH = 30 * 24 * 3_600;

let tables = 0;

function dynamoStore(db: LocalDynamoDb, endpoint = db.endpoint): BenchStore {
  return {
    name: 'dynamodb',
    config: {
      dynamodb: {
        tableName: `bench-leases-${process.pid}-${++tables}`,
        createTable: true,
        ...db.clientConfig,
        endpoint,
      },
    },
    cleanup: async () => undefined,
  };
}

/** DynamoDB's item size (names plus values), near enough for read units. */
function itemBytes(item: Record<string, { S?: string; N?: string; SS?: string[] }>): number {
  let bytes = 0;
  for (const [name, v] of Object.entries(item)) {
    bytes += name.length;
    if (v.S !== undefined) bytes += Buffer.byteLength(v.S);
    else if (v.N !== undefined) bytes += Math.ceil(v.N.length / 2) + 1;
    else if (v.SS !== undefined) bytes += v.SS.reduce((n, x) => n + Buffer.byteLength(x), 0);
  }
  return bytes;
}

interface DynamoLoad {
  shards: number;
  /** Calls per second by operation. */
  perOperation: Map<string, number>;
  callsPerS: number;
  /** Write and (strongly consistent) read request units per second. */
  wruPerS: number;
  rruPerS: number;
}

/** One idle host holding every lease of a `shards`-shard stream: DynamoDB calls per second. */
async function dynamoCalls(kinesis: LocalKinesis, db: LocalDynamoDb, shards: number): Promise<DynamoLoad> {
  const proxy = await FaultProxy.start({ target: db.endpoint });
  const store = dynamoStore(db, proxy.endpoint);
  const streamName = `bench-dynamo-idle-${shards}-${process.pid}`;
  await kinesis.createStream(streamName, { shards });
  const group = new Group(kinesis, streamName, store.config, IDLE_LEASE_MS);
  try {
    group.start();
    await group.settle(shards, 6 * IDLE_LEASE_MS);
    await delay(2_000);
    const from = { ...proxy.counters.requests };
    const startedAt = performance.now();
    await delay(IDLE_WINDOW_MS);
    const to = { ...proxy.counters.requests };
    const seconds = (performance.now() - startedAt) / 1_000;
    const perOperation = new Map(
      Object.entries(to)
        .map(([op, n]) => [op, (n - (from[op] ?? 0)) / seconds] as const)
        .filter(([, r]) => r > 0)
        .sort((a, b) => b[1] - a[1]),
    );
    // Units: each write of an item under 1 KB is 1 WRU; a strongly consistent Scan page 1 RRU per 4 KB.
    const raw = db.client();
    const tableName = 'dynamodb' in store.config ? store.config.dynamodb.tableName : '';
    const items = ((await raw.send(new ScanCommand({ TableName: tableName }))).Items ?? []) as Array<
      Record<string, { S?: string; N?: string; SS?: string[] }>
    >;
    raw.destroy();
    const scanRru = Math.max(1, Math.ceil(items.reduce((n, i) => n + itemBytes(i), 0) / 4_096));
    const writes = ['UpdateItem', 'PutItem', 'DeleteItem'].reduce(
      (n, op) => n + (perOperation.get(op) ?? 0),
      0,
    );
    const reads = (perOperation.get('GetItem') ?? 0) + (perOperation.get('Scan') ?? 0) * scanRru;
    const load = {
      shards,
      perOperation,
      callsPerS: [...perOperation.values()].reduce((a, b) => a + b, 0),
      wruPerS: writes,
      rruPerS: reads + (perOperation.get('DescribeTable') ?? 0),
    };
    console.log(
      `dynamodb idle host on ${shards} shards: ${load.callsPerS.toFixed(1)} calls/s (${ops(perOperation)}); ` +
        `${load.wruPerS.toFixed(1)} WRU/s, ${load.rruPerS.toFixed(1)} RRU/s (a Scan ${scanRru} RRU)`,
    );
    return load;
  } finally {
    await group.stop();
    await proxy.stop();
  }
}

const ops = (m: ReadonlyMap<string, number>) => [...m].map(([op, r]) => `${op} ${r.toFixed(2)}/s`).join(', ');
const usd = (x: number) => `$${x.toFixed(2)}`;

async function main(): Promise<void> {
  const startedAt = Date.now();
  const kinesis = await startLocalKinesis({ engine: 'kinesalite', inProcess: false });
  const db = await startLocalDynamoDb();
  const rows: string[] = [];
  let costText = '';
  try {
    const redis = await useTestRedis('bench-dynamo-leases');
    const redisStore: BenchStore = {
      name: 'redis',
      config: { redisUrl: redis.url, keyPrefix: redis.keyPrefix },
      cleanup: () => redis.cleanup(),
    };
    const onRedis = await failoverAndRebalance(kinesis, FAILOVER_LEASE_MS, redisStore, REPEATS);
    const onDynamo = await failoverAndRebalance(kinesis, FAILOVER_LEASE_MS, dynamoStore(db), REPEATS);
    const L = FAILOVER_LEASE_MS.toLocaleString('en-US');
    const f = (x: typeof onRedis) =>
      `min ${s(Math.min(...x.failoverMs))} / median ${s(median(x.failoverMs))} / max ${s(Math.max(...x.failoverMs))}; duplicates ${x.failoverDuplicates.join(' / ')}`;
    rows.push(
      `| failover (SIGKILL of 1 of 3 hosts, 6 shards), leaseDurationMs ${L}, ${REPEATS} runs | DynamoDB: ${f(onDynamo)} | Redis: ${f(onRedis)} | ${(median(onDynamo.failoverMs) / median(onRedis.failoverMs)).toFixed(2)} |`,
      `| rebalance (4th host joins 3 at 2/2/2), leaseDurationMs ${L} | DynamoDB: ${s(onDynamo.rebalanceMs)} to ${onDynamo.rebalanceSpread}; ${onDynamo.rebalanceDuplicates} duplicates | Redis: ${s(onRedis.rebalanceMs)} to ${onRedis.rebalanceSpread}; ${onRedis.rebalanceDuplicates} duplicates | ${(onDynamo.rebalanceMs / onRedis.rebalanceMs).toFixed(2)} |`,
    );
    const loads: DynamoLoad[] = [];
    for (const shards of IDLE_SHARDS) {
      const [dynamo, redisLoad] = await Promise.all([
        dynamoCalls(kinesis, db, shards),
        redisCommands(kinesis, IDLE_LEASE_MS, { shards, windowMs: IDLE_WINDOW_MS }),
      ]);
      loads.push(dynamo);
      rows.push(
        `| calls per idle host (1 host, ${shards} shards, idle ${IDLE_WINDOW_MS / 1_000} s), leaseDurationMs ${IDLE_LEASE_MS.toLocaleString('en-US')} | ` +
          `DynamoDB: ${dynamo.callsPerS.toFixed(1)} calls/s (${ops(dynamo.perOperation)}); ${dynamo.wruPerS.toFixed(1)} WRU/s, ${dynamo.rruPerS.toFixed(1)} RRU/s | ` +
          `Redis: ${redisLoad.rate.toFixed(1)} commands/s incl. those in scripts (${redisLoad.top}) | ${(dynamo.callsPerS / redisLoad.rate).toFixed(2)} |`,
      );
    }
    // Linear in the leases held: per-lease slope from the two sizes (or the rate / shards with one).
    const first = loads[0]!;
    const last = loads.at(-1)!;
    const slope = (get: (l: DynamoLoad) => number) =>
      last === first ? get(first) / first.shards : (get(last) - get(first)) / (last.shards - first.shards);
    const at = (shards: number, get: (l: DynamoLoad) => number) =>
      get(first) + slope(get) * (shards - first.shards);
    const monthly = (shards: number) => {
      const wru = at(shards, (l) => l.wruPerS) * SECONDS_PER_MONTH;
      const rru = at(shards, (l) => l.rruPerS) * SECONDS_PER_MONTH;
      return {
        wru,
        rru,
        usd: (wru / 1e6) * PRICE.perMillionWrite + (rru / 1e6) * PRICE.perMillionRead,
      };
    };
    const costs = [16, 200].map((shards) => ({ shards, ...monthly(shards) }));
    for (const c of costs) {
      rows.push(
        `| DynamoDB request units per month, ${c.shards} shards (1 host, fitted from the 16- and 64-shard rows: linear in the leases held; WRU do not grow with hosts, each host adds its own listings in RRU), leaseDurationMs ${IDLE_LEASE_MS.toLocaleString('en-US')} | ` +
          `${(c.wru / 1e6).toFixed(1)} M WRU + ${(c.rru / 1e6).toFixed(1)} M RRU = ${usd(c.usd)}/month | on-demand ${PRICE.region}, $${PRICE.perMillionWrite}/M WRU, $${PRICE.perMillionRead}/M RRU (prices of ${PRICE.date}) | |`,
      );
      console.log(
        `dynamodb ${c.shards} shards: ${(c.wru / 1e6).toFixed(1)} M WRU + ${(c.rru / 1e6).toFixed(1)} M RRU per month = ${usd(c.usd)}`,
      );
    }
    costText = costs.map((c) => `${c.shards} shards ${usd(c.usd)}`).join(', ');
  } finally {
    killChildren();
    await db.stop();
    await kinesis.stop();
  }
  console.log(`total ${s(Date.now() - startedAt)}; per month: ${costText}`);

  const cpus = os.cpus();
  writeBenchmarkSection(
    'DynamoDB leases',
    [
      '## DynamoDB leases',
      '',
      `Command: \`npx tsx scripts/bench/dynamodb-leases.ts${QUICK ? ' --quick' : ''}\`; run ${new Date().toISOString()}; machine: ${cpus.length} cores, ` +
        `${cpus[0]?.model ?? 'unknown CPU'}, Node ${process.version}. Hosts are child processes (test/integration/fixtures/host.mjs) ` +
        'with `leases.dynamodb` on dynalite (own process), kinesalite in its own process; the Redis figures are the same runs on ' +
        'Redis in this run (the baseline column; ratio = DynamoDB / Redis). Failover and rebalance as in the Leases section. ' +
        'Idle calls: a FaultProxy in front of dynalite counts the DynamoDB calls by operation (no fault rule); Redis commands ' +
        'from `INFO commandstats` on a private redis-server. Request units: 1 WRU per write (items are under 1 KB), a strongly ' +
        'consistent Scan 1 RRU per 4 KB of items; the monthly figures are 30 days of an idle group, linear in the leases ' +
        `(fitted from ${IDLE_SHARDS.join(' and ')} shards). The machine is shared with other work.`,
      '',
      '| measure | result | baseline | ratio |',
      '| --- | --- | --- | --- |',
      ...rows,
      '',
    ].join('\n'),
  );
}

await main();
