/**
 * `shardline tail <stream>`: reads every shard with the library's ShardReader, in this thread, each
 * over its own MessageChannel, and prints records as they come. The reader brings rate limiting
 * (<= 5 GetRecords per second per shard, idle spacing), expired-iterator and throttle recovery, shard
 * end, KPL deaggregation and codec decoding.
 */
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type { KinesisClient, Shard } from '@aws-sdk/client-kinesis';
import type { BatchMessage, BatchRecord, Codec, CodecName, WorkerMessage } from '@shardline/common';
import {
  assertNever,
  batchToRecords,
  deserializeError,
  listAllShards,
  PROTOCOL_VERSION,
  parseWorkerMessage,
  resolveCodec,
} from '@shardline/common';
import type { InitialPosition } from '@shardline/shard-worker';
import { kinesisGetRecordsClient, ShardReader } from '@shardline/shard-worker';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_CODES, toCliError } from '../exit.js';
import { describeStreamSummary, isOpen, parentsOf } from '../kinesis.js';
import { toJson } from '../output.js';

export type TailFrom = 'trim-horizon' | 'latest' | 'timestamp';
export type TailFormat = 'json' | 'json-pretty' | 'raw';

export interface TailOptions {
  /** @defaultValue 'latest' with --follow, else 'trim-horizon' ('timestamp' when --timestamp is given) */
  from?: TailFrom;
  timestamp?: Date;
  /** @defaultValue 'json' */
  format?: TailFormat;
  /** @defaultValue 'json' */
  codec?: string;
  /** Stop after this many records. */
  count?: number;
  /** Keep polling; without it, stop once every shard has caught up. */
  follow?: boolean;
}

/** Record credit a reader holds at most: bounds what is buffered between Kinesis and stdout. */
const CREDIT_RECORDS = 1_000;
const CREDIT_BYTES = 8 * 1024 * 1024;

type ShardState = 'pending' | 'reading' | 'caught-up' | 'ended' | 'skipped';

interface RunningReader {
  reader: ShardReader;
  port: MessagePort;
}

export async function tailCommand(
  ctx: CommandContext,
  stream: string,
  options: TailOptions,
): Promise<number> {
  const codec = resolveCodec((options.codec ?? 'json') as CodecName, '--codec');
  const from =
    options.from ??
    (options.timestamp !== undefined ? 'timestamp' : options.follow ? 'latest' : 'trim-horizon');
  if (from === 'timestamp' && options.timestamp === undefined) {
    throw new CliError('--from timestamp needs --timestamp <ISO date>', EXIT_CODES.USAGE);
  }
  if (from !== 'timestamp' && options.timestamp !== undefined) {
    throw new CliError(`--timestamp goes with --from timestamp (got --from ${from})`, EXIT_CODES.USAGE);
  }
  // Fails fast (exit 3 or 4) before any reader starts.
  await describeStreamSummary(ctx.client(), stream, ctx.signal);
  const readerClient = ctx.newClient(1);
  const tail = new Tail(ctx, stream, readerClient, codec, from, options);
  try {
    return await tail.run();
  } finally {
    readerClient.destroy();
  }
}

class Tail {
  readonly #ctx: CommandContext;
  readonly #stream: string;
  readonly #client: KinesisClient;
  readonly #codec: Codec;
  readonly #from: TailFrom;
  readonly #options: TailOptions;
  readonly #format: TailFormat;
  readonly #states = new Map<string, ShardState>();
  readonly #shards = new Map<string, Shard>();
  readonly #readers = new Map<string, RunningReader>();
  /** Messages are handled one at a time, in arrival order, so output keeps each shard's order. */
  #chain: Promise<void> = Promise.resolve();
  #printed = 0;
  #result: Promise<number>;
  #settle!: (code: number | CliError) => void;
  #settled = false;

