/**
 * Runtime guards of the reader <-> coordinator protocol (`messages.ts`): every message is checked on
 * arrival, and a bad one is refused saying what is wrong (version, type, or which field), because the
 * two ends may run different builds during a rolling upgrade.
 */

import { ErrorCodes, ShardlineError } from './errors.js';
import type {
  CoordinatorMessage,
  CoordinatorMessageType,
  LogLevel,
  WorkerMessage,
  WorkerMessageType,
} from './messages.js';
import { PROTOCOL_VERSION } from './messages.js';

type Obj = Record<string, unknown>;

/** What `value` is, for error messages (`null`, `array` and `ArrayBuffer` apart from `typeof`). */
export function kindOf(value: unknown): string {
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
    optStr(r, 'traceContext', path),
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
  const traceContexts = m.traceContexts;
  if (
    traceContexts !== undefined &&
    (!Array.isArray(traceContexts) ||
      traceContexts.length !== n ||
      traceContexts.some((t) => typeof t !== 'string'))
  ) {
    return `traceContexts must be an array of count ${n} strings when set`;
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

/** The error every refused message (and record-packing.ts's bad input) throws: `ERR_PROTOCOL`. */
export function protocolError(message: string): ShardlineError {
  return new ShardlineError(ErrorCodes.PROTOCOL, message);
}
