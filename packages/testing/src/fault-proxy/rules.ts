/**
 * The FaultProxy's rules: what a rule may say, its validation, and the bookkeeping of the rules in force
 * (added in order, spent after `times` hits, removed by their handle).
 */
import { ShardlineOptionError } from '@shardline/common';
import { describe } from './options.js';

/** A Kinesis API operation name, as in `X-Amz-Target: Kinesis_20131202.<operation>`. */
export type KinesisOperation =
  | 'AddTagsToStream'
  | 'CreateStream'
  | 'DecreaseStreamRetentionPeriod'
  | 'DeleteStream'
  | 'DeregisterStreamConsumer'
  | 'DescribeLimits'
  | 'DescribeStream'
  | 'DescribeStreamConsumer'
  | 'DescribeStreamSummary'
  | 'GetRecords'
  | 'GetShardIterator'
  | 'IncreaseStreamRetentionPeriod'
  | 'ListShards'
  | 'ListStreamConsumers'
  | 'ListStreams'
  | 'MergeShards'
  | 'PutRecord'
  | 'PutRecords'
  | 'RegisterStreamConsumer'
  | 'SplitShard'
  | 'SubscribeToShard'
  | 'UpdateMaxRecordSize'
  | 'UpdateShardCount'
  | 'UpdateStreamRecordDistributionStrategy'
  | (string & {});

/**
 * Error names with a known status and message. Any other name is sent as given (status 400 unless
 * `status` says otherwise) and reaches SDK code as `error.name`.
 */
export type FaultErrorName =
  | 'ProvisionedThroughputExceededException'
  | 'LimitExceededException'
  | 'ExpiredIteratorException'
  | 'InternalFailure'
  | 'ServiceUnavailable'
  | 'ResourceNotFoundException'
  | 'KMSThrottlingException'
  | 'AccessDeniedException'
  | 'InvalidArgumentException'
  | (string & {});

/** Answer with a Kinesis error instead of the upstream's answer. */
export interface ErrorFault {
  type: 'error';
  error: FaultErrorName;
  /** @defaultValue the message Kinesis sends for that error (none for InternalFailure / ServiceUnavailable) */
  message?: string;
  /** @defaultValue 500 for InternalFailure, 503 for ServiceUnavailable, else 400 */
  status?: number;
  /**
   * Forward the request first, so it takes effect upstream (records written, iterator consumed), and
   * answer the error instead of the upstream's success: the "did my write happen?" case.
   * @defaultValue false
   */
  forward?: boolean;
}

/** Wait `ms` milliseconds, then go on (other rules and limits still apply). */
export interface LatencyFault {
  type: 'latency';
  ms: number;
}

/** Reset the client's TCP connection without answering: the SDK sees ECONNRESET. */
export interface ResetFault {
  type: 'reset';
  /** Forward the request first, so it takes effect upstream, then reset. @defaultValue false */
  forward?: boolean;
}

/**
 * PutRecords only: fail `round(fraction * n)` of the call's `n` eligible entries (picked with the proxy's
 * `random`) with a per-entry error, forward only the others, and answer with the merged result in the
 * original order and a correct FailedRecordCount. This is the fault AWS actually produces under load.
 */
export interface PartialFailureFault {
  type: 'partial-failure';
  /** 0..1 */
  fraction: number;
  /** The entries' ErrorCode. @defaultValue 'ProvisionedThroughputExceededException' */
  errorCode?: 'ProvisionedThroughputExceededException' | 'InternalFailure';
}

/** A JSON body, parsed. */
export type JsonBody = Record<string, unknown>;

/**
 * Rewrite a JSON call on its way: the upstream gets `request(body)` instead of the client's body (rule
 * matching and limits use the client's), and the client gets `response(answer, request)` instead of the
 * upstream's successful answer (error answers go back untouched). For what an emulator cannot answer:
 * a DescribeStreamSummary carrying `MaxRecordSizeInKiB` or `RecordDistributionStrategy`, records without a
 * `PartitionKey`, a request an emulator would refuse. Each function gets its own copy to change or
 * replace, and returns the body to use. A function that throws fails the call with HTTP 502. CBOR calls and
 * SubscribeToShard (an event stream) are not rewritten.
 */
export interface TransformAction {
  type: 'transform';
  request?: (body: JsonBody) => JsonBody;
  /** `request` is the body the upstream got (after the request transform). */
  response?: (answer: JsonBody, request: JsonBody) => JsonBody;
}

