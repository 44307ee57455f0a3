/**
 * The data protocol between a shard reader (worker thread) and the coordinator: one MessageChannel per
 * reader. Every message is `{ v: PROTOCOL_VERSION, type, ... }` and is checked on arrival, because the
 * two ends may run different builds during a rolling upgrade and a bad message must fail loudly, not
 * be half-understood. Record bytes travel in one transferred ArrayBuffer per batch, never as a
 * structured-cloned object graph; errors travel as {@link SerializedError}.
 *
 * Reader control (start / stop / status) goes over comlink, apart from this port.
 */

import type { SerializedError } from './errors.js';
import { ErrorCodes, ShardlineError } from './errors.js';

/** Version of this protocol; bumped on any incompatible change. */
export const PROTOCOL_VERSION = 1 as const;

/** A record's metadata; its data bytes are `buffer.slice(offset, offset + length)` of the batch. */
export interface PackedRecordMeta {
  partitionKey: string;
  sequenceNumber: string;
  /** Set for records unpacked from a KPL aggregate or a framed codec. */
  subSequenceNumber?: number;
  explicitHashKey?: string;
  /** ApproximateArrivalTimestamp, epoch milliseconds. */
  arrivalMs: number;
  /** Byte offset of the record's data in the batch buffer. */
  offset: number;
  /** Byte length of the record's data. */
  length: number;
  /**
   * Set when the reader could not unpack this record (a malformed KPL aggregate): `data` is then the
   * record's raw bytes, and the receiver applies its poison-record policy to exactly this record.
   */
  error?: SerializedError;
}

/** A record already decoded by the codec in the worker; `data` must be structured-cloneable. */
export interface DecodedRecordMessage {
  data: unknown;
  partitionKey: string;
  sequenceNumber: string;
  subSequenceNumber?: number;
  explicitHashKey?: string;
  /** ApproximateArrivalTimestamp, epoch milliseconds. */
  arrivalMs: number;
  /**
   * Set when the record could not be decoded (codec error) or unpacked (malformed KPL aggregate):
   * `data` is then a `Uint8Array` of the raw payload, and the receiver applies its poison-record
   * policy to exactly this record.
   */
  error?: SerializedError;
}

interface BatchBase {
  v: typeof PROTOCOL_VERSION;
  type: 'batch';
  shardId: string;
  /** Increases by one per batch of a reader (from 0); the coordinator acks by it. */
  batchId: number;
  /** From the GetRecords response that produced the batch. */
  millisBehindLatest?: number;
  /** Where to resume after this batch: the sequence number of its last record. */
  lastSequenceNumber: string;
  /** With {@link lastSequenceNumber}: the last record's sub-sequence, when it came from an aggregate. */
  lastSubSequenceNumber?: number;
  /** Record bytes as fetched from Kinesis (before decoding): what the batch costs against byte credit. */
  bytes: number;
}

/** Records as raw bytes: metadata plus one ArrayBuffer with every record's data, to transfer. */
export interface BytesBatchMessage extends BatchBase {
  encoding: 'bytes';
  records: PackedRecordMeta[];
  buffer: ArrayBuffer;
}

/** Records decoded in the worker (decoding where it is cheapest). */
export interface DecodedBatchMessage extends BatchBase {
  encoding: 'decoded';
  records: DecodedRecordMessage[];
}

/** A record that could not be decoded, in a `'json'` batch: where it goes among the good ones. */
export interface PoisonRecordMessage extends DecodedRecordMessage {
  /** How many of the batch's decoded records come before it. */
  before: number;
  error: SerializedError;
}

/**
 * Records of codecs whose items are JSON values (json, jsonl, json-array, string), in columns: their
 * items as one JSON text, their metadata in arrays. The receiver turns the whole batch into records
 * with one `JSON.parse` and one pass that builds each record from the columns, instead of a structured
 * clone of an object graph (measured in BENCHMARKS.md: about half the receiving thread's time).
 * Record `i` (of the `count` that decoded, in order) has `data` = item `i` of `json`.
 */
