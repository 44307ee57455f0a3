/**
 * Options of a {@link ShardReader}: one defaults constant, one resolver that validates and freezes.
 * Everything here is plain data, because the coordinator sends these options to a worker thread.
 */
import type { BackoffMs, Codec, CodecName, LogLevel, ShardPosition } from '@shardline/common';
import { resolveCodec, ShardlineOptionError, validateBackoff } from '@shardline/common';
import type { FirstAnswer } from './first-fetch.js';

/** Where a reader starts when there is no checkpoint. */
export type InitialPosition = 'TRIM_HORIZON' | 'LATEST' | { timestamp: Date | number };

/**
 * How records cross to the coordinator.
 * - `'decoded'`: the worker decodes with the codec and posts the items (structured clone).
 * - `'bytes'`: the worker posts each record's raw payload packed in one transferred ArrayBuffer; the
 *   receiver decodes (`batchToRecords` of @shardline/common). Only for codecs that are not framed,
 *   since splitting a framed payload into its items is decoding.
 * - `'json'` (the default for codecs whose items are JSON values: json, jsonl, json-array, string): the
 *   worker decodes and checks every item and posts the whole batch as one JSON text of ShardRecords;
 *   the receiver turns it into records with one `JSON.parse` (and a Date each): the cheapest crossing
 *   for the receiving thread (`splitBatch` of @shardline/common).
 */
export type BatchEncoding = 'bytes' | 'decoded' | 'json';

/** Options of a shard reader. Plain data: they cross to the worker thread. */
export interface ShardReaderOptions {
  /** The stream by name; exactly one of `streamName` and `streamArn` is required. */
  streamName?: string;
  /** The stream by ARN; exactly one of `streamName` and `streamArn` is required. */
  streamArn?: string;
  /** The shard to read, e.g. `shardId-000000000003`. */
  shardId: string;
  /**
   * Where processing got to. Without `subSequenceNumber` the reader starts AFTER_SEQUENCE_NUMBER; with
   * one (a KPL aggregate or framed record processed part way) it starts AT_SEQUENCE_NUMBER and skips
   * the items whose sub-sequence number is <= the checkpoint's. Takes precedence over `initialPosition`.
   * @defaultValue undefined (use `initialPosition`)
   */
  checkpoint?: ShardPosition;
  /**
   * Where to start when there is no checkpoint. The coordinator passes TRIM_HORIZON for child shards.
   * @defaultValue 'TRIM_HORIZON'
   */
  initialPosition?: InitialPosition;
  /**
   * Most Kinesis records per GetRecords call (the call's `Limit`), 1 to 10,000. The call also never
   * asks for more than the reader's record credit.
   * @defaultValue 10_000
   */
  maxRecordsPerFetch?: number;
  /**
   * GetRecords calls per second for this shard, more than 0 and at most 5 (the Kinesis limit, shared by
   * every consumer of the shard). Calls are spaced evenly: never more than this many in any second.
   * @defaultValue 5
   */
  fetchRatePerShard?: number;
  /**
   * Bytes per second read from this shard (Kinesis allows 2 MiB/s per shard across its consumers).
   * A large response puts the reader in debt, which it waits out before its next call.
   * @defaultValue 2_097_152
   */
  fetchBytesPerSecPerShard?: number;
  /**
   * Pause between GetRecords calls while the shard returns nothing and is not behind (millisBehindLatest 0).
   * @defaultValue 1_000
   */
  idleFetchIntervalMs?: number;
  /**
   * An idle shard polls less often: after 3 empty answers in a row the pause doubles at each one, up to
   * this; the first answer with records (or a shard behind) brings it back to full speed. Equal to
   * `idleFetchIntervalMs`: no backoff.
   * @defaultValue 5_000
   */
  idleFetchMaxIntervalMs?: number;
  /**
   * Codec that decodes record payloads. A name, because options cross threads.
   * @defaultValue 'json'
   */
  codec?: CodecName;
  /**
   * How records cross to the coordinator: see {@link BatchEncoding}.
   * @defaultValue 'bytes' for the `raw` codec, 'json' for codecs with `decodeJson` (json, jsonl, json-array,
   * string), else 'decoded' (measured: see the README)
   */
  encoding?: BatchEncoding;
  /**
   * Backoff after ProvisionedThroughputExceeded (full jitter), per shard; reset by a successful call.
   * @defaultValue { initial: 250, max: 10_000 }
   */
  throttleBackoffMs?: BackoffMs;
  /**
   * Backoff after a transient error (5xx, network, timeout, LimitExceeded), full jitter; reset by a
   * successful call.
   * @defaultValue { initial: 200, max: 30_000 }
   */
  errorBackoffMs?: BackoffMs;
  /**
   * Lowest level of the log lines the reader relays to the coordinator as `log` messages.
   * @defaultValue 'info'
   */
  logLevel?: LogLevel;
  /**
   * The reader's first GetRecords answer, already fetched (from the start position above) by the
   * coordinator's thread: see first-fetch.ts. Taken as the first call when it parses.
   * @defaultValue undefined (the reader makes its first calls itself)
   */
  first?: FirstAnswer;
}

