import {
  CLASSIC_STREAM_LIMITS,
  describeRecordLimit,
  KINESIS_LIMITS,
  streamLimitsFromSummary,
} from '@shardline/common';
import { expect } from 'chai';

describe('common: stream limits from DescribeStreamSummary', () => {
  it('gives the classic limits when the summary reports no MaxRecordSizeInKiB (local emulators)', () => {
    expect(streamLimitsFromSummary(undefined)).to.equal(CLASSIC_STREAM_LIMITS);
    expect(streamLimitsFromSummary({ StreamName: 's' } as never)).to.deep.equal({
      maxRecordBytes: 1_048_576,
      maxRequestBytes: 5 * 1_048_576,
      maxRequestEntries: 500,
      source: 'classic',
      maxRecordSizeInKiB: undefined,
      distribution: 'USER_PARTITION_KEY',
    });
  });

  it('takes MaxRecordSizeInKiB in KiB and raises the request limit to 10 MiB', () => {
    const limits = streamLimitsFromSummary({ MaxRecordSizeInKiB: 10_240 } as never);
    expect(limits).to.deep.include({
      maxRecordBytes: KINESIS_LIMITS.maxRecordBytes,
      maxRequestBytes: KINESIS_LIMITS.putRecordsMaxBytes,
      source: 'stream',
      maxRecordSizeInKiB: 10_240,
    });
    expect(describeRecordLimit(limits)).to.equal(
      "the stream's 10485760-byte record limit (MaxRecordSizeInKiB 10240 from DescribeStreamSummary)",
    );
  });

  it('ignores a MaxRecordSizeInKiB outside 1024..10240 (not a value Kinesis gives)', () => {
    for (const kib of [0, 1023, 10_241, 1.5e3 + 0.5, Number.NaN]) {
      expect(streamLimitsFromSummary({ MaxRecordSizeInKiB: kib } as never).source, String(kib)).to.equal(
        'classic',
      );
    }
  });

  it('reads RecordDistributionStrategy AUTO, with or without a record size', () => {
    expect(streamLimitsFromSummary({ RecordDistributionStrategy: 'AUTO' } as never)).to.deep.include({
      distribution: 'AUTO',
      source: 'classic',
    });
    expect(
      streamLimitsFromSummary({ RecordDistributionStrategy: 'AUTO', MaxRecordSizeInKiB: 2048 } as never),
    ).to.deep.include({ distribution: 'AUTO', source: 'stream', maxRecordBytes: 2 * 1_048_576 });
    expect(
      streamLimitsFromSummary({ RecordDistributionStrategy: 'USER_PARTITION_KEY' } as never).distribution,
    ).to.equal('USER_PARTITION_KEY');
  });
});
