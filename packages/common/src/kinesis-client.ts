/**
 * Builds the KinesisClient every Shardline package uses.
 *
 * Why not `new KinesisClient(config)`: @aws-sdk/client-kinesis (3.1143.0) defaults to an HTTP/2 handler
 * (`NodeHttp2Handler` with `disableConcurrentStreams: true`, see its runtimeConfig). kinesalite speaks
 * only HTTP/1.1 (ERR_HTTP2_ERROR); kinesis-mock answers plain calls over HTTP/2 but breaks SubscribeToShard
 * on it (see {@link KinesisTransport}); and on AWS it opens a
 * new HTTP/2 session per request (aws-sdk-js-v3 issue #8279), so no connection is reused. An HTTP/1.1
 * `NodeHttpHandler` with keep-alive agents and enough sockets for one long-lived connection per shard
 * works everywhere and reuses connections.
 *
 * The client speaks the awsJson1_1 protocol (`Content-Type: application/x-amz-json-1.1`,
 * `X-Amz-Target: Kinesis_20131202.<Operation>`, blobs as base64 strings, timestamps as epoch seconds).
 *
 * What a worker thread needs to build the same client ({@link portableClientConfig}) is worked out in
 * `kinesis-client-portable.ts`: it must agree with what {@link createKinesisClient} reads from a config,
 * so a setting added here needs its rule for crossing threads there.
 */

