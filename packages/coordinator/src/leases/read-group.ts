/**
 * A read-only look at a consumer group's leases in Redis, for tools (`shardline status`): every lease
 * with its state on the Redis clock, and the live hosts. It goes through RedisLeaseManager's read
 * scripts, so the key layout stays in one place; it never heartbeats, acquires or writes.
 */
import { SHARD_END, ShardlineOptionError } from '@shardline/common';
import { RedisLeaseManager } from './redis.js';
import { REDIS_LEASE_DEFAULTS, type RedisConnection } from './redis-options.js';
import type { Checkpoint, HostInfo, LeaseFailure } from './types.js';

/**
 * `held`: an owner whose lease has not expired; `expired`: an owner that stopped renewing (any host may
 * take it); `free`: no owner; `failed`: no owner, and the last one let it go after a failure (see
 * `failure`); `ended`: the shard was read to its end (checkpoint SHARD_END).
 */
export type LeaseGroupState = 'held' | 'expired' | 'free' | 'failed' | 'ended';

/** One shard's lease as `readLeaseGroup` found it. */
export interface LeaseGroupShard {
  shardId: string;
  state: LeaseGroupState;
  /** The host named in the lease (also for an expired lease: the last owner). */
  owner: string | undefined;
  counter: number;
  checkpoint: Checkpoint | undefined;
  /** Expiry on the Redis server clock, when there is an owner. */
  expiresAtMs: number | undefined;
  /** `expiresAtMs - nowMs`: negative once expired. */
  expiresInMs: number | undefined;
  parentShardIds: string[];
  childShardIds: string[];
  /** A host that asked the owner to hand the lease over (pending request). */
  handoffTo: string | undefined;
  /** Why the last owner stopped reading the shard after a failure, until a host takes it again. */
  failure: LeaseFailure | undefined;
}

/** What `readLeaseGroup` resolves with. */
export interface LeaseGroupSnapshot {
  group: string;
  stream: string;
  keyPrefix: string;
  /** The Redis server clock (ms) when the leases were read. */
  nowMs: number;
  /** Every lease of the group and stream, in shard id order; empty when the group has none. */
  shards: LeaseGroupShard[];
  /** Hosts that heartbeated within `liveWindowMs`, in host id order. */
  hosts: HostInfo[];
}

export interface ReadLeaseGroupOptions {
  /** A Redis URL, ioredis options or a ready ioredis instance (left open). */
  redis: RedisConnection;
  group: string;
  stream: string;
  /** @defaultValue 'shardline' */
  keyPrefix?: string;
  /**
   * A host counts as live when its last heartbeat is at most this old. Use the group's leaseDurationMs
   * (the coordinator prunes hosts silent for longer).
   * @defaultValue 10000
   */
  liveWindowMs?: number;
  /**
   * Longest each Redis call waits, connecting included, before it fails with ERR_REDIS.
   * @defaultValue 5000
   */
  commandTimeoutMs?: number;
}

/** Any id no real host uses: this reader never joins the group, so the id never reaches Redis. */
const READER_HOST_ID = 'shardline-read-only';

export const READ_LEASE_GROUP_DEFAULTS = Object.freeze({
  keyPrefix: REDIS_LEASE_DEFAULTS.keyPrefix,
  liveWindowMs: REDIS_LEASE_DEFAULTS.leaseDurationMs,
  commandTimeoutMs: REDIS_LEASE_DEFAULTS.commandTimeoutMs,
});

function stateOf(
  owner: string | undefined,
  expiresAtMs: number | undefined,
  checkpoint: Checkpoint | undefined,
  failure: LeaseFailure | undefined,
  nowMs: number,
): LeaseGroupState {
  if (checkpoint === SHARD_END) return 'ended';
  if (owner === undefined) return failure === undefined ? 'free' : 'failed';
  return expiresAtMs !== undefined && expiresAtMs > nowMs ? 'held' : 'expired';
}

/**
 * Reads every lease of `group` on `stream` and the live hosts. Rejects with ShardlineError ERR_REDIS
 * (Redis unreachable, timeout, error reply) or ERR_INVALID_OPTION (bad group, stream, prefix).
 */
export async function readLeaseGroup(options: ReadLeaseGroupOptions): Promise<LeaseGroupSnapshot> {
  if (typeof options !== 'object' || options === null) {
    throw new ShardlineOptionError('options', 'must be an object { redis, group, stream, keyPrefix? }');
  }
  const liveWindowMs = options.liveWindowMs ?? READ_LEASE_GROUP_DEFAULTS.liveWindowMs;
  const keyPrefix = options.keyPrefix ?? READ_LEASE_GROUP_DEFAULTS.keyPrefix;
  // The manager validates group, stream, prefix, window (as leaseDurationMs) and timeout.
  const manager = new RedisLeaseManager({
    redis: options.redis,
    group: options.group,
    stream: options.stream,
    keyPrefix,
    hostId: READER_HOST_ID,
    leaseDurationMs: liveWindowMs,
    commandTimeoutMs: options.commandTimeoutMs ?? READ_LEASE_GROUP_DEFAULTS.commandTimeoutMs,
  });
  try {
    const leases = await manager.listLeases();
    const hosts = await manager.liveHosts();
    const nowMs = leases[0]?.readAtMs ?? (await manager.now());
    return {
      group: manager.group,
      stream: manager.stream,
      keyPrefix,
      nowMs,
      shards: leases.map((lease) => ({
        shardId: lease.shardId,
        state: stateOf(lease.owner, lease.expiresAtMs, lease.checkpoint, lease.failure, nowMs),
        owner: lease.owner,
        counter: lease.counter,
        checkpoint: lease.checkpoint,
        expiresAtMs: lease.expiresAtMs,
        expiresInMs: lease.expiresAtMs === undefined ? undefined : lease.expiresAtMs - nowMs,
        parentShardIds: lease.parentShardIds,
        childShardIds: lease.childShardIds,
        handoffTo: lease.handoffTo,
        failure: lease.failure,
      })),
      hosts,
    };
  } finally {
    await manager.close();
  }
}