export interface JsonBatchMessage extends BatchBase {
  encoding: 'json';
  /** A JSON array of the decoded records' items, in order. */
  json: string;
  /** How many records the columns hold. */
  count: number;
  /** The batch's distinct partition keys; record `i`'s is `partitionKeys[keyIndex[i]]`. */
  partitionKeys: string[];
  keyIndex: Uint32Array;
  /** The records' sequence numbers (decimal digits), joined by `,`. */
  sequenceNumbers: string;
  /** ApproximateArrivalTimestamp of each record, epoch milliseconds. */
  arrivalMs: Float64Array;
  /** Each record's sub-sequence number, -1 for none; absent when no record has one. */
  subSequenceNumbers?: Int32Array;
  /** Each record's explicit hash key, '' for none; absent when no record has one. */
  explicitHashKeys?: string[];
  /** Records that could not be decoded (raw bytes as `data`), in order. */
  poison: PoisonRecordMessage[];
}

/** worker -> coordinator: records of one shard, in order. */
export type BatchMessage = BytesBatchMessage | DecodedBatchMessage | JsonBatchMessage;

/** How many records (poison ones included) a batch carries: what it costs against record credit. */
export function batchSize(batch: BatchMessage): number {
  return batch.encoding === 'json' ? batch.count + batch.poison.length : batch.records.length;
}

/** worker -> coordinator: the shard was read to its end (no NextShardIterator). */
export interface ShardEndMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'shard-end';
  shardId: string;
  /** From GetRecords' ChildShards; `undefined` when the service sent none (kinesalite): use ListShards. */
  childShardIds: string[] | undefined;
}

/** worker -> coordinator: the reader failed (fatal: it stopped) or hit an error it will retry. */
export interface ErrorMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'error';
  shardId: string;
  error: SerializedError;
  /** True when the reader stopped because of it; false when it backs off and carries on. */
  fatal: boolean;
}

/** worker -> coordinator: Kinesis throttled the reader (ProvisionedThroughputExceeded). */
export interface ThrottledMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'throttled';
  shardId: string;
  /** How long the reader backs off before its next call. */
  delayMs: number;
  /** Throttled responses this message reports (added to the shard's `throttled` total). */
  count: number;
}

/** worker -> coordinator: stats of the latest GetRecords call, for `status()` and metrics. */
export interface FetchedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'fetched';
  shardId: string;
  /** When the call returned, epoch milliseconds. */
  lastFetchAtMs: number;
  millisBehindLatest?: number;
  /** Kinesis records in the response (before KPL deaggregation). */
  records: number;
  /** Data bytes in the response. */
  bytes: number;
  /**
   * Shard iterators that expired (ExpiredIteratorException) since the previous `fetched` message and
   * were acquired again before this call; absent when none. Optional, so either side may be older.
   */
  expiredIterators?: number;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** worker -> coordinator: a log line, relayed to the coordinator's logger (workers never print). */
export interface LogMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'log';
  level: LogLevel;
  message: string;
  /** Structured-cloneable fields (the reader adds its shardId here). */
  fields?: Record<string, unknown>;
}

/** worker -> coordinator: the reader task runs on this thread (first message of every task). */
export interface StartedMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'started';
  shardId: string;
  /** `threadId` of node:worker_threads in the thread running the task. */
  threadId: number;
}

export type WorkerMessage =
  | StartedMessage
  | BatchMessage
  | ShardEndMessage
  | ErrorMessage
  | ThrottledMessage
  | FetchedMessage
  | LogMessage;

/** coordinator -> worker: more room; the reader fetches only while it holds credit. */
export interface CreditMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'credit';
  /** Records granted, added to the reader's credit. */
  records: number;
  /** Bytes granted, added to the reader's credit. */
  bytes: number;
}

/**
 * coordinator -> worker: record credit taken back (more readers share the host budget now); the
 * reader's credit may go negative, and it fetches again once grants bring it above zero.
 */
export interface RevokeMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'revoke';
  /** Records taken from the reader's credit. */
  records: number;
  /** Bytes taken from the reader's credit (absent: none; older coordinators send none). */
  bytes?: number;
}

/** coordinator -> worker: the batch `batchId` (and every earlier one) was processed. */
export interface AckMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'ack';
  batchId: number;
}

/** coordinator -> worker: stop reading; no batch follows it. */
export interface StopMessage {
  v: typeof PROTOCOL_VERSION;
  type: 'stop';
  /** Why, for logs: e.g. 'shutdown', 'lease-lost', 'handoff'. */
  reason: string;
}

export type CoordinatorMessage = CreditMessage | RevokeMessage | AckMessage | StopMessage;