import http from 'node:http';
import https from 'node:https';
import type { KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { KinesisClient } from '@aws-sdk/client-kinesis';
import type { NodeHttp2HandlerOptions, NodeHttpHandlerOptions } from '@smithy/node-http-handler';
import { NodeHttp2Handler, NodeHttpHandler } from '@smithy/node-http-handler';
import { ShardlineOptionError } from './errors.js';
import type { PortableKinesisConfig, portableClientConfig } from './kinesis-client-portable.js';
import type { KinesisClientSettings } from './kinesis-client-settings.js';
import { clientSettings, recordClientSettings, recordedClientSettings } from './kinesis-client-settings.js';
import type { Logger } from './logger.js';
import { silentLogger } from './logger.js';

declare module '@aws-sdk/client-kinesis' {
  interface KinesisClientConfig {
    /**
     * Shardline's own setting (the SDK ignores it; {@link createKinesisClient} takes it out before the
     * SDK sees it): how long to wait for Kinesis to answer at all, in milliseconds; 0 disables it.
     * - Each TCP (and TLS) connection attempt of the HTTP/1.1 handler gives up after it (the handler's
     *   `connectionTimeout`; a plain `requestHandler: { connectionTimeout }` still wins).
     * - `startCoordinator()` rejects once its shard listing got no answer at all for this long (every
     *   request refused, reset or timed out, the SDK's own retries included), naming the endpoint,
     *   the time and the attempts, instead of retrying on. An endpoint that answers, even with an
     *   error, is retried as usual.
     * @defaultValue 10_000 (`KINESIS_CLIENT_DEFAULTS.connectionTimeoutMs`)
     */
    connectTimeoutMs?: number;
  }
}

/**
 * The HTTP version of the handler {@link createKinesisClient} builds.
 * - `'http1'`: HTTP/1.1 keep-alive (works everywhere except SubscribeToShard on AWS).
 * - `'http2'`: HTTP/2, which AWS requires for SubscribeToShard (enhanced fan-out). kinesalite fails on it.
 *   kinesis-mock (h2c and TLS) answers plain calls, but not SubscribeToShard: the SDK closes an event
 *   stream's own session (GOAWAY) once its headers arrive, and kinesis-mock (http4s Ember) answers any
 *   GOAWAY by resetting every open stream and sending an unsolicited PING ACK, which Node.js rejects as a
 *   protocol error (ERR_HTTP2_ERROR). A GOAWAY leaves the sender's own streams running (RFC 9113 6.8).
 * - `'auto'`: HTTP/1.1 for an `http://` endpoint (a local emulator), HTTP/2 otherwise (AWS, TLS).
 */
export type KinesisTransport = 'auto' | 'http1' | 'http2';

const TRANSPORTS: readonly KinesisTransport[] = ['auto', 'http1', 'http2'];

/**
 * Plain `requestHandler` options that the HTTP/2 handler takes (e.g. `nodeHttp2ConnectOptions: { ca }`
 * for a private CA); being plain data, they also reach worker threads.
 */
const HTTP2_OPTION_KEYS = [
  'requestTimeout',
  'sessionTimeout',
  'disableConcurrentStreams',
  'maxConcurrentStreams',
  'nodeHttp2ConnectOptions',
] as const;

/**
 * What `'auto'` means for `endpoint` (the config's endpoint: a string, URL or `{ url }`): `'http1'` for
 * an `http://` endpoint, `'http2'` for anything else (https, or none: the AWS regional endpoint).
 * `'http1'` and `'http2'` are returned as they are.
 * @throws ShardlineOptionError for a transport that is none of the three.
 */
export function resolveKinesisTransport(
  transport: unknown,
  endpoint: unknown,
  option = 'transport',
): 'http1' | 'http2' {
  if (!TRANSPORTS.includes(transport as KinesisTransport)) {
    throw new ShardlineOptionError(
      option,
      `must be 'auto', 'http1' or 'http2' (got ${typeof transport === 'string' ? `'${transport}'` : String(transport)})`,
    );
  }
  if (transport !== 'auto') return transport as 'http1' | 'http2';
  const e = endpoint as { url?: unknown; protocol?: unknown; hostname?: unknown } | string | undefined;
  let url: string | undefined;
  if (typeof e === 'string') url = e;
  else if (e instanceof URL) url = e.href;
  else if (typeof e === 'object' && e !== null) {
    if (typeof e.url === 'string') url = e.url;
    else if (e.url instanceof URL) url = e.url.href;
    else if (typeof e.protocol === 'string') url = `${e.protocol}//`;
  }
  return url?.toLowerCase().startsWith('http:') ? 'http1' : 'http2';
}

/** HTTP settings of the handler {@link createKinesisClient} builds. */
export interface KinesisClientOptions {
  /**
   * HTTP version: see {@link KinesisTransport}. Polling readers and the control plane are best on
   * HTTP/1.1 (see the module notes); enhanced fan-out on AWS needs HTTP/2.
   * @defaultValue 'http1'
   */
  transport?: KinesisTransport;
  /**
   * Most concurrent connections per origin (http and https agents each). A shard reader keeps about
   * one request in flight, so this bounds the shards one client serves without queueing.
   * @defaultValue 256
   */
  maxSockets?: number;
  /**
   * Longest wait for a TCP (and TLS) connection; 0 disables it.
   * @defaultValue 10_000
   */
  connectionTimeoutMs?: number;
  /**
   * Longest wait from sending a request to the start of its response; 0 disables it. On expiry the
   * request fails with a retriable `TimeoutError` (never just a console warning, the SDK's default).
   * @defaultValue 30_000
   */
  requestTimeoutMs?: number;
  /**
   * Longest silence on the socket while a request or its response is in progress (a stalled body);
   * 0 disables it.
   * @defaultValue 30_000
   */
  socketTimeoutMs?: number;
  /**
   * Where the HTTP handler's own warnings go (socket exhaustion).
   * @defaultValue the config's `logger`, else silent
   */
  logger?: Logger;
}

/** Defaults of {@link KinesisClientOptions}. */
export const KINESIS_CLIENT_DEFAULTS = Object.freeze({
  transport: 'http1' as KinesisTransport,
  maxSockets: 256,
  connectionTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  socketTimeoutMs: 30_000,
});

/** Configs of the clients built here, so {@link portableClientConfig} can describe them later. */
const builtFrom = new WeakMap<object, Readonly<KinesisClientConfig>>();

/** The config {@link createKinesisClient} built `client` from (a snapshot), else undefined. */
export function builtFromConfig(client: object): Readonly<KinesisClientConfig> | undefined {
  return builtFrom.get(client);
}

/**
 * The endpoint, region and `connectTimeoutMs` of a client built by {@link createKinesisClient}; for
 * any other object, what is known without it (no endpoint, no region, the default timeout).
 */
export function kinesisClientSettings(client: object): KinesisClientSettings {
  return (
    recordedClientSettings(client) ?? {
      endpoint: undefined,
      region: undefined,
      connectTimeoutMs: KINESIS_CLIENT_DEFAULTS.connectionTimeoutMs,
    }
  );
}

function checkMs(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new ShardlineOptionError(
      option,
      `must be a finite number of milliseconds >= 0 (got ${String(value)})`,
    );
  }
  return value;
}

