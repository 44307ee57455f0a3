/**
 * Shard discovery: every shard of the stream (open and closed) by paginated ListShards, by stream
 * name or ARN, retried on throttling and transient errors.
 *
 * Emulator quirks handled: kinesis-mock paginates (with a NextToken the request must name neither
 * the stream nor its ARN); kinesalite ignores pagination and omits StreamARN.
 */

import type {
  KinesisClient,
  ListShardsCommandInput,
  ListShardsCommandOutput,
  Shard,
} from '@aws-sdk/client-kinesis';
import { ListShardsCommand } from '@aws-sdk/client-kinesis';
import type { BackoffMs, Logger } from '@shardline/common';
import {
  classifyAwsError,
  ErrorCodes,
  isRetriable,
  KinesisError,
  retry,
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

/** The one call discovery needs: ListShards. */
export interface ListShardsApi {
  listShards(input: ListShardsCommandInput, abortSignal?: AbortSignal): Promise<ListShardsCommandOutput>;
}

/** {@link ListShardsApi} over a KinesisClient. */
export function listShardsApi(client: Pick<KinesisClient, 'send'>): ListShardsApi {
  return {
    listShards: (input, abortSignal) =>
      client.send(new ListShardsCommand(input), abortSignal === undefined ? {} : { abortSignal }),
  };
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
  logger?: Logger;
  /** @internal For tests: the wait between retries and the jitter source. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

export const SHARD_DISCOVERY_DEFAULTS = Object.freeze({
  pageSize: 1_000,
  retry: Object.freeze({ retries: 8, backoffMs: Object.freeze({ initial: 100, max: 5_000 }) }),
  /** Listings restarted after an expired NextToken (valid 300 s) before giving up. */
  maxRestarts: 3,
  /** A bound against a server that keeps answering with new tokens. */
  maxPages: 10_000,
});

/** Errors retried while listing: ResourceInUse is a stream still being created. */
function shouldRetry(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'ResourceInUseException') return true;
  return isRetriable(error);
}

function isExpiredToken(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'ExpiredNextTokenException';
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
  readonly #first: ListShardsCommandInput;
  readonly #pageSize: number;
  readonly #retry: { retries: number; backoffMs: BackoffMs };
  readonly #logger: Logger;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #random: () => number;
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
    this.#api = options.api;
    this.#first = {};
    if (streamName !== undefined) this.#first.StreamName = streamName;
    if (streamArn !== undefined) this.#first.StreamARN = streamArn;
    this.stream = named;
    this.#pageSize = pageSize;
    this.#retry = retryOptions;
    this.#logger = options.logger ?? silentLogger;
    this.#sleep = options.sleep ?? sleep;
    this.#random = options.random ?? Math.random;
  }

  /**
   * Every shard of the stream, open and closed (shards aged out of retention are not listed), each
   * once, in the order ListShards gave them.
   *
   * @throws KinesisError: `ERR_NOT_FOUND` when the stream does not exist, `ERR_ACCESS_DENIED`, or the
   * last error once retries are exhausted; `ERR_ABORTED` when `signal` aborts.
   */
  async list(signal?: AbortSignal): Promise<ShardInfo[]> {
    for (let restart = 0; ; restart++) {
      try {
        return await this.#listOnce(signal);
      } catch (error) {
        // A NextToken lives 300 s; a listing slowed down by long retries starts over.
        if (!isExpiredToken(error) || restart >= SHARD_DISCOVERY_DEFAULTS.maxRestarts) {
          throw classifyAwsError(error, 'ListShards');
        }
        this.#logger.debug(
          { stream: this.stream, restart: restart + 1 },
          'ListShards NextToken expired: listing again',
        );
      }
    }
  }

  async #listOnce(signal: AbortSignal | undefined): Promise<ShardInfo[]> {
    const byId = new Map<string, ShardInfo>();
    const seenTokens = new Set<string>();
    let nextToken: string | undefined;
    for (let page = 0; ; page++) {
      if (page >= SHARD_DISCOVERY_DEFAULTS.maxPages) {
        throw malformed(`more than ${SHARD_DISCOVERY_DEFAULTS.maxPages} pages`, { stream: this.stream });
      }
      // With a NextToken the request must name neither the stream nor its ARN: the token says which.
      const input: ListShardsCommandInput =
        nextToken === undefined
          ? { ...this.#first, MaxResults: this.#pageSize }
          : { NextToken: nextToken, MaxResults: this.#pageSize };
      const output = await retry(() => this.#api.listShards(input, signal), {
        retries: this.#retry.retries,
        backoffMs: this.#retry.backoffMs,
        shouldRetry,
        sleep: this.#sleep,
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
      for (const shard of output?.Shards ?? []) {
        const info = toShardInfo(shard);
        if (!byId.has(info.shardId)) byId.set(info.shardId, info);
      }
      const token = output?.NextToken;
      if (typeof token !== 'string' || token.length === 0) break;
      if (seenTokens.has(token)) {
        throw malformed('the same NextToken came back twice', { stream: this.stream });
      }
      seenTokens.add(token);
      nextToken = token;
    }
    return [...byId.values()];
  }
}

function errorName(error: unknown): string {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : 'Error';
}
