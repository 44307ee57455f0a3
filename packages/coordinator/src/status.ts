/**
 * `coordinator.status()`: a plain, JSON-serialisable picture of the coordinator, assembled from what
 * it already holds (the last lease and host snapshot, its shard sessions, the shard graph). No I/O.
 */

import { SHARD_END } from '@shardline/common';
import type { Checkpoint, HostInfo, Lease } from './leases/types.js';
import type { ShardFailure, ShardSession, ShardStats } from './shard-session.js';
import type { Topology } from './topology.js';

/** Why a shard stopped on this host (state `failing`). */
export interface ShardFailureStatus {
  /** `handler`: `onHandlerError.then: 'stop-shard'`; `reader`: a fatal reader error (retried later); `crashes`: its thread crashed too often. */
  reason: ShardFailure['reason'];
  code: string;
  message: string;
  /** For `handler`: the record it stopped at (the checkpoint is just before it). */
  sequenceNumber?: string;
  subSequenceNumber?: number;
  /** ISO time of the failure. */
  at: string;
}

/** A shard as `status()` shows it. */
export interface ShardStatus {
  /** The shard's stream. */
  streamName: string;
  shardId: string;
  state: 'reading' | 'leased-elsewhere' | 'available' | 'waiting-for-parent' | 'ended' | 'failing';
  owner?: string;
  /** `'SHARD_END'`, a sequence number, or `<sequenceNumber>:<subSequenceNumber>`. */
  checkpoint?: string;
  parentShardIds: string[];
  childShardIds: string[];
  millisBehindLatest?: number;
  /** Records handed to the handler or the iterator by this host since it started. */
  recordsDelivered: number;
  /** Records this host did not hand out for being older than `maxRecordAgeMs` (given to `onHandlerError.then`). */
  recordsExpired: number;
  /** Throttled GetRecords calls on this host since it started. */
  throttled: number;
  /** ISO time of the last GetRecords response. */
  lastFetchAt?: string;
  thread?: number;
  /** Set when the shard stopped on this host after a failure (state `failing`). */
  failure?: ShardFailureStatus;
}

/** `coordinator.status()`: plain, JSON-serialisable. */
/** One stream of the coordinator, as `status()` shows it. */
export interface StreamStatus {
  streamName: string;
  /** Shards of the stream known to this host (its `shards` rows). */
  shards: number;
  /** Of them, those this host reads. */
  reading: number;
  resharding: boolean;
}

export interface CoordinatorStatus {
  hostId: string;
  group: string;
  /** The stream; with `streams`, their names joined by ','. */
  stream: string;
  state: 'starting' | 'running' | 'stopping' | 'stopped';
  /** Every stream tracked (one entry with a single stream). */
  streams: StreamStatus[];
  /** Every shard of every stream, each naming its stream. */
  shards: ShardStatus[];
  hosts: Array<{ hostId: string; shards: number; lastSeenAt: string }>;
  resharding: boolean;
  /** Records fetched and not processed yet (bounded by `maxBufferedRecords`). */
  bufferedRecords: number;
  /** Their data bytes as fetched (bounded by `maxBufferedBytes`, plus one response per reader). */
  bufferedBytes: number;
}

/** A failure as the coordinator keeps it after the session ended. */
export interface RecordedFailure extends ShardFailure {
  atMs: number;
}

/** What the status is assembled from. */
export interface StatusSource {
  hostId: string;
  group: string;
  stream: string;
  state: CoordinatorStatus['state'];
  topology: Topology;
  leases: readonly Lease[];
  /** The lease store's clock when `leases` were read. */
  leasesReadAtMs: number;
  hosts: readonly HostInfo[];
  sessions: ReadonlyMap<string, ShardSession<unknown>>;
  stats: ReadonlyMap<string, ShardStats>;
  /** Checkpoints of leases let go since the lease snapshot (which may predate them). */
  letGo: ReadonlyMap<string, Checkpoint>;
  /** Shards stopped here after a failure, and those cooling down after a fatal reader error. */
  failed: ReadonlyMap<string, RecordedFailure>;
  bufferedRecords: number;
  bufferedBytes: number;
}

