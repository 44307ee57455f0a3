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
 *
 * Over 450 lines: the request pipeline (`#handle`, each rule action in its turn, then limits, then the
 * forwarding) reads best in one piece.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { TypedEvents } from '@shardline/common';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import {
  EMPTY_COUNTERS,
  type FaultProxyCounters,
  type FaultProxyEvents,
  type FaultProxyRequestEvent,
  increment,
} from './events.js';
import { applyLimits, type LimitsOptions, resolveLimits, ShardLimiter } from './limits.js';
import {
  buildContext,
  type ContextSources,
  decideRules,
  type EntryFailure,
  entryShards,
  type RequestContext,
  touchedShards,
} from './matching.js';
import {
  FAULT_PROXY_DEFAULTS,
  type FaultProxyOptions,
  type ResolvedFaultProxyOptions,
  resolveFaultProxyOptions,
} from './options.js';
import {
  type ActiveRule,
  addActiveRule,
  type FaultRule,
  type FaultRuleHandle,
  type KinesisOperation,
  pick,
} from './rules.js';
import { IteratorShards, ShardMapCache, type StreamRef } from './shards.js';
import { sendResponse, Upstream } from './upstream.js';
import {
  defaultErrorMessage,
  defaultErrorStatus,
  errorResponse,
  parseWireRequest,
  readRequestBody,
} from './wire.js';

/**
 * A fault-injecting HTTP proxy for Kinesis. Start it with {@link FaultProxy.start}; stop it with
 * {@link FaultProxy.stop}.
 */
export class FaultProxy {
  /** `http://host:port` of the proxy: give it to the Kinesis client as `endpoint`. */
  readonly endpoint: string;