/** Defaults of {@link ShardReaderOptions}. */
export const SHARD_READER_DEFAULTS = Object.freeze({
  initialPosition: 'TRIM_HORIZON' as InitialPosition,
  maxRecordsPerFetch: 10_000,
  fetchRatePerShard: 5,
  fetchBytesPerSecPerShard: 2 * 1024 * 1024,
  idleFetchIntervalMs: 1_000,
  idleFetchMaxIntervalMs: 5_000,
  codec: 'json' as CodecName,
  throttleBackoffMs: Object.freeze({ initial: 250, max: 10_000 }),
  errorBackoffMs: Object.freeze({ initial: 200, max: 30_000 }),
  logLevel: 'info' as LogLevel,
});

/** The Kinesis limits the options may not exceed. */
const MAX_RECORDS_PER_CALL = 10_000;
const MAX_CALLS_PER_SEC = 5;

/** How a new shard iterator is positioned. */
export type IteratorStart =
  | { type: 'TRIM_HORIZON' }
  | { type: 'LATEST' }
  | { type: 'AT_TIMESTAMP'; timestamp: Date }
  | { type: 'AFTER_SEQUENCE_NUMBER'; sequenceNumber: string }
  | { type: 'AT_SEQUENCE_NUMBER'; sequenceNumber: string; skipThroughSubSequence: number };

/** {@link ShardReaderOptions} validated, with defaults applied; frozen. */
export interface ResolvedShardReaderOptions {
  readonly streamName: string | undefined;
  readonly streamArn: string | undefined;
  readonly shardId: string;
  readonly start: Readonly<IteratorStart>;
  readonly maxRecordsPerFetch: number;
  readonly fetchRatePerShard: number;
  readonly fetchBytesPerSecPerShard: number;
  readonly idleFetchIntervalMs: number;
  readonly idleFetchMaxIntervalMs: number;
  readonly codec: Codec;
  readonly first: FirstAnswer | undefined;
  readonly encoding: BatchEncoding;
  readonly throttleBackoffMs: Readonly<BackoffMs>;
  readonly errorBackoffMs: Readonly<BackoffMs>;
  readonly logLevel: LogLevel;
}

const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];
const SEQUENCE_NUMBER = /^[0-9]{1,128}$/;

function show(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (value instanceof Date)
    return `Date(${Number.isNaN(value.getTime()) ? 'invalid' : value.toISOString()})`;
  if (value === null) return 'null';
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

function optionalString(value: unknown, option: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(option, `must be a non-empty string (got ${show(value)})`);
  }
  return value;
}

function numberIn(value: unknown, option: string, min: number, max: number, integer: boolean): number {
  const ok =
    typeof value === 'number' &&
    Number.isFinite(value) &&
    value >= min &&
    value <= max &&
    (!integer || Number.isInteger(value));
  if (!ok) {
    const kind = integer ? 'an integer' : 'a number';
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new ShardlineOptionError(option, `must be ${kind} ${range} (got ${show(value)})`);
  }
  return value as number;
}

