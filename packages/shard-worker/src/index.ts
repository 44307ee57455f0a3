export type { CallOptions, GetRecordsClient, GetRecordsResult, GetShardIteratorResult } from './client.js';
export { kinesisGetRecordsClient } from './client.js';
export { connectShardReaderControl } from './control.js';
export type {
  BatchEncoding,
  InitialPosition,
  IteratorStart,
  ResolvedShardReaderOptions,
  ShardReaderOptions,
} from './options.js';
export { resolveShardReaderOptions, SHARD_READER_DEFAULTS } from './options.js';
export type { BatchRecord, FetchedRecord } from './records.js';
export { batchToRecords } from './records.js';
export type {
  ReaderClock,
  ShardReaderDeps,
  ShardReaderOutcome,
  ShardReaderState,
  ShardReaderStatus,
} from './shard-reader.js';
export { ShardReader, systemClock } from './shard-reader.js';
export type { ShardReaderControl, ShardReaderTask, ShardReaderTaskOptions } from './worker.js';
