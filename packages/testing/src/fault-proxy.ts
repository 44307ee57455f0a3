/**
 * FaultProxy: an HTTP proxy to put between a Kinesis client and a local Kinesis (kinesis-mock, kinesalite)
 * that injects the faults real Kinesis produces, by rule, and can enforce the real per-shard limits.
 *
 * ```ts
 * const kinesis = await startLocalKinesis({ engine: 'kinesalite' });
 * const proxy = await FaultProxy.start({ target: kinesis.endpoint });
 * const client = new KinesisClient(proxy.clientConfig(kinesis.clientConfig));
 * proxy.addRule({ operation: 'GetRecords', shardId: 'shardId-000000000000', times: 2,
 *   action: { type: 'error', error: 'ProvisionedThroughputExceededException' } });
 * ```
 *
 * Errors are answered in the wire format the AWS SDK v3 parses into its named exceptions (awsJson1_1:
 * HTTP 400/500/503 with `{"__type": ..., "message": ...}`), so code under test sees exactly what AWS
 * would send. The proxy rewrites some request bodies (PutRecords without the entries it fails), which
 * invalidates their SigV4 signature: it is meant for local emulators, which do not check signatures.
 *
 * Shard- and stream-aware features (rule `shardId` / `streamName`, partial-failure, limits) need to read
 * the request, so they work for JSON clients (the AWS SDK v3 for JavaScript). Requests in CBOR (the Java
 * SDKs' default) get operation-level faults only, answered in CBOR.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { type Logger, type ShardHashRange, ShardlineOptionError, silentLogger } from '@shardline/common';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { type LimitsOptions, resolveLimits, ShardLimiter } from './fault-proxy-limits.js';
import {
  entryHashKey,
  IteratorShards,
  type IteratorTarget,
  openShardRanges,
  ShardMapCache,
  type StreamRef,
  streamKey,
} from './fault-proxy-shards.js';
import {
  AMZ_JSON_1_1,
  base64ByteLength,
  credentialScope,
  DEFAULT_ACCOUNT_ID,
  defaultErrorMessage,
  defaultErrorStatus,
  errorResponse,
  HOP_BY_HOP_HEADERS,
  jsonResponse,
  parseStreamArn,
  parseWireRequest,
  type WireProtocol,
  type WireResponse,
} from './fault-proxy-wire.js';

/** A Kinesis API operation name, as in `X-Amz-Target: Kinesis_20131202.<operation>`. */
export type KinesisOperation =
  | 'AddTagsToStream'
  | 'CreateStream'
  | 'DecreaseStreamRetentionPeriod'
  | 'DeleteStream'
  | 'DeregisterStreamConsumer'
  | 'DescribeLimits'
  | 'DescribeStream'
  | 'DescribeStreamConsumer'
  | 'DescribeStreamSummary'
  | 'GetRecords'
  | 'GetShardIterator'
  | 'IncreaseStreamRetentionPeriod'
  | 'ListShards'
  | 'ListStreamConsumers'
  | 'ListStreams'
  | 'MergeShards'
  | 'PutRecord'
  | 'PutRecords'
  | 'RegisterStreamConsumer'
  | 'SplitShard'
  | 'SubscribeToShard'
  | 'UpdateShardCount'
  | (string & {});

/**
 * Error names with a known status and message. Any other name is sent as given (status 400 unless
 * `status` says otherwise) and reaches SDK code as `error.name`.
 */
export type FaultErrorName =
  | 'ProvisionedThroughputExceededException'
  | 'LimitExceededException'
  | 'ExpiredIteratorException'
  | 'InternalFailure'
  | 'ServiceUnavailable'
  | 'ResourceNotFoundException'
  | 'KMSThrottlingException'
  | 'AccessDeniedException'
  | 'InvalidArgumentException'
  | (string & {});

/** Answer with a Kinesis error instead of the upstream's answer. */
export interface ErrorFault {
  type: 'error';
  error: FaultErrorName;
  /** @defaultValue the message Kinesis sends for that error (none for InternalFailure / ServiceUnavailable) */
  message?: string;
  /** @defaultValue 500 for InternalFailure, 503 for ServiceUnavailable, else 400 */
  status?: number;
  /**
   * Forward the request first, so it takes effect upstream (records written, iterator consumed), and
   * answer the error instead of the upstream's success: the "did my write happen?" case.
   * @defaultValue false
   */
  forward?: boolean;
}

/** Wait `ms` milliseconds, then go on (other rules and limits still apply). */
export interface LatencyFault {
  type: 'latency';
  ms: number;
}

/** Reset the client's TCP connection without answering: the SDK sees ECONNRESET. */
export interface ResetFault {
  type: 'reset';
  /** Forward the request first, so it takes effect upstream, then reset. @defaultValue false */
  forward?: boolean;
}

/**
 * PutRecords only: fail `round(fraction * n)` of the call's `n` eligible entries (picked with the proxy's
 * `random`) with a per-entry error, forward only the others, and answer with the merged result in the
 * original order and a correct FailedRecordCount. This is the fault AWS actually produces under load.
 */
export interface PartialFailureFault {
  type: 'partial-failure';
  /** 0..1 */
  fraction: number;
  /** The entries' ErrorCode. @defaultValue 'ProvisionedThroughputExceededException' */
  errorCode?: 'ProvisionedThroughputExceededException' | 'InternalFailure';
}

export type FaultAction = ErrorFault | LatencyFault | ResetFault | PartialFailureFault;

/**
 * When to inject what. All given conditions must hold for a call to match.
 *
 * Rules are checked in the order they were added. A matching `latency` rule that fires adds its delay and
 * checking goes on; the first other rule that fires decides the call and checking stops.
 */
export interface FaultRule {
  /** Operation(s) the rule applies to. @defaultValue every operation (PutRecords for partial-failure) */
  operation?: KinesisOperation | KinesisOperation[];
  /**
   * Only calls touching a matching shard: GetShardIterator / SubscribeToShard by their ShardId, GetRecords
   * by the shard its iterator was issued for (learnt from answers that went through this proxy),
   * PutRecord(s) by where their entries are routed. For partial-failure, only entries routed to a matching
   * shard are eligible. A call whose shard is unknown does not match.
   */
  shardId?: string | RegExp;
  /** Only calls on this stream (addressed by StreamName or StreamARN, or through a known iterator). */
  streamName?: string | RegExp;
  action: FaultAction;
  /** Fire on the next N matching calls only, then the rule is spent. @defaultValue unlimited */
  times?: number;
  /**
   * Fire on this fraction of matching calls, 0..1: the proxy draws `random()` once per matching call and
   * fires when the draw is below it. @defaultValue 1 (every matching call; no draw)
   */
  probability?: number;
}

