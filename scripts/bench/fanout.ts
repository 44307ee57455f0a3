/**
 * Enhanced fan-out vs polling benchmark (issue 7). Run: `npx tsx scripts/bench/fanout.ts` (after
 * `npx tsc -b`); about 1 minute.
 *
 * One kinesis-mock stream of 4 shards, read at the same time by three consumers:
 * - `polling`: startCoordinator with GetRecords (fetchRatePerShard 5, idleFetchIntervalMs 200);
 * - `fan-out`: startCoordinator with `fanOut` (SubscribeToShard over HTTP/1.1);
 * - `raw`: a bare SDK SubscribeToShard loop per shard (its own consumer), which shows what the emulator
 *   itself allows: its push cadence and put-to-event latency. The fan-out reader's own added latency is
 *   fan-out minus raw.
 * Phase 1 (latency): records put at a steady rate, each carrying its put time; put-to-handler latency
 * p50/p99 per consumer. Phase 2 (throughput): a burst put first, then every consumer started on a new
 * group from TRIM_HORIZON; records/s from start to the last record.
 * Prints the figures and writes the "Enhanced fan-out" section of BENCHMARKS.md.
 */
import os from 'node:os';
import {
  type KinesisClient,
  PutRecordsCommand,
  SubscribeToShardCommand,
  type SubscribeToShardCommandOutput,
  type SubscribeToShardEvent,
  type SubscribeToShardEventStream,
} from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '@shardline/common';
import { type Coordinator, ensureStreamConsumer, startCoordinator } from '@shardline/coordinator';
import { startLocalKinesis } from '@shardline/testing';
import { progress, QUICK, writeBenchmarkSection } from './lib-benchmarks-md.js';

const SHARDS = 4;
const RATE_PER_SEC = Number(process.env.BENCH_FANOUT_RATE ?? 200);
const LATENCY_SECONDS = Number(process.env.BENCH_FANOUT_SECONDS ?? (QUICK ? 5 : 20));
const BURST_RECORDS = Number(process.env.BENCH_FANOUT_BURST ?? (QUICK ? 2_000 : 8_000));
const encoder = new TextEncoder();

interface Payload {
  t: number;
  i: number;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(latencies: number[]): { p50: number; p99: number; n: number } {
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p99: percentile(sorted, 99), n: sorted.length };
}

async function put(client: KinesisClient, stream: string, from: number, count: number): Promise<void> {
  for (let offset = 0; offset < count; offset += 500) {
    const n = Math.min(500, count - offset);
    const t = Date.now();
    await client.send(
      new PutRecordsCommand({
        StreamName: stream,
        Records: Array.from({ length: n }, (_, k) => ({
          Data: encoder.encode(JSON.stringify({ t, i: from + offset + k } satisfies Payload)),
          PartitionKey: `k-${(from + offset + k) % 64}`,
        })),
      }),
    );
  }
}

