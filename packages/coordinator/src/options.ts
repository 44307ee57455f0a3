/**
 * The options of `startCoordinator()`, by name. The code lives in `options/`:
 * - `types.ts`: the public option types, whose TSDoc is the API reference of every option;
 * - `defaults.ts`: `COORDINATOR_DEFAULTS` and the bounds the options are checked against;
 * - `checks.ts`: the generic checks (integers, milliseconds, names, nested objects, unknown keys);
 * - `resolve.ts`: `resolveCoordinatorOptions()`, with `handler.ts` (delivery, onHandlerError,
 *   deadLetter) and `fan-out.ts` (fanOut).
 */

export { COORDINATOR_DEFAULTS } from './options/defaults.js';
export { resolveCoordinatorOptions, resolveStreamSpec } from './options/resolve.js';
export type {
  BatchAnswer,
  CheckpointOptions,
  CoordinatorOptions,
  DeadLetterOptions,
  FanOutOptions,
  HandlerErrorOptions,
  InitialPosition,
  LeasesOptions,
  MetricsOptions,
  MetricsRegistry,
  RecordBatch,
  RecordHandler,
  RemovedStream,
  RemoveStreamOptions,
  ResolvedCoordinatorOptions,
  ResolvedStreamSpec,
  StreamSpec,
  TracingOptions,
} from './options/types.js';
