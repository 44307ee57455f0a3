/**
 * Building PutRecords calls from the shard queues: up to the stream's request limits (500 entries; 10 MiB,
 * or 5 MiB on a stream that reports no MaxRecordSizeInKiB) per call, taken from the shards in turn as far
 * as each one's pacing allows, as plain entries, KPL aggregates per destination shard, or framed packs
 * (both at most 1 MiB; a larger record goes alone); and when a call is due (lingering, a full call's
 * worth, a full buffer, a flush).
 */
import { Aggregator, CLASSIC_STREAM_LIMITS, type StreamLimits } from '@shardline/common';
import type { RecordBuffer } from './buffer.js';
import type { ResolvedProducerOptions } from './options.js';
import { type Budget, budgetOf, type Packing, paceReady } from './pacing.js';
import {
  AGGREGATE_MAX_BYTES,
  aggregatedSize,
  type Framing,
  framingOf,
  type PendingRecord,
  type PutRequest,
  type ShardState,
  wireKey,
} from './records.js';

/** What the builder reads from the shard map as it builds: the stream's limits and distribution. */
export interface StreamView {
  readonly limits: StreamLimits | undefined;
  readonly auto: boolean;
}

export class RequestBuilder {
  readonly #options: ResolvedProducerOptions<unknown>;
  readonly #buffer: RecordBuffer;
  readonly #framing: Framing;
  /** Ordered mode asked for (`maxInFlightPerShard: 1`); not kept on an `AUTO` stream. */
  readonly #orderedOption: boolean;
  readonly #stream: StreamView;
  readonly packing: Packing;
  /** The shard list the rotation is over; a new map starts the rotation again. */
  #list: readonly ShardState[] | undefined;
  /** Which shard goes first in the next call, so no shard always gets the leftovers of a full call. */
  #rr = 0;

  constructor(options: ResolvedProducerOptions<unknown>, buffer: RecordBuffer, stream: StreamView) {
    this.#options = options;
    this.#buffer = buffer;
    this.#stream = stream;
    this.#framing = options.aggregate ? undefined : framingOf(options.codec);
    this.#orderedOption = options.maxInFlightPerShard === 1;
    this.packing = { aggregate: options.aggregate, packs: options.aggregate || this.#framing !== undefined };
  }

  /**
   * Reasons not to linger: a flush, a full buffer (no more records can join the batch, so waiting only
   * delays them), or enough queued for a full request.
   */
  forced(): boolean {
    const buffer = this.#buffer;
    if (buffer.flushPending || buffer.full) return true;
    const limits = this.#limits;
    if (buffer.queuedBytes >= limits.maxRequestBytes) return true;
    return (
      !this.#options.aggregate && this.#framing === undefined && buffer.queued >= limits.maxRequestEntries
    );
  }

  /** Nothing is built before the shard map (and so the limits) is loaded; the classic ones are a floor. */
  get #limits(): StreamLimits {
    return this.#stream.limits ?? CLASSIC_STREAM_LIMITS;
  }

