/**
 * Zero-setup scaffolding shared by the examples. It is not what they show: it finds (or starts) a
 * Kinesis and a Redis so that `npx tsx examples/<name>.ts` runs on a fresh clone. In your own code the
 * stream, the Kinesis config and the Redis URL come from your deployment instead.
 *
 * Environment (all optional):
 * - KINESIS_ENDPOINT  a Kinesis endpoint (e.g. a local emulator at http://127.0.0.1:4567). Unset: a local
 *                     Kinesis is started with @shardline/testing (KINESIS_ENGINE: 'kinesis-mock', the
 *                     default, or 'kinesalite') and stopped at the end.
 * - STREAM_NAME       an existing stream to use (never created nor deleted). Unset: a stream of the
 *                     example's own is created, and deleted at the end.
 * - AWS_REGION        the region (default us-east-1); credentials come from the SDK's default chain.
 * - REDIS_URL         the Redis for leases and queues. Unset: 127.0.0.1:6379, else a `redis-server` from
 *                     the PATH is started.
 * - EXAMPLE_KEY_PREFIX the Redis key prefix. Unset: `shardline-example:<name>:<random>`, unique per run.
 *                     Every key under it is deleted at the end.
 *
 * Ctrl-C (SIGINT) or SIGTERM aborts `interrupted`: the example stops what it runs and calls close(),
 * which deletes what it created (Redis keys, stream, local Kinesis), then exits 130. A signal during
 * the setup cleans up and exits 130 at once; a second signal exits at once, without cleaning up.
 */
import { randomBytes } from 'node:crypto';
import {
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  type KinesisClientConfig,
} from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '@shardline/common';
import type { InitialPosition } from '@shardline/coordinator';
import { type LocalKinesis, resolveRedisUrl, startLocalKinesis } from '@shardline/testing';
import { Redis } from 'ioredis';

// On Node 20 the AWS SDK prints a NodeVersionSupportWarning (its releases from 2027 on need Node 22) in
// every thread that builds a client: noise in these examples' output. Your application chooses for
// itself: this variable, `node --no-warnings`, or Node 22 (see the README, "Node.js 20 and the AWS SDK").
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

export interface ExampleEnvironment {
  /** For `startCoordinator({ kinesis })` and `new Producer({ kinesis })`. */
  kinesis: KinesisClientConfig;
  streamName: string;
  /**
   * TRIM_HORIZON on the example's own new stream; on an existing stream (STREAM_NAME), the last minute
   * only, so the example does not read the stream's whole history (it counts only its own records).
   */
  initialPosition: InitialPosition;
  /** Set when the example asked for Redis. */
  redisUrl: string;
  keyPrefix: string;
  /** Unique per run: the examples tag their records with it and count only those. */
  runId: string;
  /** One line saying where the example runs, for its output. */
  description: string;
  /**
   * Aborted by the first Ctrl-C (SIGINT) or SIGTERM (its reason: the signal's name). The example then
   * stops what it runs and calls close(), so nothing is left behind.
   */
  interrupted: AbortSignal;
  /** Deletes what the example created: its stream, its local Kinesis, its Redis keys. */
  close(): Promise<void>;
}

/**
 * Ctrl-C and SIGTERM: the first one aborts the returned signal; a second one exits at once (130),
 * for a user who does not want to wait for the cleanup.
 */
function interruptSignal(name: string): AbortSignal {
  const interrupt = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupt.signal.aborted) {
      console.error(`${name}: ${signal} again: exiting without cleaning up`);
      process.exit(130);
    }
    interrupt.abort(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return interrupt.signal;
}

export interface ExampleSetup {
  /** Shards of the stream the example creates. */
  shards: number;
  /** Whether the example needs Redis (leases, dead-letter queue). */
  redis: boolean;
}

const STREAM_ACTIVE_TIMEOUT_MS = 60_000;

