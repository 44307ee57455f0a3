/**
 * `resolveCoordinatorOptions()`: validates every option, applies the defaults (also inside partial
 * nested objects), checks the cross-field rules and freezes. A mistake fails at start with a message
 * that names the option and says what to change.
 */

import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import type { Codec, CodecName, Logger, PortableKinesisConfig } from '@shardline/common';
import {
  isKinesisClient,
  portableClientConfig,
  resolveCodec,
  resolveMetricsOptions,
  ShardlineOptionError,
  silentLogger,
} from '@shardline/common';
import { resolveDynamoDbLeases } from '../leases/dynamodb-options.js';
import { MemoryLeaseStore } from '../leases/memory.js';
import {
  identifier,
  integer,
  isObject,
  matching,
  milliseconds,
  noBraces,
  objectOption,
  redisConnection,
  rejectUnknownKeys,
  show,
} from './checks.js';
import { COORDINATOR_DEFAULTS, LIMITS } from './defaults.js';
import { resolveFanOut } from './fan-out.js';
import {
  resolveDeadLetter,
  resolveDelivery,
  resolveHandlerControls,
  resolveOnHandlerError,
} from './handler.js';
import { resolveTracing } from './tracing.js';
import type { CoordinatorOptions, ResolvedCoordinatorOptions, ResolvedStreamSpec } from './types.js';

const TOP_LEVEL_KEYS = [
  'streamName',
  'streamArn',
  'streams',
  'group',
  'kinesis',
  'leases',
  'hostId',
  'maxShardConsumers',
  'workerThreads',
  'initialPosition',
  'codec',
  'maxRecordsPerFetch',
  'fetchRatePerShard',
  'idleFetchIntervalMs',
  'idleFetchMaxIntervalMs',
  'maxBufferedRecords',
  'maxBufferedBytes',
  'checkpoint',
  'leaseDurationMs',
  'leaseRenewIntervalMs',
  'shardSyncIntervalMs',
  'leaseCleanupDelayMs',
  'handler',
  'handlerModule',
  'onHandlerError',
  'maxRecordAgeMs',
  'parallelism',
  'deadLetter',
  'logger',
  'metrics',
  'signal',
  'fanOut',
  'tracing',
] as const satisfies readonly (keyof CoordinatorOptions)[];

/** Kinesis stream names: 1 to 128 of [a-zA-Z0-9_.-]. */
const STREAM_NAME = /^[a-zA-Z0-9_.-]{1,128}$/;
const STREAM_ARN = /^arn:[a-z0-9-]+:kinesis:[a-z0-9-]*:[0-9]*:stream\/([a-zA-Z0-9_.-]{1,128})$/;

function resolveStream(
  o: Record<string, unknown>,
  prefix = '',
): {
  streamName?: string;
  streamArn?: string;
  stream: string;
} {
  const { streamName, streamArn } = o;
  if (streamName !== undefined && streamArn !== undefined) {
    throw new ShardlineOptionError(
      `${prefix}streamName`,
      'and streamArn are exclusive: pass exactly one of them',
    );
  }
  if (streamName === undefined && streamArn === undefined) {
    throw new ShardlineOptionError(
      `${prefix}streamName`,
      prefix === ''
        ? 'or streamArn (or streams) is required: pass exactly one of them'
        : 'or streamArn is required: pass exactly one of them',
    );
  }
  if (streamName !== undefined) {
    const name = matching(
      streamName,
      `${prefix}streamName`,
      STREAM_NAME,
      "a Kinesis stream name: 1 to 128 of a-z, A-Z, 0-9, '_', '.', '-'",
    );
    return { streamName: name, stream: name };
  }
  const match = typeof streamArn === 'string' ? STREAM_ARN.exec(streamArn) : null;
  if (match === null) {
    throw new ShardlineOptionError(
      `${prefix}streamArn`,
      `must be a Kinesis stream ARN like 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders' (got ${show(streamArn)})`,
    );
  }
  return { streamArn: streamArn as string, stream: match[1]! };
}

