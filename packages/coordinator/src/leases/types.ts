import type { ShardPosition } from '@shardline/common';

/** A checkpoint: processed up to this position, or the shard read to its end. */
export type Checkpoint = ShardPosition | 'SHARD_END';

/** One lease per shard per consumer group and stream. */
export interface Lease {
  shardId: string;
  /** Host holding the lease; undefined when free. */
  owner: string | undefined;
  /**
   * Fencing token: incremented by every acquisition. Renew, release and checkpoint succeed only with the
   * counter the caller got when it acquired, so a host whose lease moved cannot write.
   */
  counter: number;
  /**
   * When the lease expires, in ms on the lease store's clock: the Redis server's for Redis; for DynamoDB
   * this host's monotonic clock, a lease duration after this host saw its `leaseCounter` change.
   */
  expiresAtMs: number | undefined;
  checkpoint: Checkpoint | undefined;
  parentShardIds: string[];
  childShardIds: string[];
  /** A host that asked the owner to hand this lease over. */
  handoffTo: string | undefined;
  /**
   * The store's clock (ms) when this copy was read or written, where the store tells it (Redis does;
   * DynamoDB: the local time of the read, or of the send for acquire and renew).
   * `expiresAtMs - readAtMs` is how long the lease still had: less than leaseDurationMs after a renew
   * while a handoff is pending (the Redis store caps renewals then), so a host must time its lease
   * from it rather than assume a full duration.
   */
  readAtMs?: number;
  /**
   * When the lease was first acquired, in epoch ms (the Redis server's clock; the acquiring host's for
   * DynamoDB); kept for good. A shard started at
   * `LATEST` whose first owner wrote no checkpoint is read from this time (less a margin) by the next
   * owner, so what arrived between the two is not skipped. Undefined for a lease never acquired, and
   * where the store does not keep it (leases written by an older version).
   */
  firstAcquiredAtMs?: number;
  /** Set when the last holder let the lease go after a failure (see {@link LeaseFailure}). */
  failure?: LeaseFailure;
}

/**
 * Why a host stopped reading a shard after a failure (`onHandlerError.then: 'stop-shard'`, a fatal
 * reader error, or repeated thread crashes), noted in the lease as it was released, so tools such as
 * `shardline status` can tell a stopped shard from an idle one. Cleared by the next acquisition.
 */
export interface LeaseFailure {
  hostId: string;
  reason: 'handler' | 'reader' | 'crashes';
  code: string;
  message: string;
  /** For `handler`: the record it stopped at (the checkpoint is just before it). */
  sequenceNumber?: string;
  subSequenceNumber?: number;
  /** Epoch ms on the host that failed. */
  atMs: number;
}

/** A live host of the group, from its heartbeats. */
export interface HostInfo {
  hostId: string;
  lastSeenAtMs: number;
  /** Leases it held at its last heartbeat. */
  shards: number;
}

/** What is known of a shard when its lease is created. */
export interface LeaseSeed {
  shardId: string;
  parentShardIds: string[];
  childShardIds?: string[];
}

/** A lease this host holds, as renewLeases() takes it. */
export interface HeldLease {
  shardId: string;
  /** The counter it was acquired with. */
  counter: number;
}

/** Per-call options of the calls on the renewal path. */
export interface LeaseCallOptions {
  /**
   * Longest the call may take, connecting included (the store's own command timeout when longer):
   * the renewal path bounds each round below its lease deadline margin.
   */
  timeoutMs?: number;
}

/**
 * Where leases and checkpoints live: in memory (one host), Redis or DynamoDB (many hosts); the public
 * contract of a lease store (see the coordinator README, "Lease stores"). Every transition is
 * atomic and fenced by owner + counter. Methods that change a lease return the lease as it is after the
 * change, or undefined when the change was refused (not the owner, stale counter, not free).
 */
export interface LeaseManager {
  readonly hostId: string;
  readonly leaseDurationMs: number;
  /** Creates leases for shards that have none (create-if-absent); adds child ids to existing ones. */
  ensureLeases(seeds: readonly LeaseSeed[]): Promise<void>;
  /**
   * Every lease, in shard id order. Whether each is held, by whom, under which counter, its parents,
   * children, handoff request and SHARD_END are as the store has them at `readAtMs`. A store may
   * answer from its last full listing while nothing of that changed (the Redis one does, so an idle
   * host's load does not grow with its leases): then an expiry may be earlier than the stored one
   * (never past while the lease is held) and a checkpoint position of a lease another host holds
   * older than the stored one.
   */
  listLeases(): Promise<Lease[]>;
  getLease(shardId: string): Promise<Lease | undefined>;
  /** Takes the lease when free, expired, or handed over to this host; increments the counter. */
  acquire(shardId: string): Promise<Lease | undefined>;
  /** Extends the lease by leaseDurationMs when this host still owns it with this counter. */
  renew(shardId: string, counter: number): Promise<Lease | undefined>;
  /**
   * {@link renew} for several leases in one atomic call (one round trip for Redis): the lease after
   * renewal per shard id, undefined where refused (lost). Rejects when the outcome is unknown (store
   * unreachable, timeout): then no lease may be assumed renewed.
   */
  renewLeases(
    held: readonly HeldLease[],
    options?: LeaseCallOptions,
  ): Promise<Map<string, Lease | undefined>>;
  /**
   * Deletes the lease of a shard gone from the stream when nobody holds it and its counter is still
   * `counter` (no acquisition since the caller decided it is not needed). True when removed.
   */
  removeLease(shardId: string, counter: number): Promise<boolean>;
  /**
   * Frees the lease (keeping its checkpoint) when this host owns it with this counter; `failure` notes
   * why, when the host stopped reading it after a failure.
   */
  release(shardId: string, counter: number, failure?: LeaseFailure): Promise<boolean>;
  /** Writes the checkpoint; throws ShardlineError ERR_LEASE_LOST when owner or counter do not match. */
  checkpoint(shardId: string, counter: number, checkpoint: Checkpoint): Promise<void>;
  /** Asks the owner to hand the lease to `toHostId`; false when the lease is free or already asked. */
  requestHandoff(shardId: string, toHostId: string): Promise<boolean>;
  /** Records this host as alive, holding `shards` leases. */
  heartbeat(shards: number): Promise<void>;
  /** Hosts seen within one lease duration (DynamoDB: derived from lease owners and handoff requesters). */
  liveHosts(): Promise<HostInfo[]>;
  /** The store's clock (ms), the one lease expiry is measured on (DynamoDB: this host's monotonic clock). */
  now(): Promise<number>;
  close(): Promise<void>;
}
