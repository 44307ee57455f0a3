/**
 * `parallelism`: one batch's records handled by up to N concurrent handler calls, per partition key.
 *
 * - **Split.** A record goes to group `fnv1a(partitionKey) % N` (a record without a partition key, as
 *   on an AUTO-distribution stream, to `index % N`: no key order is promised there). A key always lands
 *   in the same group and a group keeps the batch's order, so each key's records are handled in order;
 *   different keys of different groups run concurrently. Empty groups are not called; a batch whose
 *   records all fall in one group is handled as without parallelism.
 * - **Failures.** Each group is a run of the {@link FailurePolicy} of its own: retries, partial answers,
 *   isolation, `maxRecordAgeMs` and `then` apply to the group's records only, so a failing key holds its
 *   own group, not the others. A `'stop-shard'` in one group halts the lane: the other groups stop at
 *   their next step (a handler call under way finishes).
 * - **Barrier.** The shard's next batch starts once every group of this one is done (Lambda's
 *   ParallelizationFactor goes further across batches; here the credit and order rules stay per batch).
 * - **Checkpoint.** The shard's processed position moves only to the highest position below which every
 *   record of the batch is processed (a watermark over the batch): a record is never checkpointed
 *   before every record before it was processed, whichever group it is in. `batch.checkpoint(upTo?)`
 *   in a group marks the group's records up to `upTo` processed and writes that watermark.
 * - **Gates.** Every group's calls pass the lane's gate: the lease deadline pauses them all, a halt
 *   (lease lost, stop, handoff) ends them all.
 */

import type { ShardPosition, ShardRecord } from '@shardline/common';
import { comparePositions } from '../checkpointer.js';
import type { RecordHandler } from '../options.js';
import { type FailurePolicy, type Outcome, type PolicyLane, positionOf } from './failure-policy.js';
import { type BuiltBatch, buildBatch } from './user-batch.js';

/** What a lane offers its key groups. */
export interface GroupedLane<T> extends PolicyLane<T> {
  reportHandled(records: number, end: ShardPosition, started: number, millisBehindLatest?: number): void;
  advance(position: ShardPosition, records: number): void;
  writeCheckpoint(position: ShardPosition): Promise<void>;
}

/** FNV-1a, 32 bits: cheap and stable (the same key, the same group, on every host and run). */
function fnv1a(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The batch's records by group, each in the batch's order; empty groups left out. */
export function keyGroups<T>(records: readonly ShardRecord<T>[], parallelism: number): ShardRecord<T>[][] {
  const groups: ShardRecord<T>[][] = Array.from({ length: parallelism }, () => []);
  for (const [i, record] of records.entries()) {
    const key = (record as { partitionKey?: unknown }).partitionKey;
    groups[(typeof key === 'string' ? fnv1a(key) : i) % parallelism]!.push(record);
  }
  return groups.filter((g) => g.length > 0);
}

/** Runs one run of a batch through its key groups concurrently; see the module notes. */
export async function runByKey<T>(
  lane: GroupedLane<T>,
  policy: FailurePolicy,
  handler: RecordHandler<T>,
  records: ShardRecord<T>[],
  end: ShardPosition,
  millisBehindLatest: number | undefined,
  parallelism: number,
): Promise<Outcome> {
  const groups = keyGroups(records, parallelism);
  if (groups.length === 1) return policy.run(lane, handler, records, end, millisBehindLatest);
  const watermark = new Watermark(records, end, lane);
  const settled = await Promise.allSettled(
    groups.map((group) =>
      policy.run(
        watermark.laneFor(group),
        handler,
        group,
        positionOf(group[group.length - 1]!),
        millisBehindLatest,
      ),
    ),
  );
  watermark.flush();
  const outcomes: Outcome[] = [];
  for (const s of settled) {
    if (s.status === 'rejected') throw s.reason;
    outcomes.push(s.value);
  }
  if (outcomes.includes('failed')) return 'failed';
  if (outcomes.includes('abandoned')) return 'abandoned';
  return 'processed';
}

/** Which records of a batch are processed, and how far the shard's processed position may move. */
class Watermark<T> {
  readonly #records: ShardRecord<T>[];
  readonly #end: ShardPosition;
  readonly #lane: GroupedLane<T>;
  readonly #index = new Map<ShardRecord<T>, number>();
  readonly #done: boolean[];
  /** The first record not processed. */
  #next = 0;
  /** Records handed out since the position last moved. */
  #unreported = 0;
  #position: ShardPosition | undefined;

  constructor(records: ShardRecord<T>[], end: ShardPosition, lane: GroupedLane<T>) {
    this.#records = records;
    this.#end = end;
    this.#lane = lane;
    this.#done = records.map(() => false);
    for (const [i, record] of records.entries()) this.#index.set(record, i);
  }

  /** The lane a group's run of the policy works with. */
  laneFor(group: ShardRecord<T>[]): PolicyLane<T> {
    const lane = this.#lane;
    const state = { group, done: 0 };
    return {
      shardId: lane.shardId,
      ...(lane.streamName === undefined ? {} : { streamName: lane.streamName }),
      signal: lane.signal,
      gate: () => lane.gate(),
      makeBatch: (records, end, millisBehindLatest): BuiltBatch<T> =>
        buildBatch(
          lane.shardId,
          records,
          end,
          millisBehindLatest,
          (position) => {
            this.#mark(state, position);
            return this.#position === undefined ? Promise.resolve() : lane.writeCheckpoint(this.#position);
          },
          lane.streamName,
        ),
      reportProcessed: (records, end, started, millisBehindLatest) => {
        lane.reportHandled(records, end, started, millisBehindLatest);
        this.#unreported += records;
        this.#mark(state, end);
      },
      passedOver: (position) => this.#mark(state, position),
      fail: (error, position) => lane.fail(error, position),
    };
  }

  /** Records handed out whose position could not move (a halt left an earlier record undone). */
  flush(): void {
    if (this.#unreported > 0 && this.#position !== undefined) {
      this.#lane.advance(this.#position, this.#unreported);
      this.#unreported = 0;
    }
  }

  /** The group's records up to `position` are processed. */
  #mark(state: { group: ShardRecord<T>[]; done: number }, position: ShardPosition): void {
    const { group } = state;
    while (state.done < group.length && comparePositions(positionOf(group[state.done]!), position) <= 0) {
      this.#done[this.#index.get(group[state.done]!)!] = true;
      state.done++;
    }
    const from = this.#next;
    while (this.#next < this.#records.length && this.#done[this.#next]) this.#next++;
    if (this.#next === from) return;
    this.#position =
      this.#next === this.#records.length ? this.#end : positionOf(this.#records[this.#next - 1]!);
    this.#lane.advance(this.#position, this.#unreported);
    this.#unreported = 0;
  }
}