/** What {@link FaultProxy.addRule} returns. */
export interface FaultRuleHandle {
  /** Stops the rule from matching. Idempotent. */
  remove(): void;
  /** How many calls the rule fired on. */
  readonly hits: number;
  /** True once `times` is used up or the rule was removed. */
  readonly spent: boolean;
}

/** Counts since start or the last {@link FaultProxy.resetCounters}. */
export interface FaultProxyCounters {
  /** Client requests by operation (`(none)` for requests naming no operation). */
  requests: Record<string, number>;
  /** Calls a rule fired on, by error name, or `latency` / `reset` / `partial-failure`. */
  injected: Record<string, number>;
  /** PutRecords entries failed by partial-failure rules. */
  injectedEntries: number;
  /** Limits mode: whole calls refused with ProvisionedThroughputExceededException (GetRecords, PutRecord). */
  throttledCalls: number;
  /** Limits mode: PutRecords entries refused with a per-entry ProvisionedThroughputExceededException. */
  throttledEntries: number;
  /** Connections reset by rules. */
  resets: number;
  /** Client requests sent on to the upstream (the proxy's own ListShards calls not included). */
  forwarded: number;
  /** Client TCP connections accepted (keep-alive clients reuse one for many requests). */
  connections: number;
}

/** One client request, as the proxy decided it (emitted before it is forwarded). */
export interface FaultProxyRequestEvent {
  /** When the proxy decided the call (its `now` clock, ms): in limits mode, the instant its limits were checked at. */
  at: number;
  operation: string | undefined;
  streamName: string | undefined;
  /** The shards the request touches, as far as the proxy knew without extra upstream calls. */
  shardIds: string[];
  /** `forwarded`: sent upstream (possibly without some PutRecords entries); `error`: answered with an error. */
  outcome: 'forwarded' | 'error' | 'reset';
  /** The error answered, when `outcome` is `error`. */
  error?: string;
  /** What caused a fault: a rule, or limits mode. */
  cause?: 'rule' | 'limits';
  /** Delay added by latency rules. */
  latencyMs: number;
  /** PutRecords: entries in the call, failed by a rule, refused by limits. */
  entries?: { total: number; injected: number; throttled: number };
}

/** Events of a {@link FaultProxy}. */
export interface FaultProxyEvents {
  request: FaultProxyRequestEvent;
}

export interface FaultProxyOptions {
  /** The upstream Kinesis endpoint, `http://` or `https://`. */
  target: string;
  /** @defaultValue '127.0.0.1' */
  host?: string;
  /** @defaultValue 0 (any free port) */
  port?: number;
  /** Source of randomness for `probability` and partial-failure picks; pass a seeded one in tests. @defaultValue Math.random */
  random?: () => number;
  /** Monotonic clock in milliseconds for limits and events; a controllable one makes limit tests exact. @defaultValue performance.now */
  now?: () => number;
  /** Enforce the per-shard limits: `true` for the Kinesis values, or some of them overridden. @defaultValue false */
  limits?: boolean | LimitsOptions;
  /** How long a stream's shard map (fetched by ListShards) is trusted before it is fetched again. @defaultValue 5_000 */
  shardMapTtlMs?: number;
  /** Account id in error messages, unless the request names one (ARN, 12-digit access key id). @defaultValue '000000000000' */
  accountId?: string;
  /** Larger request bodies are refused with HTTP 413 (Kinesis accepts at most 5 MiB per PutRecords). @defaultValue 16 MiB */
  maxRequestBytes?: number;
  /** Where internal problems are reported. @defaultValue silentLogger */
  logger?: Logger;
}

/** Defaults of {@link FaultProxyOptions}. */
export const FAULT_PROXY_DEFAULTS = Object.freeze({
  host: '127.0.0.1',
  port: 0,
  shardMapTtlMs: 5_000,
  accountId: DEFAULT_ACCOUNT_ID,
  maxRequestBytes: 16 * 1024 * 1024,
  // Longer than clients keep idle sockets, so a reused socket is not closed under a request in flight.
  keepAliveTimeoutMs: 65_000,
});

interface ResolvedFaultProxyOptions {
  target: URL;
  host: string;
  port: number;
  random: () => number;
  now: () => number;
  limits: boolean | LimitsOptions | undefined;
  shardMapTtlMs: number;
  accountId: string;
  maxRequestBytes: number;
  logger: Logger;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`;
  if (typeof value === 'function') return 'a function';
  if (value !== null && typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/** Validates options and fills defaults. @throws ShardlineOptionError naming the option. */
export function resolveFaultProxyOptions(options: FaultProxyOptions): Readonly<ResolvedFaultProxyOptions> {
  if (options === null || typeof options !== 'object') {
    throw new ShardlineOptionError(
      'options',
      `must be an object with at least { target } (got ${describe(options)})`,
    );
  }
  let target: URL;
  try {
    target = new URL(options.target);
  } catch {
    throw new ShardlineOptionError(
      'target',
      `must be an http:// or https:// URL (got ${describe(options.target)})`,
    );
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') {
    throw new ShardlineOptionError(
      'target',
      `must be an http:// or https:// URL (got ${describe(options.target)})`,
    );
  }
  const d = FAULT_PROXY_DEFAULTS;
  const host = options.host ?? d.host;
  if (typeof host !== 'string' || host.length === 0) {
    throw new ShardlineOptionError('host', `must be a non-empty string (got ${describe(host)})`);
  }
  const port = options.port ?? d.port;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new ShardlineOptionError('port', `must be an integer from 0 to 65535 (got ${describe(port)})`);
  }
  for (const name of ['random', 'now'] as const) {
    if (options[name] !== undefined && typeof options[name] !== 'function') {
      throw new ShardlineOptionError(name, `must be a function (got ${describe(options[name])})`);
    }
  }
  resolveLimits(options.limits);
  const shardMapTtlMs = options.shardMapTtlMs ?? d.shardMapTtlMs;
  if (typeof shardMapTtlMs !== 'number' || !Number.isFinite(shardMapTtlMs) || shardMapTtlMs < 0) {
    throw new ShardlineOptionError(
      'shardMapTtlMs',
      `must be a finite number >= 0 (got ${describe(shardMapTtlMs)})`,
    );
  }
  const accountId = options.accountId ?? d.accountId;
  if (typeof accountId !== 'string' || !/^[0-9]{12}$/.test(accountId)) {
    throw new ShardlineOptionError('accountId', `must be a string of 12 digits (got ${describe(accountId)})`);
  }
  const maxRequestBytes = options.maxRequestBytes ?? d.maxRequestBytes;
  if (!Number.isInteger(maxRequestBytes) || maxRequestBytes < 1024) {
    throw new ShardlineOptionError(
      'maxRequestBytes',
      `must be an integer >= 1024 (got ${describe(maxRequestBytes)})`,
    );
  }
  const logger = options.logger ?? silentLogger;
  if (logger === null || typeof logger !== 'object' || typeof logger.error !== 'function') {
    throw new ShardlineOptionError('logger', 'must have debug, info, warn and error methods');
  }
  return Object.freeze({
    target,
    host,
    port,
    random: options.random ?? Math.random,
    now: options.now ?? (() => performance.now()),
    limits: options.limits,
    shardMapTtlMs,
    accountId,
    maxRequestBytes,
    logger,
  });
}

