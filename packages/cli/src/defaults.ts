/**
 * The defaults the option parser shows and uses, and the codec names it offers: no dependency, so that
 * `shardline --help` and usage errors answer without loading the AWS SDK or the library.
 */
import type { CodecName } from '@shardline/common';

/** The codecs of @shardline/common (`Object.keys(codecs)`; a unit test keeps the two lists equal). */
export const CODEC_NAMES: readonly CodecName[] = Object.freeze([
  'json',
  'jsonl',
  'string',
  'raw',
  'msgpack',
  'json-array',
]);

export const DEMO_DEFAULTS = Object.freeze({
  records: 2_000,
  shards: 4,
  rate: 500,
  /** Partition keys the records are spread over (key-00 .. key-31). */
  keys: 32,
  streamName: 'shardline-demo',
  group: 'shardline-demo',
  /** A Redis that takes longer than this to answer PING is not used: the demo must start at once. */
  redisProbeMs: 500,
  progressIntervalMs: 1_000,
  /** How long the consumer gets, after the last record was produced, to deliver everything. */
  drainTimeoutMs: 60_000,
  hosts: 1,
  /** Most hosts: each is a process with a worker thread, on one machine. */
  maxHosts: 16,
  /** Leases of the multi-host demo: short, so a killed host's shards move within seconds. */
  hostLeaseDurationMs: 3_000,
  hostStatusIntervalMs: 500,
  /** --kill-one kills a host once this share of the records is produced (before the split). */
  killAtFraction: 0.3,
  /** How long the demo waits for the hosts to share the shards before producing. */
  spreadWaitMs: 15_000,
  /** How long --kill-one waits for a host to hold a shard before killing it anyway. */
  killWaitMs: 10_000,
});

export const STATUS_DEFAULTS = Object.freeze({
  keyPrefix: 'shardline',
  watchIntervalSeconds: 2,
  /** A status is a glance: a Redis that does not answer within this is reported unreachable. */
  redisTimeoutMs: 3_000,
  /** Shards measured at once (each costs a GetShardIterator and a GetRecords). */
  lagConcurrency: 8,
});

/** The options of `shardline local` (the command adds the region and its alive check). */
export const LOCAL_OPTION_DEFAULTS = Object.freeze({
  engine: 'kinesis-mock' as 'kinesis-mock' | 'kinesalite',
  /** kinesalite's own default port, and the one the README's examples use. */
  port: 4567,
  shards: 1,
});
