/**
 * `process <stream>` spans (kind CONSUMER) around handler calls, per the OpenTelemetry messaging
 * conventions: one per call (a retry or an isolated record is a call of its own), a root span linked to
 * the producer contexts its records carry (`ShardRecord.traceContext`, distinct, at most 128), status
 * ERROR when the handler throws or reports a failed record. The handler runs in the span's context, so
 * its own spans are children of it. Nothing here runs per record unless links are on and a record
 * carries a context.
 */

import type { ShardRecord, TraceSpan, Tracing, TracingApiLoader } from '@shardline/common';
import { distinctTraceContexts, loadTracing } from '@shardline/common';

export interface ProcessTracingOptions {
  tracing: Tracing;
  /** The stream's name (`messaging.destination.name`). */
  stream: string;
  /** The consumer group (`messaging.consumer.group.name`). */
  group: string;
  /** Link each span to its records' producer contexts. */
  links: boolean;
}

const traceContextOf = (record: ShardRecord<unknown>) => record.traceContext;

export class ProcessTracing {
  readonly #o: ProcessTracingOptions;
  readonly #name: string;

  constructor(options: ProcessTracingOptions) {
    this.#o = options;
    this.#name = `process ${options.stream}`;
  }

  /** A started span for a handler call on `records` of `shardId`; the caller runs, fails and ends it. */
  start(shardId: string, records: readonly ShardRecord<unknown>[]): TraceSpan {
    const { tracing, stream, group, links } = this.#o;
    return tracing.startSpan(
      this.#name,
      'consumer',
      {
        'messaging.system': 'aws_kinesis',
        'messaging.destination.name': stream,
        'messaging.destination.partition.id': shardId,
        'messaging.consumer.group.name': group,
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.batch.message_count': records.length,
      },
      links ? distinctTraceContexts(records, traceContextOf) : [],
    );
  }
}

/**
 * The coordinator's process tracing: undefined when `tracing.enabled` is false or `@opentelemetry/api`
 * is not installed (`loader`: how to load it, for tests).
 */
export function processTracing(
  o: { tracing: Readonly<{ enabled: boolean; links: boolean }>; stream: string; group: string },
  loader?: TracingApiLoader,
): ProcessTracing | undefined {
  if (!o.tracing.enabled) return undefined;
  const tracing = loadTracing(loader);
  if (tracing === undefined) return undefined;
  return new ProcessTracing({ tracing, stream: o.stream, group: o.group, links: o.tracing.links });
}