export type FaultAction = ErrorFault | LatencyFault | ResetFault | PartialFailureFault | TransformAction;

/**
 * When to inject what. All given conditions must hold for a call to match.
 *
 * Rules are checked in the order they were added. A matching `latency` rule that fires adds its delay and
 * checking goes on; the first other rule that fires decides the call and checking stops.
 */
export interface FaultRule {
  /** Operation(s) the rule applies to. @defaultValue every operation (PutRecords for partial-failure) */
  operation?: KinesisOperation | KinesisOperation[];
  /**
   * Only calls touching a matching shard: GetShardIterator / SubscribeToShard by their ShardId, GetRecords
   * by the shard its iterator was issued for (learnt from answers that went through this proxy),
   * PutRecord(s) by where their entries are routed. For partial-failure, only entries routed to a matching
   * shard are eligible. A call whose shard is unknown does not match.
   */
  shardId?: string | RegExp;
  /** Only calls on this stream (addressed by StreamName or StreamARN, or through a known iterator). */
  streamName?: string | RegExp;
  action: FaultAction;
  /** Fire on the next N matching calls only, then the rule is spent. @defaultValue unlimited */
  times?: number;
  /**
   * Fire on this fraction of matching calls, 0..1: the proxy draws `random()` once per matching call and
   * fires when the draw is below it. @defaultValue 1 (every matching call; no draw)
   */
  probability?: number;
}

/** What {@link FaultProxy.addRule} returns. */
export interface FaultRuleHandle {
  /** Stops the rule from matching. Idempotent. */
  remove(): void;
  /** How many calls the rule fired on. */
  readonly hits: number;
  /** True once `times` is used up or the rule was removed. */
  readonly spent: boolean;
}

const ERROR_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.#:]*$/;

function checkFraction(value: unknown, option: string): void {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new ShardlineOptionError(option, `must be a number from 0 to 1 (got ${describe(value)})`);
  }
}

function checkMatcher(value: unknown, option: string): void {
  if (value === undefined || value instanceof RegExp) return;
  if (typeof value !== 'string' || value.length === 0) {
    throw new ShardlineOptionError(option, `must be a non-empty string or a RegExp (got ${describe(value)})`);
  }
}

/** Validates a rule and returns a frozen copy. @throws ShardlineOptionError naming the field. */
export function validateRule(rule: FaultRule): Readonly<FaultRule> {
  if (rule === null || typeof rule !== 'object') {
    throw new ShardlineOptionError('rule', `must be an object with an action (got ${describe(rule)})`);
  }
  const action = rule.action as FaultAction | undefined;
  if (action === null || typeof action !== 'object') {
    throw new ShardlineOptionError('rule.action', `must be an object with a type (got ${describe(action)})`);
  }
  switch (action.type) {
    case 'error':
      if (typeof action.error !== 'string' || !ERROR_NAME_PATTERN.test(action.error)) {
        throw new ShardlineOptionError(
          'rule.action.error',
          `must be an error name such as 'ProvisionedThroughputExceededException' (got ${describe(action.error)})`,
        );
      }
      if (action.message !== undefined && typeof action.message !== 'string') {
        throw new ShardlineOptionError(
          'rule.action.message',
          `must be a string (got ${describe(action.message)})`,
        );
      }
      if (
        action.status !== undefined &&
        (!Number.isInteger(action.status) || action.status < 400 || action.status > 599)
      ) {
        throw new ShardlineOptionError(
          'rule.action.status',
          `must be an integer from 400 to 599 (got ${describe(action.status)})`,
        );
      }
      break;
    case 'latency':
      if (typeof action.ms !== 'number' || !Number.isFinite(action.ms) || action.ms < 0) {
        throw new ShardlineOptionError(
          'rule.action.ms',
          `must be a finite number >= 0 (got ${describe(action.ms)})`,
        );
      }
      break;
    case 'reset':
      break;
    case 'partial-failure': {
      checkFraction(action.fraction, 'rule.action.fraction');
      const code = action.errorCode;
      if (
        code !== undefined &&
        code !== 'ProvisionedThroughputExceededException' &&
        code !== 'InternalFailure'
      ) {
        throw new ShardlineOptionError(
          'rule.action.errorCode',
          `must be 'ProvisionedThroughputExceededException' or 'InternalFailure' (got ${describe(code)})`,
        );
      }
      const ops = rule.operation === undefined ? [] : [rule.operation].flat();
      if (ops.some((op) => op !== 'PutRecords')) {
        throw new ShardlineOptionError(
          'rule.operation',
          `must be 'PutRecords' (or omitted) for a partial-failure action`,
        );
      }
      break;
    }
    case 'transform': {
      for (const name of ['request', 'response'] as const) {
        if (action[name] !== undefined && typeof action[name] !== 'function') {
          throw new ShardlineOptionError(
            `rule.action.${name}`,
            `must be a function (got ${describe(action[name])})`,
          );
        }
      }
      if (action.request === undefined && action.response === undefined) {
        throw new ShardlineOptionError('rule.action', 'must have a request or a response function (or both)');
      }
      const ops = rule.operation === undefined ? [] : [rule.operation].flat();
      if (ops.includes('SubscribeToShard')) {
        throw new ShardlineOptionError(
          'rule.operation',
          "must not include 'SubscribeToShard' for a transform action (its answer is an event stream)",
        );
      }
      break;
    }
    default:
      throw new ShardlineOptionError(
        'rule.action.type',
        `must be 'error', 'latency', 'reset', 'partial-failure' or 'transform' (got ${describe((action as { type?: unknown }).type)})`,
      );
  }
  if (rule.operation !== undefined) {
    const ops = [rule.operation].flat();
    if (ops.length === 0 || ops.some((op) => typeof op !== 'string' || op.length === 0)) {
      throw new ShardlineOptionError(
        'rule.operation',
        `must be an operation name or a non-empty array of them`,
      );
    }
  }
  checkMatcher(rule.shardId, 'rule.shardId');
  checkMatcher(rule.streamName, 'rule.streamName');
  if (rule.times !== undefined && (!Number.isInteger(rule.times) || rule.times < 1)) {
    throw new ShardlineOptionError('rule.times', `must be an integer >= 1 (got ${describe(rule.times)})`);
  }
  if (rule.probability !== undefined) checkFraction(rule.probability, 'rule.probability');
  return Object.freeze({ ...rule, action: Object.freeze({ ...action }) });
}

