export type { ErrorCode, SerializedError, ShardlineErrorOptions } from './errors.js';
export {
  CodecError,
  classifyAwsError,
  deserializeError,
  ErrorCodes,
  KinesisError,
  KplError,
  rootCause,
  ShardlineError,
  ShardlineOptionError,
  serializeError,
} from './errors.js';
export type { LogFn, Logger } from './logger.js';
export { childLogger, silentLogger } from './logger.js';
export type { KinesisRecordInput, ShardPosition, ShardRecord } from './types.js';
export { SHARD_END } from './types.js';
