/**
 * The shard graph of a stream: parents (both parents of a merge), children, open/closed, and which
 * shards may be read now. A child may start only when every parent was read to its end and
 * checkpointed SHARD_END, or is gone from the stream (aged out of retention): that is what keeps
 * per-partition-key order across splits and merges.
 */

import { SHARD_END, ShardlineOptionError } from '@shardline/common';
import type { Checkpoint, LeaseSeed } from './leases/types.js';
import type { ShardInfo } from './shard-discovery.js';

/** A shard's checkpoint by id: a map (e.g. from leases) or a function. */
export type CheckpointLookup =
  | ReadonlyMap<string, Checkpoint | undefined>
  | ((shardId: string) => Checkpoint | undefined);

/** Where a shard stands for reading. */
export type ShardPhase =
  /** Read to its end (checkpoint SHARD_END). */
  | 'ended'
  /** A parent still present in the stream has not been read to its end. */
  | 'waiting-for-parent'
  /** May be read now. */
  | 'ready';

function lookup(checkpoints: CheckpointLookup, shardId: string): Checkpoint | undefined {
  return typeof checkpoints === 'function' ? checkpoints(shardId) : checkpoints.get(shardId);
}

function compareSequence(a: string, b: string): number {
  if (a === b) return 0;
  // Sequence numbers are decimal strings up to 128 bits: compare as numbers, not text.
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x < y ? -1 : x > y ? 1 : 0;
  }
  return a < b ? -1 : 1;
}

/**
 * The stream's shard graph. The coordinator keeps one, {@link update}s it from every ListShards and
 * feeds it the ChildShards readers report at shard end ({@link noteChildren}).
 */
export class Topology {
  #shards = new Map<string, ShardInfo>();
  #children = new Map<string, Set<string>>();
  /** ChildShards from readers, kept until their parent leaves the stream. */
  readonly #hints = new Map<string, Set<string>>();
  #generation = new Map<string, number>();
  #order: string[] = [];

  constructor(shards: readonly ShardInfo[] = []) {
    this.update(shards);
  }