const ERROR_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.#:]*$/;

function checkFraction(value: unknown, option: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new ShardlineOptionError(option, `must be a number from 0 to 1 (got ${describe(value)})`);
  }
}

function checkMatcher(value: unknown, option: string): void {
  if (value === undefined || value instanceof RegExp) return;
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(option, `must be a non-empty string or a RegExp (got ${describe(value)})`);
  }
}

/** Validates a rule and returns a frozen copy. @throws ShardlineOptionError naming the field. */
function validateRule(rule: FaultRule): Readonly<FaultRule> {
  if (rule === null || typeof rule !== 'object') {
    throw new ShardlineOptionError('rule', `must be an object with an action (got ${describe(rule)})`);
  }
  const action = rule.action as FaultAction | undefined;
  if (action === null || typeof action !== 'object') {
    throw new ShardlineOptionError('rule.action', `must be an object with a type (got ${describe(action)})`);
  }
  switch (action.type) {
    case 'error':
      if (typeof action.error !== 'string' || !ERROR_NAME_PATTERN.test(action.error)) {
        throw new ShardlineOptionError(
          'rule.action.error',
          `must be an error name such as 'ProvisionedThroughputExceededException' (got ${describe(action.error)})`,
        );
      }
      if (action.message !== undefined && typeof action.message !== 'string') {
        throw new ShardlineOptionError(
          'rule.action.message',
          `must be a string (got ${describe(action.message)})`,
        );
      }
      if (
        action.status !== undefined &&
        (!Number.isInteger(action.status) || action.status < 400 || action.status > 599)
      ) {
        throw new ShardlineOptionError(
          'rule.action.status',
          `must be an integer from 400 to 599 (got ${describe(action.status)})`,
        );
      }
      break;
    case 'latency':
      if (typeof action.ms !== 'number' || !Number.isFinite(action.ms) || action.ms < 0) {
        throw new ShardlineOptionError(
          'rule.action.ms',
          `must be a finite number >= 0 (got ${describe(action.ms)})`,
        );
      }
      break;
    case 'reset':
      break;
    case 'partial-failure': {
      checkFraction(action.fraction, 'rule.action.fraction');
      const code = action.errorCode;
      if (
        code !== undefined &&
        code !== 'ProvisionedThroughputExceededException' &&
        code !== 'InternalFailure'
      ) {
        throw new ShardlineOptionError(
          'rule.action.errorCode',
          `must be 'ProvisionedThroughputExceededException' or 'InternalFailure' (got ${describe(code)})`,
        );
      }
      const ops = rule.operation === undefined ? [] : [rule.operation].flat();
      if (ops.some((op) => op !== 'PutRecords')) {
        throw new ShardlineOptionError(
          'rule.operation',
          `must be 'PutRecords' (or omitted) for a partial-failure action`,
        );
      }
      break;
    }
    default:
      throw new ShardlineOptionError(
        'rule.action.type',
        `must be 'error', 'latency', 'reset' or 'partial-failure' (got ${describe((action as { type?: unknown }).type)})`,
      );
  }
  if (rule.operation !== undefined) {
    const ops = [rule.operation].flat();
    if (ops.length === 0 || ops.some((op) => typeof op !== 'string' || op.length === 0)) {
      throw new ShardlineOptionError(
        'rule.operation',
        `must be an operation name or a non-empty array of them`,
      );
    }
  }
  checkMatcher(rule.shardId, 'rule.shardId');
  checkMatcher(rule.streamName, 'rule.streamName');
  if (rule.times !== undefined && (!Number.isInteger(rule.times) || rule.times < 1)) {
    throw new ShardlineOptionError('rule.times', `must be an integer >= 1 (got ${describe(rule.times)})`);
  }
  if (rule.probability !== undefined) checkFraction(rule.probability, 'rule.probability');
  return Object.freeze({ ...rule, action: Object.freeze({ ...action }) });
}

function matches(matcher: string | RegExp | undefined, value: string | undefined): boolean {
  if (matcher === undefined) return true;
  if (value === undefined) return false;
  if (typeof matcher === 'string') return matcher === value;
  matcher.lastIndex = 0;
  return matcher.test(value);
}

interface ActiveRule {
  rule: Readonly<FaultRule>;
  operations: Set<string> | undefined;
  remaining: number;
  hits: number;
  removed: boolean;
}

interface PutEntry {
  hashKey: bigint | undefined;
  /** data + partition key */
  bytes: number;
}

interface RequestContext {
  req: http.IncomingMessage;
  body: Buffer;
  protocol: WireProtocol;
  operation: string;
  json: Record<string, unknown> | undefined;
  stream: StreamRef | undefined;
  accountId: string;
  /** Shards named by the request itself or by its iterator; undefined for PutRecord(s). */
  direct: string[] | undefined;
  iterator: IteratorTarget | undefined;
  entries: PutEntry[] | undefined;
  entryShards: Promise<Array<string | undefined>> | undefined;
  entryShardsKnown: Array<string | undefined> | undefined;
  /** When limits were decided (proxy clock); events report it. */
  at: number | undefined;
}