export type WorkerMessageType = WorkerMessage['type'];
export type CoordinatorMessageType = CoordinatorMessage['type'];

/** For the `default` branch of a switch over a union: a compile error if a case is missing. */
export function assertNever(value: never): never {
  const type = (value as { type?: unknown } | null)?.type;
  throw new ShardlineError(
    ErrorCodes.INTERNAL,
    `unexpected value${typeof type === 'string' ? ` of type '${type}'` : ''}: not handled by this version`,
  );
}

// --- validation -------------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (value instanceof ArrayBuffer) return 'ArrayBuffer';
  return typeof value;
}

/** Each check returns undefined when fine, else what is wrong (the path is added by the caller). */
function str(o: Obj, key: string, path: string): string | undefined {
  return typeof o[key] === 'string' ? undefined : `${path}${key} must be a string (got ${kindOf(o[key])})`;
}

function nonEmptyStr(o: Obj, key: string, path: string): string | undefined {
  const value = o[key];
  if (typeof value === 'string' && value.length > 0) return undefined;
  return `${path}${key} must be a non-empty string (got ${typeof value === 'string' ? "''" : kindOf(value)})`;
}

function optStr(o: Obj, key: string, path: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, path);
}

function count(o: Obj, key: string, path: string): string | undefined {
  const value = o[key];
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
    ? undefined
    : `${path}${key} must be an integer >= 0 (got ${typeof value === 'number' ? value : kindOf(value)})`;
}

function optCount(o: Obj, key: string, path: string): string | undefined {
  return o[key] === undefined ? undefined : count(o, key, path);
}

function finite(o: Obj, key: string, path: string): string | undefined {
  const value = o[key];
  return typeof value === 'number' && Number.isFinite(value)
    ? undefined
    : `${path}${key} must be a finite number (got ${typeof value === 'number' ? value : kindOf(value)})`;
}

function nonNegative(o: Obj, key: string, path: string): string | undefined {
  const value = o[key];
  return typeof value === 'number' && Number.isFinite(value) && value >= 0
    ? undefined
    : `${path}${key} must be a finite number >= 0 (got ${typeof value === 'number' ? value : kindOf(value)})`;
}

function optNonNegative(o: Obj, key: string, path: string): string | undefined {
  return o[key] === undefined ? undefined : nonNegative(o, key, path);
}

function bool(o: Obj, key: string, path: string): string | undefined {
  return typeof o[key] === 'boolean' ? undefined : `${path}${key} must be a boolean (got ${kindOf(o[key])})`;
}

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function first(...problems: Array<string | undefined>): string | undefined {
  for (const problem of problems) if (problem !== undefined) return problem;
  return undefined;
}

function recordCommon(r: Obj, path: string): string | undefined {
  return first(
    str(r, 'partitionKey', path),
    str(r, 'sequenceNumber', path),
    optCount(r, 'subSequenceNumber', path),
    optStr(r, 'explicitHashKey', path),
    finite(r, 'arrivalMs', path),
    r.error === undefined ? undefined : checkSerializedError(r.error, `${path}error`, 0),
  );
}

function checkBatch(m: Obj): string | undefined {
  const problem = first(
    nonEmptyStr(m, 'shardId', ''),
    count(m, 'batchId', ''),
    optNonNegative(m, 'millisBehindLatest', ''),
    str(m, 'lastSequenceNumber', ''),
    optCount(m, 'lastSubSequenceNumber', ''),
    count(m, 'bytes', ''),
  );
  if (problem !== undefined) return problem;
  if (m.encoding === 'json') return checkJsonBatch(m);
  const records = m.records;
  if (!Array.isArray(records)) return `records must be an array (got ${kindOf(records)})`;
  if (m.encoding === 'bytes') {
    const buffer = m.buffer;
    if (!(buffer instanceof ArrayBuffer)) {
      return `buffer must be an ArrayBuffer (got ${kindOf(buffer)}${
        (buffer as { buffer?: unknown } | null)?.buffer instanceof ArrayBuffer ? ': send view.buffer' : ''
      })`;
    }
    const size = buffer.byteLength;
    for (let i = 0; i < records.length; i++) {
      const r: unknown = records[i];
      const path = `records[${i}].`;
      if (!isObj(r)) return `records[${i}] must be an object (got ${kindOf(r)})`;
      const bad = first(recordCommon(r, path), count(r, 'offset', path), count(r, 'length', path));
      if (bad !== undefined) return bad;
      if ((r.offset as number) + (r.length as number) > size) {
        return `records[${i}] spans bytes ${r.offset}..${(r.offset as number) + (r.length as number)} beyond the buffer (${size} bytes; a detached buffer has 0)`;
      }
    }
    return undefined;
  }
  if (m.encoding === 'decoded') {
    return checkDecoded(records, 'records');
  }
  return `encoding must be 'bytes', 'decoded' or 'json' (got ${typeof m.encoding === 'string' ? `'${m.encoding}'` : kindOf(m.encoding)})`;
}