  get #ordered(): boolean {
    return this.#orderedOption && !this.#stream.auto;
  }

  /** Whether some shard's oldest record has lingered long enough, or a shard has a full aggregate's worth. */
  anyDue(now: number, list: readonly ShardState[]): boolean {
    const deadline = now - this.#options.lingerMs;
    for (const shard of list) {
      const head = shard.queue.peek();
      if (head !== undefined && head.enqueuedAt <= deadline) return true;
      // A shard with a full aggregate's worth waiting need not linger either.
      if (shard.queuedBytes >= AGGREGATE_MAX_BYTES) return true;
    }
    return false;
  }

  /** The next call's entries from the shards that may send now, or undefined when none may. */
  build(now: number, list: readonly ShardState[]): PutRequest | undefined {
    if (list !== this.#list) {
      this.#list = list;
      this.#rr = 0;
    }
    const request: PutRequest = {
      wire: [],
      groups: [],
      entryShards: [],
      shards: [],
      bytes: 0,
      records: 0,
      startedAt: now,
    };
    const n = list.length;
    const maxPerShard = this.#options.maxInFlightPerShard;
    const limits = this.#limits;
    for (let k = 0; k < n; k++) {
      if (request.wire.length >= limits.maxRequestEntries || request.bytes >= limits.maxRequestBytes) break;
      const shard = list[(this.#rr + k) % n]!;
      if (shard.queue.length === 0 || shard.inFlight >= maxPerShard || shard.notBefore > now) continue;
      if (shard.held) continue;
      const budget = budgetOf(shard);
      if (!paceReady(shard, budget, this.packing)) continue;
      const took = this.#options.aggregate
        ? this.#takeAggregates(shard, request, budget)
        : this.#framing !== undefined
          ? this.#takePacks(shard, request, budget)
          : this.#takePlain(shard, request, budget);
      if (took > 0) {
        shard.inFlight++;
        request.shards.push(shard);
      }
    }
    this.#rr = n === 0 ? 0 : (this.#rr + 1) % n;
    return request.wire.length === 0 ? undefined : request;
  }

  #dequeue(shard: ShardState): PendingRecord {
    const record = shard.queue.shift()!;
    shard.queuedBytes -= record.bytes;
    this.#buffer.unqueue(record);
    return record;
  }

  #takePlain(shard: ShardState, request: PutRequest, budget: Budget): number {
    let recordTokens = budget.records;
    let byteTokens = budget.bytes;
    // One request must not carry two entries of one key in ordered mode: entry i can fail while a later
    // entry of the same key succeeds, and nothing can restore the order after that.
    const keys = this.#ordered ? new Set<string>() : undefined;
    const { maxRequestEntries, maxRequestBytes } = this.#limits;
    const auto = this.#stream.auto;
    let took = 0;
    let tookBytes = 0;
    while (request.wire.length < maxRequestEntries) {
      const record = shard.queue.peek();
      if (record === undefined) break;
      if (request.bytes + record.bytes > maxRequestBytes) break;
      if (keys?.has(record.partitionKey)) break;
      if (recordTokens < 1) break;
      // A record larger than the whole byte bucket goes alone once the bucket is full (then leaves debt).
      if (record.bytes > byteTokens && !(took === 0 && budget.bytesFull)) break;
      this.#dequeue(shard);
      keys?.add(record.partitionKey);
      recordTokens--;
      byteTokens -= record.bytes;
      this.#pushPlain(request, shard, record, auto);
      took++;
      tookBytes += record.bytes;
    }
    if (took > 0) shard.limiter?.consume(took, tookBytes);
    return took;
  }

  #pushPlain(request: PutRequest, shard: ShardState, record: PendingRecord, auto: boolean): void {
    request.wire.push({
      Data: record.data,
      PartitionKey: wireKey(record, auto),
      // Kinesis ignores it on AUTO streams (kept: it costs nothing and says what the caller asked).
      ExplicitHashKey: record.explicitHashKey,
    });
    request.groups.push(record);
    request.entryShards.push(shard);
    request.bytes += record.bytes;
    request.records++;
  }

  /**
   * Largest next entry for this shard given the request's room, the shard's byte tokens and `cap` (an
   * aggregate's or pack's limit, or the record limit for a record that goes alone).
   */
  #entryRoom(request: PutRequest, byteTokens: number, bytesFull: boolean, cap: number): number {
    const room = Math.min(cap, this.#limits.maxRequestBytes - request.bytes);
    // With a full bucket, allow a full-size entry even if the bucket is smaller (it leaves a debt).
    return Math.floor(Math.min(room, bytesFull ? room : byteTokens));
  }

  /** An aggregate's or pack's limit: 1 MiB, or less where the stream's records are smaller. */
  get #packCap(): number {
    return Math.min(AGGREGATE_MAX_BYTES, this.#limits.maxRecordBytes);
  }

  #takeAggregates(shard: ShardState, request: PutRequest, budget: Budget): number {
    let recordTokens = budget.records;
    let byteTokens = budget.bytes;
    let entries = 0;
    let sent = 0;
    const { maxRequestEntries, maxRecordBytes } = this.#limits;
    const cap = this.#packCap;
    while (request.wire.length < maxRequestEntries && shard.queue.length > 0 && recordTokens >= 1) {
      // Ordered mode: one aggregate per shard per request (two could share keys; see #takePlain).
      if (this.#ordered && entries >= 1) break;
      const head = shard.queue.peek()!;
      const full = budget.bytesFull && entries === 0;
      if (aggregatedSize(head) > cap) {
        // Too large for any aggregate: it goes as a plain record, as the KPL sends such records.
        if (head.bytes > this.#entryRoom(request, byteTokens, full, maxRecordBytes)) break;
        this.#dequeue(shard);
        this.#pushPlain(request, shard, head, false);
        recordTokens--;
        byteTokens -= head.bytes;
        entries++;
        sent += head.bytes;
        continue;
      }
      const maxBytes = this.#entryRoom(request, byteTokens, full, cap);
      if (aggregatedSize(head) > maxBytes) break;
      const aggregator = new Aggregator({ maxBytes });
      const members: PendingRecord[] = [];
      let finished: ReturnType<Aggregator['add']>;
      while (shard.queue.length > 0) {
        const record = shard.queue.peek()!;
        try {
          finished = aggregator.add(record);
        } catch {
          // Too large for what is left of this entry's room: it starts the next entry.
          break;
        }
        if (finished !== undefined) break;
        this.#dequeue(shard);
        members.push(record);
      }
      const aggregate = finished ?? aggregator.flush();
      if (aggregate === undefined || members.length === 0) break;
      const bytes = aggregate.data.length + members[0]!.keyBytes;
      request.wire.push({
        Data: aggregate.data,
        PartitionKey: aggregate.partitionKey,
        ExplicitHashKey: aggregate.explicitHashKey,
      });
      request.groups.push(members);
      request.entryShards.push(shard);
      request.bytes += bytes;
      request.records += members.length;
      recordTokens--;
      byteTokens -= bytes;
      entries++;
      sent += bytes;
    }
    if (entries > 0) shard.limiter?.consume(entries, sent);
    return entries;
  }

  /**
   * Framed codecs without aggregation: consecutive records of a shard share one Kinesis record, the
   * codec's own framing (jsonl lines, concatenated MessagePack values, one JSON array). The record's
   * partition key (and explicit hash key) is its first item's; consumers see one record and decode several
   * items, whose own keys are not carried (use `aggregate: true` when consumers need them).
   */
  #takePacks(shard: ShardState, request: PutRequest, budget: Budget): number {
    let recordTokens = budget.records;
    let byteTokens = budget.bytes;
    const array = this.#framing === 'json-array';
    let entries = 0;
    let sent = 0;
    const { maxRequestEntries, maxRecordBytes } = this.#limits;
    const auto = this.#stream.auto;
    while (request.wire.length < maxRequestEntries && shard.queue.length > 0 && recordTokens >= 1) {
      if (this.#ordered && entries >= 1) break;
      const first = shard.queue.peek()!;
      // A pack stays within 1 MiB; a larger item goes alone, as a pack of one, up to the record limit.
      const alone = first.bytes > this.#packCap;
      const cap = alone ? maxRecordBytes : this.#packCap;
      const maxBytes = this.#entryRoom(request, byteTokens, budget.bytesFull && entries === 0, cap);
      if (first.bytes > maxBytes) break;
      // json-array: each item's payload is "[item]"; a pack is "[" + items joined by "," + "]".
      let size = array ? 2 : 0;
      let count = 0;
      while (count < shard.queue.length) {
        const record = shard.queue.at(count)!;
        const added = array ? record.data.length - 2 + (count > 0 ? 1 : 0) : record.data.length;
        if (count > 0 && (alone || size + added + first.keyBytes > maxBytes)) break;
        size += added;
        count++;
      }
      const members = new Array<PendingRecord>(count);
      const data = new Uint8Array(size);
      let pos = 0;
      if (array) data[pos++] = 0x5b;
      for (let i = 0; i < count; i++) {
        const record = this.#dequeue(shard);
        members[i] = record;
        if (array) {
          if (i > 0) data[pos++] = 0x2c;
          data.set(record.data.subarray(1, record.data.length - 1), pos);
          pos += record.data.length - 2;
        } else {
          data.set(record.data, pos);
          pos += record.data.length;
        }
      }
      if (array) data[pos] = 0x5d;
      const bytes = size + first.keyBytes;
      request.wire.push({
        Data: data,
        PartitionKey: wireKey(first, auto),
        ExplicitHashKey: first.explicitHashKey,
      });
      request.groups.push(members);
      request.entryShards.push(shard);
      request.bytes += bytes;
      request.records += count;
      recordTokens--;
      byteTokens -= bytes;
      entries++;
      sent += bytes;
    }
    if (entries > 0) shard.limiter?.consume(entries, sent);
    return entries;
  }
}