interface EntryFailure {
  code: string;
  message: string;
}

// Operations after which a stream's shards change: the cached shard map is dropped when they succeed.
const RESHARDING_OPERATIONS = new Set([
  'SplitShard',
  'MergeShards',
  'UpdateShardCount',
  'CreateStream',
  'DeleteStream',
]);

const EMPTY_COUNTERS = (): FaultProxyCounters => ({
  requests: {},
  injected: {},
  injectedEntries: 0,
  throttledCalls: 0,
  throttledEntries: 0,
  resets: 0,
  forwarded: 0,
  connections: 0,
});

function increment(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}

function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

function filterHeaders(raw: string[], drop: readonly string[] = []): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(name) || drop.includes(name)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

function parseJsonObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A fault-injecting HTTP proxy for Kinesis. Start it with {@link FaultProxy.start}; stop it with
 * {@link FaultProxy.stop}.
 */
export class FaultProxy {
  /** `http://host:port` of the proxy: give it to the Kinesis client as `endpoint`. */
  readonly endpoint: string;

  readonly #options: Readonly<ResolvedFaultProxyOptions>;
  readonly #server: http.Server;
  readonly #agent: http.Agent;
  readonly #transport: typeof http | typeof https;
  readonly #rules: ActiveRule[] = [];
  readonly #iterators: IteratorShards;
  readonly #shardMaps: ShardMapCache;
  readonly #listeners = new Set<(event: FaultProxyRequestEvent) => void>();
  readonly #sleeps = new Set<{ timer: NodeJS.Timeout; resolve: () => void }>();
  /** Responses still streaming to the client (event streams), with their operation. */
  readonly #openStreams = new Map<http.ServerResponse, string | undefined>();
  // The last client credentials seen per stream, reused for the proxy's own ListShards: kinesis-mock picks
  // the account from the access key id and the region from the credential scope.
  readonly #authByStream = new Map<string, { authorization: string; date: string }>();
  #limiter: ShardLimiter | undefined;
  #counters: FaultProxyCounters = EMPTY_COUNTERS();
  #stopping: Promise<void> | undefined;

