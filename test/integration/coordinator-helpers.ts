/**
 * Helpers of the coordinator integration tests: keyed JSON records, producing them (plain or KPL
 * aggregated), and checking what a consumer received.
 */

import { setTimeout as delay } from 'node:timers/promises';
import { type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { aggregate } from '@shardline/common';
import type { Coordinator, CoordinatorOptions } from '@shardline/coordinator';
import { startCoordinator } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import type { LocalKinesis } from '@shardline/testing';
import { expect } from 'chai';

export interface Item {
  k: string;
  i: number;
}

const encoder = new TextEncoder();

/** `count` records over `keys` partition keys; per key, `i` counts up from `firstIndex[key]`. */
export function keyedItems(count: number, keys: number, start = new Map<string, number>()): Item[] {
  const items: Item[] = [];
  for (let n = 0; n < count; n++) {
    const k = `key-${n % keys}`;
    const i = start.get(k) ?? 0;
    start.set(k, i + 1);
    items.push({ k, i });
  }
  return items;
}

/** Puts items in order, 500 per call, every entry checked. */
export async function putItems(
  client: KinesisClient,
  streamName: string,
  items: readonly Item[],
): Promise<void> {
  for (let offset = 0; offset < items.length; offset += 500) {
    const chunk = items.slice(offset, offset + 500);
    const out = await client.send(
      new PutRecordsCommand({
        StreamName: streamName,
        Records: chunk.map((item) => ({ Data: encoder.encode(JSON.stringify(item)), PartitionKey: item.k })),
      }),
    );
    expect(out.FailedRecordCount ?? 0, 'PutRecords failures').to.equal(0);
  }
}

/** Puts items as KPL aggregates, one aggregate per key run of `perAggregate` records. */
export async function putAggregated(
  client: KinesisClient,
  streamName: string,
  items: readonly Item[],
  perAggregate: number,
): Promise<number> {
  const byKey = new Map<string, Item[]>();
  for (const item of items) {
    const list = byKey.get(item.k) ?? [];
    byKey.set(item.k, list);
    list.push(item);
  }
  const records: Array<{ Data: Uint8Array; PartitionKey: string }> = [];
  for (const [key, list] of byKey) {
    for (let offset = 0; offset < list.length; offset += perAggregate) {
      const aggregates = aggregate(
        list
          .slice(offset, offset + perAggregate)
          .map((item) => ({ partitionKey: key, data: encoder.encode(JSON.stringify(item)) })),
      );
      for (const a of aggregates) records.push({ Data: a.data, PartitionKey: a.partitionKey });
    }
  }
  for (let offset = 0; offset < records.length; offset += 500) {
    const out = await client.send(
      new PutRecordsCommand({ StreamName: streamName, Records: records.slice(offset, offset + 500) }),
    );
    expect(out.FailedRecordCount ?? 0).to.equal(0);
  }
  return records.length;
}

/** Every item exactly once, and per key in increasing order. */
export function expectExactlyOnceInOrder(received: readonly Item[], expected: readonly Item[]): void {
  const seen = new Set<string>();
  const duplicates: string[] = [];
  for (const item of received) {
    const id = `${item.k}/${item.i}`;
    if (seen.has(id)) duplicates.push(id);
    seen.add(id);
  }
  expect(duplicates, 'duplicates').to.deep.equal([]);
  const missing = expected.filter((item) => !seen.has(`${item.k}/${item.i}`)).map((x) => `${x.k}/${x.i}`);
  expect(missing, 'missing').to.deep.equal([]);
  expect(received.length).to.equal(expected.length);
  expectPerKeyOrder(received);
}

export function expectPerKeyOrder(received: readonly Item[]): void {
  const last = new Map<string, number>();
  for (const item of received) {
    const previous = last.get(item.k) ?? -1;
    if (item.i <= previous) expect.fail(`key ${item.k}: ${item.i} came after ${previous}`);
    last.set(item.k, item.i);
  }
}

/**
 * Waits until `condition()` holds, polling (after `refresh()`, when given, reads what it checks);
 * fails with `describe()` after `timeoutMs`.
 */
export async function waitFor(
  condition: () => boolean,
  describe: () => string,
  timeoutMs = 30_000,
  intervalMs = 25,
  refresh?: () => Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await refresh?.();
    if (condition()) return;
    if (Date.now() > deadline) expect.fail(`timed out after ${timeoutMs} ms: ${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Shards in `reading` state. */
export function readingShards(coordinator: Coordinator): string[] {
  return coordinator
    .status()
    .shards.filter((s) => s.state === 'reading')
    .map((s) => s.shardId);
}

/**
 * Starts coordinators with shared defaults (read when each starts: a `before` hook may set them) and
 * stops every one still running with `stopAll()` (call it from `afterEach`).
 */
export function coordinatorStarter(defaults: () => Partial<CoordinatorOptions<unknown>>): {
  start<T = Item>(options: Partial<CoordinatorOptions<T>> & { group: string }): Promise<Coordinator<T>>;
  stopAll(): Promise<void>;
} {
  const running: Coordinator[] = [];
  return {
    async start<T = Item>(options: Partial<CoordinatorOptions<T>> & { group: string }) {
      const coordinator = await startCoordinator<T>({ ...defaults(), ...options } as CoordinatorOptions<T>);
      running.push(coordinator as Coordinator);
      return coordinator;
    },
    async stopAll() {
      await Promise.all(running.splice(0).map((c) => c.stop()));
    },
  };
}

/** Keyed items written continuously by a Producer (per-key order kept: one request in flight per shard). */
export class Production {
  readonly produced: Item[] = [];
  readonly #producer: Producer<Item>;
  readonly #next = new Map<string, number>();
  #running = true;
  readonly #loop: Promise<void>;

  constructor(kinesis: LocalKinesis, streamName: string, keys: number, perTick = 20, tickMs = 50) {
    this.#producer = new Producer<Item>({
      streamName,
      kinesis: kinesis.clientConfig,
      lingerMs: 20,
      maxInFlightPerShard: 1,
    });
    this.#loop = (async () => {
      while (this.#running) {
        const items = keyedItems(perTick, keys, this.#next);
        await Promise.all(items.map((item) => this.#producer.put(item, { partitionKey: item.k })));
        this.produced.push(...items);
        // Pacing, not waiting for a condition: a steady trickle of records on every shard.
        await delay(tickMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    try {
      await this.#loop;
    } finally {
      await this.#producer.close();
    }
  }
}