  /** Replaces the shard list with a new ListShards result. */
  update(shards: readonly ShardInfo[]): void {
    if (!Array.isArray(shards)) throw new ShardlineOptionError('shards', 'must be an array of ShardInfo');
    const byId = new Map<string, ShardInfo>();
    for (const shard of shards) {
      if (
        typeof shard?.shardId !== 'string' ||
        !Array.isArray(shard.parentShardIds) ||
        typeof shard.closed !== 'boolean' ||
        typeof shard.sequenceNumberRange?.startingSequenceNumber !== 'string'
      ) {
        throw new ShardlineOptionError(
          'shards',
          'must be an array of ShardInfo ({ shardId, parentShardIds, ... })',
        );
      }
      byId.set(shard.shardId, shard);
    }
    this.#shards = byId;
    for (const parent of [...this.#hints.keys()]) {
      if (!byId.has(parent)) this.#hints.delete(parent);
    }
    this.#rebuild();
  }

  /** Children a reader learnt at shard end (GetRecords ChildShards), before ListShards shows them. */
  noteChildren(parentShardId: string, childShardIds: readonly string[]): void {
    if (!this.#shards.has(parentShardId) || childShardIds.length === 0) return;
    let hints = this.#hints.get(parentShardId);
    if (hints === undefined) {
      hints = new Set();
      this.#hints.set(parentShardId, hints);
    }
    for (const child of childShardIds) hints.add(child);
    this.#rebuild();
  }

  #rebuild(): void {
    const children = new Map<string, Set<string>>();
    const add = (parent: string, child: string) => {
      let set = children.get(parent);
      if (set === undefined) {
        set = new Set();
        children.set(parent, set);
      }
      set.add(child);
    };
    for (const shard of this.#shards.values()) {
      for (const parent of shard.parentShardIds) add(parent, shard.shardId);
    }
    for (const [parent, hinted] of this.#hints) for (const child of hinted) add(parent, child);
    this.#children = children;

    // Generation: 0 for a shard without a present parent, else one more than its deepest present
    // parent. Guarded against cycles, which a sane stream never has.
    const generation = new Map<string, number>();
    const visiting = new Set<string>();
    const depth = (id: string): number => {
      const known = generation.get(id);
      if (known !== undefined) return known;
      if (visiting.has(id)) return 0;
      visiting.add(id);
      let g = 0;
      for (const parent of this.#shards.get(id)?.parentShardIds ?? []) {
        if (this.#shards.has(parent)) g = Math.max(g, depth(parent) + 1);
      }
      visiting.delete(id);
      generation.set(id, g);
      return g;
    };
    for (const id of this.#shards.keys()) depth(id);
    this.#generation = generation;

    this.#order = [...this.#shards.values()]
      .sort(
        (a, b) =>
          generation.get(a.shardId)! - generation.get(b.shardId)! ||
          compareSequence(
            a.sequenceNumberRange.startingSequenceNumber,
            b.sequenceNumberRange.startingSequenceNumber,
          ) ||
          (a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0),
      )
      .map((s) => s.shardId);
  }

  /** Shards present in the stream, oldest first: parents before children (by generation, then start). */
  shards(): ShardInfo[] {
    return this.#order.map((id) => this.#shards.get(id)!);
  }

  /** Ids of the shards present, oldest first. */
  shardIds(): string[] {
    return [...this.#order];
  }

  get size(): number {
    return this.#shards.size;
  }

  has(shardId: string): boolean {
    return this.#shards.has(shardId);
  }

  shard(shardId: string): ShardInfo | undefined {
    return this.#shards.get(shardId);
  }

  /** Both parents of a merge, the one of a split; including parents gone from the stream. */
  parentsOf(shardId: string): string[] {
    return [...(this.#shards.get(shardId)?.parentShardIds ?? [])];
  }

  /** Children from ListShards and from readers' ChildShards hints. */
  childrenOf(shardId: string): string[] {
    return [...(this.#children.get(shardId) ?? [])].sort();
  }

  /** 0 for shards without a parent in the stream, else one more than the deepest parent present. */
  generationOf(shardId: string): number | undefined {
    return this.#generation.get(shardId);
  }

  isClosed(shardId: string): boolean {
    return this.#shards.get(shardId)?.closed === true;
  }

  isOpen(shardId: string): boolean {
    return this.#shards.get(shardId)?.closed === false;
  }

  /** Whether the shard is no longer in the stream (or never was): aged out of retention. */
  isGone(shardId: string): boolean {
    return !this.#shards.has(shardId);
  }

  /**
   * Whether the shard may be read now: present, and every parent either checkpointed SHARD_END or
   * gone from the stream. A shard already ended is eligible too (its lease is still held to the end).
   */
  eligible(shardId: string, checkpoints: CheckpointLookup): boolean {
    const shard = this.#shards.get(shardId);
    if (shard === undefined) return false;
    return shard.parentShardIds.every(
      (parent) => !this.#shards.has(parent) || lookup(checkpoints, parent) === SHARD_END,
    );
  }

  /**
   * Whether the shard is a root of the group's shard graph, so it starts at the initial position when it
   * has no checkpoint: every parent is gone from the stream and unknown to the group (`knownLeases`: the
   * shards the group has leases for). Otherwise the group was reading its parents, and the shard starts
   * at TRIM_HORIZON after them.
   */
  isRoot(shardId: string, knownLeases: ReadonlySet<string>): boolean {
    return this.parentsOf(shardId).every((p) => !this.#shards.has(p) && !knownLeases.has(p));
  }

  /** The parents still keeping the shard waiting (present and not ended). */
  blockingParents(shardId: string, checkpoints: CheckpointLookup): string[] {
    return this.parentsOf(shardId).filter((p) => this.#shards.has(p) && lookup(checkpoints, p) !== SHARD_END);
  }

  phase(shardId: string, checkpoints: CheckpointLookup): ShardPhase {
    if (lookup(checkpoints, shardId) === SHARD_END) return 'ended';
    return this.eligible(shardId, checkpoints) ? 'ready' : 'waiting-for-parent';
  }

  /**
   * Whether a reshard is still in progress for this consumer group: some closed shard still present
   * has not been read to its end, so its children wait (or will).
   */
  resharding(checkpoints: CheckpointLookup): boolean {
    for (const shard of this.#shards.values()) {
      if (shard.closed && lookup(checkpoints, shard.shardId) !== SHARD_END) return true;
    }
    return false;
  }

  /** Open shards in the stream: the shards that, sooner or later, all need a reader at once. */
  openShardIds(): string[] {
    return this.#order.filter((id) => !this.#shards.get(id)!.closed);
  }

  /** What the lease manager's ensureLeases() needs for every present shard. */
  leaseSeeds(): LeaseSeed[] {
    return this.#order.map((id) => ({
      shardId: id,
      parentShardIds: this.parentsOf(id),
      childShardIds: this.childrenOf(id),
    }));
  }
}
