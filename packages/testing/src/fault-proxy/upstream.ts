/**
 * The FaultProxy's side towards the upstream: forwarding calls (with rewritten bodies where rules failed
 * entries), relaying or merging the answers, learning iterators from them, and the proxy's own ListShards.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { ListShardsCommandInput, Shard } from '@aws-sdk/client-kinesis';
import {
  type ListShardsPageOutput,
  type Logger,
  listAllShards,
  type ShardHashRange,
} from '@shardline/common';
import type { ShardLimiter } from './limits.js';
import type { EntryFailure, RequestContext } from './matching.js';
import type { JsonBody, TransformAction } from './rules.js';
import { type IteratorShards, openShardRanges, type StreamRef, streamKey } from './shards.js';
import {
  AMZ_JSON_1_1,
  base64ByteLength,
  HOP_BY_HOP_HEADERS,
  jsonResponse,
  type WireResponse,
} from './wire.js';

// Operations after which a stream's shards change: the cached shard map is dropped when they succeed.
const RESHARDING_OPERATIONS = new Set([
  'SplitShard',
  'MergeShards',
  'UpdateShardCount',
  'CreateStream',
  'DeleteStream',
]);

/** The whole body of a stream. */
export function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Raw response headers without the hop-by-hop ones (and `drop`), to relay. */
export function filterHeaders(raw: string[], drop: readonly string[] = []): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (HOP_BY_HOP_HEADERS.has(name) || drop.includes(name)) continue;
    out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

/** The body as a JSON object, or undefined. */
export function parseJsonObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a whole answer, unless the response is already under way or gone. */
export function sendResponse(res: http.ServerResponse, response: WireResponse): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(response.status, response.headers);
  res.end(response.body);
}

/** The body a transform rule sends upstream instead of the client's, or undefined without one. */
function transformRequest(
  json: JsonBody | undefined,
  transform: TransformAction | undefined,
): { json: JsonBody; body: Buffer } | undefined {
  if (json === undefined || transform?.request === undefined) return undefined;
  const out = transform.request(structuredClone(json));
  return { json: out, body: Buffer.from(JSON.stringify(out), 'utf8') };
}

/** The answer a transform rule gives instead of a successful upstream answer, or undefined. */
function transformResponse(
  parsed: JsonBody | undefined,
  request: JsonBody | undefined,
  transform: TransformAction | undefined,
): Buffer | undefined {
  if (parsed === undefined || transform?.response === undefined) return undefined;
  const out = transform.response(structuredClone(parsed), structuredClone(request ?? {}));
  return Buffer.from(JSON.stringify(out), 'utf8');
}

/** Relays the upstream's status and headers with `body` (its Content-Length set again when rewritten). */
function sendRelayed(
  res: http.ServerResponse,
  upstream: http.IncomingMessage,
  body: Buffer,
  rewritten: boolean,
): void {
  const headers = filterHeaders(upstream.rawHeaders, rewritten ? ['content-length'] : []);
  if (rewritten) headers.push('Content-Length', String(body.length));
  res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, headers);
  res.end(body);
}

/** What the {@link Upstream} reads from and reports to its proxy. */
export interface UpstreamSources {
  readonly target: URL;
  readonly accountId: string;
  readonly logger: Logger;
  readonly iterators: IteratorShards;
  /** The last client credentials per stream, reused for the proxy's own ListShards. */
  readonly authByStream: Map<string, { authorization: string; date: string }>;
  /** Responses still streaming to their client (event streams), with their operation. */
  readonly openStreams: Map<http.ServerResponse, string | undefined>;
  /** The limiter in force (limits mode can be switched at any time). */
  limiter(): ShardLimiter | undefined;
  /** A client request was sent upstream. */
  countForwarded(): void;
  /** A resharding call succeeded: the stream's shard map is stale. */
  resharded(stream: StreamRef): void;
}

