/**
 * Dead-lettering (`onHandlerError.then: 'dead-letter'`): each record of a batch that kept failing, or a
 * poison record, becomes one job of a BullMQ queue holding the record, its position and the error;
 * then the shard moves on. The job id is derived from the group and the record's position, so a record
 * dead-lettered again (after a restart from an older checkpoint) does not make a second job.
 */

import type { Logger, ShardRecord } from '@shardline/common';
import { ErrorCodes, ShardlineError, serializeError } from '@shardline/common';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import type { RedisConnection } from './leases/redis-options.js';

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

export interface DeadLetterQueueOptions {
  queue: string;
  connection: RedisConnection;
  group: string;
  stream: string;
  logger: Logger;
}

/** An ioredis Redis or Cluster instance (not plain options). */
function isClient(connection: RedisConnection): boolean {
  return typeof (connection as { duplicate?: unknown }).duplicate === 'function';
}

/** Ids may not contain ':' in BullMQ; the group is user text. */
function idPart(value: string): string {
  return encodeURIComponent(value).replaceAll('%2F', '/');
}

export class DeadLetterQueue {
  readonly #queue: Queue;
  readonly #ownClient: Redis | undefined;
  readonly #o: DeadLetterQueueOptions;

  constructor(options: DeadLetterQueueOptions) {
    this.#o = options;
    const c = options.connection;
    let connection: unknown;
    if (typeof c === 'string') {
      // BullMQ needs maxRetriesPerRequest null on the clients it uses.
      this.#ownClient = new Redis(c, { maxRetriesPerRequest: null, lazyConnect: true });
      connection = this.#ownClient;
    } else if (isClient(c)) {
      connection = c;
    } else {
      this.#ownClient = new Redis({ ...(c as object), maxRetriesPerRequest: null, lazyConnect: true });
      connection = this.#ownClient;
    }
    this.#ownClient?.on('error', (error: unknown) =>
      options.logger.warn({ err: serializeError(error) }, 'dead-letter queue connection error'),
    );
    this.#queue = new Queue(options.queue, { connection: connection as never });
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
  ) {
    const { group, stream } = this.#o;
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
      return { name: 'dead-letter', data, opts: { jobId } };
    });
    try {
      await this.#queue.addBulk(jobs);
    } catch (cause) {
      throw new ShardlineError(ErrorCodes.REDIS, `dead-letter queue '${this.#o.queue}': adding jobs failed`, {
        cause,
        retriable: true,
        details: { shardId, records: records.length },
      });
    }
  }

  async close(): Promise<void> {
    await this.#queue.close().catch(() => undefined);
    if (this.#ownClient !== undefined)
      await this.#ownClient.quit().catch(() => this.#ownClient?.disconnect());
  }
}