/** A bare SDK subscriber per shard: latency of each record, and the gaps between events. */
function rawSubscriber(client: KinesisClient, consumerArn: string, shardIds: string[]) {
  const latencies: number[] = [];
  const gaps: number[] = [];
  const abort = new AbortController();
  const loops = shardIds.map(async (shardId) => {
    let position: { Type: 'LATEST' } | { Type: 'AFTER_SEQUENCE_NUMBER'; SequenceNumber: string } = {
      Type: 'LATEST',
    };
    while (!abort.signal.aborted) {
      try {
        const out: SubscribeToShardCommandOutput = await client.send(
          new SubscribeToShardCommand({
            ConsumerARN: consumerArn,
            ShardId: shardId,
            StartingPosition: position,
          }),
          { abortSignal: abort.signal },
        );
        let last: number | undefined;
        for await (const event of (out.EventStream ?? []) as AsyncIterable<SubscribeToShardEventStream>) {
          const now = Date.now();
          if (last !== undefined) gaps.push(now - last);
          last = now;
          const e: SubscribeToShardEvent | undefined = event.SubscribeToShardEvent;
          for (const r of e?.Records ?? []) {
            latencies.push(now - (JSON.parse(new TextDecoder().decode(r.Data)) as Payload).t);
          }
          if (e?.ContinuationSequenceNumber) {
            position = { Type: 'AFTER_SEQUENCE_NUMBER', SequenceNumber: e.ContinuationSequenceNumber };
          }
        }
      } catch {
        if (!abort.signal.aborted) await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  });
  return {
    latencies,
    gaps,
    async stop() {
      abort.abort();
      await Promise.allSettled(loops);
    },
  };
}

async function main(): Promise<void> {
  const kinesis = await startLocalKinesis({ engine: 'kinesis-mock' });
  const client = createKinesisClient(kinesis.clientConfig);
  const stream = 'bench-fanout';
  const running: Coordinator<Payload>[] = [];
  try {
    await kinesis.createStream(stream, { shards: SHARDS });
    const shardIds = (await kinesis.listShards(stream)).map((s) => s.ShardId!);
    const raw = await ensureStreamConsumer(client, {
      streamName: stream,
      consumerName: 'bench-raw',
      timeoutMs: 30_000,
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    });

    // Phase 1: latency at a steady rate.
    progress(`latency: ${RATE_PER_SEC} records/s for ${LATENCY_SECONDS} s, polling + fan-out + raw`);
    const latency = { polling: [] as number[], fanOut: [] as number[] };
    const common = {
      streamName: stream,
      kinesis: kinesis.clientConfig,
      workerThreads: 2,
      initialPosition: 'LATEST' as const,
    };
    running.push(
      await startCoordinator<Payload>({
        ...common,
        group: 'bench-poll',
        idleFetchIntervalMs: 200,
        handler: (batch) => {
          const now = Date.now();
          for (const r of batch.records) latency.polling.push(now - r.data.t);
        },
      }),
    );
    // The reader's own share: from the event's arrival in the worker thread (the `fetched` message,
    // status().shards[].lastFetchAt) to the handler, for batches that carry records.
    const readerMs: number[] = [];
    let fanCoordinator: Coordinator<Payload> | undefined;
    fanCoordinator = await startCoordinator<Payload>({
      ...common,
      group: 'bench-fan',
      fanOut: { consumerName: 'bench-fan' },
      handler: (batch) => {
        const now = Date.now();
        for (const r of batch.records) latency.fanOut.push(now - r.data.t);
        const fetchedAt = fanCoordinator
          ?.status()
          .shards.find((s) => s.shardId === batch.shardId)?.lastFetchAt;
        if (fetchedAt !== undefined && batch.records.length > 0) readerMs.push(now - Date.parse(fetchedAt));
      },
    });
    running.push(fanCoordinator);
    const rawSub = rawSubscriber(client, raw.consumerArn, shardIds);
    // Let every subscription and iterator settle before measuring.
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const total = RATE_PER_SEC * LATENCY_SECONDS;
    const tickMs = 100;
    const perTick = Math.max(1, Math.round((RATE_PER_SEC * tickMs) / 1_000));
    const begin = Date.now();
    for (let sent = 0; sent < total; sent += perTick) {
      await put(client, stream, sent, Math.min(perTick, total - sent));
      const due = begin + ((sent + perTick) / RATE_PER_SEC) * 1_000;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));
    }
    const deadline = Date.now() + 30_000;
    while (
      (latency.polling.length < total || latency.fanOut.length < total || rawSub.latencies.length < total) &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await rawSub.stop();
    await Promise.all(running.splice(0).map((c) => c.stop()));
    const poll = summary(latency.polling);
    const fan = summary(latency.fanOut);
    const bare = summary(rawSub.latencies);
    const cadence = summary(rawSub.gaps);
    const reader = summary(readerMs);

    // Phase 2: throughput from TRIM_HORIZON over a backlog.
    progress(`throughput: ${BURST_RECORDS} records backlog, polling then fan-out from TRIM_HORIZON`);
    await put(client, stream, total, BURST_RECORDS);
    const backlog = total + BURST_RECORDS;
    async function drain(fanOut: boolean): Promise<number> {
      let seen = 0;
      const started = performance.now();
      let finished = 0;
      const c = await startCoordinator<Payload>({
        streamName: stream,
        kinesis: kinesis.clientConfig,
        workerThreads: 2,
        group: fanOut ? 'bench-fan-drain' : 'bench-poll-drain',
        idleFetchIntervalMs: 200,
        ...(fanOut ? { fanOut: { consumerName: 'bench-fan' } } : {}),
        handler: (batch) => {
          seen += batch.records.length;
          if (seen >= backlog && finished === 0) finished = performance.now();
        },
      });
      const limit = Date.now() + 60_000;
      while (finished === 0 && Date.now() < limit) await new Promise((resolve) => setTimeout(resolve, 50));
      await c.stop();
      return finished === 0 ? Number.NaN : backlog / ((finished - started) / 1_000);
    }
    const pollRate = await drain(false);
    const fanRate = await drain(true);

    const ms = (x: number) => (Number.isNaN(x) ? 'n/a' : `${Math.round(x)} ms`);
    const added = fan.p50 - bare.p50;
    const lines = [
      '## Enhanced fan-out',
      '',
      `\`npx tsx scripts/bench/fanout.ts\` on ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown CPU'}), ` +
        `Node ${process.version}, ${new Date().toISOString().slice(0, 10)}. kinesis-mock, ${SHARDS} shards, ` +
        'fan-out over HTTP/1.1, all consumers on the same stream at the same time.',
      '',
      `Latency: ${RATE_PER_SEC} records/s for ${LATENCY_SECONDS} s, put time to handler (same host clock).`,
      '',
      '| consumer | records | p50 | p99 |',
      '| --- | --- | --- | --- |',
      `| polling (GetRecords, 5/s per shard, idle 200 ms) | ${poll.n} | ${ms(poll.p50)} | ${ms(poll.p99)} |`,
      `| fan-out (Shardline, SubscribeToShard) | ${fan.n} | ${ms(fan.p50)} | ${ms(fan.p99)} |`,
      `| raw SDK SubscribeToShard (what the emulator allows) | ${bare.n} | ${ms(bare.p50)} | ${ms(bare.p99)} |`,
      '',
      `kinesis-mock push cadence (gap between events of one subscription): p50 ${ms(cadence.p50)}, p99 ${ms(cadence.p99)}. ` +
        `Fan-out latency is bounded by that cadence (about half of it on average), not by the reader. ` +
        `Fan-out p50 minus raw p50: ${ms(added)} (the raw subscriber decodes in the main thread; Shardline ` +
        'decodes in a worker thread and crosses to the coordinator; all consumers share 2 cores with ' +
        `kinesis-mock). The reader's own share, from an event's arrival in the worker to the handler: ` +
        `p50 ${ms(reader.p50)}, p99 ${ms(reader.p99)} over ${reader.n} batches (goal <= 20 ms).`,
      '',
      `Throughput from TRIM_HORIZON over a ${backlog}-record backlog (handler doing nothing): polling ` +
        `${Number.isNaN(pollRate) ? 'n/a' : Math.round(pollRate)} records/s, fan-out ${Number.isNaN(fanRate) ? 'n/a' : Math.round(fanRate)} records/s ` +
        '(fan-out: one event per shard per cadence tick, as many records as kinesis-mock puts in an event).',
      '',
    ];
    const section = lines.join('\n');
    process.stdout.write(`${section}\n`);
    writeBenchmarkSection('Enhanced fan-out', section);
  } finally {
    await Promise.allSettled(running.map((c) => c.stop()));
    client.destroy();
    await kinesis.stop();
  }
}

await main();
