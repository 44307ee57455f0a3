/**
 * The structured-clone-safe description of a KinesisClient config, for worker threads: each thread
 * builds its own client from it with {@link createKinesisClient} (an SDK client, its handler and its
 * credential provider cannot cross threads). Kept in step with what createKinesisClient reads from a
 * config (`kinesis-client.ts`).
 */

import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { ShardlineOptionError } from './errors.js';
import type { createKinesisClient } from './kinesis-client.js';
import { builtFromConfig, isHttpHandler, isKinesisClient, isPlainObject } from './kinesis-client.js';

type NotFunction<T> = Exclude<T, (...args: never[]) => unknown>;

/** Static credentials: the only kind that can cross to a worker thread. */
export interface PortableCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
  credentialScope?: string;
  accountId?: string;
}

/**
 * The structured-clone-safe part of a KinesisClientConfig: what a worker thread needs to build its own
 * client with {@link createKinesisClient}. Other plain (string, number, boolean) settings of the
 * original config are carried too.
 */
export interface PortableKinesisConfig {
  region?: string;
  endpoint?: string | { url: string; headers?: Record<string, string[]> };
  credentials?: PortableCredentials;
  maxAttempts?: number;
  retryMode?: string;
  useFipsEndpoint?: boolean;
  useDualstackEndpoint?: boolean;
  profile?: string;
  customUserAgent?: NotFunction<KinesisClientConfig['customUserAgent']>;
  userAgentAppId?: string;
  defaultsMode?: NotFunction<KinesisClientConfig['defaultsMode']>;
  tls?: boolean;
  /** See `KinesisClientConfig.connectTimeoutMs` (Shardline's own setting). */
  connectTimeoutMs?: number;
  /** HTTP handler options, when the original config gave them as plain data. */
  requestHandler?: Record<string, unknown>;
}

const CREDENTIAL_KEYS = [
  'accessKeyId',
  'secretAccessKey',
  'sessionToken',
  'expiration',
  'credentialScope',
  'accountId',
] as const;

/** Whether `value` survives structuredClone unchanged in meaning (no functions, no class instances). */
function isPortableValue(value: unknown, depth = 0): boolean {
  if (value === null || value === undefined) return true;
  const type = typeof value;
  if (type === 'string' || type === 'number' || type === 'boolean' || type === 'bigint') return true;
  if (type !== 'object' || depth > 8) return false;
  if (value instanceof Date) return true;
  if (Array.isArray(value)) return value.every((v) => isPortableValue(v, depth + 1));
  if (!isPlainObject(value)) return false;
  return Object.values(value).every((v) => isPortableValue(v, depth + 1));
}

function describe(value: unknown): string {
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'object' && value !== null) {
    const name = (Object.getPrototypeOf(value) as { constructor?: { name?: string } } | null)?.constructor
      ?.name;
    return name ? `a ${name} instance` : 'an object';
  }
  return typeof value;
}

function portableCredentials(value: unknown): PortableCredentials {
  if (typeof value === 'function') {
    throw new ShardlineOptionError(
      'kinesis.credentials',
      'is a credential provider function, which cannot cross to worker threads. Either leave ' +
        'credentials unset so that every thread resolves the default chain itself (environment variables, ' +
        'shared config files, container or instance role), or pass static credentials ' +
        '({ accessKeyId, secretAccessKey, sessionToken? }), for example resolved once with `await provider()`.',
    );
  }
  const c = value as Record<string, unknown> | null;
  if (
    typeof c !== 'object' ||
    c === null ||
    typeof c.accessKeyId !== 'string' ||
    typeof c.secretAccessKey !== 'string'
  ) {
    throw new ShardlineOptionError(
      'kinesis.credentials',
      `must be { accessKeyId, secretAccessKey, sessionToken? } or a provider function (got ${describe(value)})`,
    );
  }
  const out: Record<string, unknown> = {};
  for (const key of CREDENTIAL_KEYS) {
    const v = c[key];
    if (v === undefined) continue;
    if (key === 'expiration' ? !(v instanceof Date) : typeof v !== 'string') {
      throw new ShardlineOptionError(`kinesis.credentials.${key}`, `has an unexpected type (${describe(v)})`);
    }
    out[key] = v;
  }
  return out as unknown as PortableCredentials;
}

