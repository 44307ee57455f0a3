/**
 * The delivery options: `handler` or `handlerModule` (or neither: the iterator), `onHandlerError` and
 * the `deadLetter` queue it may send records to.
 */

import { statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BackoffMs, CodecName } from '@shardline/common';
import { ShardlineOptionError, validateRetryOptions } from '@shardline/common';
import type { RedisConnection } from '../leases/redis-options.js';
import { identifier, integer, objectOption, redisConnection, rejectUnknownKeys, show } from './checks.js';
import { COORDINATOR_DEFAULTS, LIMITS } from './defaults.js';
import type { RecordHandler, ResolvedCoordinatorOptions } from './types.js';

/**
 * Which delivery mode `handler` and `handlerModule` select. `codecName` is the resolved codec's
 * (undefined for a custom Codec).
 */
export function resolveDelivery<T>(
  o: Record<string, unknown>,
  codecName: CodecName | undefined,
): Pick<ResolvedCoordinatorOptions<T>, 'delivery' | 'handler' | 'handlerModule'> {
  if (o.handler !== undefined && typeof o.handler !== 'function') {
    throw new ShardlineOptionError(
      'handler',
      `must be a function (batch) => Promise<void> | void (got ${show(o.handler)})`,
    );
  }
  if (o.handler !== undefined && o.handlerModule !== undefined) {
    throw new ShardlineOptionError(
      'handler',
      'and handlerModule are exclusive: pass handler (runs on the coordinator thread), handlerModule (runs in the worker threads), or neither to iterate the coordinator',
    );
  }
  const handlerModule = o.handlerModule === undefined ? undefined : resolveHandlerModule(o.handlerModule);
  if (handlerModule !== undefined && codecName === undefined) {
    throw new ShardlineOptionError(
      'codec',
      "must be a built-in codec name with handlerModule: a Codec object cannot cross to the worker threads (use codec: 'raw' and decode in the module)",
    );
  }
  const delivery =
    o.handler !== undefined ? 'handler' : handlerModule !== undefined ? 'handler-module' : 'iterator';
  return { delivery, handler: o.handler as RecordHandler<T> | undefined, handlerModule };
}

function resolveHandlerModule(value: unknown): string {
  // Two letters at least before ':' so a Windows drive (C:\) stays a path.
  if (value instanceof URL || (typeof value === 'string' && /^[a-z][a-z0-9+.-]+:/i.test(value))) {
    const url = new URL(String(value));
    if (url.protocol === 'data:') return url.href;
    if (url.protocol !== 'file:') {
      throw new ShardlineOptionError(
        'handlerModule',
        `must be a file path or a file: URL (got a ${url.protocol} URL)`,
      );
    }
    checkModuleFile(url);
    return url.href;
  }
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(
      'handlerModule',
      `must be a file path or a file: URL (got ${show(value)})`,
    );
  }
  const url = pathToFileURL(path.resolve(value));
  checkModuleFile(url, value);
  return url.href;
}

function checkModuleFile(url: URL, given?: string): void {
  let isFile = false;
  try {
    isFile = statSync(url).isFile();
  } catch {
    isFile = false;
  }
  if (!isFile) {
    const relative = given !== undefined && !path.isAbsolute(given);
    throw new ShardlineOptionError(
      'handlerModule',
      `names no file (${url.pathname})${relative ? `: relative paths resolve against the working directory ${process.cwd()}` : ''}`,
    );
  }
}