/** Finds or starts what the example needs; see the file comment for the environment variables. */
export async function setUpExample(name: string, setup: ExampleSetup): Promise<ExampleEnvironment> {
  const env = process.env;
  const runId = randomBytes(4).toString('hex');
  const interrupted = interruptSignal(name);
  const cleanups: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    let kinesis: KinesisClientConfig;
    let where: string;
    let local: LocalKinesis | undefined;
    if (env.KINESIS_ENDPOINT) {
      kinesis = { endpoint: env.KINESIS_ENDPOINT, region: env.AWS_REGION ?? 'us-east-1' };
      // Local emulators accept any signature: spare the user from setting keys for one.
      if (env.KINESIS_ENDPOINT.startsWith('http://') && !env.AWS_ACCESS_KEY_ID) {
        kinesis.credentials = { accessKeyId: 'local', secretAccessKey: 'local' };
      }
      where = `Kinesis at ${env.KINESIS_ENDPOINT}`;
    } else if (env.STREAM_NAME) {
      kinesis = { region: env.AWS_REGION ?? 'us-east-1' };
      where = `Kinesis in ${kinesis.region as string}`;
    } else {
      const engine = env.KINESIS_ENGINE === 'kinesalite' ? 'kinesalite' : 'kinesis-mock';
      local = await startLocalKinesis({ engine });
      const started = local;
      cleanups.push(() => started.stop());
      kinesis = local.clientConfig;
      where = `a local Kinesis (${engine})`;
    }

    let streamName = env.STREAM_NAME;
    let initialPosition: InitialPosition = 'TRIM_HORIZON';
    if (streamName) {
      initialPosition = { timestamp: new Date(Date.now() - 60_000) };
    } else {
      const created = `shardline-example-${name}-${runId}`;
      streamName = created;
      if (local !== undefined) {
        await local.createStream(created, { shards: setup.shards });
      } else {
        await createStream(kinesis, created, setup.shards);
        const config = kinesis;
        cleanups.push(() => deleteStream(config, created));
      }
    }

    let redisUrl = '';
    const keyPrefix = env.EXAMPLE_KEY_PREFIX || `shardline-example:${name}:${runId}`;
    if (setup.redis) {
      redisUrl = await resolveRedisUrl();
      const url = redisUrl;
      cleanups.push(() => deleteKeys(url, keyPrefix));
    }
    const redis = setup.redis ? `, Redis at ${redactUrl(redisUrl)}` : '';
    const description = `stream ${streamName} on ${where}${redis}`;
    if (interrupted.aborted) {
      // Interrupted while starting: nothing of the example ran yet, only its setup to undo.
      await close();
      console.log(`${name}: stopped by ${String(interrupted.reason)} before it started`);
      process.exit(130);
    }
    return {
      kinesis,
      streamName,
      initialPosition,
      redisUrl,
      keyPrefix,
      runId,
      description,
      interrupted,
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Resolves once `condition()` holds; rejects after `timeoutMs`, or once `signal` aborts, naming `what`. */
export async function waitUntil(
  what: string,
  condition: () => boolean,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (signal?.aborted) throw new Error(`interrupted while waiting for ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function createStream(config: KinesisClientConfig, name: string, shards: number): Promise<void> {
  const client = createKinesisClient(config);
  try {
    await client.send(new CreateStreamCommand({ StreamName: name, ShardCount: shards }));
    const deadline = Date.now() + STREAM_ACTIVE_TIMEOUT_MS;
    for (;;) {
      const { StreamDescriptionSummary } = await client.send(
        new DescribeStreamSummaryCommand({ StreamName: name }),
      );
      if (StreamDescriptionSummary?.StreamStatus === 'ACTIVE') return;
      if (Date.now() > deadline)
        throw new Error(`stream ${name} is not ACTIVE after ${STREAM_ACTIVE_TIMEOUT_MS} ms`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally {
    client.destroy();
  }
}

async function deleteStream(config: KinesisClientConfig, name: string): Promise<void> {
  const client = createKinesisClient(config);
  try {
    await client.send(new DeleteStreamCommand({ StreamName: name, EnforceConsumerDeletion: true }));
  } finally {
    client.destroy();
  }
}

/** SCAN, not KEYS: never blocks a shared server. */
async function deleteKeys(url: string, keyPrefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, lazyConnect: true });
  redis.on('error', () => {});
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}:*`, 'COUNT', 1_000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
