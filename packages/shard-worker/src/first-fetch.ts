/**
 * The first GetRecords of a reader, fetched by the coordinator's thread while the worker threads start.
 *
 * A worker thread takes a few hundred milliseconds to start (the thread, then loading the SDK and this
 * package); a reader started on a thread that is not up yet would wait that long before its first
 * call, while the coordinator's thread, whose client is warm, has nothing to do. So the coordinator
 * (once it holds the lease) gets the iterator and the first answer itself, keeps the answer's body as
 * it came (no parsing on its thread: the bytes are handed over, not cloned), and the reader takes it as
 * its first GetRecords call. A call that failed is handed over as what failed (the error's name,
 * message, code and status, which is all the reader classifies it by): the reader handles it as if it
 * had made the call itself (a throttle is counted and backed off, an expired iterator re-acquired, a
 * missing stream fails the reader). A body that is not a plain JSON answer is dropped, and the reader
 * starts as it always does.
 */
import type { GetShardIteratorCommandInput, KinesisClient } from '@aws-sdk/client-kinesis';
import { GetRecordsCommand, GetShardIteratorCommand } from '@aws-sdk/client-kinesis';
import type { PortableKinesisConfig } from '@shardline/common';
import { createKinesisClient, networkErrorCode, rootCause } from '@shardline/common';
import { readGetRecordsBody } from './get-records-body.js';
import type { IteratorStart, ResolvedShardReaderOptions, ShardReaderOptions } from './options.js';
import { resolveShardReaderOptions } from './options.js';

/** A first GetRecords answer, or what failed on the way, as the reader's `first` option carries it. */
export interface FirstAnswer {
  /** The answer's HTTP body (a JSON GetRecords answer), owning its ArrayBuffer (transfer it). */
  body?: Uint8Array;
  /** The call that failed instead (then there is no body). */
  failed?: FirstFailure;
  /** Epoch ms when its GetShardIterator was sent (a LATEST start resumes from there, as the reader's own). */
  requestedAtMs: number;
}

/** A failed first call, as plain data: what `classifyAwsError` reads of an SDK or network error. */
export interface FirstFailure {
  operation: 'GetShardIterator' | 'GetRecords';
  name: string;
  message: string;
  code?: string;
  httpStatusCode?: number;
  fault?: string;
}

/** The error a {@link FirstFailure} stands for, shaped as the SDK's (name, `$metadata`, `$fault`, `code`). */
export function firstFailureError(failure: FirstFailure): Error {
  const error = new Error(failure.message) as Error & Record<string, unknown>;
  error.name = failure.name;
  if (failure.code !== undefined) error.code = failure.code;
  if (failure.httpStatusCode !== undefined) error.$metadata = { httpStatusCode: failure.httpStatusCode };
  if (failure.fault !== undefined) error.$fault = failure.fault;
  return error;
}

function failureOf(operation: FirstFailure['operation'], error: unknown): FirstFailure {
  const root = rootCause(error) as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
    $metadata?: { httpStatusCode?: unknown };
    $fault?: unknown;
  } | null;
  const failure: FirstFailure = {
    operation,
    name: typeof root?.name === 'string' ? root.name : 'Error',
    message: typeof root?.message === 'string' ? root.message : String(root),
  };
  const code = networkErrorCode(error) ?? (typeof root?.code === 'string' ? root.code : undefined);
  if (code !== undefined) failure.code = code;
  const status = root?.$metadata?.httpStatusCode;
  if (typeof status === 'number') failure.httpStatusCode = status;
  if (typeof root?.$fault === 'string') failure.fault = root.$fault;
  return failure;
}

/** The GetShardIterator input of a reader's start. */
export function iteratorInput(
  options: Pick<ResolvedShardReaderOptions, 'shardId' | 'streamName' | 'streamArn'>,
  start: Readonly<IteratorStart>,
): GetShardIteratorCommandInput {
  const input: GetShardIteratorCommandInput = { ShardId: options.shardId, ShardIteratorType: start.type };
  if (options.streamArn !== undefined) input.StreamARN = options.streamArn;
  else input.StreamName = options.streamName;
  if (start.type === 'AT_TIMESTAMP') input.Timestamp = start.timestamp;
  if (start.type === 'AFTER_SEQUENCE_NUMBER' || start.type === 'AT_SEQUENCE_NUMBER') {
    input.StartingSequenceNumber = start.sequenceNumber;
  }
  return input;
}

/**
 * GetShardIterator then one GetRecords of at most `limit` records (and the reader's maxRecordsPerFetch)
 * for the reader `options` describe, over `client` (built with `maxAttempts: 1`, as the worker threads'
 * are: the reader's own backoff handles what goes wrong, and counts it). Resolves with the answer's body or the failure; undefined when aborted (the reader
 * is being stopped) or the options are not valid (the reader reports them); never rejects.
 */
export async function fetchFirstAnswer(
  client: KinesisClient,
  options: ShardReaderOptions,
  limit: number,
  signal: AbortSignal,
): Promise<FirstAnswer | undefined> {
  let resolved: ResolvedShardReaderOptions;
  try {
    resolved = resolveShardReaderOptions(options);
  } catch {
    return undefined;
  }
  const requestedAtMs = Date.now();
  let operation: FirstFailure['operation'] = 'GetShardIterator';
  try {
    const iterator = new GetShardIteratorCommand(iteratorInput(resolved, resolved.start));
    const { ShardIterator } = await client.send(iterator, { abortSignal: signal });
    // No iterator (a closed shard read to its end): the reader finds that out itself.
    if (typeof ShardIterator !== 'string' || ShardIterator.length === 0 || signal.aborted) return undefined;
    operation = 'GetRecords';
    const records = new GetRecordsCommand({
      ShardIterator,
      Limit: Math.max(1, Math.min(resolved.maxRecordsPerFetch, Math.floor(limit))),
    });
    const slot: { bodyOnly: boolean; body?: Buffer } = { bodyOnly: true };
    readGetRecordsBody(records, slot);
    await client.send(records, { abortSignal: signal });
    const body = slot.body;
    if (body === undefined || signal.aborted) return undefined;
    const owned =
      body.byteOffset === 0 && body.buffer.byteLength === body.byteLength ? body : new Uint8Array(body);
    return { body: owned, requestedAtMs };
  } catch (error) {
    if (signal.aborted) return undefined;
    return { failed: failureOf(operation, error), requestedAtMs };
  }
}

/** {@link fetchFirstAnswer} over a client of its own, built on first use like a worker thread's. */
export interface FirstFetcher {
  fetch(options: ShardReaderOptions, limit: number, signal: AbortSignal): Promise<FirstAnswer | undefined>;
  /** Destroys the client (if one was built); a later fetch builds another. */
  close(): void;
}

export function firstFetcher(config: PortableKinesisConfig): FirstFetcher {
  let client: KinesisClient | undefined;
  return {
    fetch(options, limit, signal) {
      client ??= createKinesisClient({ ...config, maxAttempts: 1 } as PortableKinesisConfig);
      return fetchFirstAnswer(client, options, limit, signal);
    },
    close() {
      client?.destroy();
      client = undefined;
    },
  };
}
