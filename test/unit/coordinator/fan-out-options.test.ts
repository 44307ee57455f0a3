import { ErrorCodes, type ShardlineError } from '@shardline/common';
import {
  COORDINATOR_DEFAULTS,
  type CoordinatorOptions,
  resolveCoordinatorOptions,
} from '@shardline/coordinator';
import { expect } from 'chai';

const base: CoordinatorOptions = { streamName: 'orders', group: 'billing' };

function optionError(fanOut: unknown): ShardlineError {
  try {
    resolveCoordinatorOptions({ ...base, fanOut } as CoordinatorOptions);
  } catch (error) {
    return error as ShardlineError;
  }
  expect.fail(`fanOut ${JSON.stringify(fanOut)} was accepted`);
}

describe('coordinator options: fanOut', () => {
  it('is off by default (polling)', () => {
    expect(resolveCoordinatorOptions(base).fanOut).to.equal(undefined);
  });

  it('applies the defaults to { consumerName } and freezes', () => {
    const resolved = resolveCoordinatorOptions({ ...base, fanOut: { consumerName: 'billing.v2_x-1' } });
    expect(resolved.fanOut).to.deep.equal({
      consumerName: 'billing.v2_x-1',
      transport: 'auto',
      subscriptionRenewMs: COORDINATOR_DEFAULTS.fanOut.subscriptionRenewMs,
      registrationTimeoutMs: COORDINATOR_DEFAULTS.fanOut.registrationTimeoutMs,
    });
    expect(Object.isFrozen(resolved.fanOut)).to.equal(true);
    expect(COORDINATOR_DEFAULTS.fanOut).to.include({ transport: 'auto', subscriptionRenewMs: 270_000 });
  });

  it('keeps given values', () => {
    const resolved = resolveCoordinatorOptions({
      ...base,
      fanOut: {
        consumerName: 'c',
        transport: 'http2',
        subscriptionRenewMs: 60_000,
        registrationTimeoutMs: 0,
      },
    });
    expect(resolved.fanOut).to.include({
      transport: 'http2',
      subscriptionRenewMs: 60_000,
      registrationTimeoutMs: 0,
    });
  });

  const bad: Array<[string, unknown, string]> = [
    ['not an object', 'billing', 'fanOut'],
    ['null', null, 'fanOut'],
    ['no consumerName', {}, 'fanOut.consumerName'],
    ['empty consumerName', { consumerName: '' }, 'fanOut.consumerName'],
    ['129 characters', { consumerName: 'a'.repeat(129) }, 'fanOut.consumerName'],
    ['a slash', { consumerName: 'a/b' }, 'fanOut.consumerName'],
    ['a number', { consumerName: 7 }, 'fanOut.consumerName'],
    ['unknown transport', { consumerName: 'c', transport: 'h2c' }, 'fanOut.transport'],
    ['renew under 1 s', { consumerName: 'c', subscriptionRenewMs: 999 }, 'fanOut.subscriptionRenewMs'],
    ['renew over 5 min', { consumerName: 'c', subscriptionRenewMs: 300_001 }, 'fanOut.subscriptionRenewMs'],
    ['negative timeout', { consumerName: 'c', registrationTimeoutMs: -1 }, 'fanOut.registrationTimeoutMs'],
    ['unknown key', { consumerName: 'c', consumerArn: 'arn:x' }, 'fanOut.consumerArn'],
  ];
  for (const [what, fanOut, option] of bad) {
    it(`rejects ${what}, naming ${option}`, () => {
      const error = optionError(fanOut);
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.message).to.match(new RegExp(`^${option.replace('.', '\\.')}\\b`));
    });
  }

  it('accepts the longest and the shortest valid names', () => {
    for (const consumerName of ['a', 'x'.repeat(128)]) {
      expect(resolveCoordinatorOptions({ ...base, fanOut: { consumerName } }).fanOut?.consumerName).to.equal(
        consumerName,
      );
    }
  });
});
