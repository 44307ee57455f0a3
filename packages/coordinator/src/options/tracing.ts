/** `tracing`: OpenTelemetry `process` spans around handler calls (see delivery/tracing.ts). */

import { ShardlineOptionError } from '@shardline/common';
import { objectOption, rejectUnknownKeys, show } from './checks.js';
import { COORDINATOR_DEFAULTS } from './defaults.js';
import type { ResolvedCoordinatorOptions } from './types.js';

function bool(value: unknown, option: string, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean')
    throw new ShardlineOptionError(option, `must be a boolean (got ${show(value)})`);
  return value;
}

export function resolveTracing(value: unknown): ResolvedCoordinatorOptions['tracing'] {
  if (value === undefined) return COORDINATOR_DEFAULTS.tracing;
  const tracing = objectOption(value, 'tracing', '{ enabled: true, links: true }');
  rejectUnknownKeys(tracing, ['enabled', 'links'], 'tracing.');
  return Object.freeze({
    enabled: bool(tracing.enabled, 'tracing.enabled', COORDINATOR_DEFAULTS.tracing.enabled),
    links: bool(tracing.links, 'tracing.links', COORDINATOR_DEFAULTS.tracing.links),
  });
}