function resolveKinesis(value: unknown): {
  kinesis: KinesisClientConfig | KinesisClient;
  workerKinesisConfig: PortableKinesisConfig;
} {
  const kinesis = value ?? {};
  if (!isKinesisClient(kinesis) && !isObject(kinesis)) {
    throw new ShardlineOptionError(
      'kinesis',
      `must be a KinesisClientConfig object (e.g. { region: 'eu-west-1' }) or a KinesisClient (got ${show(kinesis)})`,
    );
  }
  const typed = kinesis as KinesisClientConfig | KinesisClient;
  // Checked now, not when the first worker starts: a setting that cannot cross threads is a config error.
  return { kinesis: typed, workerKinesisConfig: Object.freeze(portableClientConfig(typed)) };
}

function resolveLeases(value: unknown): ResolvedCoordinatorOptions['leases'] {
  const leases = objectOption(value, 'leases', "{ redis: 'redis://127.0.0.1:6379', keyPrefix: 'shardline' }");
  rejectUnknownKeys(leases, ['redis', 'dynamodb', 'keyPrefix', 'store'], 'leases.');
  const redis = leases.redis === undefined ? undefined : redisConnection(leases.redis, 'leases.redis');
  const dynamodb =
    leases.dynamodb === undefined ? undefined : resolveDynamoDbLeases(leases.dynamodb, 'leases.dynamodb');
  if (dynamodb !== undefined && leases.keyPrefix !== undefined) {
    throw new ShardlineOptionError(
      'leases.keyPrefix',
      'is for Redis keys: a DynamoDB lease table is one group and stream already (leases.dynamodb.tableName); remove it',
    );
  }
  if (dynamodb !== undefined && redis !== undefined) {
    throw new ShardlineOptionError(
      'leases.dynamodb',
      'cannot be combined with leases.redis: the leases live in one store; remove one of them',
    );
  }
  const keyPrefix = noBraces(
    identifier(
      leases.keyPrefix ?? COORDINATOR_DEFAULTS.keyPrefix,
      'leases.keyPrefix',
      'the Redis key prefix',
    ),
    'leases.keyPrefix',
  );
  let store: MemoryLeaseStore | undefined;
  if (leases.store !== undefined) {
    if (!(leases.store instanceof MemoryLeaseStore)) {
      throw new ShardlineOptionError(
        'leases.store',
        `must be a MemoryLeaseStore (got ${show(leases.store)})`,
      );
    }
    if (redis !== undefined || dynamodb !== undefined) {
      throw new ShardlineOptionError(
        'leases.store',
        `cannot be combined with leases.${redis !== undefined ? 'redis' : 'dynamodb'}: a MemoryLeaseStore is for in-memory leases; remove one of them`,
      );
    }
    store = leases.store;
  }
  return Object.freeze({ redis, dynamodb, keyPrefix, store });
}

/** The keys of a `streams` entry. */
const STREAM_SPEC_KEYS = ['streamName', 'streamArn', 'initialPosition', 'fanOut'] as const;

/**
 * One `streams` entry (or `coordinator.addStream()`'s spec), its `initialPosition` and `fanOut`
 * defaulting to `defaults` (the top-level ones). `name` names it in errors (`streams[2]`).
 *
 * @throws ShardlineOptionError naming the entry's option.
 */
export function resolveStreamSpec(
  value: unknown,
  name: string,
  defaults: Pick<ResolvedCoordinatorOptions, 'initialPosition' | 'fanOut'>,
): ResolvedStreamSpec {
  if (!isObject(value)) {
    throw new ShardlineOptionError(
      name,
      `must be an object like { streamName: 'orders' } or { streamArn } (got ${show(value)})`,
    );
  }
  const spec = value;
  rejectUnknownKeys(spec, STREAM_SPEC_KEYS, `${name}.`);
  const stream = resolveStream(spec, `${name}.`);
  return Object.freeze({
    streamName: stream.streamName,
    streamArn: stream.streamArn,
    stream: stream.stream,
    initialPosition:
      spec.initialPosition === undefined
        ? defaults.initialPosition
        : resolveInitialPosition(spec.initialPosition, `${name}.initialPosition`),
    fanOut: spec.fanOut === undefined ? defaults.fanOut : resolveFanOut(spec.fanOut, `${name}.fanOut`),
  });
}