  private constructor(options: Readonly<ResolvedFaultProxyOptions>, server: http.Server, endpoint: string) {
    this.#options = options;
    this.#server = server;
    this.endpoint = endpoint;
    const secure = options.target.protocol === 'https:';
    this.#transport = secure ? https : http;
    this.#agent = secure
      ? new https.Agent({ keepAlive: true, maxSockets: 256 })
      : new http.Agent({ keepAlive: true, maxSockets: 256 });
    this.#iterators = new IteratorShards(options.now);
    this.#shardMaps = new ShardMapCache(
      (ref) => this.#fetchShardRanges(ref),
      options.shardMapTtlMs,
      options.now,
    );
    const limits = resolveLimits(options.limits);
    this.#limiter = limits === undefined ? undefined : new ShardLimiter(limits, options.now);
  }

  /**
   * Starts a proxy listening on `host:port` (default 127.0.0.1, a free port) in front of `target`.
   * @throws ShardlineOptionError for invalid options; the listen error when the port is taken.
   */
  static async start(options: FaultProxyOptions): Promise<FaultProxy> {
    const resolved = resolveFaultProxyOptions(options);
    const server = http.createServer();
    server.keepAliveTimeout = FAULT_PROXY_DEFAULTS.keepAliveTimeoutMs;
    server.headersTimeout = FAULT_PROXY_DEFAULTS.keepAliveTimeoutMs + 1_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(resolved.port, resolved.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const proxy = new FaultProxy(resolved, server, `http://${host}:${address.port}`);
    proxy.#listen();
    return proxy;
  }

  #listen(): void {
    const server = this.#server;
    server.on('connection', (socket: Socket) => {
      this.#counters.connections++;
      // A client that vanishes must not become an uncaught 'error' in the test process.
      socket.on('error', () => {});
    });
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      if (error.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    });
    server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.#handle(req, res).catch((error: unknown) => this.#fail(res, error));
    });
    server.on('error', (error) => this.#options.logger.error({ err: error }, 'fault proxy: server error'));
  }

  /** `base` with its endpoint replaced by the proxy's, and an HTTP/1.1 handler unless it has one. */
  clientConfig(base: KinesisClientConfig = {}): KinesisClientConfig {
    return {
      ...base,
      endpoint: this.endpoint,
      // The SDK's default handler speaks HTTP/2 to this endpoint; the proxy (like the emulators) speaks 1.1.
      requestHandler: base.requestHandler ?? new NodeHttpHandler(),
    };
  }

  /**
   * Adds a rule (after the existing ones).
   * @throws ShardlineOptionError naming the invalid field.
   */
  addRule(rule: FaultRule): FaultRuleHandle {
    const frozen = validateRule(rule);
    const active: ActiveRule = {
      rule: frozen,
      operations:
        frozen.operation === undefined
          ? frozen.action.type === 'partial-failure'
            ? new Set(['PutRecords'])
            : undefined
          : new Set([frozen.operation].flat()),
      remaining: frozen.times ?? Number.POSITIVE_INFINITY,
      hits: 0,
      removed: false,
    };
    this.#rules.push(active);
    const rules = this.#rules;
    return {
      remove(): void {
        active.removed = true;
        const index = rules.indexOf(active);
        if (index !== -1) rules.splice(index, 1);
      },
      get hits(): number {
        return active.hits;
      },
      get spent(): boolean {
        return active.removed || active.remaining <= 0;
      },
    };
  }

  /** Removes every rule. */
  clearRules(): void {
    for (const active of this.#rules) active.removed = true;
    this.#rules.length = 0;
  }

  /**
   * Turns limits mode on (`true`: the Kinesis per-shard limits; an object: some overridden) or off.
   * Every shard starts again with full buckets.
   * @throws ShardlineOptionError for invalid limits.
   */
  setLimits(limits: boolean | LimitsOptions): void {
    const resolved = resolveLimits(limits);
    this.#limiter = resolved === undefined ? undefined : new ShardLimiter(resolved, this.#options.now);
  }

  /** A snapshot of the counters. */
  get counters(): FaultProxyCounters {
    const c = this.#counters;
    return { ...c, requests: { ...c.requests }, injected: { ...c.injected } };
  }

  resetCounters(): void {
    this.#counters = EMPTY_COUNTERS();
  }

  /**
   * Subscribes to proxy events; returns the unsubscribe function. A listener that throws is logged and
   * does not affect the request.
   */
  on<E extends keyof FaultProxyEvents>(
    event: E,
    listener: (payload: FaultProxyEvents[E]) => void,
  ): () => void {
    if (event !== 'request')
      throw new ShardlineOptionError('event', `must be 'request' (got ${describe(event)})`);
    if (typeof listener !== 'function') {
      throw new ShardlineOptionError('listener', `must be a function (got ${describe(listener)})`);
    }
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /**
   * Cuts every response still streaming to its client, as a dropped connection would (the client's
   * socket is reset): for SubscribeToShard, the subscriber sees its event stream fail mid-way. Only
   * `operation`'s responses when given. Returns how many were cut.
   */
  dropStreams(operation?: KinesisOperation): number {
    let dropped = 0;
    for (const [res, op] of [...this.#openStreams]) {
      if (operation !== undefined && op !== operation) continue;
      this.#openStreams.delete(res);
      res.socket?.resetAndDestroy();
      res.destroy();
      dropped++;
    }
    return dropped;
  }

  /** Closes the server, open client connections (streams included) and upstream sockets. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (const sleep of this.#sleeps) {
      clearTimeout(sleep.timer);
      sleep.resolve();
    }
    this.#sleeps.clear();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    this.#agent.destroy();
    await closed;
    this.#iterators.clear();
    this.#shardMaps.clear();
    this.#authByStream.clear();
  }

  // ---------------------------------------------------------------------------------------------------
  // Request pipeline

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on('error', () => {});
    const body = await this.#readRequest(req, res);
    if (body === undefined) return;
    const wire = parseWireRequest(req.url, req.headers, body);
    increment(this.#counters.requests, wire.operation ?? '(none)');
    if (wire.operation === undefined) {
      // Not a Kinesis call (health checks...): relay it as is.
      this.#emit({
        operation: undefined,
        stream: undefined,
        shardIds: [],
        outcome: 'forwarded',
        latencyMs: 0,
      });
      await this.#forwardPiped(req, res, body, false);
      return;
    }
    const ctx = this.#context(req, body, wire.operation, wire.protocol, wire.body);

    // Rules, in order.
    let latencyMs = 0;
    let decision: { active: ActiveRule; candidates: number[] } | undefined;
    for (const active of [...this.#rules]) {
      const candidates = await this.#match(active, ctx);
      if (candidates === undefined || active.removed || active.remaining <= 0) continue;
      const probability = active.rule.probability;
      if (probability !== undefined && probability < 1 && !(this.#options.random() < probability)) continue;
      this.#fire(active);
      const action = active.rule.action;
      if (action.type === 'latency') {
        latencyMs += action.ms;
        increment(this.#counters.injected, 'latency');
        continue;
      }
      decision = { active, candidates };
      break;
    }
    if (latencyMs > 0) {
      await this.#sleep(latencyMs);
      if (this.#stopping !== undefined || req.socket.destroyed) return;
    }

    const action = decision?.active.rule.action;
    if (action?.type === 'error') {
      increment(this.#counters.injected, action.error);
      const shardId = (await this.#touchedShards(ctx, decision!.active.rule.shardId))[0];
      const message = action.message ?? this.#defaultMessage(action.error, ctx, shardId);
      this.#emitFor(ctx, { outcome: 'error', error: action.error, cause: 'rule', latencyMs });
      if (action.forward === true) await this.#forwardAndDiscard(ctx);
      this.#send(
        res,
        errorResponse(ctx.protocol, action.error, message, action.status ?? defaultErrorStatus(action.error)),
      );
      return;
    }
    if (action?.type === 'reset') {
      increment(this.#counters.injected, 'reset');
      this.#emitFor(ctx, { outcome: 'reset', cause: 'rule', latencyMs });
      if (action.forward === true) await this.#forwardAndDiscard(ctx);
      this.#counters.resets++;
      req.socket.resetAndDestroy();
      return;
    }

    // PutRecords entries failed by a partial-failure rule, then by limits.
    const failures = new Map<number, EntryFailure>();
    let injectedEntries = 0;
    if (action?.type === 'partial-failure') {
      increment(this.#counters.injected, 'partial-failure');
      const shards = await this.#entryShards(ctx);
      const picked = this.#pick(
        decision!.candidates,
        Math.round(action.fraction * decision!.candidates.length),
      );
      const code = action.errorCode ?? 'ProvisionedThroughputExceededException';
      for (const index of picked) {
        failures.set(index, {
          code,
          message:
            code === 'InternalFailure'
              ? 'Internal Service Failure'
              : this.#defaultMessage('ProvisionedThroughputExceededException', ctx, shards[index])!,
        });
      }
      injectedEntries = picked.length;
      this.#counters.injectedEntries += picked.length;
    }

    let throttledEntries = 0;
    const limiter = this.#limiter;
    if (limiter !== undefined && ctx.json !== undefined) {
      // One instant for all of the call's decisions, and the one its event reports.
      const shards = ctx.entries === undefined ? [] : await this.#entryShards(ctx);
      ctx.at = this.#options.now();
      if (ctx.operation === 'GetRecords' && ctx.iterator !== undefined) {
        const key = `${streamKey(ctx.iterator.stream)}|${ctx.iterator.shardId}`;
        if (!limiter.tryGetRecords(key, ctx.at)) {
          this.#throttleCall(res, ctx, ctx.iterator.shardId, latencyMs);
          return;
        }
      } else if (
        (ctx.operation === 'PutRecord' || ctx.operation === 'PutRecords') &&
        ctx.entries !== undefined
      ) {
        for (let i = 0; i < ctx.entries.length; i++) {
          const shardId = shards[i];
          if (failures.has(i) || shardId === undefined || ctx.stream === undefined) continue;
          if (limiter.tryPut(`${streamKey(ctx.stream)}|${shardId}`, ctx.entries[i]!.bytes, ctx.at)) continue;
          if (ctx.operation === 'PutRecord') {
            this.#throttleCall(res, ctx, shardId, latencyMs);
            return;
          }
          failures.set(i, {
            code: 'ProvisionedThroughputExceededException',
            message: this.#defaultMessage('ProvisionedThroughputExceededException', ctx, shardId)!,
          });
          throttledEntries++;
        }
        this.#counters.throttledEntries += throttledEntries;
      }
    }

    const entries =
      ctx.operation === 'PutRecords' && ctx.entries !== undefined
        ? { total: ctx.entries.length, injected: injectedEntries, throttled: throttledEntries }
        : undefined;
    const cause = injectedEntries > 0 ? 'rule' : throttledEntries > 0 ? 'limits' : undefined;
    this.#emitFor(ctx, {
      outcome: 'forwarded',
      latencyMs,
      ...(cause ? { cause } : {}),
      ...(entries ? { entries } : {}),
    });

    if (failures.size > 0) {
      await this.#forwardPutRecords(res, ctx, failures);
    } else if (ctx.operation === 'GetShardIterator' || ctx.operation === 'GetRecords') {
      await this.#forwardLearning(res, ctx);
    } else {
      await this.#forwardPiped(req, res, body, false, ctx);
    }
  }

  #throttleCall(res: http.ServerResponse, ctx: RequestContext, shardId: string, latencyMs: number): void {
    this.#counters.throttledCalls++;
    const error = 'ProvisionedThroughputExceededException';
    this.#emitFor(ctx, { outcome: 'error', error, cause: 'limits', latencyMs });
    this.#send(res, errorResponse(ctx.protocol, error, this.#defaultMessage(error, ctx, shardId), 400));
  }

  /** Reads the request body; answers 413 and returns undefined when it is too large. */
  async #readRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<Buffer | undefined> {
    const limit = this.#options.maxRequestBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > limit) {
          res.writeHead(413, { Connection: 'close', 'Content-Length': '0' });
          res.end();
          req.socket.destroySoon();
          return undefined;
        }
        chunks.push(chunk);
      }
    } catch {
      return undefined; // the client went away mid-request
    }
    return Buffer.concat(chunks);
  }

  #context(
    req: http.IncomingMessage,
    body: Buffer,
    operation: string,
    protocol: WireProtocol,
    json: Record<string, unknown> | undefined,
  ): RequestContext {
    const scope = credentialScope(req.headers);
    let stream: StreamRef | undefined;
    let arnAccount: string | undefined;
    let iterator: IteratorTarget | undefined;
    let direct: string[] | undefined;
    let entries: PutEntry[] | undefined;
    if (json !== undefined) {
      const arn = parseStreamArn(json.StreamARN) ?? parseStreamArn(json.ConsumerARN);
      if (typeof json.StreamName === 'string' && json.StreamName.length > 0) {
        stream = { scope: arn?.region ?? scope.region ?? '', streamName: json.StreamName };
      } else if (arn !== undefined) {
        stream = { scope: arn.region, streamName: arn.streamName };
      }
      arnAccount = arn?.accountId;
      switch (operation) {
        case 'GetRecords':
          iterator = this.#iterators.lookup(json.ShardIterator);
          if (iterator !== undefined) {
            stream ??= iterator.stream;
            direct = [iterator.shardId];
          } else {
            direct = [];
          }
          break;
        case 'GetShardIterator':
        case 'SubscribeToShard':
          direct = typeof json.ShardId === 'string' ? [json.ShardId] : [];
          break;
        case 'SplitShard':
          direct = typeof json.ShardToSplit === 'string' ? [json.ShardToSplit] : [];
          break;
        case 'MergeShards':
          direct = [json.ShardToMerge, json.AdjacentShardToMerge].filter(
            (s): s is string => typeof s === 'string',
          );
          break;
        case 'PutRecord':
          entries = [this.#putEntry(json)];
          break;
        case 'PutRecords':
          if (Array.isArray(json.Records) && json.Records.every((r) => r !== null && typeof r === 'object')) {
            entries = (json.Records as Array<Record<string, unknown>>).map((r) => this.#putEntry(r));
          } else {
            direct = [];
          }
          break;
        default:
          direct = [];
      }
    } else {
      direct = [];
    }
    const authorization = req.headers.authorization;
    const date = req.headers['x-amz-date'];
    if (stream !== undefined && typeof authorization === 'string' && typeof date === 'string') {
      const key = streamKey(stream);
      if (this.#authByStream.size >= 10_000 && !this.#authByStream.has(key)) this.#authByStream.clear();
      this.#authByStream.set(key, { authorization, date });
    }
    let accountId = this.#options.accountId;
    if (arnAccount !== undefined && /^[0-9]{12}$/.test(arnAccount)) accountId = arnAccount;
    else if (scope.accessKeyId !== undefined && /^[0-9]{12}$/.test(scope.accessKeyId))
      accountId = scope.accessKeyId;
    return {
      req,
      body,
      protocol,
      operation,
      json,
      stream,
      accountId,
      direct,
      iterator,
      entries,
      entryShards: undefined,
      entryShardsKnown: undefined,
      at: undefined,
    };
  }

  #putEntry(record: Record<string, unknown>): PutEntry {
    const key = record.PartitionKey;
    return {
      hashKey: entryHashKey(key, record.ExplicitHashKey),
      bytes: base64ByteLength(record.Data) + (typeof key === 'string' ? Buffer.byteLength(key, 'utf8') : 0),
    };
  }

  /** Where each PutRecord(s) entry goes (undefined where unknown); fetches the shard map on first need. */
  #entryShards(ctx: RequestContext): Promise<Array<string | undefined>> {
    if (ctx.entryShards === undefined) {
      const entries = ctx.entries ?? [];
      ctx.entryShards =
        ctx.stream === undefined
          ? Promise.resolve(entries.map(() => undefined))
          : this.#shardMaps.route(
              ctx.stream,
              entries.map((e) => e.hashKey),
            );
      ctx.entryShards.then(
        (shards) => {
          ctx.entryShardsKnown = shards;
        },
        () => {},
      );
    }
    return ctx.entryShards;
  }

  /** The shards a request touches; those matching `prefer` first. */
  async #touchedShards(ctx: RequestContext, prefer?: string | RegExp): Promise<string[]> {
    let shards = ctx.direct;
    if (shards === undefined) {
      shards = [...new Set((await this.#entryShards(ctx)).filter((s): s is string => s !== undefined))];
    }
    if (prefer === undefined) return shards;
    return [...shards.filter((s) => matches(prefer, s)), ...shards.filter((s) => !matches(prefer, s))];
  }

  /**
   * Whether a rule matches the call: undefined if not; otherwise the eligible entry indexes (partial-failure)
   * or an empty array.
   */
  async #match(active: ActiveRule, ctx: RequestContext): Promise<number[] | undefined> {
    const rule = active.rule;
    if (active.removed || active.remaining <= 0) return undefined;
    if (active.operations !== undefined && !active.operations.has(ctx.operation)) return undefined;
    if (!matches(rule.streamName, ctx.stream?.streamName)) return undefined;
    if (rule.action.type === 'partial-failure') {
      if (ctx.entries === undefined || ctx.entries.length === 0) return undefined;
      if (rule.shardId === undefined) return ctx.entries.map((_, i) => i);
      const shards = await this.#entryShards(ctx);
      const eligible = shards.flatMap((s, i) => (matches(rule.shardId, s) ? [i] : []));
      return eligible.length === 0 ? undefined : eligible;
    }
    if (rule.shardId !== undefined) {
      const shards = await this.#touchedShards(ctx);
      if (!shards.some((s) => matches(rule.shardId, s))) return undefined;
    }
    return [];
  }

  #fire(active: ActiveRule): void {
    active.hits++;
    active.remaining--;
    if (active.remaining <= 0) {
      const index = this.#rules.indexOf(active);
      if (index !== -1) this.#rules.splice(index, 1);
    }
  }

  /** `count` distinct items of `items`, picked with the proxy's random (partial Fisher-Yates). */
  #pick(items: number[], count: number): number[] {
    const pool = [...items];
    const n = Math.min(count, pool.length);
    for (let i = 0; i < n; i++) {
      const j = i + Math.min(pool.length - i - 1, Math.floor(this.#options.random() * (pool.length - i)));
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    return pool.slice(0, n);
  }

  #defaultMessage(error: string, ctx: RequestContext, shardId: string | undefined): string | undefined {
    return defaultErrorMessage(error, {
      streamName: ctx.stream?.streamName,
      shardId,
      accountId: ctx.accountId,
      now: new Date(),
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const entry = {
        timer: setTimeout(() => {
          this.#sleeps.delete(entry);
          resolve();
        }, ms),
        resolve,
      };
      this.#sleeps.add(entry);
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Upstream

  #upstream(req: http.IncomingMessage, body: Buffer, rewritten: boolean): Promise<http.IncomingMessage> {
    const target = this.#options.target;
    const headers: http.OutgoingHttpHeaders = {};
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || HOP_BY_HOP_HEADERS.has(name) || name === 'host' || name === 'content-length')
        continue;
      headers[name] = value;
    }
    headers.host = target.host;
    headers['content-length'] = body.length;
    if (rewritten && headers['x-amz-content-sha256'] !== undefined) {
      headers['x-amz-content-sha256'] = createHash('sha256').update(body).digest('hex');
    }
    this.#counters.forwarded++;
    return this.#sendUpstream(req.method ?? 'POST', req.url ?? '/', headers, body);
  }

  #sendUpstream(
    method: string,
    path: string,
    headers: http.OutgoingHttpHeaders,
    body: Buffer,
  ): Promise<http.IncomingMessage> {
    const target = this.#options.target;
    const basePath = target.pathname.replace(/\/$/, '');
    return new Promise((resolve, reject) => {
      const request = this.#transport.request({
        protocol: target.protocol,
        hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
        port: target.port || (target.protocol === 'https:' ? 443 : 80),
        method,
        path: `${basePath}${path}`,
        headers,
        agent: this.#agent,
      });
      request.once('response', resolve);
      request.once('error', reject);
      request.end(body);
    });
  }

  /** Forwards the request and relays the answer as it streams (event streams included). */
  async #forwardPiped(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    rewritten: boolean,
    ctx?: RequestContext,
  ): Promise<void> {
    const upstream = await this.#upstream(req, body, rewritten);
    if (ctx !== undefined && ctx.stream !== undefined && RESHARDING_OPERATIONS.has(ctx.operation)) {
      if ((upstream.statusCode ?? 500) < 300) this.#shardMaps.invalidate(ctx.stream);
    }
    res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, filterHeaders(upstream.rawHeaders));
    res.flushHeaders();
    this.#openStreams.set(res, ctx?.operation);
    res.on('close', () => this.#openStreams.delete(res));
    upstream.on('error', () => res.destroy());
    upstream.on('close', () => {
      if (!upstream.complete) res.destroy();
    });
    res.on('close', () => {
      if (!upstream.complete) upstream.destroy();
    });
    upstream.pipe(res);
  }

  /** GetShardIterator / GetRecords: forwards, learns iterator -> shard from the answer, charges read bytes. */
  async #forwardLearning(res: http.ServerResponse, ctx: RequestContext): Promise<void> {
    const upstream = await this.#upstream(ctx.req, ctx.body, false);
    const answer = await readAll(upstream);
    const status = upstream.statusCode ?? 502;
    if (status === 200 && ctx.json !== undefined) {
      const parsed = parseJsonObject(answer);
      if (parsed !== undefined) {
        if (
          ctx.operation === 'GetShardIterator' &&
          ctx.stream !== undefined &&
          typeof ctx.json.ShardId === 'string'
        ) {
          this.#iterators.remember(parsed.ShardIterator, { stream: ctx.stream, shardId: ctx.json.ShardId });
        } else if (ctx.operation === 'GetRecords' && ctx.iterator !== undefined) {
          this.#iterators.remember(parsed.NextShardIterator, ctx.iterator);
          const limiter = this.#limiter;
          if (limiter !== undefined && Array.isArray(parsed.Records)) {
            let bytes = 0;
            for (const record of parsed.Records as Array<Record<string, unknown> | null>) {
              if (record === null || typeof record !== 'object') continue;
              bytes += base64ByteLength(record.Data);
              if (typeof record.PartitionKey === 'string')
                bytes += Buffer.byteLength(record.PartitionKey, 'utf8');
            }
            limiter.chargeRead(`${streamKey(ctx.iterator.stream)}|${ctx.iterator.shardId}`, bytes);
          }
        }
      }
    }
    res.writeHead(status, upstream.statusMessage, filterHeaders(upstream.rawHeaders));
    res.end(answer);
  }

  /**
   * PutRecords with failed entries: forwards the others (if any) and answers the merged result, entries in
   * the caller's order, FailedRecordCount counting both.
   */
  async #forwardPutRecords(
    res: http.ServerResponse,
    ctx: RequestContext,
    failures: Map<number, EntryFailure>,
  ): Promise<void> {
    const json = ctx.json!;
    const records = json.Records as unknown[];
    const failed = (i: number) => {
      const f = failures.get(i)!;
      return { ErrorCode: f.code, ErrorMessage: f.message };
    };
    if (ctx.operation === 'PutRecord') {
      // Only limits fail a PutRecord, and they answer a whole-call error before getting here.
      await this.#forwardPiped(ctx.req, res, ctx.body, false, ctx);
      return;
    }
    const kept = records.filter((_, i) => !failures.has(i));
    if (kept.length === 0) {
      this.#send(
        res,
        jsonResponse({ FailedRecordCount: records.length, Records: records.map((_, i) => failed(i)) }),
      );
      return;
    }
    const body = Buffer.from(JSON.stringify({ ...json, Records: kept }), 'utf8');
    const upstream = await this.#upstream(ctx.req, body, true);
    const answer = await readAll(upstream);
    const status = upstream.statusCode ?? 502;
    const parsed = status === 200 ? parseJsonObject(answer) : undefined;
    const upstreamRecords = parsed?.Records;
    if (parsed === undefined || !Array.isArray(upstreamRecords) || upstreamRecords.length !== kept.length) {
      // An upstream error (or an answer we cannot merge) goes back untouched: the client retries the call.
      res.writeHead(status, upstream.statusMessage, filterHeaders(upstream.rawHeaders));
      res.end(answer);
      return;
    }
    let next = 0;
    const merged = records.map((_, i) => (failures.has(i) ? failed(i) : upstreamRecords[next++]));
    const upstreamFailed =
      typeof parsed.FailedRecordCount === 'number'
        ? parsed.FailedRecordCount
        : upstreamRecords.filter((r) => (r as Record<string, unknown> | null)?.ErrorCode != null).length;
    const out = Buffer.from(
      JSON.stringify({ ...parsed, FailedRecordCount: upstreamFailed + failures.size, Records: merged }),
      'utf8',
    );
    const headers = filterHeaders(upstream.rawHeaders, ['content-length']);
    headers.push('Content-Length', String(out.length));
    res.writeHead(status, upstream.statusMessage, headers);
    res.end(out);
  }

  /** Forwards a request whose answer the client will not see (`forward: true` faults). */
  async #forwardAndDiscard(ctx: RequestContext): Promise<void> {
    try {
      const upstream = await this.#upstream(ctx.req, ctx.body, false);
      await readAll(upstream);
    } catch (error) {
      this.#options.logger.warn({ err: error }, 'fault proxy: forwarding before a fault failed');
    }
  }

  /**
   * ListShards on the upstream, following NextToken (kinesis-mock pages, kinesalite does not), by stream
   * name (kinesalite does not take StreamARN), with the credentials of the client that last named the
   * stream. The signature does not match the body: emulators only check that one is present.
   */
  async #fetchShardRanges(ref: StreamRef): Promise<ShardHashRange[]> {
    const ranges: ShardHashRange[] = [];
    let nextToken: string | undefined;
    const region = ref.scope === '' ? 'us-east-1' : ref.scope;
    for (let page = 0; page < 1_000; page++) {
      const body = Buffer.from(
        JSON.stringify(nextToken === undefined ? { StreamName: ref.streamName } : { NextToken: nextToken }),
      );
      const date = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
      const auth = this.#authByStream.get(streamKey(ref)) ?? {
        date,
        authorization:
          `AWS4-HMAC-SHA256 Credential=${this.#options.accountId}/${date.slice(0, 8)}/${region}/kinesis/aws4_request, ` +
          'SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0',
      };
      const headers: http.OutgoingHttpHeaders = {
        'content-type': AMZ_JSON_1_1,
        'x-amz-target': 'Kinesis_20131202.ListShards',
        'x-amz-date': auth.date,
        authorization: auth.authorization,
        host: this.#options.target.host,
        'content-length': body.length,
      };
      const upstream = await this.#sendUpstream('POST', '/', headers, body);
      const answer = await readAll(upstream);
      const parsed = upstream.statusCode === 200 ? parseJsonObject(answer) : undefined;
      if (parsed === undefined) {
        throw new Error(
          `ListShards ${ref.streamName}: HTTP ${upstream.statusCode} ${answer.toString('utf8', 0, 200)}`,
        );
      }
      ranges.push(...openShardRanges(parsed.Shards));
      nextToken =
        typeof parsed.NextToken === 'string' && parsed.NextToken.length > 0 ? parsed.NextToken : undefined;
      if (nextToken === undefined) return ranges;
    }
    return ranges;
  }

  // ---------------------------------------------------------------------------------------------------
  // Answers and events

  #send(res: http.ServerResponse, response: WireResponse): void {
    if (res.headersSent || res.destroyed) return;
    res.writeHead(response.status, response.headers);
    res.end(response.body);
  }

  #fail(res: http.ServerResponse, error: unknown): void {
    if (this.#stopping !== undefined) {
      res.destroy();
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    this.#options.logger.warn({ err: error }, `fault proxy: request failed: ${message}`);
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    // 502 is what a real gateway answers when the service behind it fails; the SDK retries it as transient.
    const answer = errorResponse('json', 'FaultProxyUpstreamError', `fault proxy: ${message}`, 502);
    res.writeHead(answer.status, answer.headers);
    res.end(answer.body);
  }

  #emitFor(
    ctx: RequestContext,
    fields: Omit<FaultProxyRequestEvent, 'at' | 'operation' | 'streamName' | 'shardIds'>,
  ): void {
    if (this.#listeners.size === 0) return;
    const shardIds = ctx.direct ?? [
      ...new Set((ctx.entryShardsKnown ?? []).filter((s): s is string => s !== undefined)),
    ];
    this.#emit({ ...fields, operation: ctx.operation, stream: ctx.stream, shardIds }, ctx.at);
  }

  #emit(
    event: Omit<FaultProxyRequestEvent, 'at' | 'streamName'> & { stream: StreamRef | undefined },
    at: number = this.#options.now(),
  ): void {
    if (this.#listeners.size === 0) return;
    const { stream, ...rest } = event;
    const payload: FaultProxyRequestEvent = { at, ...rest, streamName: stream?.streamName };
    for (const listener of [...this.#listeners]) {
      try {
        listener(payload);
      } catch (error) {
        this.#options.logger.error({ err: error }, 'fault proxy: a request listener threw');
      }
    }
  }
}