function checkDecoded(records: unknown[], name: string): string | undefined {
  for (let i = 0; i < records.length; i++) {
    const r: unknown = records[i];
    if (!isObj(r)) return `${name}[${i}] must be an object (got ${kindOf(r)})`;
    if (!('data' in r)) return `${name}[${i}].data is missing`;
    const bad = recordCommon(r, `${name}[${i}].`);
    if (bad !== undefined) return bad;
  }
  return undefined;
}

function checkJsonBatch(m: Obj): string | undefined {
  const problem = first(str(m, 'json', ''), count(m, 'count', ''), str(m, 'sequenceNumbers', ''));
  if (problem !== undefined) return problem;
  const n = m.count as number;
  const keys = m.partitionKeys;
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string')) {
    return `partitionKeys must be an array of strings (got ${kindOf(keys)})`;
  }
  const columns: Array<[string, unknown, string]> = [
    ['keyIndex', m.keyIndex, 'Uint32Array'],
    ['arrivalMs', m.arrivalMs, 'Float64Array'],
  ];
  if (m.subSequenceNumbers !== undefined)
    columns.push(['subSequenceNumbers', m.subSequenceNumbers, 'Int32Array']);
  for (const [name, column, type] of columns) {
    const ok =
      (type === 'Uint32Array' && column instanceof Uint32Array) ||
      (type === 'Float64Array' && column instanceof Float64Array) ||
      (type === 'Int32Array' && column instanceof Int32Array);
    if (!ok) return `${name} must be a ${type} (got ${kindOf(column)})`;
    if ((column as Uint32Array).length !== n) {
      return `${name} must hold count ${n} values (got ${(column as Uint32Array).length}; a detached buffer has 0)`;
    }
  }
  const hashKeys = m.explicitHashKeys;
  if (hashKeys !== undefined && (!Array.isArray(hashKeys) || hashKeys.length !== n)) {
    return `explicitHashKeys must be an array of count ${n} strings when set`;
  }
  const poison = m.poison;
  if (!Array.isArray(poison)) return `poison must be an array (got ${kindOf(poison)})`;
  const bad = checkDecoded(poison, 'poison');
  if (bad !== undefined) return bad;
  let before = 0;
  for (let i = 0; i < poison.length; i++) {
    const p = poison[i] as Obj;
    const where = `poison[${i}].`;
    const wrong = first(
      count(p, 'before', where),
      p.error === undefined ? `${where}error is missing` : undefined,
    );
    if (wrong !== undefined) return wrong;
    if ((p.before as number) < before || (p.before as number) > (m.count as number)) {
      return `${where}before must be from ${before} to count ${m.count as number} (got ${p.before as number})`;
    }
    before = p.before as number;
  }
  return undefined;
}

function checkSerializedError(e: unknown, path: string, depth: number): string | undefined {
  if (!isObj(e)) return `${path} must be a SerializedError object (got ${kindOf(e)})`;
  const p = `${path}.`;
  const bad = first(
    str(e, 'name', p),
    str(e, 'code', p),
    str(e, 'message', p),
    bool(e, 'retriable', p),
    optStr(e, 'stack', p),
  );
  if (bad !== undefined) return bad;
  if (e.details !== undefined && !isObj(e.details)) {
    return `${p}details must be an object (got ${kindOf(e.details)})`;
  }
  if (e.cause !== undefined) {
    if (depth >= 16) return `${p}cause is nested too deeply`;
    return checkSerializedError(e.cause, `${p}cause`, depth + 1);
  }
  return undefined;
}

const LOG_LEVELS: ReadonlySet<string> = new Set<LogLevel>(['debug', 'info', 'warn', 'error']);

