import { codecs, ErrorCodes, ShardlineError } from '@shardline/common';
import { PRODUCER_DEFAULTS, type ProducerOptions, resolveProducerOptions } from '@shardline/producer';
import { expect } from 'chai';

function optionError(options: unknown): ShardlineError {
  try {
    resolveProducerOptions(options as ProducerOptions);
  } catch (error) {
    expect(error).to.be.instanceOf(ShardlineError);
    expect((error as ShardlineError).code).to.equal(ErrorCodes.INVALID_OPTION);
    return error as ShardlineError;
  }
  throw new Error('expected an option error');
}

describe('producer: resolveProducerOptions', () => {
  it('applies every default to { streamName } and freezes the result', () => {
    const o = resolveProducerOptions({ streamName: 's' });
    expect(o.streamName).to.equal('s');
    expect(o.codec).to.equal(codecs.json);
    expect(o.aggregate).to.equal(false);
    expect(o.lingerMs).to.equal(PRODUCER_DEFAULTS.lingerMs);
    expect(o.maxBufferedRecords).to.equal(10_000);
    expect(o.rateLimitPerShard).to.deep.equal({ records: 1_000, bytes: 1_048_576 });
    expect(o.retry).to.deep.equal({
      retries: Number.POSITIVE_INFINITY,
      backoffMs: { initial: 100, max: 10_000 },
    });
    expect(o.maxInFlightPerShard).to.equal(Number.POSITIVE_INFINITY);
    expect(o.maxInFlightRequests).to.equal(8);
    expect(o.shardRefreshIntervalMs).to.equal(60_000);
    expect(Object.isFrozen(o)).to.equal(true);
    expect(Object.isFrozen(o.retry)).to.equal(true);
    expect(Object.isFrozen(o.rateLimitPerShard)).to.equal(true);
  });

  it('merges partial nested options with the defaults', () => {
    const o = resolveProducerOptions({
      streamArn: 'arn:aws:kinesis:us-east-1:000000000000:stream/s',
      retry: { retries: 3 },
      rateLimitPerShard: { records: 500 },
    });
    expect(o.retry.retries).to.equal(3);
    expect(o.retry.backoffMs).to.deep.equal({ initial: 100, max: 10_000 });
    expect(o.rateLimitPerShard).to.deep.equal({ records: 500, bytes: Number.POSITIVE_INFINITY });
    const off = resolveProducerOptions({ streamName: 's', rateLimitPerShard: false });
    expect(off.rateLimitPerShard.records).to.equal(Number.POSITIVE_INFINITY);
  });

  const cases: Array<[string, Record<string, unknown>, string]> = [
    ['no stream', {}, 'streamName is required (or give streamArn)'],
    ['both stream ids', { streamName: 's', streamArn: 'a' }, 'streamArn must not be given together'],
    ['empty streamName', { streamName: ' ' }, 'streamName must be a non-empty string'],
    ['unknown option', { streamName: 's', linger: 5 }, 'linger is not a producer option'],
    ['lingerMs -1', { streamName: 's', lingerMs: -1 }, 'lingerMs must be a finite number >= 0 (got -1)'],
    [
      'lingerMs NaN',
      { streamName: 's', lingerMs: Number.NaN },
      'lingerMs must be a finite number >= 0 (got NaN)',
    ],
    [
      'maxBufferedRecords 0',
      { streamName: 's', maxBufferedRecords: 0 },
      'maxBufferedRecords must be an integer >= 1 (got 0)',
    ],
    [
      'maxBufferedRecords 1.5',
      { streamName: 's', maxBufferedRecords: 1.5 },
      'maxBufferedRecords must be an integer >= 1',
    ],
    [
      'rate 0',
      { streamName: 's', rateLimitPerShard: { records: 0 } },
      'rateLimitPerShard.records must be a number > 0',
    ],
    [
      'rate unknown',
      { streamName: 's', rateLimitPerShard: { calls: 1 } },
      'rateLimitPerShard.calls is not a limit',
    ],
    [
      'rate true',
      { streamName: 's', rateLimitPerShard: true },
      'rateLimitPerShard must be false or an object',
    ],
    [
      'retries -1',
      { streamName: 's', retry: { retries: -1 } },
      'retry.retries must be an integer >= 0 or Infinity (got -1)',
    ],
    [
      'backoff max < initial',
      { streamName: 's', retry: { backoffMs: { initial: 100, max: 10 } } },
      'retry.backoffMs.max must be >= retry.backoffMs.initial',
    ],
    ['retry unknown', { streamName: 's', retry: { tries: 1 } }, 'retry.tries is not a producer retry option'],
    [
      'maxInFlightPerShard 0',
      { streamName: 's', maxInFlightPerShard: 0 },
      'maxInFlightPerShard must be an integer >= 1 or Infinity (got 0)',
    ],
    [
      'maxInFlightRequests Infinity',
      { streamName: 's', maxInFlightRequests: Number.POSITIVE_INFINITY },
      'maxInFlightRequests must be an integer >= 1 (got Infinity)',
    ],
    [
      'shardRefreshIntervalMs -5',
      { streamName: 's', shardRefreshIntervalMs: -5 },
      'shardRefreshIntervalMs must be a finite number >= 0 (got -5)',
    ],
    ['aggregate string', { streamName: 's', aggregate: 'yes' }, 'aggregate must be a boolean (got "yes")'],
    ['codec unknown', { streamName: 's', codec: 'yaml' }, 'codec'],
    ['logger', { streamName: 's', logger: {} }, 'logger must be a pino-compatible logger'],
    ['signal', { streamName: 's', signal: {} }, 'signal must be an AbortSignal'],
    [
      'kinesis number',
      { streamName: 's', kinesis: 5 },
      'kinesis must be a KinesisClient or a KinesisClientConfig object (got 5)',
    ],
  ];
  for (const [name, options, message] of cases) {
    it(`rejects ${name}`, () => {
      expect(optionError(options).message).to.contain(message);
    });
  }

  it('rejects a non-object', () => {
    expect(optionError(null).message).to.contain('options must be an object');
  });
});
