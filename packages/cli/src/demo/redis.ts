/**
 * The demo's Redis: whether one answers (the demo then keeps its leases there), and the removal of
 * the demo's keys afterwards.
 */
import { pingRedis, REDIS_DEFAULTS } from '@shardline/testing';
import { Redis } from 'ioredis';
import type { CommandContext } from '../context.js';

/** The Redis URL the demo would use: REDIS_URL, else the default local server. */
export function demoRedisUrl(ctx: CommandContext): string {
  return ctx.io.env.REDIS_URL || REDIS_DEFAULTS.defaultUrl;
}

/**
 * The Redis URL to use for leases, or undefined when none answers PING within `probeMs` (warned about
 * unless `required`: the caller then refuses to run).
 */
export async function findRedis(
  ctx: CommandContext,
  required: boolean,
  probeMs: number,
): Promise<string | undefined> {
  const url = demoRedisUrl(ctx);
  if (await pingRedis(url, probeMs)) return url;
  if (!required) ctx.warn(`demo: no Redis answered at ${url}: leases in memory`);
  return undefined;
}

/** Deletes the demo's keys (SCAN, not KEYS: never blocks a shared server). */
export async function deleteRedisKeys(url: string, keyPrefix: string): Promise<void> {
  const redis = new Redis(url, { maxRetriesPerRequest: 2, connectTimeout: 2_000, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${keyPrefix}:*`, 'COUNT', 1_000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}