  constructor(
    ctx: CommandContext,
    stream: string,
    client: KinesisClient,
    codec: Codec,
    from: TailFrom,
    options: TailOptions,
  ) {
    this.#ctx = ctx;
    this.#stream = stream;
    this.#client = client;
    this.#codec = codec;
    this.#from = from;
    this.#options = options;
    this.#format = options.format ?? 'json';
    this.#result = new Promise((resolve, reject) => {
      this.#settle = (outcome) => {
        if (this.#settled) return;
        this.#settled = true;
        if (outcome instanceof CliError) reject(outcome);
        else resolve(outcome);
      };
    });
  }

  async run(): Promise<number> {
    const onAbort = () => this.#settle(EXIT_CODES.INTERRUPTED);
    if (this.#ctx.signal.aborted) return EXIT_CODES.INTERRUPTED;
    this.#ctx.signal.addEventListener('abort', onAbort, { once: true });
    try {
      const shards = await listAllShards(this.#ctx.client(), {
        streamName: this.#stream,
        signal: this.#ctx.signal,
      });
      for (const shard of shards) {
        const id = shard.ShardId!;
        this.#shards.set(id, shard);
        // From LATEST a closed shard has nothing more to give.
        this.#states.set(id, this.#from === 'latest' && !isOpen(shard) ? 'skipped' : 'pending');
      }
      this.#startEligible(this.#initialPosition());
      this.#checkDone();
      return await this.#result;
    } catch (error) {
      if (this.#ctx.signal.aborted) return EXIT_CODES.INTERRUPTED;
      throw error;
    } finally {
      this.#ctx.signal.removeEventListener('abort', onAbort);
      this.#settled = true;
      await this.#stopAll();
    }
  }

  #initialPosition(): InitialPosition {
    switch (this.#from) {
      case 'trim-horizon':
        return 'TRIM_HORIZON';
      case 'latest':
        return 'LATEST';
      case 'timestamp':
        return { timestamp: this.#options.timestamp! };
      default:
        return assertNever(this.#from);
    }
  }

  /** Shards found after the start are children of a reshard: read them whole (or from the timestamp). */
  #laterPosition(): InitialPosition {
    return this.#from === 'latest' ? 'TRIM_HORIZON' : this.#initialPosition();
  }

  /** Starts each pending shard whose parents (those being read) have all ended: parents before children. */
  #startEligible(position: InitialPosition): void {
    for (const [id, state] of this.#states) {
      if (state !== 'pending') continue;
      const parents = parentsOf(this.#shards.get(id)!).filter((p) => this.#states.has(p));
      if (parents.every((p) => this.#states.get(p) === 'ended' || this.#states.get(p) === 'skipped')) {
        this.#startReader(id, position);
      }
    }
  }

  #startReader(shardId: string, position: InitialPosition): void {
    const { port1, port2 } = new MessageChannel();
    const reader = new ShardReader(port1, kinesisGetRecordsClient(this.#client), {
      streamName: this.#stream,
      shardId,
      initialPosition: position,
      codec: this.#codec.name as CodecName,
      logLevel: this.#ctx.globals.verbose === true ? 'debug' : 'warn',
    });
    this.#readers.set(shardId, { reader, port: port2 });
    this.#states.set(shardId, 'reading');
    port2.on('message', (data: unknown) => {
      this.#chain = this.#chain
        .then(() => (this.#settled ? undefined : this.#handle(parseWorkerMessage(data))))
        .catch((error: unknown) => this.#fail(error));
    });
    const initial =
      this.#options.count === undefined ? CREDIT_RECORDS : Math.min(this.#options.count, CREDIT_RECORDS);
    port2.postMessage({ v: PROTOCOL_VERSION, type: 'credit', records: initial, bytes: CREDIT_BYTES });
    reader.start();
    this.#ctx.debug(`${shardId}: reading from ${describePosition(position)}`);
  }

  async #handle(message: WorkerMessage): Promise<void> {
    switch (message.type) {
      case 'started':
        break;
      case 'batch':
        await this.#print(message);
        break;
      case 'fetched':
        if (message.records === 0 && (message.millisBehindLatest ?? 0) === 0) {
          if (this.#states.get(message.shardId) === 'reading') this.#states.set(message.shardId, 'caught-up');
        } else if (this.#states.get(message.shardId) === 'caught-up') {
          this.#states.set(message.shardId, 'reading');
        }
        this.#checkDone();
        break;
      case 'shard-end':
        this.#ctx.debug(`${message.shardId}: shard ended`);
        this.#states.set(message.shardId, 'ended');
        await this.#discoverChildren();
        this.#checkDone();
        break;
      case 'error':
        // Retried errors are also logged by the reader (as a warning); a fatal one ends the tail.
        if (message.fatal) this.#fail(deserializeError(message.error));
        break;
      case 'throttled':
        this.#ctx.debug(`${message.shardId}: throttled, waiting ${Math.round(message.delayMs)} ms`);
        break;
      case 'log': {
        const shardId = message.fields?.shardId;
        this.#ctx.warn(`${typeof shardId === 'string' ? `${shardId}: ` : ''}${message.message}`);
        break;
      }
      default:
        assertNever(message);
    }
  }

  async #print(batch: BatchMessage): Promise<void> {
    const records = batchToRecords(batch, this.#codec);
    for (const record of records) {
      if (this.#settled) return;
      try {
        await this.#ctx.out(render(batch.shardId, record, this.#format));
      } catch (error) {
        // stdout closed (e.g. piped into `head`): nobody is reading any more, which is not a failure.
        if ((error as { code?: unknown }).code === 'EPIPE') {
          this.#settle(EXIT_CODES.OK);
          return;
        }
        throw error;
      }
      this.#printed++;
      if (this.#options.count !== undefined && this.#printed >= this.#options.count) {
        this.#settle(EXIT_CODES.OK);
        return;
      }
    }
    this.#readers.get(batch.shardId)?.port.postMessage({
      v: PROTOCOL_VERSION,
      type: 'credit',
      records: records.length,
      bytes: batch.bytes,
    });
  }

  /** After a shard end: the children may not have existed when the tail started. */
  async #discoverChildren(): Promise<void> {
    const shards = await listAllShards(this.#ctx.client(), {
      streamName: this.#stream,
      signal: this.#ctx.signal,
    });
    for (const shard of shards) {
      const id = shard.ShardId!;
      if (this.#states.has(id)) continue;
      this.#shards.set(id, shard);
      this.#states.set(id, 'pending');
    }
    this.#startEligible(this.#laterPosition());
  }

  #checkDone(): void {
    if (this.#options.follow === true || this.#settled) return;
    for (const state of this.#states.values()) {
      if (state === 'pending' || state === 'reading') return;
    }
    this.#settle(EXIT_CODES.OK);
  }

  #fail(error: unknown): void {
    if (this.#settled) return;
    this.#settle(toCliError(error, { stream: this.#stream, endpoint: this.#ctx.endpoint }));
  }

  async #stopAll(): Promise<void> {
    const readers = [...this.#readers.values()];
    this.#readers.clear();
    await Promise.all(
      readers.map(async ({ reader, port }) => {
        await reader.stop('tail finished');
        port.close();
      }),
    );
    await this.#chain;
  }
}

function describePosition(position: InitialPosition): string {
  return typeof position === 'string'
    ? position
    : `AT_TIMESTAMP ${new Date(position.timestamp).toISOString()}`;
}

/** One record as a line of output. */
function render(shardId: string, item: BatchRecord, format: TailFormat): string | Uint8Array {
  const record = item.record;
  if (format === 'raw') {
    const data = record.data;
    if (data instanceof Uint8Array) return Buffer.concat([data, Buffer.from('\n')]);
    return `${typeof data === 'string' ? data : toJson(data)}\n`;
  }
  const line: Record<string, unknown> = { shardId, sequenceNumber: record.sequenceNumber };
  if (record.subSequenceNumber !== undefined) line.subSequenceNumber = record.subSequenceNumber;
  line.partitionKey = record.partitionKey;
  if (record.explicitHashKey !== undefined) line.explicitHashKey = record.explicitHashKey;
  if (record.traceContext !== undefined) line.traceContext = record.traceContext;
  const arrivalMs = record.approximateArrivalTimestamp.getTime();
  line.arrival = arrivalMs > 0 ? record.approximateArrivalTimestamp.toISOString() : null;
  line.data = record.data;
  if (record.data instanceof Uint8Array) line.dataEncoding = 'base64';
  if (!item.ok) line.error = { code: item.error.code, message: item.error.message };
  return `${toJson(line, format === 'json-pretty' ? 2 : undefined)}\n`;
}
