/** The `fanOut` option: enhanced fan-out (SubscribeToShard) instead of GetRecords polling. */

import type { KinesisTransport } from '@shardline/common';
import { resolveKinesisTransport } from '@shardline/common';
import { matching, milliseconds, objectOption, rejectUnknownKeys } from './checks.js';
import { COORDINATOR_DEFAULTS, LIMITS } from './defaults.js';
import type { FanOutOptions, ResolvedCoordinatorOptions } from './types.js';

/** Stream consumer names: 1 to 128 of [a-zA-Z0-9_.-] (the RegisterStreamConsumer rule). */
const CONSUMER_NAME = /^[a-zA-Z0-9_.-]{1,128}$/;
const FAN_OUT_KEYS = [
  'consumerName',
  'transport',
  'subscriptionRenewMs',
  'registrationTimeoutMs',
] as const satisfies readonly (keyof FanOutOptions)[];

export function resolveFanOut(value: unknown, name = 'fanOut'): ResolvedCoordinatorOptions['fanOut'] {
  if (value === undefined) return undefined;
  const given = objectOption(value, name, "{ consumerName: 'billing', transport: 'auto' }");
  rejectUnknownKeys(given, FAN_OUT_KEYS, `${name}.`);
  const consumerName = matching(
    given.consumerName,
    `${name}.consumerName`,
    CONSUMER_NAME,
    "a stream consumer name: 1 to 128 of a-z, A-Z, 0-9, '_', '.', '-'",
  );
  const defaults = COORDINATOR_DEFAULTS.fanOut;
  const transport = (given.transport ?? defaults.transport) as KinesisTransport;
  resolveKinesisTransport(transport, undefined, `${name}.transport`);
  const subscriptionRenewMs = milliseconds(
    given.subscriptionRenewMs,
    `${name}.subscriptionRenewMs`,
    defaults.subscriptionRenewMs,
    {
      min: LIMITS.minSubscriptionRenewMs,
      max: LIMITS.maxSubscriptionRenewMs,
      why: 'from 1 s to the 5 minutes a subscription lasts',
    },
  );
  const registrationTimeoutMs = milliseconds(
    given.registrationTimeoutMs,
    `${name}.registrationTimeoutMs`,
    defaults.registrationTimeoutMs,
    { min: 0 },
  );
  return Object.freeze({ consumerName, transport, subscriptionRenewMs, registrationTimeoutMs });
}
