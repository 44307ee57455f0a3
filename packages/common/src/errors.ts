/**
 * Error classes and codes shared by every Shardline package.
 *
 * Callers test `error.code`, never `instanceof`: errors cross worker threads (as {@link SerializedError})
 * and may come from another copy of this package.
 */

/** Every error code Shardline raises. Documented in the README's error table. */
export const ErrorCodes = {
  /** An option or argument is invalid; the message names it. */
  INVALID_OPTION: 'ERR_INVALID_OPTION',
  /** A record or item cannot be sent: too large, bad partition key, bad explicit hash key. */
  INVALID_RECORD: 'ERR_INVALID_RECORD',
  /** A payload could not be decoded (or an item encoded) by the codec named in the message. */
  CODEC: 'ERR_CODEC',
  /** A KPL aggregate is malformed: bad MD5 trailer, truncated body, bad table indexes. */
  KPL_MALFORMED: 'ERR_KPL_MALFORMED',
  /** Kinesis refused for throughput (ProvisionedThroughputExceeded, KMSThrottling). */
  THROTTLED: 'ERR_THROTTLED',
  /** A shard iterator expired (older than 5 minutes). */
  EXPIRED_ITERATOR: 'ERR_EXPIRED_ITERATOR',
  /** The stream or shard does not exist. */
  NOT_FOUND: 'ERR_NOT_FOUND',
  /** Credentials are missing or lack permission. */
  ACCESS_DENIED: 'ERR_ACCESS_DENIED',
  /** A control-plane limit was hit (LimitExceededException). */
  LIMIT_EXCEEDED: 'ERR_LIMIT_EXCEEDED',
  /** A transient server-side (5xx) or network failure. */
  TRANSIENT: 'ERR_TRANSIENT',
  /** Kinesis rejected the request as invalid (InvalidArgumentException, ValidationException). */
  INVALID_REQUEST: 'ERR_INVALID_REQUEST',
  /** Some other error from Kinesis. */
  KINESIS: 'ERR_KINESIS',
  /** The operation was aborted (stop, AbortSignal). */
  ABORTED: 'ERR_ABORTED',
  /** The object is closed or stopped and refuses the call. */
  CLOSED: 'ERR_CLOSED',
  /** A lease is held by someone else, or the caller's fencing token is stale. */
  LEASE_LOST: 'ERR_LEASE_LOST',
  /** Redis could not be reached or answered with an error. */
  REDIS: 'ERR_REDIS',
  /** A message between threads did not match the protocol. */
  PROTOCOL: 'ERR_PROTOCOL',
  /** A user handler threw or rejected. */
  HANDLER: 'ERR_HANDLER',
  /** A record was older than the consumer's `maxRecordAgeMs` when it would have been handed out. */
  RECORD_EXPIRED: 'ERR_RECORD_EXPIRED',
  /** A worker thread crashed. */
  WORKER_CRASHED: 'ERR_WORKER_CRASHED',
  /** Anything not covered above. */
  INTERNAL: 'ERR_INTERNAL',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface ShardlineErrorOptions {
  retriable?: boolean;
  cause?: unknown;
  /** Extra context that is safe to log and to send across threads (JSON-serialisable). */
  details?: Record<string, unknown>;
}

/** Base class of every error Shardline raises. */
export class ShardlineError extends Error {
  override name = 'ShardlineError';
  readonly code: string;
  readonly retriable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: string, message: string, options: ShardlineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details;
  }
}

/** An invalid option or argument. The message names the option and says what to change. */
export class ShardlineOptionError extends ShardlineError {
  override name = 'ShardlineOptionError';
  readonly option: string;
  constructor(option: string, message: string) {
    super(ErrorCodes.INVALID_OPTION, `${option} ${message}`, { details: { option } });
    this.option = option;
  }
}

/** A payload the codec cannot decode, or an item it cannot encode. */
export class CodecError extends ShardlineError {
  override name = 'CodecError';
  readonly codec: string;
  constructor(codec: string, message: string, cause?: unknown) {
    super(ErrorCodes.CODEC, `codec '${codec}': ${message}`, { cause, details: { codec } });
    this.codec = codec;
  }
}

/** A malformed KPL aggregate (bad checksum, truncated body, bad indexes). */
export class KplError extends ShardlineError {
  override name = 'KplError';
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.KPL_MALFORMED, `KPL aggregate: ${message}`, { cause });
  }
}

/** An error from Kinesis, classified by {@link classifyAwsError}. */
export class KinesisError extends ShardlineError {
  override name = 'KinesisError';
  /** The AWS error name (`error.name` of the root cause), e.g. `ProvisionedThroughputExceededException`. */
  readonly awsName: string | undefined;
  constructor(code: string, message: string, options: ShardlineErrorOptions & { awsName?: string }) {
    super(code, message, options);
    this.awsName = options.awsName;
  }
}

