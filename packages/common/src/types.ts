/** A record as Kinesis returns it, before KPL deaggregation and codec decoding. */
export interface KinesisRecordInput {
  data: Uint8Array;
  /** `''` for a record without a key (`AUTO` streams). */
  partitionKey: string;
  sequenceNumber: string;
  explicitHashKey?: string;
  approximateArrivalTimestamp?: Date;
}

/** One record handed to user code: decoded by the codec, unpacked from a KPL aggregate where it was one. */
export interface ShardRecord<T = unknown> {
  /** Decoded by the codec. */
  data: T;
  /**
   * The record's partition key; `''` when it has none (on a stream whose RecordDistributionStrategy is
   * `AUTO`, Kinesis returns no key for a record written without one).
   */
  partitionKey: string;
  sequenceNumber: string;
  /** Set for records unpacked from a KPL aggregate or a framed codec. */
  subSequenceNumber?: number;
  explicitHashKey?: string;
  approximateArrivalTimestamp: Date;
  /**
   * The W3C traceparent the producer put in the record's trace envelope (`tracing.propagate`), when it
   * carried one; the envelope itself is stripped from the data.
   */
  traceContext?: string;
}

/** A position in a shard: the record at (sequenceNumber, subSequenceNumber), or the shard's end. */
export interface ShardPosition {
  sequenceNumber: string;
  subSequenceNumber?: number;
}

/** The checkpoint value that marks a shard read to its end. */
export const SHARD_END = 'SHARD_END' as const;
