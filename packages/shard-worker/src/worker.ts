/**
 * The worker-thread entry: a piscina task function. Each task is one long-lived shard reader; with
 * piscina's `concurrentTasksPerWorker`, one thread runs several. The pool is the coordinator's.
 *
 * ```ts
 * const { port1, port2 } = new MessageChannel();          // data: batches, credit, acks
 * const control = new MessageChannel();                    // comlink: start / stop / status
 * const done = pool.run({ port: port2, controlPort: control.port2, options } satisfies ShardReaderTask,
 *   { transferList: [port2, control.port2] });
 * const reader = wrap<ShardReaderControl>(nodeEndpoint(control.port1));
 * ```
 */
import { MessagePort, threadId } from 'node:worker_threads';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { KinesisTransport, PortableKinesisConfig } from '@shardline/common';
import {
  createKinesisClient,
  PROTOCOL_VERSION,
  resolveKinesisTransport,
  ShardlineOptionError,
  type StartedMessage,
} from '@shardline/common';
import { kinesisGetRecordsClient } from './client.js';
import { exposeShardReaderControl } from './control.js';
import { kinesisShardEndProbe, kinesisSubscribeClient } from './fan-out-clients.js';
import { FanOutReader } from './fan-out-reader.js';
import type { ShardReaderOptions } from './options.js';
import type { ShardReaderOutcome, ShardReaderStatus } from './shard-reader.js';
import { ShardReader } from './shard-reader.js';

/** Options of one shard reader task: the reader's options plus the Kinesis client config. */
export interface ShardReaderTaskOptions extends ShardReaderOptions {
  /** From `portableClientConfig(...)`: plain data the thread builds its client from. */
  kinesis: PortableKinesisConfig;
  /**
   * Read with enhanced fan-out (SubscribeToShard, a {@link FanOutReader}) as this registered consumer,
   * instead of polling with GetRecords. The polling options (fetch rate, limit) are then unused.
   */
  fanOut?: ShardReaderFanOutOptions;
}

/** The fan-out part of a reader task. */
export interface ShardReaderFanOutOptions {
  consumerArn: string;
  /** HTTP version of the thread's client; `'auto'`: HTTP/1.1 for http:// endpoints. @defaultValue 'auto' */
  transport?: KinesisTransport;
  /** @defaultValue FAN_OUT_READER_DEFAULTS.subscriptionRenewMs */
  subscriptionRenewMs?: number;
}

/** What the coordinator passes to `pool.run` (put both ports in the transfer list). */
export interface ShardReaderTask {
  /** This shard's data port (batches out; credit, ack, stop in). */
  port: MessagePort;
  /** The comlink control port: {@link ShardReaderControl}. */
  controlPort: MessagePort;
  options: ShardReaderTaskOptions;
}

/** The reader's control API, exposed over `controlPort` with comlink. */
export interface ShardReaderControl {
  /** Idempotent: the task starts its reader at once. */
  start(): void;
  /** Stops the reader; resolves (as the task does) once it has. Idempotent. */
  stop(reason?: string): Promise<ShardReaderOutcome>;
  status(): ShardReaderStatus;
}

/** One client per thread and config, shared by the thread's readers (one keep-alive socket pool). */
const clients = new Map<string, { client: KinesisClient; users: number }>();

function acquireClient(
  config: PortableKinesisConfig,
  transport: 'http1' | 'http2',
): { client: KinesisClient; release(): void } {
  // The reader's own backoff handles throttles and transient errors, and counts them: no SDK retries.
  const key = `${transport} ${JSON.stringify(config)}`;
  let entry = clients.get(key);
  if (entry === undefined) {
    entry = {
      client: createKinesisClient({ ...config, maxAttempts: 1 } as PortableKinesisConfig, { transport }),
      users: 0,
    };
    clients.set(key, entry);
  }
  entry.users++;
  const held = entry;
  return {
    client: held.client,
    release() {
      if (--held.users === 0) {
        clients.delete(key);
        held.client.destroy();
      }
    },
  };
}

/** Runs one shard reader until it ends, fails or is stopped; resolves with how it finished. */
export default async function shardReaderTask(task: ShardReaderTask): Promise<ShardReaderOutcome> {
  if (typeof task !== 'object' || task === null) {
    throw new ShardlineOptionError('task', 'must be { port, controlPort, options }');
  }
  const { port, controlPort, options } = task;
  if (!(controlPort instanceof MessagePort)) {
    throw new ShardlineOptionError('task.controlPort', 'must be a MessagePort (in the transfer list)');
  }
  if (!(port instanceof MessagePort)) {
    controlPort.close();
    throw new ShardlineOptionError('task.port', 'must be a MessagePort (in the transfer list)');
  }
  if (typeof options !== 'object' || options === null) {
    port.close();
    controlPort.close();
    throw new ShardlineOptionError('task.options', 'must be the reader options plus { kinesis }');
  }
  const { kinesis, fanOut, ...readerOptions } = options;
  let transport: 'http1' | 'http2' = 'http1';
  try {
    if (fanOut !== undefined) {
      transport = resolveKinesisTransport(fanOut.transport ?? 'auto', kinesis?.endpoint, 'fanOut.transport');
    }
  } catch (error) {
    port.close();
    controlPort.close();
    throw error;
  }
  const held = acquireClient(kinesis ?? {}, transport);
  try {
    const reader =
      fanOut === undefined
        ? new ShardReader(port, kinesisGetRecordsClient(held.client), readerOptions)
        : new FanOutReader(
            port,
            kinesisSubscribeClient(held.client),
            {
              ...readerOptions,
              consumerArn: fanOut.consumerArn,
              ...(fanOut.subscriptionRenewMs === undefined
                ? {}
                : { subscriptionRenewMs: fanOut.subscriptionRenewMs }),
            },
            {
              shardEndProbe: kinesisShardEndProbe(held.client, {
                streamName: readerOptions.streamName,
                streamArn: readerOptions.streamArn,
              }),
            },
          );
    const control: ShardReaderControl = {
      start: () => reader.start(),
      stop: (reason) => reader.stop(reason),
      status: () => reader.status(),
    };
    exposeShardReaderControl(control, controlPort);
    const started: StartedMessage = {
      v: PROTOCOL_VERSION,
      type: 'started',
      shardId: readerOptions.shardId,
      threadId,
    };
    port.postMessage(started);
    reader.start();
    const outcome = await reader.finished;
    // A control call that stopped the reader (stop()) answers a few microtasks after it resolves:
    // let comlink post that answer before the control port closes.
    await new Promise<void>((resolve) => setImmediate(resolve));
    return outcome;
  } finally {
    held.release();
    port.close();
    controlPort.close();
  }
}