/** An error crossing a thread boundary: plain data, never an Error or SDK object. */
export interface SerializedError {
  name: string;
  code: string;
  message: string;
  retriable: boolean;
  stack?: string;
  details?: Record<string, unknown>;
  cause?: SerializedError;
}

/**
 * `details` as plain JSON data, or undefined when it is not JSON-serialisable. A JSON round trip (not a
 * mere `JSON.stringify` check) is what makes it safe for `postMessage` too: a function or symbol inside
 * would pass the check (JSON drops it silently) and then make `postMessage` throw a DataCloneError.
 */
function plainDetails(value: unknown): Record<string, unknown> | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  try {
    const json = JSON.stringify(value);
    return json === undefined ? undefined : (JSON.parse(json) as Record<string, unknown>);
  } catch {
    return undefined;
  }
}

/** A thrown value's text for a message: never throws, never `[object Object]` when JSON says more. */
function describeThrown(value: unknown): string {
  if (typeof value === 'object' && value !== null) {
    try {
      const json = JSON.stringify(value);
      if (json !== undefined) return json.length > 1_000 ? `${json.slice(0, 1_000)}...` : json;
    } catch {
      // fall through to String()
    }
  }
  try {
    return String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

/**
 * Turns any thrown value into plain data that survives `postMessage` and `JSON.stringify`.
 * Errors from another realm (a `vm` context) and error-like objects (`{ name?, message, code? }`) keep
 * their fields; any other value becomes an `ERR_INTERNAL` error whose message describes it.
 */
export function serializeError(error: unknown, depth = 0): SerializedError {
  const isErrorLike =
    error instanceof Error ||
    (typeof error === 'object' &&
      error !== null &&
      typeof (error as { message?: unknown }).message === 'string');
  if (isErrorLike) {
    const e = error as {
      name?: unknown;
      message?: unknown;
      stack?: unknown;
      code?: unknown;
      retriable?: unknown;
      details?: unknown;
      cause?: unknown;
    };
    const out: SerializedError = {
      name: typeof e.name === 'string' ? e.name : 'Error',
      code: typeof e.code === 'string' ? e.code : ErrorCodes.INTERNAL,
      message: typeof e.message === 'string' ? e.message : describeThrown(e.message),
      retriable: typeof e.retriable === 'boolean' ? e.retriable : false,
    };
    if (typeof e.stack === 'string') out.stack = e.stack;
    const details = plainDetails(e.details);
    if (details !== undefined) out.details = details;
    if (e.cause !== undefined && e.cause !== error && depth < 8) {
      out.cause = serializeError(e.cause, depth + 1);
    }
    return out;
  }
  return { name: 'Error', code: ErrorCodes.INTERNAL, message: describeThrown(error), retriable: false };
}

/** Rebuilds a {@link ShardlineError} (with its cause chain) from {@link serializeError} output. */
export function deserializeError(data: SerializedError): ShardlineError {
  const cause = data.cause === undefined ? undefined : deserializeError(data.cause);
  const options: ShardlineErrorOptions = { retriable: data.retriable };
  if (cause !== undefined) options.cause = cause;
  if (data.details !== undefined) options.details = data.details;
  const error = new ShardlineError(data.code, data.message, options);
  error.name = data.name;
  if (data.stack !== undefined) error.stack = data.stack;
  return error;
}

/** The innermost `cause` of an error chain (bounded, cycle-safe). */
export function rootCause(error: unknown): unknown {
  let current = error;
  for (let i = 0; i < 16; i++) {
    const next = (current as { cause?: unknown } | null)?.cause;
    if (next === undefined || next === null || next === current) break;
    current = next;
  }
  return current;
}

const THROTTLE_NAMES = new Set([
  'ProvisionedThroughputExceededException',
  'KMSThrottlingException',
  'ThrottlingException',
  'Throttling',
  'TooManyRequestsException',
  'RequestLimitExceeded',
]);
const NOT_FOUND_NAMES = new Set(['ResourceNotFoundException']);
const ACCESS_NAMES = new Set([
  'AccessDeniedException',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'KMSAccessDeniedException',
  'KMSDisabledException',
  'KMSNotFoundException',
  'KMSInvalidStateException',
  'CredentialsProviderError',
  'MissingAuthenticationTokenException',
]);
const INVALID_NAMES = new Set(['InvalidArgumentException', 'ValidationException', 'ResourceInUseException']);
const TRANSIENT_NAMES = new Set([
  'InternalFailure',
  'InternalFailureException',
  'InternalServerError',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'KMSOptInRequired',
  'TimeoutError',
  'RequestTimeout',
  'RequestTimeoutException',
]);
/**
 * System error codes of a connection that failed or dropped: nothing answered, or the answer was cut
 * off (as opposed to Kinesis refusing). Retried as transient by {@link classifyAwsError}; the CLI
 * reports them as "cannot reach Kinesis".
 */
export const NETWORK_ERROR_CODES: readonly string[] = Object.freeze([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  // HTTP/2 (enhanced fan-out): a session or stream torn down under a request is a dropped connection.
  'ERR_HTTP2_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_STREAM_CANCEL',
  'ERR_HTTP2_GOAWAY_SESSION',
  'ERR_HTTP2_INVALID_SESSION',
]);
const NETWORK_CODES: ReadonlySet<string> = new Set(NETWORK_ERROR_CODES);

function ownCode(error: unknown): string | undefined {
  const e = error as { code?: unknown; errors?: unknown } | null;
  if (typeof e?.code === 'string') return e.code;
  // Node's happy-eyeballs connect (autoSelectFamily) may fail with an AggregateError holding one error
  // per address tried, with no code of its own.
  if (Array.isArray(e?.errors)) {
    for (const inner of e.errors) {
      const code = (inner as { code?: unknown } | null)?.code;
      if (typeof code === 'string' && NETWORK_CODES.has(code)) return code;
    }
  }
  return undefined;
}

/**
 * The {@link NETWORK_ERROR_CODES} entry of `error` (its own `code`, its root cause's, or one of an
 * AggregateError's errors), or undefined when it is not a network failure.
 */
export function networkErrorCode(error: unknown): string | undefined {
  for (const candidate of [error, rootCause(error)]) {
    const code = ownCode(candidate);
    if (code !== undefined && NETWORK_CODES.has(code)) return code;
  }
  return undefined;
}

/**
 * Maps an AWS SDK (or network) error to a {@link KinesisError} by `error.name` of the root cause,
 * never by `instanceof`: the SDK may be a different copy, and wrappers hide the real error.
 * A {@link ShardlineError} passes through unchanged.
 */
export function classifyAwsError(error: unknown, operation?: string): ShardlineError {
  if (error instanceof ShardlineError && !(error.cause !== undefined && error.code === ErrorCodes.INTERNAL)) {
    return error;
  }
  const root = rootCause(error) as {
    name?: unknown;
    code?: unknown;
    message?: unknown;
    $metadata?: { httpStatusCode?: number };
    $fault?: unknown;
  } | null;
  const name = typeof root?.name === 'string' ? root.name : 'Error';
  const status = root?.$metadata?.httpStatusCode;
  const text = typeof root?.message === 'string' ? root.message : String(root);
  const where = operation === undefined ? '' : `${operation}: `;
  const make = (code: string, retriable: boolean) =>
    new KinesisError(code, `${where}${name}: ${text}`, { retriable, cause: error, awsName: name });

  // The SDK raises AbortError only when the caller's abortSignal fired (its own timeouts are TimeoutError):
  // a deliberate stop, which must not be retried or reported as a failure.
  if (name === 'AbortError') return make(ErrorCodes.ABORTED, false);
  if (THROTTLE_NAMES.has(name)) return make(ErrorCodes.THROTTLED, true);
  if (name === 'ExpiredIteratorException') return make(ErrorCodes.EXPIRED_ITERATOR, true);
  if (name === 'LimitExceededException') return make(ErrorCodes.LIMIT_EXCEEDED, true);
  if (NOT_FOUND_NAMES.has(name)) return make(ErrorCodes.NOT_FOUND, false);
  if (ACCESS_NAMES.has(name)) return make(ErrorCodes.ACCESS_DENIED, false);
  if (INVALID_NAMES.has(name)) return make(ErrorCodes.INVALID_REQUEST, false);
  if (TRANSIENT_NAMES.has(name)) return make(ErrorCodes.TRANSIENT, true);
  if (networkErrorCode(root) !== undefined) return make(ErrorCodes.TRANSIENT, true);
  if (typeof status === 'number' && status >= 500) return make(ErrorCodes.TRANSIENT, true);
  if (status === 429) return make(ErrorCodes.THROTTLED, true);
  if (root?.$fault === 'server') return make(ErrorCodes.TRANSIENT, true);
  // The SDK names an error it could not read from the response 'Unknown' / 'UnknownError': whatever
  // answered is not speaking the Kinesis protocol (a wrong endpoint, a proxy's own page).
  if ((name === 'Unknown' || name === 'UnknownError') && typeof status === 'number') {
    return new KinesisError(
      ErrorCodes.KINESIS,
      `${where}the endpoint answered HTTP ${status} without a Kinesis error in the body: check that the endpoint is a Kinesis endpoint`,
      { retriable: false, cause: error, awsName: name },
    );
  }
  return make(ErrorCodes.KINESIS, false);
}
