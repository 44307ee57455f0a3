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

  const NAME_RULE = "must be a stream consumer name: 1 to 128 of a-z, A-Z, 0-9, '_', '.', '-'";
  const OBJECT = "must be an object like { consumerName: 'billing', transport: 'auto' }";
  const KNOWN = 'known: consumerName, transport, subscriptionRenewMs, registrationTimeoutMs';
  const RENEW_WHY = 'from 1 s to the 5 minutes a subscription lasts';
  // [what, fanOut, the option named, the whole message]
  const bad: Array<[string, unknown, string, string]> = [
    ['not an object', 'billing', 'fanOut', `fanOut ${OBJECT} (got "billing")`],
    ['null', null, 'fanOut', `fanOut ${OBJECT} (got null)`],
    ['an array', [], 'fanOut', `fanOut ${OBJECT} (got an array)`],
    ['no consumerName', {}, 'fanOut.consumerName', `fanOut.consumerName ${NAME_RULE} (got undefined)`],
    [
      'empty consumerName',
      { consumerName: '' },
      'fanOut.consumerName',
      `fanOut.consumerName ${NAME_RULE} (got "")`,
    ],
    [
      '129 characters',
      { consumerName: 'a'.repeat(129) },
      'fanOut.consumerName',
      `fanOut.consumerName ${NAME_RULE} (got "${'a'.repeat(80)}...")`,
    ],
    [
      'a slash',
      { consumerName: 'a/b' },
      'fanOut.consumerName',
      `fanOut.consumerName ${NAME_RULE} (got "a/b")`,
    ],
    ['a number', { consumerName: 7 }, 'fanOut.consumerName', `fanOut.consumerName ${NAME_RULE} (got 7)`],
    [
      'unknown transport',
      { consumerName: 'c', transport: 'h2c' },
      'fanOut.transport',
      "fanOut.transport must be 'auto', 'http1' or 'http2' (got 'h2c')",
    ],
    [
      'renew under 1 s',
      { consumerName: 'c', subscriptionRenewMs: 999 },
      'fanOut.subscriptionRenewMs',
      `fanOut.subscriptionRenewMs must be >= 1000 (${RENEW_WHY}; got 999)`,
    ],
    [
      'renew over 5 min',
      { consumerName: 'c', subscriptionRenewMs: 300_001 },
      'fanOut.subscriptionRenewMs',
      `fanOut.subscriptionRenewMs must be <= 300000 (${RENEW_WHY}; got 300001)`,
    ],
    [
      'renew not a number',
      { consumerName: 'c', subscriptionRenewMs: '60000' },
      'fanOut.subscriptionRenewMs',
      'fanOut.subscriptionRenewMs must be a finite number of milliseconds (got "60000")',
    ],
    [
      'negative timeout',
      { consumerName: 'c', registrationTimeoutMs: -1 },
      'fanOut.registrationTimeoutMs',
      'fanOut.registrationTimeoutMs must be >= 0 (got -1)',
    ],
    [
      'infinite timeout',
      { consumerName: 'c', registrationTimeoutMs: Number.POSITIVE_INFINITY },
      'fanOut.registrationTimeoutMs',
      'fanOut.registrationTimeoutMs must be a finite number of milliseconds (got Infinity)',
    ],
    [
      'unknown key',
      { consumerName: 'c', consumerArn: 'arn:x' },
      'fanOut.consumerArn',
      `fanOut.consumerArn is not an option; ${KNOWN}`,
    ],
    [
      'a misspelt key',
      { consumerName: 'c', transprt: 'http1' },
      'fanOut.transprt',
      `fanOut.transprt is not an option (did you mean 'fanOut.transport'?); ${KNOWN}`,
    ],
  ];
  for (const [what, fanOut, option, message] of bad) {
    it(`rejects ${what}, naming ${option}`, () => {
      const error = optionError(fanOut);
      expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect((error as ShardlineError & { option?: string }).option).to.equal(option);
      expect(error.message).to.equal(message);
    });
  }

  it('accepts the bounds of subscriptionRenewMs', () => {
    for (const subscriptionRenewMs of [1_000, 300_000]) {
      const resolved = resolveCoordinatorOptions({
        ...base,
        fanOut: { consumerName: 'c', subscriptionRenewMs },
      });
      expect(resolved.fanOut?.subscriptionRenewMs).to.equal(subscriptionRenewMs);
    }
  });

  it('accepts the longest and the shortest valid names', () => {
    for (const consumerName of ['a', 'x'.repeat(128)]) {
      expect(resolveCoordinatorOptions({ ...base, fanOut: { consumerName } }).fanOut?.consumerName).to.equal(
        consumerName,
      );
    }
  });
});
