/**
 * Every shard of a stream by paginated ListShards: the one pager the coordinator, the producer, the
 * readers, the CLI and the testing kit share, so each follows the same pagination rules.
 *
 * The rules: the first page names the stream (name, ARN or both) and carries the filter; later pages
 * name only the NextToken (with it, the API refuses StreamName, and the token already says which
 * stream and filter). A NextToken lives 300 s: an ExpiredNextTokenException (a listing slowed by long
 * retries) starts the listing over. Servers that ignore pagination (kinesalite) answer everything on
 * the first page; a shard listed twice is kept once.
 */
import {
  type KinesisClient,
  ListShardsCommand,
  type ListShardsCommandInput,
  type Shard,
  type ShardFilter,
} from '@aws-sdk/client-kinesis';
import { ErrorCodes, KinesisError, ShardlineOptionError } from './errors.js';
import { abortError } from './retry.js';

/** What the pager reads from one ListShards answer. */
export interface ListShardsPageOutput {
  Shards?: Shard[] | undefined;
  NextToken?: string | undefined;
}

/**
 * One ListShards call: the SDK's, or any other (a raw HTTP request). Errors are thrown as the SDK
 * throws them, with the AWS error `name` (ExpiredNextTokenException restarts the listing).
 */
export type ListShardsPage = (
  input: ListShardsCommandInput,
  signal?: AbortSignal,
) => Promise<ListShardsPageOutput>;

/** Where a page call stands, for a {@link ListAllShardsOptions.pageRetry} policy. */
export interface ListShardsPageContext {
  /** The request of this page. */
  readonly input: ListShardsCommandInput;
  /** 0 for the first page of a listing. */
  readonly page: number;
  /** 0 for the first listing, 1 after the first restart (an expired NextToken), ... */
  readonly restart: number;
}

export interface ListAllShardsOptions {
  /** The stream by name, ARN or both (AWS takes both; kinesalite reads only the name). */
  streamName?: string | undefined;
  streamArn?: string | undefined;
  /** ShardFilter of the first page (kinesalite ignores it: filter the result again where it matters). */
  shardFilter?: ShardFilter | undefined;
  /**
   * MaxResults of every page, 1 to 10,000.
   * @defaultValue the service's own (1,000 on AWS)
   */
  maxResults?: number | undefined;
  /** Aborts the listing: passed to every call; checked before each page. */
  signal?: AbortSignal | undefined;
  /**
   * Runs one page: `call()` makes the request (with `options.signal`, or the signal given to it). A
   * retry or deadline policy wraps it here, per page, so a failure retries that page and not the
   * whole listing.
   * @defaultValue one call, no retry
   */
  pageRetry?:
    | ((
        call: (signal?: AbortSignal) => Promise<ListShardsPageOutput>,
        context: ListShardsPageContext,
      ) => Promise<ListShardsPageOutput>)
    | undefined;
  /**
   * Listings started over after an expired NextToken before the error is thrown.
   * @defaultValue 3
   */
  maxRestarts?: number | undefined;
  /**
   * Pages of one listing before it fails (a bound against a server that keeps answering with new tokens).
   * @defaultValue 10_000
   */
  maxPages?: number | undefined;
  /** Called when an expired NextToken starts the listing over (`restart` is 1 for the first). */
  onRestart?: ((restart: number, error: unknown) => void) | undefined;
}

export const LIST_SHARDS_DEFAULTS = Object.freeze({
  maxRestarts: 3,
  maxPages: 10_000,
});

/** Whether the call failed because its NextToken expired (valid 300 s). */
export function isExpiredNextToken(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === 'ExpiredNextTokenException';
}

function isSender(value: unknown): value is Pick<KinesisClient, 'send'> {
  return typeof (value as { send?: unknown } | null)?.send === 'function';
}

function malformed(message: string, stream: string): KinesisError {
  return new KinesisError(ErrorCodes.KINESIS, `ListShards: ${message}`, {
    retriable: false,
    details: { stream },
  });
}

function checkCount(value: unknown, option: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ShardlineOptionError(option, `must be an integer from ${min} to ${max} (got ${String(value)})`);
  }
  return value;
}