/** Whether `value` matches a rule's string (equal) or RegExp; no matcher matches anything. */
export function matches(matcher: string | RegExp | undefined, value: string | undefined): boolean {
  if (matcher === undefined) return true;
  if (value === undefined) return false;
  if (typeof matcher === 'string') return matcher === value;
  matcher.lastIndex = 0;
  return matcher.test(value);
}

/** A rule as the proxy tracks it. */
export interface ActiveRule {
  rule: Readonly<FaultRule>;
  operations: Set<string> | undefined;
  remaining: number;
  hits: number;
  removed: boolean;
}

/** Validates `rule`, appends it to `rules` and returns its handle. @throws ShardlineOptionError naming the field. */
export function addActiveRule(rules: ActiveRule[], rule: FaultRule): FaultRuleHandle {
  const frozen = validateRule(rule);
  const active: ActiveRule = {
    rule: frozen,
    operations:
      frozen.operation === undefined
        ? frozen.action.type === 'partial-failure'
          ? new Set(['PutRecords'])
          : undefined
        : new Set([frozen.operation].flat()),
    remaining: frozen.times ?? Number.POSITIVE_INFINITY,
    hits: 0,
    removed: false,
  };
  rules.push(active);
  return {
    remove(): void {
      active.removed = true;
      const index = rules.indexOf(active);
      if (index !== -1) rules.splice(index, 1);
    },
    get hits(): number {
      return active.hits;
    },
    get spent(): boolean {
      return active.removed || active.remaining <= 0;
    },
  };
}

/** Counts a hit; a rule whose `times` are used up leaves `rules`. */
export function fireRule(rules: ActiveRule[], active: ActiveRule): void {
  active.hits++;
  active.remaining--;
  if (active.remaining <= 0) {
    const index = rules.indexOf(active);
    if (index !== -1) rules.splice(index, 1);
  }
}

/** `count` distinct items of `items`, picked with `random` (partial Fisher-Yates). */
export function pick(items: number[], count: number, random: () => number): number[] {
  const pool = [...items];
  const n = Math.min(count, pool.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.min(pool.length - i - 1, Math.floor(random() * (pool.length - i)));
    [pool[i], pool[j]] = [pool[j]!, pool[i]!];
  }
  return pool.slice(0, n);
}