function resolveOptions(options: KinesisClientOptions | undefined): Required<
  Omit<KinesisClientOptions, 'logger' | 'transport'>
> & {
  logger: Logger | undefined;
  transport: KinesisTransport;
} {
  if (options === undefined) return { ...KINESIS_CLIENT_DEFAULTS, logger: undefined };
  if (typeof options !== 'object' || options === null) {
    throw new ShardlineOptionError('kinesisClientOptions', `must be an object (got ${String(options)})`);
  }
  const maxSockets = options.maxSockets ?? KINESIS_CLIENT_DEFAULTS.maxSockets;
  if (
    typeof maxSockets !== 'number' ||
    !(maxSockets === Number.POSITIVE_INFINITY || (Number.isInteger(maxSockets) && maxSockets >= 1))
  ) {
    throw new ShardlineOptionError(
      'kinesisClientOptions.maxSockets',
      `must be an integer >= 1 or Infinity (got ${String(maxSockets)})`,
    );
  }
  const logger = options.logger;
  if (
    logger !== undefined &&
    (typeof logger !== 'object' || logger === null || typeof logger.warn !== 'function')
  ) {
    throw new ShardlineOptionError(
      'kinesisClientOptions.logger',
      'must be a logger with debug, info, warn, error',
    );
  }
  const transport = options.transport ?? KINESIS_CLIENT_DEFAULTS.transport;
  resolveKinesisTransport(transport, undefined, 'kinesisClientOptions.transport');
  return {
    transport,
    maxSockets,
    connectionTimeoutMs: checkMs(
      options.connectionTimeoutMs ?? KINESIS_CLIENT_DEFAULTS.connectionTimeoutMs,
      'kinesisClientOptions.connectionTimeoutMs',
    ),
    requestTimeoutMs: checkMs(
      options.requestTimeoutMs ?? KINESIS_CLIENT_DEFAULTS.requestTimeoutMs,
      'kinesisClientOptions.requestTimeoutMs',
    ),
    socketTimeoutMs: checkMs(
      options.socketTimeoutMs ?? KINESIS_CLIENT_DEFAULTS.socketTimeoutMs,
      'kinesisClientOptions.socketTimeoutMs',
    ),
    logger,
  };
}

/** Whether `x` is a KinesisClient, also one from another copy of @aws-sdk/client-kinesis. */
export function isKinesisClient(x: unknown): x is KinesisClient {
  if (x instanceof KinesisClient) return true;
  const c = x as { send?: unknown; destroy?: unknown; config?: { serviceId?: unknown } } | null;
  return (
    typeof c === 'object' &&
    c !== null &&
    typeof c.send === 'function' &&
    typeof c.destroy === 'function' &&
    typeof c.config === 'object' &&
    c.config !== null &&
    c.config.serviceId === 'Kinesis'
  );
}

export function isHttpHandler(x: unknown): boolean {
  return typeof (x as { handle?: unknown } | null)?.handle === 'function';
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null) return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

function agentFrom<A>(given: unknown, make: (options: object) => A, defaults: object): A | unknown {
  // An Agent the user made is used as is (their sockets, their TLS settings); plain options are merged
  // over ours so keep-alive and maxSockets still apply unless they override them.
  if (given !== undefined && !isPlainObject(given)) return given;
  return make({ ...defaults, ...(given as object | undefined) });
}

function smithyLogger(logger: Logger) {
  const forward =
    (fn: Logger['debug']) =>
    (...content: unknown[]) =>
      (fn as (...args: unknown[]) => void).apply(logger, content);
  return {
    trace: forward(logger.debug),
    debug: forward(logger.debug),
    info: forward(logger.info),
    warn: forward(logger.warn),
    error: forward(logger.error),
  };
}