function resolveStart(checkpoint: unknown, initialPosition: unknown): IteratorStart {
  if (checkpoint !== undefined) {
    const c = checkpoint as Partial<ShardPosition> | null;
    if (typeof c !== 'object' || c === null) {
      throw new ShardlineOptionError(
        'checkpoint',
        `must be { sequenceNumber, subSequenceNumber? } (got ${show(checkpoint)})`,
      );
    }
    if (typeof c.sequenceNumber !== 'string' || !SEQUENCE_NUMBER.test(c.sequenceNumber)) {
      throw new ShardlineOptionError(
        'checkpoint.sequenceNumber',
        `must be a Kinesis sequence number (a string of digits; got ${show(c.sequenceNumber)})`,
      );
    }
    if (c.subSequenceNumber === undefined) {
      return { type: 'AFTER_SEQUENCE_NUMBER', sequenceNumber: c.sequenceNumber };
    }
    const sub = numberIn(
      c.subSequenceNumber,
      'checkpoint.subSequenceNumber',
      0,
      Number.MAX_SAFE_INTEGER,
      true,
    );
    return { type: 'AT_SEQUENCE_NUMBER', sequenceNumber: c.sequenceNumber, skipThroughSubSequence: sub };
  }
  const position = initialPosition ?? SHARD_READER_DEFAULTS.initialPosition;
  if (position === 'TRIM_HORIZON' || position === 'LATEST') return { type: position };
  const timestamp = (position as { timestamp?: unknown } | null)?.timestamp;
  if (typeof position === 'object' && position !== null && timestamp !== undefined) {
    const date = timestamp instanceof Date ? new Date(timestamp.getTime()) : new Date(timestamp as number);
    if (
      (timestamp instanceof Date || (typeof timestamp === 'number' && Number.isFinite(timestamp))) &&
      !Number.isNaN(date.getTime())
    ) {
      return { type: 'AT_TIMESTAMP', timestamp: date };
    }
    throw new ShardlineOptionError(
      'initialPosition.timestamp',
      `must be a valid Date or epoch milliseconds (got ${show(timestamp)})`,
    );
  }
  throw new ShardlineOptionError(
    'initialPosition',
    `must be 'TRIM_HORIZON', 'LATEST' or { timestamp: Date } (got ${show(position)})`,
  );
}

function resolveBackoff(value: unknown, fallback: Readonly<BackoffMs>, option: string): Readonly<BackoffMs> {
  if (value === undefined) return fallback;
  validateBackoff(value, option);
  return Object.freeze({ ...value });
}

/**
 * Validates `options`, applies {@link SHARD_READER_DEFAULTS}, resolves the start position and freezes.
 * @throws ShardlineOptionError naming the option and saying what to change.
 */
