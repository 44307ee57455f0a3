/**
 * Writing KPL aggregates (the format is described in `kpl.ts`): {@link aggregate} for a whole list,
 * {@link Aggregator} for records as they come. Aggregate sizes are counted as records are added, with
 * protobuf varint arithmetic, so an aggregate never goes over `maxBytes` and is encoded only once.
 */
import { createHash } from 'node:crypto';
import { ErrorCodes, ShardlineError, ShardlineOptionError } from './errors.js';
import { FIXED_OVERHEAD, MAGIC_0, MAGIC_1, MAGIC_2, MAGIC_3, MAGIC_BYTES } from './kpl.js';
import { aggregatedRecordType } from './kpl-proto.js';
import { parseExplicitHashKey, validatePartitionKey } from './routing.js';

/** Largest Kinesis record: data plus partition key, as the PutRecords limit counts it. */
export const KPL_DEFAULT_MAX_BYTES = 1_048_576;

/** One record to aggregate. */
export interface UserRecord {
  partitionKey: string;
  /** Decimal 0..2^128-1; overrides the partition key's hash for routing. */
  explicitHashKey?: string;
  data: Uint8Array;
}

/** An aggregate, ready to be sent as one Kinesis record. */
export interface AggregatedRecord {
  /** The first user record's partition key (see {@link aggregate} for why). */
  partitionKey: string;
  /** The first user record's explicit hash key, when it has one. */
  explicitHashKey?: string;
  /** Magic + protobuf + MD5. */
  data: Uint8Array;
  /** How many user records it holds. */
  records: number;
}

export interface AggregateOptions {
  /**
   * Largest aggregate, counting its data and its (outer) partition key's UTF-8 bytes, as the PutRecords
   * limit does.
   * @defaultValue 1_048_576 (1 MiB)
   */
  maxBytes?: number;
}

function resolveMaxBytes(options: AggregateOptions | undefined): number {
  if (options === undefined || options === null) return KPL_DEFAULT_MAX_BYTES;
  if (typeof options !== 'object') {
    throw new ShardlineOptionError('options', `must be an object (got ${typeof options})`);
  }
  const maxBytes = options.maxBytes;
  if (maxBytes === undefined) return KPL_DEFAULT_MAX_BYTES;
  if (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new ShardlineOptionError('maxBytes', `must be a positive integer (got ${String(maxBytes)})`);
  }
  return maxBytes;
}

/** Bytes of a protobuf varint for a non-negative integer below 2^35 (anything that fits in memory here). */
function varintSize(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  return 5;
}

/** A length-delimited field (tag byte + length varint + bytes); every tag here is below 16, so one byte. */
function delimitedSize(length: number): number {
  return 1 + varintSize(length) + length;
}

/** Size of one `records` entry of the AggregatedRecord. */
function recordEntrySize(pkIndex: number, ehkIndex: number, dataLength: number): number {
  let inner = 1 + varintSize(pkIndex) + delimitedSize(dataLength);
  if (ehkIndex >= 0) inner += 1 + varintSize(ehkIndex);
  return delimitedSize(inner);
}

function invalidRecord(field: string, message: string, details?: Record<string, unknown>): ShardlineError {
  return new ShardlineError(ErrorCodes.INVALID_RECORD, `${field} ${message}`, {
    details: { field, ...details },
  });
}

function validateUserRecord(record: UserRecord, field: string): void {
  if (record === null || typeof record !== 'object') {
    throw invalidRecord(field, 'must be an object { partitionKey, data, explicitHashKey? }');
  }
  validatePartitionKey(record.partitionKey, `${field}.partitionKey`);
  if (record.explicitHashKey !== undefined && record.explicitHashKey !== null) {
    parseExplicitHashKey(record.explicitHashKey, `${field}.explicitHashKey`);
  }
  if (!(record.data instanceof Uint8Array)) {
    throw invalidRecord(`${field}.data`, 'must be a Uint8Array (encode items with a codec first)');
  }
}

interface PendingRecord {
  partition_key_index: number;
  explicit_hash_key_index?: number;
  data: Uint8Array;
}