  readonly #options: Readonly<ResolvedFaultProxyOptions>;
  readonly #server: http.Server;
  readonly #upstream: Upstream;
  readonly #contextSources: ContextSources;
  readonly #rules: ActiveRule[] = [];
  readonly #iterators: IteratorShards;
  readonly #shardMaps: ShardMapCache;
  readonly #listeners: TypedEvents<FaultProxyEvents>;
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
    this.#listeners = new TypedEvents<FaultProxyEvents>(['request'], {
      logger: options.logger,
      label: 'fault proxy',
    });
    this.#iterators = new IteratorShards(options.now);
    this.#contextSources = {
      iterators: this.#iterators,
      authByStream: this.#authByStream,
      accountId: options.accountId,
    };
    this.#upstream = new Upstream({
      target: options.target,
      accountId: options.accountId,
      logger: options.logger,
      iterators: this.#iterators,
      authByStream: this.#authByStream,
      openStreams: this.#openStreams,
      limiter: () => this.#limiter,
      countForwarded: () => {
        this.#counters.forwarded++;
      },
      resharded: (stream) => this.#shardMaps.invalidate(stream),
    });
    this.#shardMaps = new ShardMapCache(
      (ref) => this.#upstream.fetchShardRanges(ref),
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
    return addActiveRule(this.#rules, rule);
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
    return this.#listeners.on(event, listener);
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
    this.#upstream.destroy();
    await closed;
    this.#iterators.clear();
    this.#shardMaps.clear();
    this.#authByStream.clear();
  }

  // ---------------------------------------------------------------------------------------------------
  // Request pipeline

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on('error', () => {});
    const body = await readRequestBody(req, res, this.#options.maxRequestBytes);
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
      await this.#upstream.forwardPiped(req, res, body, false);
      return;
    }
    const ctx = buildContext(this.#contextSources, req, body, wire.operation, wire.protocol, wire.body);

    const { latencyMs, decision } = await decideRules(
      this.#rules,
      this.#shardMaps,
      ctx,
      this.#options.random,
      () => increment(this.#counters.injected, 'latency'),
    );
    if (latencyMs > 0) {
      await this.#sleep(latencyMs);
      if (this.#stopping !== undefined || req.socket.destroyed) return;
    }

    const action = decision?.active.rule.action;
    if (action?.type === 'error') {
      increment(this.#counters.injected, action.error);
      const shardId = (await touchedShards(this.#shardMaps, ctx, decision!.active.rule.shardId))[0];
      const message = action.message ?? this.#defaultMessage(action.error, ctx, shardId);
      this.#emitFor(ctx, { outcome: 'error', error: action.error, cause: 'rule', latencyMs });
      if (action.forward === true) await this.#upstream.forwardAndDiscard(ctx);
      sendResponse(
        res,
        errorResponse(ctx.protocol, action.error, message, action.status ?? defaultErrorStatus(action.error)),
      );
      return;
    }
    if (action?.type === 'reset') {
      increment(this.#counters.injected, 'reset');
      this.#emitFor(ctx, { outcome: 'reset', cause: 'rule', latencyMs });
      if (action.forward === true) await this.#upstream.forwardAndDiscard(ctx);
      this.#counters.resets++;
      req.socket.resetAndDestroy();
      return;
    }

    // PutRecords entries failed by a partial-failure rule, then by limits.
    const failures = new Map<number, EntryFailure>();
    let injectedEntries = 0;
    if (action?.type === 'partial-failure') {
      increment(this.#counters.injected, 'partial-failure');
      const shards = await entryShards(this.#shardMaps, ctx);
      const picked = pick(
        decision!.candidates,
        Math.round(action.fraction * decision!.candidates.length),
        this.#options.random,
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
      const shards = ctx.entries === undefined ? [] : await entryShards(this.#shardMaps, ctx);
      ctx.at = this.#options.now();
      const limited = applyLimits(
        limiter,
        ctx,
        shards,
        ctx.at,
        failures,
        (shardId) => this.#defaultMessage('ProvisionedThroughputExceededException', ctx, shardId)!,
      );
      if ('refusedShard' in limited) {
        this.#throttleCall(res, ctx, limited.refusedShard, latencyMs);
        return;
      }
      throttledEntries = limited.throttledEntries;
      this.#counters.throttledEntries += throttledEntries;
    }

    // A transform rewrites JSON calls that answer JSON; anything else goes through as it is.
    const transform =
      action?.type === 'transform' && ctx.json !== undefined && ctx.operation !== 'SubscribeToShard'
        ? action
        : undefined;
    if (transform !== undefined) increment(this.#counters.injected, 'transform');

    const entries =
      ctx.operation === 'PutRecords' && ctx.entries !== undefined
        ? { total: ctx.entries.length, injected: injectedEntries, throttled: throttledEntries }
        : undefined;
    const cause =
      injectedEntries > 0 || transform !== undefined ? 'rule' : throttledEntries > 0 ? 'limits' : undefined;
    this.#emitFor(ctx, {
      outcome: 'forwarded',
      latencyMs,
      ...(cause ? { cause } : {}),
      ...(entries ? { entries } : {}),
    });

    if (failures.size > 0) {
      await this.#upstream.forwardPutRecords(res, ctx, failures, transform);
    } else if (
      transform !== undefined ||
      ctx.operation === 'GetShardIterator' ||
      ctx.operation === 'GetRecords'
    ) {
      await this.#upstream.forwardLearning(res, ctx, transform);
    } else {
      await this.#upstream.forwardPiped(req, res, body, false, ctx);
    }
  }

  #throttleCall(res: http.ServerResponse, ctx: RequestContext, shardId: string, latencyMs: number): void {
    this.#counters.throttledCalls++;
    const error = 'ProvisionedThroughputExceededException';
    this.#emitFor(ctx, { outcome: 'error', error, cause: 'limits', latencyMs });
    sendResponse(res, errorResponse(ctx.protocol, error, this.#defaultMessage(error, ctx, shardId), 400));
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
  // Answers and events

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
    if (this.#listeners.listenerCount() === 0) return;
    const shardIds = ctx.direct ?? [
      ...new Set((ctx.entryShardsKnown ?? []).filter((s): s is string => s !== undefined)),
    ];
    this.#emit({ ...fields, operation: ctx.operation, stream: ctx.stream, shardIds }, ctx.at);
  }

  #emit(
    event: Omit<FaultProxyRequestEvent, 'at' | 'streamName'> & { stream: StreamRef | undefined },
    at: number = this.#options.now(),
  ): void {
    if (this.#listeners.listenerCount() === 0) return;
    const { stream, ...rest } = event;
    this.#listeners.emit('request', { at, ...rest, streamName: stream?.streamName });
  }
}