function portableEndpoint(value: unknown): PortableKinesisConfig['endpoint'] {
  if (typeof value === 'string') return value;
  if (value instanceof URL) return value.href;
  if (typeof value === 'function') {
    throw new ShardlineOptionError(
      'kinesis.endpoint',
      "is a function, which cannot cross to worker threads: pass the URL as a string (e.g. 'http://127.0.0.1:4567')",
    );
  }
  const e = value as { url?: unknown; headers?: unknown } | null;
  if (typeof e === 'object' && e !== null && (typeof e.url === 'string' || e.url instanceof URL)) {
    const url = typeof e.url === 'string' ? e.url : e.url.href;
    if (e.headers === undefined || (isPlainObject(e.headers) && Object.keys(e.headers).length === 0))
      return url;
    if (!isPortableValue(e.headers)) {
      throw new ShardlineOptionError(
        'kinesis.endpoint.headers',
        'must be plain data to cross to worker threads',
      );
    }
    return { url, headers: e.headers as Record<string, string[]> };
  }
  if (isPortableValue(value)) return value as PortableKinesisConfig['endpoint'];
  throw new ShardlineOptionError('kinesis.endpoint', `must be a URL string (got ${describe(value)})`);
}

/**
 * The part of `config` a worker thread needs to build the same client with {@link createKinesisClient};
 * plain data that survives `postMessage`.
 *
 * Left behind, because each thread makes its own: a `requestHandler` instance (workers build their
 * HTTP/1.1 keep-alive handler) and `logger`.
 *
 * @throws ShardlineOptionError when a setting cannot cross threads (a credential provider function,
 * a region or endpoint function, a class instance), saying what to pass instead; and for a KinesisClient
 * not built by {@link createKinesisClient}, whose settings the SDK has already turned into functions.
 */
export function portableClientConfig(config: KinesisClientConfig | KinesisClient): PortableKinesisConfig {
  let source: Readonly<KinesisClientConfig>;
  if (isKinesisClient(config)) {
    const known = builtFromConfig(config);
    if (known === undefined) {
      throw new ShardlineOptionError(
        'kinesis',
        'is a KinesisClient built outside Shardline: the SDK has turned its settings into functions, which ' +
          'cannot cross to worker threads. Pass the plain config instead (e.g. { region, endpoint, credentials }), ' +
          'or a client made by createKinesisClient(config).',
      );
    }
    source = known;
  } else if (typeof config === 'object' && config !== null && !Array.isArray(config)) {
    source = config;
  } else {
    throw new ShardlineOptionError(
      'kinesis',
      `must be a KinesisClientConfig object or a KinesisClient (got ${describe(config)})`,
    );
  }

  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    switch (key) {
      case 'credentials':
        out.credentials = portableCredentials(value);
        break;
      case 'endpoint':
        out.endpoint = portableEndpoint(value);
        break;
      case 'logger':
        break;
      case 'requestHandler':
        if (isHttpHandler(value)) break;
        if (!isPortableValue(value)) {
          throw new ShardlineOptionError(
            'kinesis.requestHandler',
            'holds objects that cannot cross to worker threads (e.g. an http.Agent): pass a handler instance ' +
              '(each worker builds its own HTTP/1.1 handler) or plain options only',
          );
        }
        out.requestHandler = value;
        break;
      default:
        if (Array.isArray(value) && value.length === 0) break; // e.g. extensions: []
        if (!isPortableValue(value)) {
          throw new ShardlineOptionError(
            `kinesis.${key}`,
            `is ${describe(value)}, which cannot cross to worker threads: pass plain data (a string, number or boolean)`,
          );
        }
        out[key] = value;
    }
  }
  return out as PortableKinesisConfig;
}