/** The aggregation state shared by {@link aggregate} and {@link Aggregator}; takes the field name for errors. */
class AggregateBuilder {
  readonly maxBytes: number;
  #pkIndex = new Map<string, number>();
  #pkTable: string[] = [];
  #ehkIndex = new Map<string, number>();
  #ehkTable: string[] = [];
  #records: PendingRecord[] = [];
  /** Bytes of the protobuf message so far. */
  #protoBytes = 0;
  #outerPartitionKey = '';
  #outerExplicitHashKey: string | undefined;
  #outerKeyBytes = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  get count(): number {
    return this.#records.length;
  }

  /** Size of the aggregate that flush() would return now, counted as {@link AggregateOptions.maxBytes} is. */
  get sizeBytes(): number {
    return this.#records.length === 0 ? 0 : FIXED_OVERHEAD + this.#protoBytes + this.#outerKeyBytes;
  }

  add(record: UserRecord, field: string): AggregatedRecord | undefined {
    validateUserRecord(record, field);
    const pk = record.partitionKey;
    const ehk = record.explicitHashKey ?? undefined;
    const dataLength = record.data.length;

    // Checked before anything changes, so a record that can never fit leaves the pending aggregate intact.
    const pkBytes = Buffer.byteLength(pk, 'utf8');
    const aloneBytes =
      FIXED_OVERHEAD +
      pkBytes +
      delimitedSize(pkBytes) +
      (ehk === undefined ? 0 : delimitedSize(ehk.length)) +
      recordEntrySize(0, ehk === undefined ? -1 : 0, dataLength);
    if (aloneBytes > this.maxBytes) {
      throw invalidRecord(
        field,
        `is too large to aggregate: ${aloneBytes} bytes with its partition key and the aggregate's framing ` +
          `(${dataLength} bytes of data), over maxBytes ${this.maxBytes}`,
        { sizeBytes: aloneBytes, maxBytes: this.maxBytes },
      );
    }

    let finished: AggregatedRecord | undefined;
    if (
      this.#records.length > 0 &&
      this.sizeBytes + this.#growth(pk, pkBytes, ehk, dataLength) > this.maxBytes
    ) {
      finished = this.flush();
    }
    this.#append(pk, pkBytes, ehk, record.data);
    return finished;
  }

  /** Bytes the protobuf grows by when this record is added to the current tables. */
  #growth(pk: string, pkBytes: number, ehk: string | undefined, dataLength: number): number {
    let growth = 0;
    let pkIndex = this.#pkIndex.get(pk);
    if (pkIndex === undefined) {
      pkIndex = this.#pkTable.length;
      growth += delimitedSize(pkBytes);
    }
    let ehkIndex = -1;
    if (ehk !== undefined) {
      const known = this.#ehkIndex.get(ehk);
      if (known === undefined) {
        ehkIndex = this.#ehkTable.length;
        // An explicit hash key is ASCII digits: its string length is its UTF-8 length.
        growth += delimitedSize(ehk.length);
      } else {
        ehkIndex = known;
      }
    }
    return growth + recordEntrySize(pkIndex, ehkIndex, dataLength);
  }

  #append(pk: string, pkBytes: number, ehk: string | undefined, data: Uint8Array): void {
    if (this.#records.length === 0) {
      this.#outerPartitionKey = pk;
      this.#outerExplicitHashKey = ehk;
      this.#outerKeyBytes = pkBytes;
    }
    let pkIndex = this.#pkIndex.get(pk);
    if (pkIndex === undefined) {
      pkIndex = this.#pkTable.length;
      this.#pkIndex.set(pk, pkIndex);
      this.#pkTable.push(pk);
      this.#protoBytes += delimitedSize(pkBytes);
    }
    const entry: PendingRecord = { partition_key_index: pkIndex, data };
    let ehkIndex = -1;
    if (ehk !== undefined) {
      let known = this.#ehkIndex.get(ehk);
      if (known === undefined) {
        known = this.#ehkTable.length;
        this.#ehkIndex.set(ehk, known);
        this.#ehkTable.push(ehk);
        this.#protoBytes += delimitedSize(ehk.length);
      }
      ehkIndex = known;
      entry.explicit_hash_key_index = known;
    }
    this.#protoBytes += recordEntrySize(pkIndex, ehkIndex, data.length);
    this.#records.push(entry);
  }

  flush(): AggregatedRecord | undefined {
    const count = this.#records.length;
    if (count === 0) return undefined;
    const message = {
      partition_key_table: this.#pkTable,
      explicit_hash_key_table: this.#ehkTable,
      records: this.#records,
    };
    const writer = aggregatedRecordType().encode(message);
    const protoBytes = writer.pos;
    if (protoBytes !== this.#protoBytes) {
      // The incremental size is what keeps aggregates under maxBytes: if it ever drifts, fail loudly
      // rather than emit a record Kinesis would refuse.
      throw new ShardlineError(
        ErrorCodes.INTERNAL,
        `KPL aggregate size accounting is off: computed ${this.#protoBytes} protobuf bytes, encoded ${protoBytes}`,
      );
    }
    // A plain (unpooled) Uint8Array: its ArrayBuffer can be transferred between threads safely.
    const data = new Uint8Array(FIXED_OVERHEAD + protoBytes);
    data[0] = MAGIC_0;
    data[1] = MAGIC_1;
    data[2] = MAGIC_2;
    data[3] = MAGIC_3;
    writer.finishInto(data, MAGIC_BYTES);
    const body = data.subarray(MAGIC_BYTES, MAGIC_BYTES + protoBytes);
    data.set(createHash('md5').update(body).digest(), MAGIC_BYTES + protoBytes);

    const result: AggregatedRecord = { partitionKey: this.#outerPartitionKey, data, records: count };
    if (this.#outerExplicitHashKey !== undefined) result.explicitHashKey = this.#outerExplicitHashKey;
    this.#reset();
    return result;
  }

  #reset(): void {
    this.#pkIndex = new Map();
    this.#pkTable = [];
    this.#ehkIndex = new Map();
    this.#ehkTable = [];
    this.#records = [];
    this.#protoBytes = 0;
    this.#outerPartitionKey = '';
    this.#outerExplicitHashKey = undefined;
    this.#outerKeyBytes = 0;
  }
}