export function formatCheckpoint(c: Checkpoint | undefined): string | undefined {
  if (c === undefined) return undefined;
  if (c === SHARD_END) return SHARD_END;
  return c.subSequenceNumber === undefined ? c.sequenceNumber : `${c.sequenceNumber}:${c.subSequenceNumber}`;
}

function failureStatus(failure: RecordedFailure): ShardFailureStatus {
  const out: ShardFailureStatus = {
    reason: failure.reason,
    code: failure.error.code,
    message: failure.error.message,
    at: new Date(failure.atMs).toISOString(),
  };
  if (failure.position !== undefined) {
    out.sequenceNumber = failure.position.sequenceNumber;
    if (failure.position.subSequenceNumber !== undefined) {
      out.subSequenceNumber = failure.position.subSequenceNumber;
    }
  }
  return out;
}

export function buildStatus(s: StatusSource): CoordinatorStatus {
  const leases = new Map(s.leases.map((l) => [l.shardId, l]));
  const checkpointOf = (id: string): Checkpoint | undefined =>
    s.sessions.get(id)?.checkpoint ?? s.letGo.get(id) ?? leases.get(id)?.checkpoint;
  const shards: ShardStatus[] = s.topology.shardIds().map((shardId) => {
    const lease = leases.get(shardId);
    const session = s.sessions.get(shardId);
    const stats = s.stats.get(shardId);
    const failure = s.failed.get(shardId);
    const phase = s.topology.phase(shardId, checkpointOf);
    const heldElsewhere =
      lease?.owner !== undefined && lease.owner !== s.hostId && (lease.expiresAtMs ?? 0) > s.leasesReadAtMs;
    let state: ShardStatus['state'];
    if (failure !== undefined) state = 'failing';
    else if (session?.holdsLease) state = 'reading';
    else if (phase === 'ended') state = 'ended';
    else if (heldElsewhere) state = 'leased-elsewhere';
    else if (phase === 'waiting-for-parent') state = 'waiting-for-parent';
    else state = 'available';
    const entry: ShardStatus = {
      streamName: s.stream,
      shardId,
      state,
      parentShardIds: s.topology.parentsOf(shardId),
      childShardIds: s.topology.childrenOf(shardId),
      recordsDelivered: stats?.recordsDelivered ?? 0,
      recordsExpired: stats?.recordsExpired ?? 0,
      throttled: stats?.throttled ?? 0,
    };
    const owner = state === 'reading' ? s.hostId : heldElsewhere ? lease?.owner : undefined;
    if (owner !== undefined) entry.owner = owner;
    const formatted = formatCheckpoint(checkpointOf(shardId));
    if (formatted !== undefined) entry.checkpoint = formatted;
    if (stats?.millisBehindLatest !== undefined) entry.millisBehindLatest = stats.millisBehindLatest;
    if (stats?.lastFetchAtMs !== undefined) entry.lastFetchAt = new Date(stats.lastFetchAtMs).toISOString();
    if (state === 'reading' && stats?.thread !== undefined) entry.thread = stats.thread;
    if (failure !== undefined) entry.failure = failureStatus(failure);
    return entry;
  });
  const resharding = s.topology.resharding(checkpointOf);
  return {
    hostId: s.hostId,
    group: s.group,
    stream: s.stream,
    state: s.state,
    streams: [
      {
        streamName: s.stream,
        shards: shards.length,
        reading: shards.filter((x) => x.state === 'reading').length,
        resharding,
      },
    ],
    shards,
    hosts: s.hosts.map((h) => ({
      hostId: h.hostId,
      shards: h.shards,
      lastSeenAt: new Date(h.lastSeenAtMs).toISOString(),
    })),
    resharding,
    bufferedRecords: s.bufferedRecords,
    bufferedBytes: s.bufferedBytes,
  };
}