/**
 * A KinesisClient for `config`, on an HTTP/1.1 keep-alive `NodeHttpHandler` (see the module notes for
 * why). A ready KinesisClient is returned as is. The config's own `requestHandler` is kept when it is a
 * handler instance; given as plain options, they are applied to the HTTP/1.1 handler (the SDK would
 * have applied them to its HTTP/2 one).
 *
 * @throws ShardlineOptionError when `config` is neither a config object nor a client, or an option is invalid.
 */
export function createKinesisClient(
  config?: KinesisClientConfig | PortableKinesisConfig | KinesisClient,
  options?: KinesisClientOptions,
): KinesisClient {
  if (isKinesisClient(config)) return config;
  const resolved = resolveOptions(options);
  if (config !== undefined && (typeof config !== 'object' || config === null || Array.isArray(config))) {
    throw new ShardlineOptionError(
      'kinesis',
      `must be a KinesisClientConfig object (e.g. { region: 'eu-west-1' }) or a KinesisClient (got ${
        config === null ? 'null' : Array.isArray(config) ? 'an array' : typeof config
      })`,
    );
  }
  const input = (config ?? {}) as KinesisClientConfig;
  // Shardline's own setting: the SDK must not see it (it would pass unknown keys on to middleware).
  const { connectTimeoutMs, ...sdkConfig } = input;
  const connectionTimeoutMs =
    connectTimeoutMs === undefined
      ? resolved.connectionTimeoutMs
      : checkMs(connectTimeoutMs, 'kinesis.connectTimeoutMs');
  const settings = clientSettings(input.endpoint, input.region, connectionTimeoutMs);
  const build = (requestHandler: unknown): KinesisClient => {
    const client = new KinesisClient({ ...sdkConfig, requestHandler } as KinesisClientConfig);
    // A snapshot: later changes to the caller's object do not alter what this client was built from.
    builtFrom.set(client, { ...input });
    recordClientSettings(client, settings);
    return client;
  };
  const given = input.requestHandler;
  let requestHandler: unknown = given;
  if (!isHttpHandler(given)) {
    if (given !== undefined && !isPlainObject(given)) {
      throw new ShardlineOptionError(
        'kinesis.requestHandler',
        'must be an HttpHandler (e.g. new NodeHttpHandler()) or NodeHttpHandler options',
      );
    }
    const transport = resolveKinesisTransport(resolved.transport, input.endpoint);
    if (transport === 'http2') {
      // Of plain handler options, only the HTTP/2 handler's own apply (agents are HTTP/1.1 things).
      const user = (given ?? {}) as Record<string, unknown>;
      const http2Options: NodeHttp2HandlerOptions = {
        requestTimeout: resolved.requestTimeoutMs,
        sessionTimeout: resolved.socketTimeoutMs,
        // One session per origin carries every request and subscription (HTTP/2 multiplexing); the
        // SDK gives each event stream (SubscribeToShard) a session of its own anyway.
        disableConcurrentStreams: false,
      };
      for (const key of HTTP2_OPTION_KEYS) {
        if (user[key] !== undefined) (http2Options as Record<string, unknown>)[key] = user[key];
      }
      return build(new NodeHttp2Handler(http2Options));
    }
    const user = (given ?? {}) as NodeHttpHandlerOptions;
    const agentDefaults = { keepAlive: true, maxSockets: resolved.maxSockets };
    const logger = resolved.logger ?? (input.logger as Logger | undefined) ?? silentLogger;
    const handlerOptions: NodeHttpHandlerOptions = {
      connectionTimeout: connectionTimeoutMs,
      requestTimeout: resolved.requestTimeoutMs,
      socketTimeout: resolved.socketTimeoutMs,
      // Without it the SDK only prints a console warning when the request timeout passes.
      throwOnRequestTimeout: true,
      ...user,
      httpAgent: agentFrom(user.httpAgent, (o) => new http.Agent(o), agentDefaults) as http.Agent,
      httpsAgent: agentFrom(user.httpsAgent, (o) => new https.Agent(o), agentDefaults) as https.Agent,
      // The handler's default logger is the console; library code never writes there.
      logger: smithyLogger(logger),
    };
    requestHandler = new NodeHttpHandler(handlerOptions);
  }
  return build(requestHandler);
}