function checkWorker(m: Obj): string | undefined {
  const type = m.type as WorkerMessageType;
  switch (type) {
    case 'started':
      return first(nonEmptyStr(m, 'shardId', ''), count(m, 'threadId', ''));
    case 'batch':
      return checkBatch(m);
    case 'shard-end': {
      const bad = nonEmptyStr(m, 'shardId', '');
      if (bad !== undefined) return bad;
      const children = m.childShardIds;
      if (children === undefined) return undefined;
      if (!Array.isArray(children))
        return `childShardIds must be an array or undefined (got ${kindOf(children)})`;
      for (let i = 0; i < children.length; i++) {
        if (typeof children[i] !== 'string')
          return `childShardIds[${i}] must be a string (got ${kindOf(children[i])})`;
      }
      return undefined;
    }
    case 'error':
      return first(
        nonEmptyStr(m, 'shardId', ''),
        checkSerializedError(m.error, 'error', 0),
        bool(m, 'fatal', ''),
      );
    case 'throttled':
      return first(nonEmptyStr(m, 'shardId', ''), nonNegative(m, 'delayMs', ''), count(m, 'count', ''));
    case 'fetched':
      return first(
        nonEmptyStr(m, 'shardId', ''),
        finite(m, 'lastFetchAtMs', ''),
        optNonNegative(m, 'millisBehindLatest', ''),
        count(m, 'records', ''),
        count(m, 'bytes', ''),
        optCount(m, 'expiredIterators', ''),
      );
    case 'log':
      if (typeof m.level !== 'string' || !LOG_LEVELS.has(m.level)) {
        return `level must be one of debug, info, warn, error (got ${typeof m.level === 'string' ? `'${m.level}'` : kindOf(m.level)})`;
      }
      return first(
        str(m, 'message', ''),
        m.fields === undefined || isObj(m.fields)
          ? undefined
          : `fields must be an object (got ${kindOf(m.fields)})`,
      );
    default:
      return unknownType(m.type, "'started', 'batch', 'shard-end', 'error', 'throttled', 'fetched' or 'log'");
  }
}

function checkCoordinator(m: Obj): string | undefined {
  const type = m.type as CoordinatorMessageType;
  switch (type) {
    case 'credit':
      return first(count(m, 'records', ''), count(m, 'bytes', ''));
    case 'revoke':
      return first(count(m, 'records', ''), optCount(m, 'bytes', ''));
    case 'ack':
      return count(m, 'batchId', '');
    case 'stop':
      return str(m, 'reason', '');
    default:
      return unknownType(m.type, "'credit', 'revoke', 'ack' or 'stop'");
  }
}

function unknownType(type: unknown, expected: string): string {
  return typeof type === 'string'
    ? `unknown type '${type}' (expected ${expected})`
    : `type must be a string (got ${kindOf(type)})`;
}

function checkEnvelope(x: unknown, check: (m: Obj) => string | undefined): string | undefined {
  if (!isObj(x)) return `message must be an object (got ${kindOf(x)})`;
  if (x.v !== PROTOCOL_VERSION) {
    return `unsupported protocol version ${JSON.stringify(x.v) ?? 'undefined'} (this side speaks v${PROTOCOL_VERSION}): are the coordinator and the worker from the same Shardline version?`;
  }
  return check(x);
}

function where(x: unknown): string {
  return isObj(x) && typeof x.type === 'string' ? ` '${x.type}'` : '';
}

/** Whether `x` is a well-formed {@link WorkerMessage} of this protocol version. */
export function isWorkerMessage(x: unknown): x is WorkerMessage {
  return checkEnvelope(x, checkWorker) === undefined;
}

/** Whether `x` is a well-formed {@link CoordinatorMessage} of this protocol version. */
export function isCoordinatorMessage(x: unknown): x is CoordinatorMessage {
  return checkEnvelope(x, checkCoordinator) === undefined;
}

/**
 * Returns `x` typed as a {@link WorkerMessage}, or throws a {@link ShardlineError} `ERR_PROTOCOL`
 * saying what is wrong (version, type, or which field).
 */
export function parseWorkerMessage(x: unknown): WorkerMessage {
  const problem = checkEnvelope(x, checkWorker);
  if (problem !== undefined) throw protocolError(`worker message${where(x)}: ${problem}`);
  return x as WorkerMessage;
}

