/** Helpers shared by the consumer and scale scenarios. */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  PutRecordsCommand,
  type Shard,
} from '@aws-sdk/client-kinesis';

export const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU model, cores and Node version, for a section's opening line. */
export function machineLine(): string {
  const cpus = os.cpus();
  return `${cpus.length} cores, ${cpus[0]?.model.trim() ?? 'unknown CPU'}, Node ${process.version}`;
}

/** Seconds of CPU (user + system) this whole process used: every thread, as getrusage counts it. */
export function processCpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

/** Seconds of CPU another process used (Linux /proc; USER_HZ is 100 on Linux). */
export function childCpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** Percentile of an ascending array (nearest rank). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

/**
 * Writes `perShard` records into every shard (ExplicitHashKey pins each record to its shard), 500 per
 * PutRecords, 4 calls in flight; failed entries are retried.
 */
export async function fillShards(
  client: KinesisClient,
  streamName: string,
  shards: readonly Shard[],
  perShard: number,
  data: (shard: number, i: number) => Uint8Array,
): Promise<void> {
  const jobs: Array<{ shard: number; from: number; count: number }> = [];
  for (let s = 0; s < shards.length; s++) {
    for (let from = 0; from < perShard; from += 500)
      jobs.push({ shard: s, from, count: Math.min(500, perShard - from) });
  }
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      const hashKey = shards[job.shard]!.HashKeyRange!.StartingHashKey!;
      let pending = Array.from({ length: job.count }, (_, n) => ({
        Data: data(job.shard, job.from + n),
        PartitionKey: `k-${job.shard}`,
        ExplicitHashKey: hashKey,
      }));
      while (pending.length > 0) {
        const out = await client.send(new PutRecordsCommand({ StreamName: streamName, Records: pending }));
        pending = pending.filter((_, n) => out.Records?.[n]?.ErrorCode !== undefined);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

/**
 * The hand-written consumer the library is compared with: one async loop per shard, GetShardIterator
 * TRIM_HORIZON then GetRecords (Limit 10,000) paced at 5 calls/s per shard (the service limit, which the
 * library keeps too), each record's data decoded as JSON on this thread. Resolves when `until()` says so.
 */
export async function rawGetRecordsLoop(
  client: KinesisClient,
  streamName: string,
  shardIds: readonly string[],
  onRecords: (shardId: string, records: unknown[]) => void,
  until: () => boolean,
  /** Also keep each shard under this many data bytes per second (Kinesis: 2 MiB/s). @defaultValue no limit */
  bytesPerSecPerShard = Number.POSITIVE_INFINITY,
): Promise<void> {
  const decoder = new TextDecoder();
  await Promise.all(
    shardIds.map(async (shardId) => {
      const it = await client.send(
        new GetShardIteratorCommand({
          StreamName: streamName,
          ShardId: shardId,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      );
      let iterator = it.ShardIterator;
      while (iterator !== undefined && !until()) {
        const calledAt = performance.now();
        const out = await client.send(new GetRecordsCommand({ ShardIterator: iterator, Limit: 10_000 }));
        let bytes = 0;
        const records = (out.Records ?? []).map((r) => {
          bytes += r.Data?.byteLength ?? 0;
          return JSON.parse(decoder.decode(r.Data)) as unknown;
        });
        onRecords(shardId, records);
        iterator = out.NextShardIterator;
        // The next call waits 200 ms (5 calls/s), or as long as the bytes just read take at the byte rate.
        const wait = Math.max(200, (bytes / bytesPerSecPerShard) * 1_000) - (performance.now() - calledAt);
        if (wait > 0 && !until()) await sleep(records.length === 0 ? Math.max(wait, 1_000) : wait);
      }
    }),
  );
}

/** Every child process a bench started, killed when it exits however it exits. */
const benchChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of benchChildren) if (child.exitCode === null) child.kill('SIGKILL');
});

/** A running memory-kinesis.mjs child: a consumer-bound Kinesis (see that file). */
export interface MemoryKinesis {
  config: { endpoint: string; region: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  pid: number | undefined;
  shardIds: string[];
  stop(): void;
}

/** Starts memory-kinesis.mjs with `shards` pre-filled with `recordsPerShard` JSON records of about `recordBytes`. */
export async function startMemoryKinesis(
  shards: number,
  recordsPerShard: number,
  recordBytes: number,
): Promise<MemoryKinesis> {
  const child = spawn(process.execPath, [fileURLToPath(new URL('./memory-kinesis.mjs', import.meta.url))], {
    env: { ...process.env, MEMORY_KINESIS: JSON.stringify({ shards, recordsPerShard, recordBytes }) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  benchChildren.add(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`memory-kinesis exited (${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) =>
      resolve((JSON.parse(line) as { port: number }).port),
    );
  });
  return {
    config: {
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    },
    pid: child.pid,
    shardIds: Array.from({ length: shards }, (_, n) => `shardId-${String(n).padStart(12, '0')}`),
    stop: () => child.kill('SIGKILL'),
  };
}

/** The middle value (of an odd count; the upper middle of an even one). */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}
