/**
 * How Shardline's Prometheus metrics share a user's prom-client Registry.
 *
 * Several coordinators and producers of one process may register in the same Registry, and prom-client
 * throws when a second metric of a name is registered: so the first instance creates each metric and
 * the others reuse it, told apart by their label values (stream, group). Gauges that describe the
 * current state (leases held, buffered records, lag per shard) are computed when the Registry is
 * scraped, from one source per live instance: an instance that stops removes its source, so it leaves
 * no stale series behind, and two instances with the same labels add up.
 *
 * This module is the protocol both packages follow; it does not depend on prom-client (the coordinator
 * and the producer each bring theirs), and the source list hangs on the metric object under a global
 * symbol so that two copies of Shardline in one process still share it.
 */

import { ShardlineOptionError } from './errors.js';

/** The part of a prom-client `Registry` Shardline uses. */
export interface MetricsRegistry {
  registerMetric(metric: unknown): void;
  getSingleMetric(name: string): unknown;
}

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** What a shared metric must be for Shardline to use it. */
export interface MetricSpec {
  name: string;
  type: MetricType;
  labelNames: readonly string[];
}

export type MetricLabels = Readonly<Record<string, string>>;

/** One value of a sourced gauge: its labels and its value. */
export type GaugeSample = readonly [labels: MetricLabels, value: number];

/** Called at every scrape: the samples of one live instance (one that throws shows nothing). */
export type GaugeSource = () => Iterable<GaugeSample>;

/** The part of a prom-client Gauge a sourced gauge needs. */
export interface SourcedGauge {
  reset(): void;
  inc(labels: MetricLabels, value: number): void;
}

const SOURCES = Symbol.for('shardline.metrics.gauge-sources');

type WithSources = { [SOURCES]?: Set<GaugeSource> };

/**
 * The registry's metric named `spec.name` when it has one (created by another Shardline instance),
 * else `create()` (which registers it).
 *
 * @throws ShardlineOptionError (`metrics.registry`) when the registry holds a metric of that name of
 * another type or with other labels: Shardline could not update it.
 */
export function sharedMetric<M>(registry: MetricsRegistry, spec: MetricSpec, create: () => M): M {
  const existing = registry.getSingleMetric(spec.name) as
    | { type?: unknown; labelNames?: unknown }
    | undefined
    | null;
  if (existing === undefined || existing === null) return create();
  const labels = Array.isArray(existing.labelNames) ? (existing.labelNames as unknown[]) : [];
  const sameLabels =
    labels.length === spec.labelNames.length && spec.labelNames.every((name) => labels.includes(name));
  if (existing.type !== spec.type || !sameLabels) {
    throw new ShardlineOptionError(
      'metrics.registry',
      `already holds a metric '${spec.name}' (${String(existing.type)} with labels [${labels.join(', ')}]) ` +
        `that Shardline cannot use: it needs a ${spec.type} with labels [${spec.labelNames.join(', ')}]. ` +
        'Remove that metric or give Shardline another Registry',
    );
  }
  return existing as M;
}

/** For a sourced gauge's `collect`: its values become the sum of every live source's samples. */
export function collectGaugeSources(gauge: SourcedGauge): void {
  gauge.reset();
  const sources = (gauge as WithSources)[SOURCES];
  if (sources === undefined) return;
  for (const source of sources) {
    let samples: GaugeSample[];
    try {
      samples = [...source()];
    } catch {
      // One instance in a bad state (e.g. half-built) must not fail the whole scrape: it shows nothing.
      continue;
    }
    for (const [labels, value] of samples) gauge.inc(labels, value);
  }
}

/** Adds an instance's source to a sourced gauge; returns its removal (idempotent). */
export function addGaugeSource(gauge: object, source: GaugeSource): () => void {
  const holder = gauge as WithSources;
  let sources = holder[SOURCES];
  if (sources === undefined) {
    sources = new Set();
    Object.defineProperty(holder, SOURCES, { value: sources, enumerable: false });
  }
  const set = sources;
  set.add(source);
  return () => {
    set.delete(source);
  };
}

/**
 * Validates the `metrics` option shared by the coordinator and the producer: `undefined`, or
 * `{ registry }` with a prom-client Registry.
 *
 * @throws ShardlineOptionError naming `metrics` or `metrics.registry`.
 */
export function resolveMetricsOptions(value: unknown): Readonly<{ registry: MetricsRegistry }> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ShardlineOptionError('metrics', 'must be an object like { registry: new Registry() }');
  }
  for (const key of Object.keys(value)) {
    if (key !== 'registry')
      throw new ShardlineOptionError(`metrics.${key}`, 'is not a metrics option (use registry)');
  }
  const registry = (value as { registry?: unknown }).registry as
    | { registerMetric?: unknown; getSingleMetric?: unknown }
    | undefined
    | null;
  if (
    typeof registry !== 'object' ||
    registry === null ||
    typeof registry.registerMetric !== 'function' ||
    typeof registry.getSingleMetric !== 'function'
  ) {
    throw new ShardlineOptionError(
      'metrics.registry',
      "must be a prom-client Registry (an object with registerMetric and getSingleMetric: `new Registry()` from 'prom-client')",
    );
  }
  return Object.freeze({ registry: registry as unknown as MetricsRegistry });
}
