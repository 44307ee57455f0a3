/** What the FaultProxy counts and the events it emits. */

/** Counts since start or the last {@link FaultProxy.resetCounters}. */
export interface FaultProxyCounters {
  /** Client requests by operation (`(none)` for requests naming no operation). */
  requests: Record<string, number>;
  /** Calls a rule fired on, by error name, or `latency` / `reset` / `partial-failure`. */
  injected: Record<string, number>;
  /** PutRecords entries failed by partial-failure rules. */
  injectedEntries: number;
  /** Limits mode: whole calls refused with ProvisionedThroughputExceededException (GetRecords, PutRecord). */
  throttledCalls: number;
  /** Limits mode: PutRecords entries refused with a per-entry ProvisionedThroughputExceededException. */
  throttledEntries: number;
  /** Connections reset by rules. */
  resets: number;
  /** Client requests sent on to the upstream (the proxy's own ListShards calls not included). */
  forwarded: number;
  /** Client TCP connections accepted (keep-alive clients reuse one for many requests). */
  connections: number;
}

/** One client request, as the proxy decided it (emitted before it is forwarded). */
export interface FaultProxyRequestEvent {
  /** When the proxy decided the call (its `now` clock, ms): in limits mode, the instant its limits were checked at. */
  at: number;
  operation: string | undefined;
  streamName: string | undefined;
  /** The shards the request touches, as far as the proxy knew without extra upstream calls. */
  shardIds: string[];
  /** `forwarded`: sent upstream (possibly without some PutRecords entries); `error`: answered with an error. */
  outcome: 'forwarded' | 'error' | 'reset';
  /** The error answered, when `outcome` is `error`. */
  error?: string;
  /** What caused a fault: a rule, or limits mode. */
  cause?: 'rule' | 'limits';
  /** Delay added by latency rules. */
  latencyMs: number;
  /** PutRecords: entries in the call, failed by a rule, refused by limits. */
  entries?: { total: number; injected: number; throttled: number };
}

/** Events of a {@link FaultProxy}. */
export interface FaultProxyEvents {
  request: FaultProxyRequestEvent;
}

/** Counters at zero. */
export const EMPTY_COUNTERS = (): FaultProxyCounters => ({
  requests: {},
  injected: {},
  injectedEntries: 0,
  throttledCalls: 0,
  throttledEntries: 0,
  resets: 0,
  forwarded: 0,
  connections: 0,
});

export function increment(record: Record<string, number>, key: string): void {
  record[key] = (record[key] ?? 0) + 1;
}
