/**
 * The messages between `shardline demo --hosts N` and its host processes (fork IPC). Versioned
 * discriminated unions with runtime guards: a child of another build must not be half-understood.
 */
import type { CoordinatorStatus } from '@shardline/coordinator';
import type { DemoItem } from './tally.js';

/** What the parent passes a host at fork (in the SHARDLINE_DEMO_HOST environment variable, JSON). */
export interface DemoHostConfig {
  hostId: string;
  streamName: string;
  group: string;
  /** Plain Kinesis client config (endpoint, region, credentials). */
  kinesis: Record<string, unknown>;
  redisUrl: string;
  keyPrefix: string;
  leaseDurationMs: number;
  /** Serve metrics: the host keeps a prom-client Registry and answers `metrics` requests. */
  metrics: boolean;
  statusIntervalMs: number;
}

export const DEMO_HOST_ENV = 'SHARDLINE_DEMO_HOST';

/** Host -> parent. */
export type HostMessage =
  | { v: 1; type: 'ready'; hostId: string; pid: number }
  | { v: 1; type: 'batch'; hostId: string; shardId: string; records: DemoItem[] }
  | { v: 1; type: 'status'; hostId: string; status: CoordinatorStatus }
  | { v: 1; type: 'lease'; hostId: string; shardId: string; counter: number; atMs: number }
  | { v: 1; type: 'metrics'; hostId: string; id: number; metrics: object[] }
  | { v: 1; type: 'failed'; hostId: string; message: string }
  | { v: 1; type: 'stopped'; hostId: string };

/** Parent -> host. */
export type ParentMessage = { v: 1; type: 'stop' } | { v: 1; type: 'metrics'; id: number };

const HOST_TYPES = new Set(['ready', 'batch', 'status', 'lease', 'metrics', 'failed', 'stopped']);

export function isHostMessage(value: unknown): value is HostMessage {
  const m = value as { v?: unknown; type?: unknown; hostId?: unknown } | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.v === 1 &&
    typeof m.type === 'string' &&
    HOST_TYPES.has(m.type) &&
    typeof m.hostId === 'string'
  );
}

export function isParentMessage(value: unknown): value is ParentMessage {
  const m = value as { v?: unknown; type?: unknown; id?: unknown } | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.v === 1 &&
    (m.type === 'stop' || (m.type === 'metrics' && typeof m.id === 'number'))
  );
}
