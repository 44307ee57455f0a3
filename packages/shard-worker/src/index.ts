export type { CallOptions, GetRecordsClient, GetRecordsResult, GetShardIteratorResult } from './client.js';
export { kinesisGetRecordsClient } from './client.js';
export {
  connectShardReaderControl,
  exposeShardReaderControl,
  openShardReaderControl,
  type ShardReaderControlHandlers,
} from './control.js';
export type { ShardEndProbe, SubscribeClient, SubscribeToShardResult } from './fan-out-clients.js';
export { kinesisShardEndProbe, kinesisSubscribeClient } from './fan-out-clients.js';
export type { FanOutReaderOptions } from './fan-out-options.js';
export { FAN_OUT_READER_DEFAULTS } from './fan-out-options.js';
export type { FanOutReaderDeps } from './fan-out-reader.js';
export { FanOutReader } from './fan-out-reader.js';
export {
  type FirstAnswer,
  type FirstFailure,
  type FirstFetcher,
  fetchFirstAnswer,
  firstFetcher,
} from './first-fetch.js';
export type {
  BatchEncoding,
  InitialPosition,
  IteratorStart,
  ResolvedShardReaderOptions,
  ShardReaderOptions,
} from './options.js';
export { resolveShardReaderOptions, SHARD_READER_DEFAULTS } from './options.js';
export type { FetchedRecord } from './records.js';
export type {
  ReaderClock,
  ShardReaderDeps,
  ShardReaderOutcome,
  ShardReaderState,
  ShardReaderStatus,
} from './shard-reader.js';
export { ShardReader, systemClock } from './shard-reader.js';
export type {
  ShardReaderControl,
  ShardReaderFanOutOptions,
  ShardReaderTask,
  ShardReaderTaskOptions,
} from './worker.js';