/**
 * Packs user records, in order, into as few KPL aggregates as fit `maxBytes` each. Partition keys and
 * explicit hash keys are stored once per aggregate (deduplicated tables).
 *
 * Routing: an aggregate's partition key is its first user record's, and its explicit hash key is the
 * first record's when that has one (the aws-kinesis-agg convention). Kinesis therefore puts the aggregate
 * on the shard the first record would go to, so aggregate records **per destination shard**: the KCL
 * drops sub-records whose hash key is outside the shard that holds them. (The KPL itself sends the
 * partition key `"a"` with an explicit hash key equal to the first record's hash: same shard, one byte
 * shorter; consumers ignore the outer keys either way, so both interoperate.)
 *
 * Every aggregate is an aggregate, even of one record, so a consumer always sees sub-sequence numbers
 * for records sent this way (the KPL sends a lone record unaggregated).
 *
 * @throws ShardlineError `ERR_INVALID_RECORD` naming `records[i]` for an invalid record or one that
 * cannot fit `maxBytes` even alone; `ShardlineOptionError` for a bad `maxBytes`.
 */
export function aggregate(records: readonly UserRecord[], options?: AggregateOptions): AggregatedRecord[] {
  if (!Array.isArray(records)) {
    throw new ShardlineOptionError('records', 'must be an array of { partitionKey, data, explicitHashKey? }');
  }
  const builder = new AggregateBuilder(resolveMaxBytes(options));
  const out: AggregatedRecord[] = [];
  for (let i = 0; i < records.length; i++) {
    const finished = builder.add(records[i]!, `records[${i}]`);
    if (finished !== undefined) out.push(finished);
  }
  const last = builder.flush();
  if (last !== undefined) out.push(last);
  return out;
}

/**
 * Incremental aggregation for producers: `add()` records as they come and send what it returns. The size
 * is tracked as records are added (protobuf varint arithmetic), never by re-encoding.
 */
export class Aggregator {
  readonly #builder: AggregateBuilder;

  constructor(options?: AggregateOptions) {
    this.#builder = new AggregateBuilder(resolveMaxBytes(options));
  }

  /** The `maxBytes` in force. */
  get maxBytes(): number {
    return this.#builder.maxBytes;
  }

  /**
   * Adds a record. When it does not fit in the pending aggregate, that aggregate is finished and
   * returned, and the record starts the next one; otherwise returns `undefined`. The record's position
   * in its aggregate is its sub-sequence number. Its `data` is referenced, not copied, until the aggregate
   * is returned: do not mutate it before then.
   *
   * @throws ShardlineError `ERR_INVALID_RECORD` (field `record`) for an invalid record or one too large
   * even alone; the pending aggregate is left as it was.
   */
  add(record: UserRecord): AggregatedRecord | undefined {
    return this.#builder.add(record, 'record');
  }

  /** User records in the pending aggregate. */
  get count(): number {
    return this.#builder.count;
  }

  /** Size of the pending aggregate (data + partition key), 0 when empty: what `flush()` would return. */
  get sizeBytes(): number {
    return this.#builder.sizeBytes;
  }

  /** Finishes and returns the pending aggregate, or `undefined` when there is none. */
  flush(): AggregatedRecord | undefined {
    return this.#builder.flush();
  }
}