/** As {@link parseWorkerMessage}, for messages to the worker. */
export function parseCoordinatorMessage(x: unknown): CoordinatorMessage {
  const problem = checkEnvelope(x, checkCoordinator);
  if (problem !== undefined) throw protocolError(`coordinator message${where(x)}: ${problem}`);
  return x as CoordinatorMessage;
}

function protocolError(message: string): ShardlineError {
  return new ShardlineError(ErrorCodes.PROTOCOL, message);
}

// --- record packing ---------------------------------------------------------------------------------

/** A record to pack: its data bytes plus metadata. */
export type RecordToPack = Omit<PackedRecordMeta, 'offset' | 'length'> & { data: Uint8Array };

/** A record of a received batch: `data` is a view into the batch buffer (not a copy). */
export type UnpackedRecord = Omit<PackedRecordMeta, 'offset' | 'length'> & { data: Uint8Array };

/**
 * Copies every record's data into one new ArrayBuffer (the only copy on the way to the coordinator)
 * and returns per-record metadata with offsets. Post `buffer` in the transfer list.
 */
export function packRecords(records: readonly RecordToPack[]): {
  records: PackedRecordMeta[];
  buffer: ArrayBuffer;
  bytes: number;
} {
  let total = 0;
  for (let i = 0; i < records.length; i++) {
    const data = records[i]!.data;
    if (!(data instanceof Uint8Array)) {
      throw protocolError(`packRecords: records[${i}].data must be a Uint8Array (got ${kindOf(data)})`);
    }
    total += data.byteLength;
  }
  const buffer = new ArrayBuffer(total);
  const bytes = new Uint8Array(buffer);
  const metas: PackedRecordMeta[] = new Array(records.length);
  let offset = 0;
  for (let i = 0; i < records.length; i++) {
    const r = records[i]!;
    bytes.set(r.data, offset);
    const meta: PackedRecordMeta = {
      partitionKey: r.partitionKey,
      sequenceNumber: r.sequenceNumber,
      arrivalMs: r.arrivalMs,
      offset,
      length: r.data.byteLength,
    };
    if (r.subSequenceNumber !== undefined) meta.subSequenceNumber = r.subSequenceNumber;
    if (r.explicitHashKey !== undefined) meta.explicitHashKey = r.explicitHashKey;
    if (r.error !== undefined) meta.error = r.error;
    metas[i] = meta;
    offset += r.data.byteLength;
  }
  return { records: metas, buffer, bytes: total };
}

/** The data of one packed record: a view into `buffer`, no copy. */
export function recordData(buffer: ArrayBuffer, meta: PackedRecordMeta): Uint8Array {
  return new Uint8Array(buffer, meta.offset, meta.length);
}

/** The records of a packed batch with `data` as views into `buffer` (no copy). */
export function unpackRecords(records: readonly PackedRecordMeta[], buffer: ArrayBuffer): UnpackedRecord[] {
  const out: UnpackedRecord[] = new Array(records.length);
  for (let i = 0; i < records.length; i++) {
    const m = records[i]!;
    if (m.offset + m.length > buffer.byteLength) {
      throw protocolError(
        `unpackRecords: records[${i}] spans bytes ${m.offset}..${m.offset + m.length} beyond the buffer (${buffer.byteLength} bytes)`,
      );
    }
    const r: UnpackedRecord = {
      data: new Uint8Array(buffer, m.offset, m.length),
      partitionKey: m.partitionKey,
      sequenceNumber: m.sequenceNumber,
      arrivalMs: m.arrivalMs,
    };
    if (m.subSequenceNumber !== undefined) r.subSequenceNumber = m.subSequenceNumber;
    if (m.explicitHashKey !== undefined) r.explicitHashKey = m.explicitHashKey;
    if (m.error !== undefined) r.error = m.error;
    out[i] = r;
  }
  return out;
}

/** What to pass as `postMessage`'s transfer list for `message`: the batch buffer, if any. */
export function transferListOf(message: WorkerMessage): ArrayBuffer[] {
  if (message.type !== 'batch') return [];
  if (message.encoding === 'bytes') return [message.buffer];
  if (message.encoding !== 'json') return [];
  const list = [message.keyIndex.buffer as ArrayBuffer, message.arrivalMs.buffer as ArrayBuffer];
  if (message.subSequenceNumbers !== undefined) list.push(message.subSequenceNumbers.buffer as ArrayBuffer);
  return list;
}
