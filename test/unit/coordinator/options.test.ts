// biome-ignore-all lint/suspicious/noThenProperty: onHandlerError.then is the API option name (a string, never a thenable)
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import { type Codec, codecs, createKinesisClient, type Logger, silentLogger } from '@shardline/common';
import {
  COORDINATOR_DEFAULTS,
  type CoordinatorOptions,
  MemoryLeaseStore,
  resolveCoordinatorOptions,
} from '@shardline/coordinator';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { expect } from 'chai';
import { optionError } from '../../support/assertions.js';

const base: CoordinatorOptions = { streamName: 'orders', group: 'billing' };

function resolve(extra: Record<string, unknown>) {
  return resolveCoordinatorOptions({ ...base, ...extra } as CoordinatorOptions);
}

describe('coordinator options', () => {
  describe('defaults', () => {
    it('applies every documented default to the minimal options', () => {
      const o = resolveCoordinatorOptions(base);
      expect(o.streamName).to.equal('orders');
      expect(o.streamArn).to.equal(undefined);
      expect(o.stream).to.equal('orders');
      expect(o.group).to.equal('billing');
      expect(o.kinesis).to.deep.equal({});
      expect(o.leases).to.deep.equal({
        redis: undefined,
        dynamodb: undefined,
        keyPrefix: 'shardline',
        store: undefined,
      });
      expect(o.maxShardConsumers).to.equal(Number.POSITIVE_INFINITY);
      expect(o.workerThreads).to.equal(Math.min(os.availableParallelism(), 4));
      expect(o.initialPosition).to.equal('TRIM_HORIZON');
      expect(o.codec).to.equal(codecs.json);
      expect(o.codecName).to.equal('json');
      expect(o.maxRecordsPerFetch).to.equal(10_000);
      expect(o.fetchRatePerShard).to.equal(5);
      expect(o.idleFetchIntervalMs).to.equal(1_000);
      expect(o.maxBufferedRecords).to.equal(100_000);
      expect(o.maxBufferedBytes).to.equal(64 * 1024 * 1024);
      expect(o.leaseCleanupDelayMs).to.equal(300_000);
      expect(o.checkpoint).to.deep.equal({ mode: 'auto', intervalMs: 5_000 });
      expect(o.leaseDurationMs).to.equal(10_000);
      expect(o.leaseRenewIntervalMs).to.equal(3_333);
      expect(o.shardSyncIntervalMs).to.equal(60_000);
      expect(o.delivery).to.equal('iterator');
      expect(o.handler).to.equal(undefined);
      expect(o.handlerModule).to.equal(undefined);
      expect(o.onHandlerError).to.deep.equal({
        retries: Number.POSITIVE_INFINITY,
        backoffMs: { initial: 100, max: 30_000 },
        then: 'stop-shard',
      });
      expect(o.maxRecordAgeMs).to.equal(Number.POSITIVE_INFINITY);
      expect(o.parallelism).to.equal(1);
      expect(o.deadLetter).to.equal(undefined);
      expect(o.logger).to.equal(silentLogger);
      expect(o.metrics).to.equal(undefined);
      expect(o.signal).to.equal(undefined);
    });

    it('matches COORDINATOR_DEFAULTS, which is frozen', () => {
      expect(Object.isFrozen(COORDINATOR_DEFAULTS)).to.equal(true);
      expect(Object.isFrozen(COORDINATOR_DEFAULTS.checkpoint)).to.equal(true);
      expect(Object.isFrozen(COORDINATOR_DEFAULTS.onHandlerError.backoffMs)).to.equal(true);
      const o = resolveCoordinatorOptions(base);
      expect(o.leaseDurationMs).to.equal(COORDINATOR_DEFAULTS.leaseDurationMs);
      expect(o.maxRecordsPerFetch).to.equal(COORDINATOR_DEFAULTS.maxRecordsPerFetch);
    });

    it('defaults hostId to hostname:pid:random, unique per call', () => {
      const a = resolveCoordinatorOptions(base).hostId;
      const b = resolveCoordinatorOptions(base).hostId;
      expect(a).to.match(
        new RegExp(`^${os.hostname().replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${process.pid}:[0-9a-f]{8}$`),
      );
      expect(a).to.not.equal(b);
    });

    it('applies defaults inside empty and partial nested objects', () => {
      const o = resolve({
        leases: {},
        checkpoint: { mode: 'manual' },
        onHandlerError: { then: 'skip', backoffMs: { initial: 10 } },
      });
      expect(o.leases.keyPrefix).to.equal('shardline');
      expect(o.checkpoint).to.deep.equal({ mode: 'manual', intervalMs: 5_000 });
      expect(o.onHandlerError).to.deep.equal({
        retries: Number.POSITIVE_INFINITY,
        backoffMs: { initial: 10, max: 30_000 },
        then: 'skip',
      });
      expect(resolve({ checkpoint: {} }).checkpoint).to.deep.equal({ mode: 'auto', intervalMs: 5_000 });
      expect(resolve({ onHandlerError: {} }).onHandlerError.then).to.equal('stop-shard');
    });

    it('treats explicit undefined like an omitted option', () => {
      const o = resolve({ maxShardConsumers: undefined, leaseDurationMs: undefined, codec: undefined });
      expect(o.maxShardConsumers).to.equal(Number.POSITIVE_INFINITY);
      expect(o.leaseDurationMs).to.equal(10_000);
      expect(o.codecName).to.equal('json');
    });

    it('freezes the result and its nested objects, not the user objects passed through', () => {
      const kinesis = { region: 'eu-west-1' };
      const logger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
      const o = resolve({ kinesis, logger, initialPosition: { timestamp: new Date(0) } });
      expect(Object.isFrozen(o)).to.equal(true);
      expect(Object.isFrozen(o.checkpoint)).to.equal(true);
      expect(Object.isFrozen(o.leases)).to.equal(true);
      expect(Object.isFrozen(o.onHandlerError)).to.equal(true);
      expect(Object.isFrozen(o.onHandlerError.backoffMs)).to.equal(true);
      expect(Object.isFrozen(o.initialPosition)).to.equal(true);
      expect(Object.isFrozen(kinesis)).to.equal(false);
      expect(Object.isFrozen(logger)).to.equal(false);
      expect(o.kinesis).to.equal(kinesis);
      expect(o.logger).to.equal(logger);
    });

    it('does not keep a reference to the caller nested objects', () => {
      const checkpoint = { mode: 'auto' as const, intervalMs: 1_000 };
      const o = resolve({ checkpoint });
      checkpoint.intervalMs = 1;
      expect(o.checkpoint.intervalMs).to.equal(1_000);
    });
  });

  describe('options object', () => {
    it('must be an object', () => {
      optionError(() => resolveCoordinatorOptions(undefined as never), 'options');
      optionError(() => resolveCoordinatorOptions('orders' as never), 'options');
    });

    it('rejects an unknown option, suggesting the likely one', () => {
      optionError(() => resolve({ leaseDuration: 5_000 }), 'leaseDuration', /did you mean 'leaseDurationMs'/);
      optionError(
        () => resolve({ checkpoint: { interval: 5 } }),
        'checkpoint.interval',
        /did you mean 'checkpoint.intervalMs'/,
      );
      optionError(() => resolve({ leases: { prefix: 'x' } }), 'leases.prefix');
      optionError(
        () => resolve({ onHandlerError: { retry: 3 } }),
        'onHandlerError.retry',
        /'onHandlerError.retries'/,
      );
    });
  });

  describe('streamName / streamArn', () => {
    it('requires exactly one', () => {
      optionError(() => resolveCoordinatorOptions({ group: 'g' }), 'streamName', /exactly one/);
      optionError(
        () => resolve({ streamArn: 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders' }),
        'streamName',
        /exclusive/,
      );
    });

    it('checks the stream name', () => {
      optionError(() => resolve({ streamName: '' }), 'streamName');
      optionError(() => resolve({ streamName: 'has space' }), 'streamName', /got "has space"/);
      optionError(() => resolve({ streamName: 'x'.repeat(129) }), 'streamName');
      optionError(() => resolve({ streamName: 42 }), 'streamName');
    });

    it('accepts an ARN and takes the stream name from it', () => {
      const o = resolveCoordinatorOptions({
        streamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/orders.v2',
        group: 'g',
      });
      expect(o.streamArn).to.equal('arn:aws:kinesis:us-east-1:000000000000:stream/orders.v2');
      expect(o.streamName).to.equal(undefined);
      expect(o.stream).to.equal('orders.v2');
      expect(
        resolveCoordinatorOptions({
          streamArn: 'arn:aws-cn:kinesis:cn-north-1:123456789012:stream/s',
          group: 'g',
        }).stream,
      ).to.equal('s');
    });

    it('rejects what is not a Kinesis stream ARN', () => {
      const noName = { group: 'g' };
      optionError(() => resolveCoordinatorOptions({ ...noName, streamArn: 'orders' }), 'streamArn');
      optionError(
        () =>
          resolveCoordinatorOptions({ ...noName, streamArn: 'arn:aws:sqs:eu-west-1:123456789012:stream/x' }),
        'streamArn',
      );
    });
  });

  describe('maxRecordAgeMs and parallelism (handler controls)', () => {
    const handler = () => undefined;
    it('accept a handler, with their bounds', () => {
      const o = resolve({ handler, maxRecordAgeMs: 60_000, parallelism: 8 });
      expect(o.maxRecordAgeMs).to.equal(60_000);
      expect(o.parallelism).to.equal(8);
      expect(resolve({ handler, maxRecordAgeMs: Number.POSITIVE_INFINITY }).maxRecordAgeMs).to.equal(
        Number.POSITIVE_INFINITY,
      );
      optionError(() => resolve({ handler, maxRecordAgeMs: 0 }), 'maxRecordAgeMs', />= 1 \(got 0\)/);
      optionError(() => resolve({ handler, maxRecordAgeMs: 1.5 }), 'maxRecordAgeMs', /integer or Infinity/);
      optionError(() => resolve({ handler, maxRecordAgeMs: '1m' }), 'maxRecordAgeMs', /must be a number/);
      optionError(() => resolve({ handler, parallelism: 0 }), 'parallelism', />= 1/);
      optionError(() => resolve({ handler, parallelism: 101 }), 'parallelism', /<= 100/);
      optionError(() => resolve({ handler, parallelism: 2.5 }), 'parallelism', /integer/);
    });

    it('are refused in iterator mode, saying what to do instead', () => {
      optionError(
        () => resolve({ maxRecordAgeMs: 1_000 }),
        'maxRecordAgeMs',
        /needs handler or handlerModule/,
      );
      optionError(() => resolve({ parallelism: 2 }), 'parallelism', /needs handler or handlerModule/);
      // Their defaults, given explicitly, are fine.
      expect(resolve({ parallelism: 1 }).parallelism).to.equal(1);
    });
  });

  describe('group', () => {
    it('is required and non-empty', () => {
      optionError(() => resolveCoordinatorOptions({ streamName: 's' } as CoordinatorOptions), 'group');
      optionError(() => resolve({ group: '' }), 'group');
    });

    it('cannot hold Redis hash-tag braces or control characters, or be too long', () => {
      optionError(() => resolve({ group: 'a{b}' }), 'group', /hash tags/);
      optionError(() => resolve({ group: 'a\nb' }), 'group', /control/);
      optionError(() => resolve({ group: 'g'.repeat(257) }), 'group', /256/);
    });
  });

  describe('kinesis', () => {
    it('accepts a config and derives the worker threads config from it', () => {
      const o = resolve({
        kinesis: {
          region: 'eu-west-1',
          endpoint: 'http://127.0.0.1:4567',
          credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
        },
      });
      expect(o.workerKinesisConfig).to.deep.equal({
        region: 'eu-west-1',
        endpoint: 'http://127.0.0.1:4567',
        credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
      });
    });

    it('accepts a config holding an HTTP handler instance (each worker builds its own)', () => {
      const o = resolve({
        kinesis: {
          region: 'us-east-1',
          endpoint: 'http://127.0.0.1:1',
          requestHandler: new NodeHttpHandler(),
        },
      });
      expect(o.workerKinesisConfig).to.deep.equal({ region: 'us-east-1', endpoint: 'http://127.0.0.1:1' });
    });

    it('accepts a client built by createKinesisClient', () => {
      const client = createKinesisClient({ region: 'eu-west-1' });
      try {
        const o = resolve({ kinesis: client });
        expect(o.kinesis).to.equal(client);
        expect(o.workerKinesisConfig.region).to.equal('eu-west-1');
      } finally {
        client.destroy();
      }
    });

    it('rejects a non-object, and settings that cannot reach the worker threads', () => {
      optionError(() => resolve({ kinesis: 'eu-west-1' }), 'kinesis');
      optionError(
        () => resolve({ kinesis: { credentials: async () => ({ accessKeyId: 'a', secretAccessKey: 'b' }) } }),
        'kinesis.credentials',
      );
      const foreign = new KinesisClient({ region: 'eu-west-1' });
      try {
        optionError(() => resolve({ kinesis: foreign }), 'kinesis', /built outside Shardline/);
      } finally {
        foreign.destroy();
      }
    });
  });

  describe('leases', () => {
    it('accepts redis:// and rediss:// URLs and objects', () => {
      expect(resolve({ leases: { redis: 'redis://127.0.0.1:6379' } }).leases.redis).to.equal(
        'redis://127.0.0.1:6379',
      );
      expect(resolve({ leases: { redis: 'rediss://u:p@h:6380/1' } }).leases.redis).to.equal(
        'rediss://u:p@h:6380/1',
      );
      const options = { host: '127.0.0.1', port: 6379 };
      expect(resolve({ leases: { redis: options } }).leases.redis).to.equal(options);
    });

    it('rejects other URLs without echoing them (they may carry a password)', () => {
      const e = optionError(
        () => resolve({ leases: { redis: 'http://user:secret@h' } }),
        'leases.redis',
        /http: URL/,
      );
      expect(e.message).to.not.include('secret');
      const e2 = optionError(() => resolve({ leases: { redis: 'not a url secret' } }), 'leases.redis');
      expect(e2.message).to.not.include('secret');
      optionError(() => resolve({ leases: { redis: 6379 } }), 'leases.redis');
      optionError(() => resolve({ leases: 'redis://h' }), 'leases');
    });

    it('checks keyPrefix', () => {
      expect(resolve({ leases: { keyPrefix: 'app' } }).leases.keyPrefix).to.equal('app');
      optionError(() => resolve({ leases: { keyPrefix: '' } }), 'leases.keyPrefix');
      optionError(() => resolve({ leases: { keyPrefix: 'a{' } }), 'leases.keyPrefix', /hash tags/);
    });

    it('takes a shared MemoryLeaseStore, not with redis', () => {
      const store = new MemoryLeaseStore();
      expect(resolve({ leases: { store } }).leases.store).to.equal(store);
      optionError(() => resolve({ leases: { store: {} } }), 'leases.store');
      optionError(() => resolve({ leases: { store, redis: 'redis://h' } }), 'leases.store', /remove one/);
    });

    it('takes leases.dynamodb, checking each field by its full name', () => {
      const d = resolve({ leases: { dynamodb: { tableName: 'orders-leases', region: 'eu-west-1' } } }).leases
        .dynamodb!;
      expect(d).to.deep.include({ tableName: 'orders-leases', region: 'eu-west-1', createTable: false });
      expect(Object.isFrozen(d)).to.equal(true);
      const local = { tableName: 'orders-leases', endpoint: 'http://127.0.0.1:4567', createTable: true };
      expect(resolve({ leases: { dynamodb: local } }).leases.dynamodb).to.deep.include(local);
      optionError(() => resolve({ leases: { dynamodb: 'orders' } }), 'leases.dynamodb');
      optionError(() => resolve({ leases: { dynamodb: {} } }), 'leases.dynamodb.tableName');
      optionError(() => resolve({ leases: { dynamodb: { tableName: 'a b' } } }), 'leases.dynamodb.tableName');
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl', table: 'x' } } }),
        'leases.dynamodb.table',
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl', endpoint: 'ftp://h' } } }),
        'leases.dynamodb.endpoint',
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl', region: 7 } } }),
        'leases.dynamodb.region',
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl', credentials: 'k' } } }),
        'leases.dynamodb.credentials',
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl', createTable: 1 } } }),
        'leases.dynamodb.createTable',
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl', client: {} } } }),
        'leases.dynamodb.client',
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl' }, keyPrefix: 'app' } }),
        'leases.keyPrefix',
        /tableName/,
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl' }, redis: 'redis://h' } }),
        'leases.dynamodb',
        /remove one/,
      );
      optionError(
        () => resolve({ leases: { dynamodb: { tableName: 'tbl' }, store: new MemoryLeaseStore() } }),
        'leases.store',
        /leases.dynamodb/,
      );
    });
  });

  describe('hostId', () => {
    it('keeps a given id and checks it', () => {
      expect(resolve({ hostId: 'host-a' }).hostId).to.equal('host-a');
      optionError(() => resolve({ hostId: '' }), 'hostId');
      optionError(() => resolve({ hostId: 7 }), 'hostId');
      optionError(() => resolve({ hostId: 'a\u0000' }), 'hostId');
    });
  });

  describe('maxShardConsumers', () => {
    it('is an integer >= 1 or Infinity', () => {
      expect(resolve({ maxShardConsumers: 2 }).maxShardConsumers).to.equal(2);
      expect(resolve({ maxShardConsumers: Number.POSITIVE_INFINITY }).maxShardConsumers).to.equal(
        Number.POSITIVE_INFINITY,
      );
      optionError(() => resolve({ maxShardConsumers: 0 }), 'maxShardConsumers', /must be >= 1 \(got 0\)/);
      optionError(() => resolve({ maxShardConsumers: 1.5 }), 'maxShardConsumers', /integer or Infinity/);
      optionError(() => resolve({ maxShardConsumers: Number.NaN }), 'maxShardConsumers');
      optionError(() => resolve({ maxShardConsumers: '2' }), 'maxShardConsumers');
    });
  });

  describe('workerThreads', () => {
    it('is an integer >= 1', () => {
      expect(resolve({ workerThreads: 8 }).workerThreads).to.equal(8);
      optionError(() => resolve({ workerThreads: 0 }), 'workerThreads', /got 0/);
      optionError(() => resolve({ workerThreads: Number.POSITIVE_INFINITY }), 'workerThreads');
    });

    it('unset, threads start on demand; set, all at once (a handlerModule: see delivery)', () => {
      expect(resolve({}).workerThreadsStart).to.equal('on-demand');
      expect(resolve({ workerThreads: 2 }).workerThreadsStart).to.equal('all');
    });
  });

  describe('initialPosition', () => {
    it('accepts TRIM_HORIZON, LATEST and a timestamp (copied)', () => {
      expect(resolve({ initialPosition: 'LATEST' }).initialPosition).to.equal('LATEST');
      const timestamp = new Date('2026-01-01T00:00:00Z');
      const o = resolve({ initialPosition: { timestamp } });
      timestamp.setTime(0);
      expect(o.initialPosition).to.deep.equal({ timestamp: new Date('2026-01-01T00:00:00Z') });
    });

    it('rejects anything else', () => {
      optionError(
        () => resolve({ initialPosition: 'EARLIEST' }),
        'initialPosition',
        /'TRIM_HORIZON', 'LATEST'/,
      );
      optionError(
        () => resolve({ initialPosition: { timestamp: new Date('nope') } }),
        'initialPosition.timestamp',
      );
      optionError(
        () => resolve({ initialPosition: { timestamp: 1_700_000_000_000 } }),
        'initialPosition.timestamp',
      );
      optionError(() => resolve({ initialPosition: { at: new Date() } }), 'initialPosition.at');
    });
  });

  describe('codec', () => {
    it('resolves built-in names and custom codecs', () => {
      const o = resolve({ codec: 'jsonl' });
      expect(o.codec).to.equal(codecs.jsonl);
      expect(o.codecName).to.equal('jsonl');
      const custom: Codec<string> = {
        name: 'upper',
        framed: false,
        encode: (items) => items.map((i) => new TextEncoder().encode(i)),
        encodeItem: (i) => new TextEncoder().encode(i),
        decode: (p) => [new TextDecoder().decode(p).toUpperCase()],
      };
      const c = resolve({ codec: custom });
      expect(c.codecName).to.equal(undefined);
      expect(c.codec.decode(new TextEncoder().encode('a'))).to.deep.equal(['A']);
    });

    it('rejects an unknown codec', () => {
      optionError(() => resolve({ codec: 'xml' }), 'codec');
      optionError(() => resolve({ codec: { name: 'x' } }), 'codec.framed');
    });
  });

  describe('maxRecordsPerFetch', () => {
    it('is an integer from 1 to 10,000', () => {
      expect(resolve({ maxRecordsPerFetch: 1 }).maxRecordsPerFetch).to.equal(1);
      expect(resolve({ maxRecordsPerFetch: 10_000 }).maxRecordsPerFetch).to.equal(10_000);
      optionError(() => resolve({ maxRecordsPerFetch: 0 }), 'maxRecordsPerFetch', /must be >= 1 \(got 0\)/);
      optionError(
        () => resolve({ maxRecordsPerFetch: 10_001 }),
        'maxRecordsPerFetch',
        /must be <= 10000 \(got 10001\)/,
      );
      optionError(() => resolve({ maxRecordsPerFetch: 2.5 }), 'maxRecordsPerFetch');
    });
  });

  describe('fetchRatePerShard', () => {
    it('is above 0 and at most 5', () => {
      expect(resolve({ fetchRatePerShard: 0.5 }).fetchRatePerShard).to.equal(0.5);
      expect(resolve({ fetchRatePerShard: 5 }).fetchRatePerShard).to.equal(5);
      optionError(() => resolve({ fetchRatePerShard: 0 }), 'fetchRatePerShard', /above 0 and at most 5/);
      optionError(() => resolve({ fetchRatePerShard: 5.1 }), 'fetchRatePerShard', /got 5.1/);
      optionError(() => resolve({ fetchRatePerShard: Number.POSITIVE_INFINITY }), 'fetchRatePerShard');
    });
  });

  describe('idleFetchIntervalMs', () => {
    it('is >= 0 and below the 5-minute iterator lifetime', () => {
      expect(resolve({ idleFetchIntervalMs: 0 }).idleFetchIntervalMs).to.equal(0);
      optionError(
        () => resolve({ idleFetchIntervalMs: -1 }),
        'idleFetchIntervalMs',
        /must be >= 0 \(got -1\)/,
      );
      optionError(() => resolve({ idleFetchIntervalMs: 300_000 }), 'idleFetchIntervalMs', /< 300000/);
      optionError(() => resolve({ idleFetchIntervalMs: Number.NaN }), 'idleFetchIntervalMs');
    });
  });

  describe('maxBufferedRecords', () => {
    it('is an integer >= 1', () => {
      expect(resolve({ maxBufferedRecords: 1 }).maxBufferedRecords).to.equal(1);
      optionError(() => resolve({ maxBufferedRecords: 0 }), 'maxBufferedRecords');
      optionError(() => resolve({ maxBufferedRecords: 10.5 }), 'maxBufferedRecords');
    });
  });

  describe('maxBufferedBytes and leaseCleanupDelayMs', () => {
    it('maxBufferedBytes is an integer >= 1; leaseCleanupDelayMs milliseconds >= 0', () => {
      expect(resolve({ maxBufferedBytes: 1 }).maxBufferedBytes).to.equal(1);
      optionError(() => resolve({ maxBufferedBytes: 0 }), 'maxBufferedBytes');
      optionError(() => resolve({ maxBufferedBytes: '1MB' as never }), 'maxBufferedBytes');
      expect(resolve({ leaseCleanupDelayMs: 0 }).leaseCleanupDelayMs).to.equal(0);
      expect(resolve({}).idleFetchMaxIntervalMs).to.equal(5_000);
      // Below the idle interval it would be no backoff at all: refused; the default follows a larger interval.
      optionError(
        () => resolve({ idleFetchIntervalMs: 2_000, idleFetchMaxIntervalMs: 1_000 }),
        'idleFetchMaxIntervalMs',
      );
      expect(resolve({ idleFetchIntervalMs: 8_000 }).idleFetchMaxIntervalMs).to.equal(8_000);
      optionError(() => resolve({ leaseCleanupDelayMs: -1 }), 'leaseCleanupDelayMs');
    });
  });

  describe('checkpoint', () => {
    it('checks mode and intervalMs', () => {
      optionError(
        () => resolve({ checkpoint: { mode: 'sometimes' } }),
        'checkpoint.mode',
        /'auto' or 'manual'/,
      );
      optionError(() => resolve({ checkpoint: { intervalMs: -5 } }), 'checkpoint.intervalMs');
      optionError(() => resolve({ checkpoint: 'auto' }), 'checkpoint');
      expect(resolve({ checkpoint: { intervalMs: 0 } }).checkpoint.intervalMs).to.equal(0);
    });
  });

  describe('leaseDurationMs', () => {
    it('is an integer >= 1000', () => {
      expect(resolve({ leaseDurationMs: 1_000 }).leaseDurationMs).to.equal(1_000);
      const e = optionError(() => resolve({ leaseDurationMs: 10 }), 'leaseDurationMs');
      expect(e.message).to.equal('leaseDurationMs must be >= 1000 (got 10)');
      optionError(() => resolve({ leaseDurationMs: 1_500.5 }), 'leaseDurationMs', /integer/);
      optionError(() => resolve({ leaseDurationMs: 86_400_001 }), 'leaseDurationMs', /<= 86400000/);
    });
  });

  describe('leaseRenewIntervalMs', () => {
    it('defaults to a third of the lease duration', () => {
      expect(resolve({ leaseDurationMs: 3_000 }).leaseRenewIntervalMs).to.equal(1_000);
    });

    it('must stay below half the lease duration (cross-field rule)', () => {
      expect(resolve({ leaseDurationMs: 10_000, leaseRenewIntervalMs: 4_999 }).leaseRenewIntervalMs).to.equal(
        4_999,
      );
      optionError(
        () => resolve({ leaseDurationMs: 10_000, leaseRenewIntervalMs: 5_000 }),
        'leaseRenewIntervalMs',
        /must be < leaseDurationMs \/ 2 \(got 5000 with leaseDurationMs 10000\)/,
      );
      optionError(() => resolve({ leaseRenewIntervalMs: 50 }), 'leaseRenewIntervalMs', />= 100/);
    });
  });

  describe('shardSyncIntervalMs', () => {
    it('is >= 1000', () => {
      expect(resolve({ shardSyncIntervalMs: 1_000 }).shardSyncIntervalMs).to.equal(1_000);
      optionError(() => resolve({ shardSyncIntervalMs: 999 }), 'shardSyncIntervalMs', /got 999/);
      optionError(() => resolve({ shardSyncIntervalMs: Number.POSITIVE_INFINITY }), 'shardSyncIntervalMs');
    });
  });

  describe('delivery: handler / handlerModule / iteration', () => {
    let dir: string;
    let modulePath: string;
    before(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'shardline-options-'));
      modulePath = path.join(dir, 'handler.mjs');
      writeFileSync(modulePath, 'export default async function handler() {}\n');
    });

    it('selects handler', () => {
      const handler = async () => {};
      const o = resolve({ handler });
      expect(o.delivery).to.equal('handler');
      expect(o.handler).to.equal(handler);
      optionError(() => resolve({ handler: 'fn' }), 'handler', /must be a function/);
    });

    it('with a handlerModule, every worker thread starts at once (the handlers run there)', () => {
      expect(resolve({ handlerModule: modulePath }).workerThreadsStart).to.equal('all');
    });

    it('selects handlerModule from an absolute path, a relative path, a file URL or a URL object', () => {
      const href = pathToFileURL(modulePath).href;
      expect(resolve({ handlerModule: modulePath }).handlerModule).to.equal(href);
      expect(resolve({ handlerModule: path.relative(process.cwd(), modulePath) }).handlerModule).to.equal(
        href,
      );
      expect(resolve({ handlerModule: href }).handlerModule).to.equal(href);
      const o = resolve({ handlerModule: new URL(href) });
      expect(o.handlerModule).to.equal(href);
      expect(o.delivery).to.equal('handler-module');
    });

    it('accepts a data: URL module', () => {
      const url = 'data:text/javascript,export default () => {}';
      expect(resolve({ handlerModule: url }).handlerModule).to.equal(new URL(url).href);
    });

    it('rejects a missing file, naming where relative paths resolve', () => {
      optionError(
        () => resolve({ handlerModule: path.join(dir, 'missing.mjs') }),
        'handlerModule',
        /names no file/,
      );
      optionError(() => resolve({ handlerModule: 'nope/missing.mjs' }), 'handlerModule', /working directory/);
      optionError(() => resolve({ handlerModule: dir }), 'handlerModule', /names no file/);
      optionError(
        () => resolve({ handlerModule: 'https://example.com/h.mjs' }),
        'handlerModule',
        /https: URL/,
      );
      optionError(() => resolve({ handlerModule: 42 }), 'handlerModule');
    });

    it('allows at most one of handler and handlerModule', () => {
      optionError(() => resolve({ handler: () => {}, handlerModule: modulePath }), 'handler', /exclusive/);
    });

    it('needs a built-in codec with handlerModule (cross-field rule)', () => {
      const custom: Codec = {
        name: 'c',
        framed: false,
        encode: () => [],
        encodeItem: () => new Uint8Array(),
        decode: () => [],
      };
      optionError(() => resolve({ handlerModule: modulePath, codec: custom }), 'codec', /cannot cross/);
      expect(resolve({ handlerModule: modulePath, codec: 'msgpack' }).codecName).to.equal('msgpack');
    });
  });

  describe('onHandlerError', () => {
    it('checks retries, backoffMs and then', () => {
      expect(resolve({ onHandlerError: { retries: 0 } }).onHandlerError.retries).to.equal(0);
      optionError(() => resolve({ onHandlerError: { retries: -1 } }), 'onHandlerError.retries');
      optionError(() => resolve({ onHandlerError: { retries: 1.5 } }), 'onHandlerError.retries');
      optionError(
        () => resolve({ onHandlerError: { backoffMs: { initial: -1 } } }),
        'onHandlerError.backoffMs.initial',
      );
      optionError(
        () => resolve({ onHandlerError: { backoffMs: { max: 50 } } }),
        'onHandlerError.backoffMs.max',
        /initial/,
      );
      optionError(() => resolve({ onHandlerError: { backoffMs: 100 } }), 'onHandlerError.backoffMs');
      optionError(
        () => resolve({ onHandlerError: { then: 'ignore' } }),
        'onHandlerError.then',
        /'stop-shard', 'dead-letter' or 'skip'/,
      );
      optionError(() => resolve({ onHandlerError: 'skip' }), 'onHandlerError');
    });
  });

  describe('deadLetter', () => {
    it("is required by then: 'dead-letter'", () => {
      optionError(() => resolve({ onHandlerError: { then: 'dead-letter' } }), 'deadLetter', /required/);
    });

    it('defaults the queue name and the connection to leases.redis', () => {
      const o = resolve({
        leases: { redis: 'redis://127.0.0.1:6379' },
        onHandlerError: { then: 'dead-letter' },
        deadLetter: {},
      });
      expect(o.deadLetter).to.deep.equal({ queue: 'shardline-dlq', connection: 'redis://127.0.0.1:6379' });
      expect(Object.isFrozen(o.deadLetter)).to.equal(true);
    });

    it('needs a connection when leases are in memory', () => {
      optionError(
        () => resolve({ onHandlerError: { then: 'dead-letter' }, deadLetter: { queue: 'dlq' } }),
        'deadLetter.connection',
        /required when leases.redis is not set/,
      );
      const o = resolve({
        onHandlerError: { then: 'dead-letter' },
        deadLetter: { connection: 'redis://h:1' },
      });
      expect(o.deadLetter?.connection).to.equal('redis://h:1');
    });

    it('checks the queue name and connection', () => {
      const dl = { onHandlerError: { then: 'dead-letter' }, leases: { redis: 'redis://h' } };
      optionError(() => resolve({ ...dl, deadLetter: { queue: 'a:b' } }), 'deadLetter.queue', /':'/);
      optionError(() => resolve({ ...dl, deadLetter: { queue: '' } }), 'deadLetter.queue');
      optionError(() => resolve({ ...dl, deadLetter: { connection: 'http://h' } }), 'deadLetter.connection');
    });

    it('is refused when onHandlerError.then would never use it (cross-field rule)', () => {
      optionError(
        () => resolve({ deadLetter: { queue: 'dlq', connection: 'redis://h' } }),
        'deadLetter',
        /onHandlerError.then is 'stop-shard'.*set onHandlerError.then to 'dead-letter'/,
      );
    });
  });

  describe('logger, metrics, signal', () => {
    it('checks the logger shape', () => {
      optionError(() => resolve({ logger: console.log }), 'logger');
      optionError(() => resolve({ logger: { info() {} } }), 'logger', /debug, info, warn and error/);
    });

    it('checks metrics.registry', () => {
      const registry = { registerMetric() {}, getSingleMetric() {} };
      expect(resolve({ metrics: { registry } }).metrics?.registry).to.equal(registry);
      optionError(() => resolve({ metrics: {} }), 'metrics.registry');
      optionError(() => resolve({ metrics: { registry: {} } }), 'metrics.registry');
      // Shardline reuses a metric another coordinator registered: it needs getSingleMetric too.
      optionError(() => resolve({ metrics: { registry: { registerMetric() {} } } }), 'metrics.registry');
    });

    it('checks the signal', () => {
      const controller = new AbortController();
      expect(resolve({ signal: controller.signal }).signal).to.equal(controller.signal);
      optionError(() => resolve({ signal: {} }), 'signal');
      optionError(() => resolve({ signal: true }), 'signal');
    });
  });
});
