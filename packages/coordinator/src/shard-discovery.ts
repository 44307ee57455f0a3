/**
 * Shard discovery: every shard of the stream (open and closed) by paginated ListShards (the shared
 * `listAllShards` pager of @shardline/common), by stream name or ARN, each page retried on throttling
 * and transient errors.
 *
 * An endpoint that never answers (every request refused, reset or timed out) is given up on after the
 * client's `connectTimeoutMs`, not after the retries: a dead endpoint must not hold startCoordinator()
 * for the whole retry budget (which, with the SDK's request timeout, could be many minutes).
 */

import type {
  KinesisClient,
  ListShardsCommandInput,
  ListShardsCommandOutput,
  Shard,
} from '@aws-sdk/client-kinesis';
import { ListShardsCommand } from '@aws-sdk/client-kinesis';
import type { BackoffMs, ListShardsPageOutput, Logger } from '@shardline/common';
import {
  classifyAwsError,
  ErrorCodes,
  isRetriable,
  KINESIS_CLIENT_DEFAULTS,
  KinesisError,
  kinesisClientSettings,
  LIST_SHARDS_DEFAULTS,
  listAllShards,
  networkErrorCode,
  retry,
  rootCause,
  type ShardlineError,
  ShardlineOptionError,
  silentLogger,
  sleep,
  validateRetryOptions,
} from '@shardline/common';

/** A shard as the coordinator sees it. */
export interface ShardInfo {
  shardId: string;
  /** ParentShardId then AdjacentParentShardId (a merge), where present. */
  parentShardIds: string[];
  hashKeyRange: { startingHashKey: string; endingHashKey: string };
  sequenceNumberRange: { startingSequenceNumber: string; endingSequenceNumber?: string };
  /** Closed by a reshard (EndingSequenceNumber present): it ends, and its children continue it. */
  closed: boolean;
}

/** The one call discovery needs: ListShards; and, for messages and the deadline, where it goes. */
export interface ListShardsApi {
  listShards(input: ListShardsCommandInput, abortSignal?: AbortSignal): Promise<ListShardsCommandOutput>;
  /** The endpoint URL, for messages (undefined: the AWS regional endpoint). */
  readonly endpoint?: string;
  /** The region, for messages when there is no endpoint URL. */
  readonly region?: string;
  /** The client's `kinesis.connectTimeoutMs`: see {@link ShardDiscoveryOptions.connectTimeoutMs}. */
  readonly connectTimeoutMs?: number;
}

/** {@link ListShardsApi} over a KinesisClient (its endpoint and timeout when createKinesisClient built it). */
export function listShardsApi(client: Pick<KinesisClient, 'send'>): ListShardsApi {
  const settings = kinesisClientSettings(client);
  const api: { -readonly [K in keyof ListShardsApi]: ListShardsApi[K] } = {
    listShards: (input, abortSignal) =>
      client.send(new ListShardsCommand(input), abortSignal === undefined ? {} : { abortSignal }),
    connectTimeoutMs: settings.connectTimeoutMs,
  };
  if (settings.endpoint !== undefined) api.endpoint = settings.endpoint;
  if (settings.region !== undefined) api.region = settings.region;
  return api;
}

export interface ShardDiscoveryOptions {
  api: ListShardsApi;
  /**
   * The stream, by name or ARN or both (AWS accepts both; kinesalite reads only the name, so give the
   * name taken from the ARN too where an emulator may be behind the endpoint).
   */
  streamName?: string;
  streamArn?: string;
  /**
   * ListShards MaxResults (1 to 10,000).
   * @defaultValue 1000
   */
  pageSize?: number;
  /**
   * Retries of one page on throttling (LimitExceeded) and transient errors.
   * @defaultValue { retries: 8, backoffMs: { initial: 100, max: 5000 } }
   */
  retry?: { retries: number; backoffMs: BackoffMs };
  /**
   * How long a listing keeps trying an endpoint that has not answered at all (every request refused,
   * reset or timed out), in milliseconds; then it rejects with `ERR_TRANSIENT` naming the endpoint, the
   * time and the attempts, even with retries left. A request in flight at that moment is aborted. 0
   * disables it (only `retry` bounds the attempts). Once the endpoint answered, even with an error, only
   * `retry` applies.
   * @defaultValue `api.connectTimeoutMs` (the client's `kinesis.connectTimeoutMs`), else 10_000
   */
  connectTimeoutMs?: number;
  logger?: Logger;
  /** @internal For tests: the wait between retries, the jitter source and the clock. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
  now?: () => number;
}

export const SHARD_DISCOVERY_DEFAULTS = Object.freeze({
  pageSize: 1_000,
  retry: Object.freeze({ retries: 8, backoffMs: Object.freeze({ initial: 100, max: 5_000 }) }),
  /** Listings restarted after an expired NextToken (valid 300 s) before giving up. */
  maxRestarts: LIST_SHARDS_DEFAULTS.maxRestarts,
  /** A bound against a server that keeps answering with new tokens. */
  maxPages: LIST_SHARDS_DEFAULTS.maxPages,
});