function resolveStreams(
  o: Record<string, unknown>,
  defaults: Pick<ResolvedCoordinatorOptions, 'initialPosition' | 'fanOut'>,
): ResolvedStreamSpec[] {
  if (o.streamName !== undefined || o.streamArn !== undefined) {
    throw new ShardlineOptionError(
      'streams',
      `cannot be combined with ${o.streamName !== undefined ? 'streamName' : 'streamArn'}: pass the one stream as streamName/streamArn, or every stream in streams`,
    );
  }
  if (!Array.isArray(o.streams)) {
    throw new ShardlineOptionError(
      'streams',
      `must be an array of { streamName | streamArn, initialPosition?, fanOut? } (got ${show(o.streams)})`,
    );
  }
  const seen = new Set<string>();
  return o.streams.map((entry: unknown, i) => {
    const spec = resolveStreamSpec(entry, `streams[${i}]`, defaults);
    if (seen.has(spec.stream)) {
      throw new ShardlineOptionError(
        `streams[${i}].${spec.streamName !== undefined ? 'streamName' : 'streamArn'}`,
        `names stream '${spec.stream}' a second time: each stream may appear once`,
      );
    }
    seen.add(spec.stream);
    return spec;
  });
}

function resolveInitialPosition(
  value: unknown,
  name = 'initialPosition',
): ResolvedCoordinatorOptions['initialPosition'] {
  const v = value ?? COORDINATOR_DEFAULTS.initialPosition;
  if (v === 'TRIM_HORIZON' || v === 'LATEST') return v;
  if (isObject(v)) {
    rejectUnknownKeys(v, ['timestamp'], `${name}.`);
    const timestamp = v.timestamp;
    if (timestamp instanceof Date && !Number.isNaN(timestamp.getTime())) {
      return Object.freeze({ timestamp: new Date(timestamp.getTime()) });
    }
    throw new ShardlineOptionError(`${name}.timestamp`, `must be a valid Date (got ${show(timestamp)})`);
  }
  throw new ShardlineOptionError(
    name,
    `must be 'TRIM_HORIZON', 'LATEST' or { timestamp: Date } (got ${show(v)})`,
  );
}

function resolveCheckpoint(value: unknown): ResolvedCoordinatorOptions['checkpoint'] {
  const checkpoint = objectOption(value, 'checkpoint', "{ mode: 'auto', intervalMs: 5000 }");
  rejectUnknownKeys(checkpoint, ['mode', 'intervalMs'], 'checkpoint.');
  const mode = checkpoint.mode ?? COORDINATOR_DEFAULTS.checkpoint.mode;
  if (mode !== 'auto' && mode !== 'manual') {
    throw new ShardlineOptionError('checkpoint.mode', `must be 'auto' or 'manual' (got ${show(mode)})`);
  }
  const intervalMs = milliseconds(
    checkpoint.intervalMs,
    'checkpoint.intervalMs',
    COORDINATOR_DEFAULTS.checkpoint.intervalMs,
    { min: 0 },
  );
  return Object.freeze({ mode, intervalMs });
}

function resolveLogger(value: unknown): Logger {
  if (value === undefined) return silentLogger;
  const l = value as Partial<Record<keyof Logger, unknown>> | null;
  if (!isObject(l) || (['debug', 'info', 'warn', 'error'] as const).some((k) => typeof l[k] !== 'function')) {
    throw new ShardlineOptionError(
      'logger',
      'must be a pino-compatible logger with debug, info, warn and error methods',
    );
  }
  return value as Logger;
}

function resolveSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined;
  const s = value as { aborted?: unknown; addEventListener?: unknown } | null;
  if (!isObject(s) || typeof s.aborted !== 'boolean' || typeof s.addEventListener !== 'function') {
    throw new ShardlineOptionError('signal', `must be an AbortSignal (got ${show(value)})`);
  }
  return value as AbortSignal;
}

function defaultHostId(): string {
  return `${os.hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

/**
 * Validates `input`, applies {@link COORDINATOR_DEFAULTS} (also to partial nested objects such as
 * `checkpoint: { mode: 'manual' }`), checks the cross-field rules and freezes the result. User objects
 * passed through (the Kinesis config or client, Redis instances, logger, handler) are not frozen.
 *
 * @throws ShardlineOptionError (`ERR_INVALID_OPTION`) naming the option and saying what to change.
 */
export function resolveCoordinatorOptions<T = unknown>(
  input: CoordinatorOptions<T>,
): ResolvedCoordinatorOptions<T> {
  if (!isObject(input)) {
    throw new ShardlineOptionError(
      'options',
      `must be an object like { streamName, group } (got ${show(input)})`,
    );
  }
  const o = input as unknown as Record<string, unknown>;
  rejectUnknownKeys(o, TOP_LEVEL_KEYS, '');

  const multiStream = o.streams !== undefined;
  const stream = multiStream ? undefined : resolveStream(o);
  const group = identifier(o.group, 'group', 'the consumer group name');
  noBraces(group, 'group');
  const { kinesis, workerKinesisConfig } = resolveKinesis(o.kinesis);
  const leases = resolveLeases(o.leases);
  const hostId = identifier(o.hostId ?? defaultHostId(), 'hostId', "this host's unique id in the group");

  const maxShardConsumers = integer(
    o.maxShardConsumers,
    'maxShardConsumers',
    COORDINATOR_DEFAULTS.maxShardConsumers,
    { min: 1, infinity: true },
  );
  const workerThreads = integer(
    o.workerThreads,
    'workerThreads',
    Math.min(os.availableParallelism(), COORDINATOR_DEFAULTS.maxWorkerThreads),
    { min: 1 },
  );
  const initialPosition = resolveInitialPosition(o.initialPosition);
  const fanOut = resolveFanOut(o.fanOut);
  const streams: ResolvedStreamSpec[] =
    stream === undefined
      ? resolveStreams(o, { initialPosition, fanOut })
      : [
          Object.freeze({
            streamName: stream.streamName,
            streamArn: stream.streamArn,
            stream: stream.stream,
            initialPosition,
            fanOut,
          }),
        ];
  const codec = resolveCodec(
    (o.codec ?? COORDINATOR_DEFAULTS.codec) as CodecName | Codec,
    'codec',
  ) as Codec<T>;
  const codecName =
    typeof o.codec === 'string' || o.codec === undefined ? (codec.name as CodecName) : undefined;

  const maxRecordsPerFetch = integer(
    o.maxRecordsPerFetch,
    'maxRecordsPerFetch',
    COORDINATOR_DEFAULTS.maxRecordsPerFetch,
    { min: 1, max: LIMITS.maxRecordsPerFetch },
  );
  const fetchRatePerShard = o.fetchRatePerShard ?? COORDINATOR_DEFAULTS.fetchRatePerShard;
  if (
    typeof fetchRatePerShard !== 'number' ||
    !Number.isFinite(fetchRatePerShard) ||
    fetchRatePerShard <= 0 ||
    fetchRatePerShard > LIMITS.fetchRatePerShard
  ) {
    throw new ShardlineOptionError(
      'fetchRatePerShard',
      `must be a number above 0 and at most ${LIMITS.fetchRatePerShard} (GetRecords calls per second per shard, the service limit; got ${show(fetchRatePerShard)})`,
    );
  }
  const idleFetchIntervalMs = milliseconds(
    o.idleFetchIntervalMs,
    'idleFetchIntervalMs',
    COORDINATOR_DEFAULTS.idleFetchIntervalMs,
    { min: 0, below: LIMITS.iteratorLifetimeMs },
  );
  const idleFetchMaxIntervalMs = milliseconds(
    o.idleFetchMaxIntervalMs,
    'idleFetchMaxIntervalMs',
    Math.max(COORDINATOR_DEFAULTS.idleFetchMaxIntervalMs, idleFetchIntervalMs),
    { min: idleFetchIntervalMs, below: LIMITS.iteratorLifetimeMs },
  );
  const maxBufferedRecords = integer(
    o.maxBufferedRecords,
    'maxBufferedRecords',
    COORDINATOR_DEFAULTS.maxBufferedRecords,
    { min: 1 },
  );
  const maxBufferedBytes = integer(
    o.maxBufferedBytes,
    'maxBufferedBytes',
    COORDINATOR_DEFAULTS.maxBufferedBytes,
    { min: 1 },
  );
  const checkpoint = resolveCheckpoint(o.checkpoint);

  const leaseDurationMs = integer(
    o.leaseDurationMs,
    'leaseDurationMs',
    COORDINATOR_DEFAULTS.leaseDurationMs,
    { min: LIMITS.minLeaseDurationMs, max: LIMITS.maxLeaseDurationMs },
  );
  const leaseRenewIntervalMs = integer(
    o.leaseRenewIntervalMs,
    'leaseRenewIntervalMs',
    Math.floor(leaseDurationMs / 3),
    { min: LIMITS.minLeaseRenewIntervalMs },
  );
  if (leaseRenewIntervalMs >= leaseDurationMs / 2) {
    throw new ShardlineOptionError(
      'leaseRenewIntervalMs',
      `must be < leaseDurationMs / 2 (got ${leaseRenewIntervalMs} with leaseDurationMs ${leaseDurationMs}): a lease must survive one missed renewal; lower it or raise leaseDurationMs`,
    );
  }
  const shardSyncIntervalMs = milliseconds(
    o.shardSyncIntervalMs,
    'shardSyncIntervalMs',
    COORDINATOR_DEFAULTS.shardSyncIntervalMs,
    { min: LIMITS.minShardSyncIntervalMs },
  );
  const leaseCleanupDelayMs = milliseconds(
    o.leaseCleanupDelayMs,
    'leaseCleanupDelayMs',
    COORDINATOR_DEFAULTS.leaseCleanupDelayMs,
    { min: 0 },
  );

  const { delivery, handler, handlerModule } = resolveDelivery<T>(o, codecName);

  const onHandlerError = resolveOnHandlerError(o.onHandlerError);
  const { maxRecordAgeMs, parallelism } = resolveHandlerControls(o, delivery);
  const deadLetter = resolveDeadLetter(o.deadLetter, onHandlerError.then, leases.redis);

  return Object.freeze({
    streamName: stream?.streamName,
    streamArn: stream?.streamArn,
    stream: stream?.stream ?? streams.map((s) => s.stream).join(','),
    streams: Object.freeze(streams),
    multiStream,
    group,
    kinesis,
    workerKinesisConfig,
    leases,
    hostId,
    maxShardConsumers,
    workerThreads,
    workerThreadsStart: o.workerThreads !== undefined || handlerModule !== undefined ? 'all' : 'on-demand',
    initialPosition,
    codec,
    codecName,
    maxRecordsPerFetch,
    fetchRatePerShard,
    idleFetchIntervalMs,
    idleFetchMaxIntervalMs,
    maxBufferedRecords,
    maxBufferedBytes,
    checkpoint,
    leaseDurationMs,
    leaseRenewIntervalMs,
    shardSyncIntervalMs,
    leaseCleanupDelayMs,
    delivery,
    handler,
    handlerModule,
    onHandlerError,
    maxRecordAgeMs,
    parallelism,
    deadLetter,
    logger: resolveLogger(o.logger),
    metrics: resolveMetricsOptions(o.metrics),
    signal: resolveSignal(o.signal),
    fanOut,
    tracing: resolveTracing(o.tracing),
  });
}
