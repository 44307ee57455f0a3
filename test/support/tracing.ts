/**
 * A real OpenTelemetry SDK for tests: a BasicTracerProvider exporting to an InMemorySpanExporter, and the
 * AsyncLocalStorage context manager, registered globally for the tests of one `describe` (uninstalled
 * after, so other files run without a provider).
 */
import { context, type Span, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

export interface TestTracing {
  exporter: InMemorySpanExporter;
  spans(name?: string): ReadableSpan[];
  /** Runs `fn` inside a new active span `name` (ended when `fn` settles). */
  inSpan<R>(name: string, fn: (span: Span) => Promise<R>): Promise<R>;
  /** Runs `fn` with the span context of `traceparent` active (as a remote parent would be). */
  inContext<R>(traceparent: string, fn: () => R): R;
  uninstall(): Promise<void>;
}

export function installTracing(): TestTracing {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  const tracer = trace.getTracer('test');
  return {
    exporter,
    spans: (name) => exporter.getFinishedSpans().filter((s) => name === undefined || s.name === name),
    inSpan: (name, fn) =>
      tracer.startActiveSpan(name, async (span) => {
        try {
          return await fn(span);
        } finally {
          span.end();
        }
      }),
    inContext: (traceparent, fn) => {
      const [, traceId, spanId, flags] = traceparent.split('-');
      const span = trace.wrapSpanContext({
        traceId: traceId!,
        spanId: spanId!,
        traceFlags: Number.parseInt(flags!, 16),
      });
      return context.with(trace.setSpan(context.active(), span), fn);
    },
    uninstall: async () => {
      trace.disable();
      context.disable();
      await provider.shutdown();
    },
  };
}