/** Errors retried while listing: ResourceInUse is a stream still being created. */
function shouldRetry(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'ResourceInUseException') return true;
  return isRetriable(error);
}

/**
 * Whether nothing answered: a network error or a timeout, with no HTTP status (an endpoint that
 * answers with an error, or a failure before any request such as missing credentials, is no such case).
 */
function noAnswer(error: unknown): boolean {
  const root = rootCause(error) as { name?: unknown; $metadata?: { httpStatusCode?: unknown } } | null;
  if (typeof root?.$metadata?.httpStatusCode === 'number') return false;
  return networkErrorCode(error) !== undefined || root?.name === 'TimeoutError';
}

/** HTTP requests one failed SDK call made (the SDK's own retries included). */
function requestsOf(error: unknown): number {
  const attempts = (error as { $metadata?: { attempts?: unknown } } | null)?.$metadata?.attempts;
  return typeof attempts === 'number' && attempts >= 1 ? attempts : 1;
}

/** What one listing tried, for the message when nothing answered. */
interface ListingTries {
  readonly startedAt: number;
  /** Calls of ListShards (each may be several HTTP requests: the SDK retries too). */
  attempts: number;
  requests: number;
  answered: boolean;
  lastError?: unknown;
}

function malformed(message: string, details: Record<string, unknown>): ShardlineError {
  return new KinesisError(ErrorCodes.KINESIS, `ListShards: ${message}`, { retriable: false, details });
}

/** Converts one SDK shard, checking the fields the coordinator relies on. */
export function toShardInfo(shard: Shard): ShardInfo {
  const id = shard.ShardId;
  if (typeof id !== 'string' || id.length === 0) throw malformed('a shard without ShardId', {});
  const hash = shard.HashKeyRange;
  const seq = shard.SequenceNumberRange;
  if (typeof hash?.StartingHashKey !== 'string' || typeof hash.EndingHashKey !== 'string') {
    throw malformed(`shard ${id} has no HashKeyRange`, { shardId: id });
  }
  if (typeof seq?.StartingSequenceNumber !== 'string') {
    throw malformed(`shard ${id} has no SequenceNumberRange`, { shardId: id });
  }
  const parentShardIds: string[] = [];
  for (const parent of [shard.ParentShardId, shard.AdjacentParentShardId]) {
    if (
      typeof parent === 'string' &&
      parent.length > 0 &&
      parent !== id &&
      !parentShardIds.includes(parent)
    ) {
      parentShardIds.push(parent);
    }
  }
  const sequenceNumberRange: ShardInfo['sequenceNumberRange'] = {
    startingSequenceNumber: seq.StartingSequenceNumber,
  };
  const ending = seq.EndingSequenceNumber;
  if (typeof ending === 'string' && ending.length > 0) sequenceNumberRange.endingSequenceNumber = ending;
  return {
    shardId: id,
    parentShardIds,
    hashKeyRange: { startingHashKey: hash.StartingHashKey, endingHashKey: hash.EndingHashKey },
    sequenceNumberRange,
    closed: sequenceNumberRange.endingSequenceNumber !== undefined,
  };
}

/** Lists a stream's shards; the coordinator calls {@link ShardDiscovery.list} at start and on every sync. */
export class ShardDiscovery {
  readonly #api: ListShardsApi;
  readonly #stream: { streamName?: string; streamArn?: string };
  readonly #pageSize: number;
  readonly #retry: { retries: number; backoffMs: BackoffMs };
  readonly #connectTimeoutMs: number;
  readonly #where: string;
  readonly #logger: Logger;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
  readonly #now: () => number;
  /** Description of the stream for messages. */
  readonly stream: string;

