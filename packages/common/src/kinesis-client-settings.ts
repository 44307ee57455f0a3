/**
 * What each client built by `createKinesisClient` connects to and how long it waits for an answer,
 * kept beside the client (the SDK turns its config into functions) for messages and deadlines, e.g.
 * "cannot reach Kinesis at http://127.0.0.1:4567" from the coordinator's shard discovery.
 */

/** What a client connects to and how long it waits for an answer: for messages and deadlines. */
export interface KinesisClientSettings {
  /**
   * The endpoint URL: the config's `endpoint`, else `AWS_ENDPOINT_URL_KINESIS` or `AWS_ENDPOINT_URL`
   * (which the SDK reads itself); undefined for the AWS regional endpoint.
   */
  readonly endpoint: string | undefined;
  /** The config's region, when it is a string. */
  readonly region: string | undefined;
  /** `connectTimeoutMs` as the client applies it (0: disabled). */
  readonly connectTimeoutMs: number;
}

const recorded = new WeakMap<object, KinesisClientSettings>();

function endpointUrl(endpoint: unknown): string | undefined {
  if (typeof endpoint === 'string') return endpoint;
  if (endpoint instanceof URL) return endpoint.href;
  const e = endpoint as { url?: unknown } | null | undefined;
  if (typeof e?.url === 'string') return e.url;
  if (e?.url instanceof URL) return e.url.href;
  return undefined;
}

/** The endpoint the SDK takes from the environment when the config names none. */
function environmentEndpoint(): string | undefined {
  const env = process.env;
  if (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() === 'true') return undefined;
  return env.AWS_ENDPOINT_URL_KINESIS || env.AWS_ENDPOINT_URL || undefined;
}

/** The settings of a client built from a config with this `endpoint` and `region`. */
export function clientSettings(
  endpoint: unknown,
  region: unknown,
  connectTimeoutMs: number,
): KinesisClientSettings {
  return Object.freeze({
    endpoint: endpointUrl(endpoint) ?? environmentEndpoint(),
    region: typeof region === 'string' ? region : undefined,
    connectTimeoutMs,
  });
}

export function recordClientSettings(client: object, settings: KinesisClientSettings): void {
  recorded.set(client, settings);
}

/** The settings recorded for `client`, or undefined when createKinesisClient did not build it. */
export function recordedClientSettings(client: object): KinesisClientSettings | undefined {
  return recorded.get(client);
}