export function resolveShardReaderOptions(options: ShardReaderOptions): ResolvedShardReaderOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ShardlineOptionError(
      'options',
      `must be an object with at least { shardId } (got ${show(options)})`,
    );
  }
  const d = SHARD_READER_DEFAULTS;
  const streamName = optionalString(options.streamName, 'streamName');
  const streamArn = optionalString(options.streamArn, 'streamArn');
  if ((streamName === undefined) === (streamArn === undefined)) {
    throw new ShardlineOptionError(
      'streamName',
      streamName === undefined
        ? 'or streamArn is required (got neither)'
        : 'and streamArn are exclusive: pass exactly one',
    );
  }
  const shardId = optionalString(options.shardId, 'shardId');
  if (shardId === undefined) throw new ShardlineOptionError('shardId', 'is required (got undefined)');
  const codecName = options.codec ?? d.codec;
  if (typeof codecName !== 'string') {
    throw new ShardlineOptionError(
      'codec',
      `must be a codec name such as 'json' (a Codec object cannot cross to a worker thread; got ${show(codecName)})`,
    );
  }
  const codec = resolveCodec(codecName, 'codec');
  const encoding =
    options.encoding ??
    (codec.name === 'raw' ? 'bytes' : codec.decodeJson !== undefined ? 'json' : 'decoded');
  if (encoding !== 'bytes' && encoding !== 'decoded' && encoding !== 'json') {
    throw new ShardlineOptionError(
      'encoding',
      `must be 'bytes', 'decoded' or 'json' (got ${show(encoding)})`,
    );
  }
  if (encoding === 'json' && codec.decodeJson === undefined) {
    throw new ShardlineOptionError(
      'encoding',
      `'json' needs a codec whose items are JSON values (json, jsonl, json-array, string; got '${codec.name}'): use 'decoded'`,
    );
  }
  if (encoding === 'bytes' && codec.framed) {
    throw new ShardlineOptionError(
      'encoding',
      `'bytes' needs a codec that is not framed (codec '${codec.name}' packs several items per record, ` +
        "and splitting them is decoding): use 'decoded'",
    );
  }
  const logLevel = options.logLevel ?? d.logLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    throw new ShardlineOptionError(
      'logLevel',
      `must be one of ${LOG_LEVELS.join(', ')} (got ${show(logLevel)})`,
    );
  }
  const idleFetchIntervalMs = numberIn(
    options.idleFetchIntervalMs ?? d.idleFetchIntervalMs,
    'idleFetchIntervalMs',
    0,
    Number.MAX_SAFE_INTEGER,
    false,
  );
  const idleFetchMaxIntervalMs = numberIn(
    options.idleFetchMaxIntervalMs ?? Math.max(d.idleFetchMaxIntervalMs, idleFetchIntervalMs),
    'idleFetchMaxIntervalMs',
    idleFetchIntervalMs,
    Number.MAX_SAFE_INTEGER,
    false,
  );
  return Object.freeze({
    streamName,
    streamArn,
    shardId,
    start: Object.freeze(resolveStart(options.checkpoint, options.initialPosition)),
    maxRecordsPerFetch: numberIn(
      options.maxRecordsPerFetch ?? d.maxRecordsPerFetch,
      'maxRecordsPerFetch',
      1,
      MAX_RECORDS_PER_CALL,
      true,
    ),
    fetchRatePerShard: fetchRate(options.fetchRatePerShard ?? d.fetchRatePerShard),
    fetchBytesPerSecPerShard: numberIn(
      options.fetchBytesPerSecPerShard ?? d.fetchBytesPerSecPerShard,
      'fetchBytesPerSecPerShard',
      1,
      Number.MAX_SAFE_INTEGER,
      true,
    ),
    idleFetchIntervalMs,
    idleFetchMaxIntervalMs,
    codec,
    encoding,
    throttleBackoffMs: resolveBackoff(options.throttleBackoffMs, d.throttleBackoffMs, 'throttleBackoffMs'),
    errorBackoffMs: resolveBackoff(options.errorBackoffMs, d.errorBackoffMs, 'errorBackoffMs'),
    logLevel,
    first: resolveFirst(options.first),
  });
}

function resolveFirst(first: unknown): FirstAnswer | undefined {
  if (first === undefined) return undefined;
  const f = first as Partial<FirstAnswer> | null;
  const failed = f?.failed;
  if (
    typeof f !== 'object' ||
    f === null ||
    (f.body === undefined) === (failed === undefined) ||
    (f.body !== undefined && !(f.body instanceof Uint8Array)) ||
    (failed !== undefined &&
      (typeof failed !== 'object' ||
        failed === null ||
        typeof failed.name !== 'string' ||
        typeof failed.message !== 'string' ||
        (failed.operation !== 'GetShardIterator' && failed.operation !== 'GetRecords'))) ||
    typeof f.requestedAtMs !== 'number' ||
    !Number.isFinite(f.requestedAtMs)
  ) {
    throw new ShardlineOptionError(
      'first',
      `must be { body: Uint8Array } or { failed: { operation, name, message } }, with requestedAtMs: number (got ${show(first)})`,
    );
  }
  return f as FirstAnswer;
}

function fetchRate(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > MAX_CALLS_PER_SEC) {
    throw new ShardlineOptionError(
      'fetchRatePerShard',
      `must be a number > 0 and <= ${MAX_CALLS_PER_SEC} (the Kinesis limit per shard; got ${show(value)})`,
    );
  }
  return value;
}