  constructor(options: ShardDiscoveryOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new ShardlineOptionError('options', 'must be an object like { api, streamName }');
    }
    if (typeof options.api?.listShards !== 'function') {
      throw new ShardlineOptionError('api', 'must have a listShards(input, abortSignal?) method');
    }
    const { streamName, streamArn } = options;
    if (streamName === undefined && streamArn === undefined) {
      throw new ShardlineOptionError('streamName', 'or streamArn is required');
    }
    for (const [option, value] of [
      ['streamName', streamName],
      ['streamArn', streamArn],
    ] as const) {
      if (value !== undefined && (typeof value !== 'string' || value.length === 0)) {
        throw new ShardlineOptionError(option, 'must be a non-empty string');
      }
    }
    const named = (streamArn ?? streamName) as string;
    const pageSize = options.pageSize ?? SHARD_DISCOVERY_DEFAULTS.pageSize;
    if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) {
      throw new ShardlineOptionError(
        'pageSize',
        `must be an integer from 1 to 10000 (got ${String(pageSize)})`,
      );
    }
    const retryOptions = options.retry ?? SHARD_DISCOVERY_DEFAULTS.retry;
    validateRetryOptions(retryOptions, 'retry');
    const connectTimeoutMs =
      options.connectTimeoutMs ?? options.api.connectTimeoutMs ?? KINESIS_CLIENT_DEFAULTS.connectionTimeoutMs;
    if (typeof connectTimeoutMs !== 'number' || !Number.isFinite(connectTimeoutMs) || connectTimeoutMs < 0) {
      throw new ShardlineOptionError(
        'connectTimeoutMs',
        `must be a finite number of milliseconds >= 0 (got ${String(connectTimeoutMs)})`,
      );
    }
    this.#api = options.api;
    this.#stream = {};
    if (streamName !== undefined) this.#stream.streamName = streamName;
    if (streamArn !== undefined) this.#stream.streamArn = streamArn;
    this.stream = named;
    this.#pageSize = pageSize;
    this.#retry = retryOptions;
    this.#connectTimeoutMs = connectTimeoutMs;
    const { endpoint, region } = options.api;
    this.#where =
      endpoint !== undefined
        ? `Kinesis at ${endpoint}`
        : region !== undefined
          ? `Kinesis in ${region}`
          : 'Kinesis (the AWS regional endpoint)';
    this.#logger = options.logger ?? silentLogger;
    this.#sleep = options.sleep ?? sleep;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Every shard of the stream, open and closed (shards aged out of retention are not listed), each
   * once, in the order ListShards gave them.
   *
   * @throws KinesisError: `ERR_NOT_FOUND` when the stream does not exist, `ERR_ACCESS_DENIED`, or the
   * last error once retries are exhausted; `ERR_TRANSIENT` saying where, how long and how many requests
   * when the endpoint never answered (see `connectTimeoutMs`); `ERR_ABORTED` when `signal` aborts.
   */
  async list(signal?: AbortSignal): Promise<ShardInfo[]> {
    let tries = this.#freshTries();
    let shards: Shard[];
    try {
      shards = await listAllShards((input, s) => this.#api.listShards(input, s), {
        ...this.#stream,
        maxResults: this.#pageSize,
        signal,
        maxRestarts: SHARD_DISCOVERY_DEFAULTS.maxRestarts,
        maxPages: SHARD_DISCOVERY_DEFAULTS.maxPages,
        // Each page is retried on its own; each listing (the first, and every restart after an expired
        // NextToken) gets its own deadline for an endpoint that never answered.
        pageRetry: (call, { page }) => {
          if (page === 0) tries = this.#freshTries();
          return retry(({ attempt, bail }) => this.#attempt(call, signal, tries, attempt, bail), {
            retries: this.#retry.retries,
            backoffMs: this.#retry.backoffMs,
            shouldRetry,
            // While nothing answers, no wait runs past the deadline: the listing gives up on time.
            sleep: (ms, s) => this.#sleep(Math.min(ms, this.#untilDeadline(tries)), s),
            random: this.#random,
            ...(signal === undefined ? {} : { signal }),
            onRetry: (error, attempt, delayMs) =>
              this.#logger.debug(
                {
                  stream: this.stream,
                  attempt: attempt + 1,
                  delayMs: Math.round(delayMs),
                  err: errorName(error),
                },
                'ListShards failed: retrying',
              ),
          });
        },
        onRestart: (restart) =>
          this.#logger.debug({ stream: this.stream, restart }, 'ListShards NextToken expired: listing again'),
      });
    } catch (error) {
      throw classifyAwsError(error, 'ListShards');
    }
    return shards.map(toShardInfo);
  }

  #freshTries(): ListingTries {
    return { startedAt: this.#now(), attempts: 0, requests: 0, answered: false };
  }

  /** Milliseconds left before the listing gives up on an endpoint that never answered (Infinity: none). */
  #untilDeadline(tries: ListingTries): number {
    if (tries.answered || this.#connectTimeoutMs === 0) return Number.POSITIVE_INFINITY;
    return Math.max(0, tries.startedAt + this.#connectTimeoutMs - this.#now());
  }

  /**
   * One ListShards call, aborted at the deadline while the endpoint has never answered. While nothing
   * answers, running out of time or of retries ends the listing with {@link ShardDiscovery.#unreachable}.
   */
  async #attempt(
    call: (signal?: AbortSignal) => Promise<ListShardsPageOutput>,
    signal: AbortSignal | undefined,
    tries: ListingTries,
    attempt: number,
    bail: (error: unknown) => never,
  ): Promise<ListShardsPageOutput> {
    const left = this.#untilDeadline(tries);
    if (left === 0) bail(this.#unreachable(tries));
    tries.attempts++;
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    let attemptSignal = signal;
    if (left !== Number.POSITIVE_INFINITY) {
      const deadline = new AbortController();
      timer = setTimeout(() => {
        timedOut = true;
        deadline.abort();
      }, left);
      attemptSignal = signal === undefined ? deadline.signal : AbortSignal.any([signal, deadline.signal]);
    }
    try {
      const output = await call(attemptSignal);
      tries.requests++;
      tries.answered = true;
      return output;
    } catch (error) {
      tries.requests += requestsOf(error);
      if (signal?.aborted) throw error;
      if (timedOut || noAnswer(error)) {
        if (!timedOut) tries.lastError = error;
        if (
          !tries.answered &&
          (timedOut || attempt >= this.#retry.retries || this.#untilDeadline(tries) === 0)
        ) {
          bail(this.#unreachable(tries));
        }
      } else {
        tries.answered = true;
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The error of a listing that never got an answer: where, how long, how many requests. */
  #unreachable(tries: ListingTries): ShardlineError {
    const elapsedMs = this.#now() - tries.startedAt;
    const last = tries.lastError;
    const root = rootCause(last) as { message?: unknown } | null | undefined;
    // Without an error, the deadline cut a request short: connected (or connecting), and no response.
    const reason =
      last === undefined
        ? 'a request was still waiting for a response'
        : typeof root?.message === 'string'
          ? root.message
          : String(root);
    const requests = `${tries.requests} request${tries.requests === 1 ? '' : 's'}`;
    const attempts =
      tries.requests === tries.attempts ? '' : ` (${tries.attempts} calls, with the SDK's own retries)`;
    const limit =
      this.#connectTimeoutMs === 0
        ? ''
        : `; kinesis.connectTimeoutMs (${this.#connectTimeoutMs} ms) bounds how long it tries`;
    return new KinesisError(
      ErrorCodes.TRANSIENT,
      `ListShards: cannot reach ${this.#where} (stream '${this.stream}'): nothing answered ${requests} in ` +
        `${(elapsedMs / 1000).toFixed(1)} s${attempts}: ${reason}${limit}`,
      {
        retriable: true,
        cause: last,
        awsName: (last as { name?: string } | undefined)?.name ?? 'TimeoutError',
        details: {
          stream: this.stream,
          ...(this.#api.endpoint === undefined ? {} : { endpoint: this.#api.endpoint }),
          ...(this.#api.region === undefined ? {} : { region: this.#api.region }),
          elapsedMs,
          attempts: tries.attempts,
          requests: tries.requests,
          connectTimeoutMs: this.#connectTimeoutMs,
        },
      },
    );
  }
}

function errorName(error: unknown): string {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : 'Error';
}