/**
 * Every shard of the stream (open and closed; shards aged out of retention are not listed), each once
 * (the first time it was listed), in the order ListShards gave them.
 *
 * @param source - a KinesisClient (anything with `send`), or one {@link ListShardsPage} call.
 * @throws ShardlineOptionError for bad options, naming the option; the call's own error as it was
 * thrown (an ExpiredNextTokenException only after `maxRestarts` restarts); `ERR_ABORTED` when `signal`
 * aborted between pages; `ERR_KINESIS` when the server repeats a NextToken or exceeds `maxPages`.
 */
export async function listAllShards(
  source: Pick<KinesisClient, 'send'> | ListShardsPage,
  options: ListAllShardsOptions,
): Promise<Shard[]> {
  let page: ListShardsPage;
  if (typeof source === 'function') {
    page = source;
  } else if (isSender(source)) {
    page = (input, signal) =>
      source.send(new ListShardsCommand(input), signal === undefined ? {} : { abortSignal: signal });
  } else {
    throw new ShardlineOptionError('client', 'must be a KinesisClient or a ListShards function');
  }
  if (typeof options !== 'object' || options === null) {
    throw new ShardlineOptionError('options', 'must be an object like { streamName }');
  }
  const { streamName, streamArn, shardFilter, maxResults, signal, pageRetry, onRestart } = options;
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
  if (shardFilter !== undefined && typeof shardFilter?.Type !== 'string') {
    throw new ShardlineOptionError('shardFilter', "must be an object like { Type: 'AT_LATEST' }");
  }
  if (maxResults !== undefined) checkCount(maxResults, 'maxResults', 1, 10_000);
  const maxRestarts = checkCount(
    options.maxRestarts ?? LIST_SHARDS_DEFAULTS.maxRestarts,
    'maxRestarts',
    0,
    Number.MAX_SAFE_INTEGER,
  );
  const maxPages = checkCount(
    options.maxPages ?? LIST_SHARDS_DEFAULTS.maxPages,
    'maxPages',
    1,
    Number.MAX_SAFE_INTEGER,
  );
  for (const [option, value] of [
    ['pageRetry', pageRetry],
    ['onRestart', onRestart],
  ] as const) {
    if (value !== undefined && typeof value !== 'function') {
      throw new ShardlineOptionError(option, `must be a function (got ${typeof value})`);
    }
  }

  const first: ListShardsCommandInput = {};
  if (streamName !== undefined) first.StreamName = streamName;
  if (streamArn !== undefined) first.StreamARN = streamArn;
  if (shardFilter !== undefined) first.ShardFilter = shardFilter;
  if (maxResults !== undefined) first.MaxResults = maxResults;
  const stream = (streamArn ?? streamName) as string;

  const listOnce = async (restart: number): Promise<Shard[]> => {
    const byId = new Map<string, Shard>();
    const shards: Shard[] = [];
    const seenTokens = new Set<string>();
    let nextToken: string | undefined;
    for (let index = 0; ; index++) {
      if (index >= maxPages) throw malformed(`more than ${maxPages} pages`, stream);
      if (signal?.aborted) throw abortError(signal);
      const input: ListShardsCommandInput =
        nextToken === undefined
          ? { ...first }
          : maxResults === undefined
            ? { NextToken: nextToken }
            : { NextToken: nextToken, MaxResults: maxResults };
      const call = (callSignal?: AbortSignal) => page(input, callSignal ?? signal);
      const output =
        pageRetry === undefined ? await call() : await pageRetry(call, { input, page: index, restart });
      for (const shard of output?.Shards ?? []) {
        const id = shard?.ShardId;
        // A shard without an id is passed on: what it means is the caller's to judge.
        if (typeof id === 'string') {
          if (byId.has(id)) continue;
          byId.set(id, shard);
        }
        shards.push(shard);
      }
      const token = output?.NextToken;
      if (typeof token !== 'string' || token.length === 0) return shards;
      if (seenTokens.has(token)) throw malformed('the same NextToken came back twice', stream);
      seenTokens.add(token);
      nextToken = token;
    }
  };

  for (let restart = 0; ; restart++) {
    try {
      return await listOnce(restart);
    } catch (error) {
      if (!isExpiredNextToken(error) || restart >= maxRestarts) throw error;
      onRestart?.(restart + 1, error);
    }
  }
}
