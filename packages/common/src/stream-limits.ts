/**
 * The Kinesis record and PutRecords limits, and what a stream's DescribeStreamSummary says about them:
 * its `MaxRecordSizeInKiB` (1 to 10 MiB, raised with UpdateMaxRecordSize) and its
 * `RecordDistributionStrategy` (`AUTO` on on-demand streams: Kinesis picks the shard and ignores partition
 * and explicit hash keys).
 */
import type { StreamDescriptionSummary } from '@aws-sdk/client-kinesis';

/** The Kinesis limits a writer must respect. Record sizes count data plus partition key. */
export const KINESIS_LIMITS = Object.freeze({
  /** Largest record on a stream that never raised its limit (and on services that do not report one). */
  classicMaxRecordBytes: 1_048_576,
  /** Largest record Kinesis accepts on a stream whose `MaxRecordSizeInKiB` allows it (10 MiB). */
  maxRecordBytes: 10 * 1_048_576,
  /** Largest PutRecords request where the stream reports no `MaxRecordSizeInKiB` (the classic 5 MiB). */
  classicPutRecordsMaxBytes: 5 * 1_048_576,
  /** Largest PutRecords request (10 MiB, data plus partition keys). */
  putRecordsMaxBytes: 10 * 1_048_576,
  /** Most entries in one PutRecords request. */
  putRecordsMaxEntries: 500,
  /** Range of `MaxRecordSizeInKiB` (UpdateMaxRecordSize refuses values outside it). */
  minMaxRecordSizeInKiB: 1_024,
  maxMaxRecordSizeInKiB: 10_240,
});

/**
 * Where a writer's limits came from: `stream` (DescribeStreamSummary's `MaxRecordSizeInKiB`), `classic`
 * (the summary gave none, as the local emulators do, or could not be read: the 1 MiB / 5 MiB limits).
 */
export type StreamLimitsSource = 'stream' | 'classic';

/** How the stream places records: by partition key (hash), or by Kinesis itself (`AUTO`). */
export type RecordDistribution = 'USER_PARTITION_KEY' | 'AUTO';

/** What a writer to one stream must respect, as read from the stream. */
export interface StreamLimits {
  /** Largest record, data plus partition key, in bytes. */
  readonly maxRecordBytes: number;
  /** Largest PutRecords request, data plus partition keys, in bytes. */
  readonly maxRequestBytes: number;
  /** Most entries in one PutRecords request. */
  readonly maxRequestEntries: number;
  readonly source: StreamLimitsSource;
  /** `MaxRecordSizeInKiB` as the stream reported it (undefined for `classic`). */
  readonly maxRecordSizeInKiB: number | undefined;
  readonly distribution: RecordDistribution;
}

/** The limits of a stream that reports nothing: classic sizes, partition-key distribution. */
export const CLASSIC_STREAM_LIMITS: StreamLimits = Object.freeze({
  maxRecordBytes: KINESIS_LIMITS.classicMaxRecordBytes,
  maxRequestBytes: KINESIS_LIMITS.classicPutRecordsMaxBytes,
  maxRequestEntries: KINESIS_LIMITS.putRecordsMaxEntries,
  source: 'classic',
  maxRecordSizeInKiB: undefined,
  distribution: 'USER_PARTITION_KEY',
});

/**
 * The limits a DescribeStreamSummary answer gives. A missing or out-of-range `MaxRecordSizeInKiB` means the
 * classic limits (1 MiB records, 5 MiB requests); a reported one raises the request limit to 10 MiB too.
 */
export function streamLimitsFromSummary(summary: StreamDescriptionSummary | undefined): StreamLimits {
  const distribution: RecordDistribution =
    summary?.RecordDistributionStrategy === 'AUTO' ? 'AUTO' : 'USER_PARTITION_KEY';
  const kib = summary?.MaxRecordSizeInKiB;
  if (
    typeof kib !== 'number' ||
    !Number.isInteger(kib) ||
    kib < KINESIS_LIMITS.minMaxRecordSizeInKiB ||
    kib > KINESIS_LIMITS.maxMaxRecordSizeInKiB
  ) {
    return distribution === 'AUTO'
      ? Object.freeze({ ...CLASSIC_STREAM_LIMITS, distribution })
      : CLASSIC_STREAM_LIMITS;
  }
  return Object.freeze({
    maxRecordBytes: kib * 1024,
    maxRequestBytes: KINESIS_LIMITS.putRecordsMaxBytes,
    maxRequestEntries: KINESIS_LIMITS.putRecordsMaxEntries,
    source: 'stream',
    maxRecordSizeInKiB: kib,
    distribution,
  });
}

/** The limit as error messages name it: its size and where it came from. */
export function describeRecordLimit(limits: StreamLimits): string {
  return limits.source === 'stream'
    ? `the stream's ${limits.maxRecordBytes}-byte record limit (MaxRecordSizeInKiB ${limits.maxRecordSizeInKiB} from DescribeStreamSummary)`
    : `the classic ${limits.maxRecordBytes}-byte Kinesis record limit (the stream reported no MaxRecordSizeInKiB)`;
}
