/**
 * The lease store a coordinator's options ask for: Redis when `leases.redis` is set, DynamoDB when
 * `leases.dynamodb` is, else in memory.
 */

import type { ResolvedCoordinatorOptions } from '../options.js';
import { DynamoDbLeaseManager } from './dynamodb.js';
import { MemoryLeaseManager } from './memory.js';
import { RedisLeaseManager } from './redis.js';
import type { LeaseManager } from './types.js';

export function createLeaseManager(
  o: Pick<
    ResolvedCoordinatorOptions,
    'leases' | 'group' | 'stream' | 'hostId' | 'leaseDurationMs' | 'logger'
  >,
): LeaseManager {
  if (o.leases.redis !== undefined) {
    return new RedisLeaseManager({
      redis: o.leases.redis,
      group: o.group,
      stream: o.stream,
      hostId: o.hostId,
      leaseDurationMs: o.leaseDurationMs,
      keyPrefix: o.leases.keyPrefix,
      logger: o.logger,
    });
  }
  if (o.leases.dynamodb !== undefined) {
    return new DynamoDbLeaseManager({
      ...o.leases.dynamodb,
      hostId: o.hostId,
      leaseDurationMs: o.leaseDurationMs,
    });
  }
  return new MemoryLeaseManager({
    hostId: o.hostId,
    leaseDurationMs: o.leaseDurationMs,
    ...(o.leases.store === undefined ? {} : { store: o.leases.store }),
    namespace: `${o.group}:${o.stream}`,
  });
}