/** `maxRecordAgeMs` and `parallelism`: handler controls, for `handler` and `handlerModule` only. */
export function resolveHandlerControls(
  o: Record<string, unknown>,
  delivery: ResolvedCoordinatorOptions['delivery'],
): Pick<ResolvedCoordinatorOptions, 'maxRecordAgeMs' | 'parallelism'> {
  const maxRecordAgeMs = integer(o.maxRecordAgeMs, 'maxRecordAgeMs', COORDINATOR_DEFAULTS.maxRecordAgeMs, {
    min: 1,
    infinity: true,
  });
  const parallelism = integer(o.parallelism, 'parallelism', COORDINATOR_DEFAULTS.parallelism, {
    min: 1,
    max: LIMITS.maxParallelism,
  });
  if (delivery === 'iterator') {
    if (maxRecordAgeMs !== COORDINATOR_DEFAULTS.maxRecordAgeMs) {
      throw new ShardlineOptionError(
        'maxRecordAgeMs',
        'needs handler or handlerModule: when iterating the coordinator, check record.approximateArrivalTimestamp in the loop',
      );
    }
    if (parallelism !== COORDINATOR_DEFAULTS.parallelism) {
      throw new ShardlineOptionError(
        'parallelism',
        'needs handler or handlerModule: the iterator hands out one batch per shard at a time (remove parallelism, or pass a handler)',
      );
    }
  }
  return { maxRecordAgeMs, parallelism };
}

export function resolveOnHandlerError(value: unknown): ResolvedCoordinatorOptions['onHandlerError'] {
  const given = objectOption(value, 'onHandlerError', "{ retries: 5, then: 'skip' }");
  rejectUnknownKeys(given, ['retries', 'backoffMs', 'then'], 'onHandlerError.');
  const defaults = COORDINATOR_DEFAULTS.onHandlerError;
  const backoffGiven = objectOption(
    given.backoffMs,
    'onHandlerError.backoffMs',
    '{ initial: 100, max: 30000 }',
  );
  rejectUnknownKeys(backoffGiven, ['initial', 'max', 'multiplier'], 'onHandlerError.backoffMs.');
  const backoffMs: BackoffMs = { initial: defaults.backoffMs.initial, max: defaults.backoffMs.max };
  for (const key of ['initial', 'max', 'multiplier'] as const) {
    if (backoffGiven[key] !== undefined) backoffMs[key] = backoffGiven[key] as number;
  }
  const retry = { retries: given.retries ?? defaults.retries, backoffMs };
  validateRetryOptions(retry, 'onHandlerError');
  const then = given.then ?? defaults.then;
  if (then !== 'stop-shard' && then !== 'dead-letter' && then !== 'skip') {
    throw new ShardlineOptionError(
      'onHandlerError.then',
      `must be 'stop-shard', 'dead-letter' or 'skip' (got ${show(then)})`,
    );
  }
  return Object.freeze({ retries: retry.retries, backoffMs: Object.freeze(backoffMs), then });
}

export function resolveDeadLetter(
  value: unknown,
  then: ResolvedCoordinatorOptions['onHandlerError']['then'],
  leasesRedis: RedisConnection | undefined,
): ResolvedCoordinatorOptions['deadLetter'] {
  if (value === undefined) {
    if (then === 'dead-letter') {
      throw new ShardlineOptionError(
        'deadLetter',
        "is required by onHandlerError.then: 'dead-letter': pass { queue: 'shardline-dlq', connection? }",
      );
    }
    return undefined;
  }
  const given = objectOption(value, 'deadLetter', "{ queue: 'shardline-dlq', connection: 'redis://...' }");
  rejectUnknownKeys(given, ['queue', 'connection'], 'deadLetter.');
  if (then !== 'dead-letter') {
    throw new ShardlineOptionError(
      'deadLetter',
      `is set but onHandlerError.then is '${then}', so nothing would reach it: set onHandlerError.then to 'dead-letter', or remove deadLetter`,
    );
  }
  const queue = identifier(
    given.queue ?? COORDINATOR_DEFAULTS.deadLetterQueue,
    'deadLetter.queue',
    'a BullMQ queue name',
  );
  if (queue.includes(':')) {
    throw new ShardlineOptionError(
      'deadLetter.queue',
      `must not contain ':' (BullMQ rejects it; got ${show(queue)})`,
    );
  }
  let connection: RedisConnection;
  if (given.connection !== undefined) connection = redisConnection(given.connection, 'deadLetter.connection');
  else if (leasesRedis !== undefined) connection = leasesRedis;
  else {
    throw new ShardlineOptionError(
      'deadLetter.connection',
      'is required when leases.redis is not set: BullMQ needs a Redis (a URL, ioredis options or an instance)',
    );
  }
  return Object.freeze({ queue, connection });
}
