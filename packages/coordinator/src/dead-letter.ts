/**
 * Dead-lettering (`onHandlerError.then: 'dead-letter'`): each record of a batch that kept failing, or a
 * poison record, becomes one job of a BullMQ queue holding the record, its position and the error;
 * then the shard moves on. The job id is derived from the group and the record's position, so a record
 * dead-lettered again (after a restart from an older checkpoint) does not make a second job.
 *
 * Redis outages: the caller retries a failed send while the shard waits (moving on would lose the
 * record), and a stop must be able to end that wait. So a send never hangs: it fails with ERR_REDIS
 * after {@link DEAD_LETTER_DEFAULTS.sendTimeoutMs}, even though the jobs stay queued in the client and
 * may still be written once Redis is back (harmless: the retry names the same job ids). And the client
 * we make connects at once rather than lazily: BullMQ connects a queue once, and a lazy client whose
 * first connect failed would leave the queue failing every send for good, even after Redis came back.
 */

import type { Logger, ShardRecord } from '@shardline/common';
import { ErrorCodes, ShardlineError, serializeError } from '@shardline/common';
import { Queue } from 'bullmq';
import { type Cluster, Redis } from 'ioredis';
import type { RedisConnection } from './leases/redis-options.js';

export const DEAD_LETTER_DEFAULTS = Object.freeze({
  /** How long one send may wait for Redis before it fails with ERR_REDIS (and the caller retries). */
  sendTimeoutMs: 5_000,
});

/** The data of one dead-letter job. */
export interface DeadLetterJob {
  group: string;
  stream: string;
  shardId: string;
  partitionKey: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  explicitHashKey?: string;
  /** ISO time. */
  approximateArrivalTimestamp: string;
  /** The decoded record (`'json'`), or its bytes in base64 (`'base64'`: raw or undecodable payloads). */
  data: unknown;
  dataEncoding: 'json' | 'base64';
  error: { name: string; code: string; message: string };
  /** Handler attempts made (1 for a poison record: decoding is not retried). */
  attempts: number;
  /** ISO time. */
  deadLetteredAt: string;
}

/** One BullMQ job as {@link DeadLetterQueue} adds it. */
export interface DeadLetterJobEntry {
  name: 'dead-letter';
  data: DeadLetterJob;
  opts: { jobId: string };
}

/** The part of a BullMQ `Queue` used here. */
export interface DeadLetterJobQueue {
  addBulk(jobs: DeadLetterJobEntry[]): Promise<unknown>;
  close(): Promise<void>;
  on(event: 'error', listener: (error: unknown) => void): unknown;
}

export interface DeadLetterQueueOptions {
  queue: string;
  connection: RedisConnection;
  group: string;
  stream: string;
  logger: Logger;
  /** @defaultValue DEAD_LETTER_DEFAULTS.sendTimeoutMs */
  sendTimeoutMs?: number;
  /** Builds the queue (unit tests pass a stub). @defaultValue a BullMQ `Queue` on `connection` */
  createQueue?: (name: string, connection: Redis | Cluster) => DeadLetterJobQueue;
}

/** An ioredis Redis or Cluster instance (not plain options). */
function isClient(connection: RedisConnection): boolean {
  return typeof (connection as { duplicate?: unknown }).duplicate === 'function';
}

/** Ids may not contain ':' in BullMQ; the group is user text. */
function idPart(value: string): string {
  return encodeURIComponent(value).replaceAll('%2F', '/');
}

function bullmqQueue(name: string, connection: Redis | Cluster): DeadLetterJobQueue {
  return new Queue(name, { connection: connection as never }) as unknown as DeadLetterJobQueue;
}

export class DeadLetterQueue {
  readonly #queue: DeadLetterJobQueue;
  readonly #ownClient: Redis | undefined;
  readonly #o: DeadLetterQueueOptions;
  readonly #sendTimeoutMs: number;

  constructor(options: DeadLetterQueueOptions) {
    this.#o = options;
    this.#sendTimeoutMs = options.sendTimeoutMs ?? DEAD_LETTER_DEFAULTS.sendTimeoutMs;
    const c = options.connection;
    let connection: Redis | Cluster;
    if (typeof c === 'string') {
      // maxRetriesPerRequest null: a command waits for the reconnect (the send timeout bounds the wait)
      // instead of failing after ioredis' 20 reconnect attempts.
      this.#ownClient = new Redis(c, { maxRetriesPerRequest: null });
      connection = this.#ownClient;
    } else if (isClient(c)) {
      connection = c as Redis | Cluster;
    } else {
      this.#ownClient = new Redis({ ...(c as object), maxRetriesPerRequest: null });
      connection = this.#ownClient;
    }
    this.#ownClient?.on('error', (error: unknown) =>
      options.logger.warn({ err: serializeError(error) }, 'dead-letter queue connection error'),
    );
    this.#queue = (options.createQueue ?? bullmqQueue)(options.queue, connection);
    this.#queue.on('error', (error: unknown) =>
      options.logger.warn({ err: serializeError(error) }, 'dead-letter queue error'),
    );
  }

  /** Adds one job per record. @throws ShardlineError ERR_REDIS when the queue cannot be written. */
  async send(
    shardId: string,
    records: readonly ShardRecord<unknown>[],
    error: ShardlineError,
    attempts: number,
    /** The shard's stream (a multi-stream coordinator's queue is shared). @defaultValue the queue's */
    stream = this.#o.stream,
  ) {
    const { group } = this.#o;
    const now = new Date().toISOString();
    const jobs = records.map((record) => {
      const bytes = record.data instanceof Uint8Array;
      const data: DeadLetterJob = {
        group,
        stream,
        shardId,
        partitionKey: record.partitionKey,
        sequenceNumber: record.sequenceNumber,
        approximateArrivalTimestamp: record.approximateArrivalTimestamp.toISOString(),
        data: bytes ? Buffer.from(record.data as Uint8Array).toString('base64') : record.data,
        dataEncoding: bytes ? 'base64' : 'json',
        error: { name: error.name, code: error.code, message: error.message },
        attempts,
        deadLetteredAt: now,
      };
      if (record.subSequenceNumber !== undefined) data.subSequenceNumber = record.subSequenceNumber;
      if (record.explicitHashKey !== undefined) data.explicitHashKey = record.explicitHashKey;
      const jobId = [group, stream, shardId, record.sequenceNumber, String(record.subSequenceNumber ?? '')]
        .map(idPart)
        .join('/');
      return { name: 'dead-letter' as const, data, opts: { jobId } };
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`Redis did not answer within ${this.#sendTimeoutMs} ms`)),
        this.#sendTimeoutMs,
      );
    });
    try {
      await Promise.race([this.#queue.addBulk(jobs), timedOut]);
    } catch (cause) {
      throw new ShardlineError(ErrorCodes.REDIS, `dead-letter queue '${this.#o.queue}': adding jobs failed`, {
        cause,
        retriable: true,
        details: { shardId, records: records.length },
      });
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    await this.#queue.close().catch(() => undefined);
    const client = this.#ownClient;
    if (client === undefined) return;
    // QUIT would wait in the offline queue behind unsent jobs while Redis is down: close at once then.
    if (client.status === 'ready') await client.quit().catch(() => client.disconnect());
    else client.disconnect();
  }
}