/** The connection pool to the upstream and every way a call goes through it. */
export class Upstream {
  readonly #sources: UpstreamSources;
  readonly #agent: http.Agent;
  readonly #transport: typeof http | typeof https;

  constructor(sources: UpstreamSources) {
    this.#sources = sources;
    const secure = sources.target.protocol === 'https:';
    this.#transport = secure ? https : http;
    this.#agent = secure
      ? new https.Agent({ keepAlive: true, maxSockets: 256 })
      : new http.Agent({ keepAlive: true, maxSockets: 256 });
  }

  /** Closes the pooled upstream sockets. */
  destroy(): void {
    this.#agent.destroy();
  }

  #forward(req: http.IncomingMessage, body: Buffer, rewritten: boolean): Promise<http.IncomingMessage> {
    const target = this.#sources.target;
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
    this.#sources.countForwarded();
    return this.#sendUpstream(req.method ?? 'POST', req.url ?? '/', headers, body);
  }

  #sendUpstream(
    method: string,
    path: string,
    headers: http.OutgoingHttpHeaders,
    body: Buffer,
  ): Promise<http.IncomingMessage> {
    const target = this.#sources.target;
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
  async forwardPiped(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    rewritten: boolean,
    ctx?: RequestContext,
  ): Promise<void> {
    const upstream = await this.#forward(req, body, rewritten);
    if (ctx !== undefined && ctx.stream !== undefined && RESHARDING_OPERATIONS.has(ctx.operation)) {
      if ((upstream.statusCode ?? 500) < 300) this.#sources.resharded(ctx.stream);
    }
    res.writeHead(upstream.statusCode ?? 502, upstream.statusMessage, filterHeaders(upstream.rawHeaders));
    res.flushHeaders();
    this.#sources.openStreams.set(res, ctx?.operation);
    res.on('close', () => this.#sources.openStreams.delete(res));
    upstream.on('error', () => res.destroy());
    upstream.on('close', () => {
      if (!upstream.complete) res.destroy();
    });
    res.on('close', () => {
      if (!upstream.complete) upstream.destroy();
    });
    upstream.pipe(res);
  }

  /**
   * A call whose answer the proxy reads whole: GetShardIterator / GetRecords (it learns iterator -> shard
   * from the answer and charges read bytes) and calls a transform rule rewrites.
   */
  async forwardLearning(
    res: http.ServerResponse,
    ctx: RequestContext,
    transform?: TransformAction,
  ): Promise<void> {
    const sent = transformRequest(ctx.json, transform);
    const upstream = await this.#forward(ctx.req, sent?.body ?? ctx.body, sent !== undefined);
    const answer = await readAll(upstream);
    const status = upstream.statusCode ?? 502;
    const json = ctx.json;
    const parsed = status === 200 && json !== undefined ? parseJsonObject(answer) : undefined;
    if (parsed !== undefined && json !== undefined) {
      if (
        ctx.operation === 'GetShardIterator' &&
        ctx.stream !== undefined &&
        typeof json.ShardId === 'string'
      ) {
        this.#sources.iterators.remember(parsed.ShardIterator, {
          stream: ctx.stream,
          shardId: json.ShardId,
        });
      } else if (ctx.operation === 'GetRecords' && ctx.iterator !== undefined) {
        this.#sources.iterators.remember(parsed.NextShardIterator, ctx.iterator);
        const limiter = this.#sources.limiter();
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
    const rewritten = transformResponse(parsed, sent?.json ?? ctx.json, transform);
    sendRelayed(res, upstream, rewritten ?? answer, rewritten !== undefined);
  }

  /**
   * PutRecords with failed entries: forwards the others (if any) and answers the merged result, entries in
   * the caller's order, FailedRecordCount counting both.
   */
  async forwardPutRecords(
    res: http.ServerResponse,
    ctx: RequestContext,
    failures: Map<number, EntryFailure>,
    transform?: TransformAction,
  ): Promise<void> {
    const json = ctx.json!;
    const records = json.Records as unknown[];
    const failed = (i: number) => {
      const f = failures.get(i)!;
      return { ErrorCode: f.code, ErrorMessage: f.message };
    };
    if (ctx.operation === 'PutRecord') {
      // Only limits fail a PutRecord, and they answer a whole-call error before getting here.
      await this.forwardPiped(ctx.req, res, ctx.body, false, ctx);
      return;
    }
    const kept = records.filter((_, i) => !failures.has(i));
    if (kept.length === 0) {
      const answer = { FailedRecordCount: records.length, Records: records.map((_, i) => failed(i)) };
      sendResponse(res, jsonResponse(transform?.response?.(answer, json) ?? answer));
      return;
    }
    const sentJson = transformRequest({ ...json, Records: kept }, transform)?.json ?? {
      ...json,
      Records: kept,
    };
    const body = Buffer.from(JSON.stringify(sentJson), 'utf8');
    const upstream = await this.#forward(ctx.req, body, true);
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
    const result = { ...parsed, FailedRecordCount: upstreamFailed + failures.size, Records: merged };
    const out = Buffer.from(JSON.stringify(transform?.response?.(result, sentJson) ?? result), 'utf8');
    sendRelayed(res, upstream, out, true);
  }

  /** Forwards a request whose answer the client will not see (`forward: true` faults). */
  async forwardAndDiscard(ctx: RequestContext): Promise<void> {
    try {
      const upstream = await this.#forward(ctx.req, ctx.body, false);
      await readAll(upstream);
    } catch (error) {
      this.#sources.logger.warn({ err: error }, 'fault proxy: forwarding before a fault failed');
    }
  }

  /**
   * ListShards on the upstream, all pages (kinesis-mock pages, kinesalite does not), by stream name
   * (kinesalite does not take StreamARN), with the credentials of the client that last named the
   * stream. The signature does not match the body: emulators only check that one is present.
   */
  async fetchShardRanges(ref: StreamRef): Promise<ShardHashRange[]> {
    const shards = await listAllShards((input) => this.#listShardsPage(ref, input), {
      streamName: ref.streamName,
    });
    return openShardRanges(shards);
  }

  /** One ListShards call on the upstream; an error answer is thrown with its `__type` as `name`. */
  async #listShardsPage(ref: StreamRef, input: ListShardsCommandInput): Promise<ListShardsPageOutput> {
    const body = Buffer.from(JSON.stringify(input));
    const region = ref.scope === '' ? 'us-east-1' : ref.scope;
    const date = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
    const auth = this.#sources.authByStream.get(streamKey(ref)) ?? {
      date,
      authorization:
        `AWS4-HMAC-SHA256 Credential=${this.#sources.accountId}/${date.slice(0, 8)}/${region}/kinesis/aws4_request, ` +
        'SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=0',
    };
    const headers: http.OutgoingHttpHeaders = {
      'content-type': AMZ_JSON_1_1,
      'x-amz-target': 'Kinesis_20131202.ListShards',
      'x-amz-date': auth.date,
      authorization: auth.authorization,
      host: this.#sources.target.host,
      'content-length': body.length,
    };
    const upstream = await this.#sendUpstream('POST', '/', headers, body);
    const answer = await readAll(upstream);
    const parsed = parseJsonObject(answer);
    if (upstream.statusCode !== 200 || parsed === undefined) {
      const error = new Error(
        `ListShards ${ref.streamName}: HTTP ${upstream.statusCode} ${answer.toString('utf8', 0, 200)}`,
      );
      // awsJson names the error in __type, possibly behind a namespace: `...#ExpiredNextTokenException`.
      const type = parsed?.__type;
      if (typeof type === 'string' && type.length > 0) error.name = type.slice(type.lastIndexOf('#') + 1);
      throw error;
    }
    const token = parsed.NextToken;
    return {
      Shards: Array.isArray(parsed.Shards) ? (parsed.Shards as Shard[]) : [],
      NextToken: typeof token === 'string' && token.length > 0 ? token : undefined,
    };
  }
}
