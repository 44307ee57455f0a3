/**
 * OpenTelemetry tracing without a hard dependency: `@opentelemetry/api` is an optional peer dependency.
 * It is loaded once, synchronously, the first time a producer or coordinator asks for it (a `require` of
 * the package from here, so a span can start at the first call, not after an `await`); when it is not
 * installed, {@link loadTracing} returns undefined and every caller does nothing (no error, no log).
 *
 * The API keeps its global state (the registered tracer provider, context manager, propagators) under a
 * `Symbol.for` key on `globalThis`, so the CommonJS build loaded here and the ES module build an
 * application imports share it.
 *
 * The types here are Shardline's own (strings and numbers): no public type of this package refers to
 * `@opentelemetry/api`, so an application without it type-checks too.
 */
import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import { formatTraceparent, parseTraceparent } from './trace-envelope.js';

/** Returns the `@opentelemetry/api` module, or throws when it cannot be loaded. */
export type TracingApiLoader = () => unknown;

/** Span attribute values Shardline sets. */
export type TraceAttributes = Record<string, string | number | boolean>;

/** A started span. */
export interface TraceSpan {
  /** Runs `fn` with this span as the active context (so the spans `fn` starts are its children). */
  run<R>(fn: () => R): R;
  setAttribute(key: string, value: string | number | boolean): void;
  /** Marks the span failed (status ERROR) and records `error` as an exception event. */
  fail(error: unknown): void;
  /** Idempotent. */
  end(): void;
}

/** What Shardline's producer and coordinator use of OpenTelemetry. */
export interface Tracing {
  /** The W3C traceparent of the active context's span, or undefined when there is none (or it is invalid). */
  activeTraceparent(): string | undefined;
  /**
   * Starts a span at the root (not under whatever context happens to be active: batching decouples a
   * call from the code that put its records), linked to `links` (traceparents, expected distinct).
   */
  startSpan(
    name: string,
    kind: 'producer' | 'consumer',
    attributes: TraceAttributes,
    links: readonly string[],
  ): TraceSpan;
}

/** The most links one span gets (OpenTelemetry SDKs keep 128 by default). */
export const MAX_SPAN_LINKS = 128;

/** The tracer name, as instrumentation scope. */
export const TRACER_NAME = '@shardline';

const requireHere = createRequire(import.meta.url);

/** The default loader: `require('@opentelemetry/api')` from @shardline/common. */
export const defaultTracingApiLoader: TracingApiLoader = () => requireHere('@opentelemetry/api');

let loaded: { api: typeof OtelApi | undefined } | undefined;

function isApi(value: unknown): value is typeof OtelApi {
  const v = value as Partial<typeof OtelApi> | null | undefined;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.trace?.getTracer === 'function' &&
    typeof v.trace?.getSpanContext === 'function' &&
    typeof v.trace?.setSpan === 'function' &&
    typeof v.context?.active === 'function' &&
    typeof v.context?.with === 'function' &&
    typeof v.isSpanContextValid === 'function' &&
    v.ROOT_CONTEXT !== undefined
  );
}

function load(loader: TracingApiLoader): typeof OtelApi | undefined {
  try {
    const api = loader();
    return isApi(api) ? api : undefined;
  } catch {
    // Not installed (or broken): tracing is off, as documented; nothing to report.
    return undefined;
  }
}

/**
 * The tracing facade, or undefined when `@opentelemetry/api` cannot be loaded. The default loader runs
 * once per process (its answer is kept); a `loader` given (tests, or an application that bundles the API
 * under another name) runs on each call.
 */
export function loadTracing(loader?: TracingApiLoader): Tracing | undefined {
  let api: typeof OtelApi | undefined;
  if (loader !== undefined) api = load(loader);
  else {
    loaded ??= { api: load(defaultTracingApiLoader) };
    api = loaded.api;
  }
  return api === undefined ? undefined : new OtelTracing(api);
}

class OtelSpan implements TraceSpan {
  readonly #api: typeof OtelApi;
  readonly #span: OtelApi.Span;
  #ended = false;

  constructor(api: typeof OtelApi, span: OtelApi.Span) {
    this.#api = api;
    this.#span = span;
  }

  run<R>(fn: () => R): R {
    const api = this.#api;
    return api.context.with(api.trace.setSpan(api.context.active(), this.#span), fn);
  }

  setAttribute(key: string, value: string | number | boolean): void {
    this.#span.setAttribute(key, value);
  }

  fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    if (error instanceof Error) this.#span.recordException(error);
    else this.#span.recordException(message);
    this.#span.setStatus({ code: this.#api.SpanStatusCode.ERROR, message });
    const type = (error as { code?: unknown } | null)?.code;
    if (typeof type === 'string') this.#span.setAttribute('error.type', type);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#span.end();
  }
}

class OtelTracing implements Tracing {
  readonly #api: typeof OtelApi;
  readonly #tracer: OtelApi.Tracer;

  constructor(api: typeof OtelApi) {
    this.#api = api;
    // A ProxyTracer: it follows whatever provider the application registers, before or after this.
    this.#tracer = api.trace.getTracer(TRACER_NAME);
  }

  activeTraceparent(): string | undefined {
    const sc = this.#api.trace.getSpanContext(this.#api.context.active());
    if (sc === undefined || !this.#api.isSpanContextValid(sc)) return undefined;
    return formatTraceparent(sc.traceId, sc.spanId, sc.traceFlags);
  }

  startSpan(
    name: string,
    kind: 'producer' | 'consumer',
    attributes: TraceAttributes,
    links: readonly string[],
  ): TraceSpan {
    const api = this.#api;
    const spanLinks: OtelApi.Link[] = [];
    for (const link of links) {
      if (spanLinks.length >= MAX_SPAN_LINKS) break;
      const parsed = parseTraceparent(link);
      if (parsed === undefined) continue;
      spanLinks.push({ context: { ...parsed, isRemote: true } });
    }
    const span = this.#tracer.startSpan(
      name,
      {
        kind: kind === 'producer' ? api.SpanKind.PRODUCER : api.SpanKind.CONSUMER,
        attributes,
        links: spanLinks,
      },
      api.ROOT_CONTEXT,
    );
    return new OtelSpan(api, span);
  }
}

/**
 * The distinct trace contexts of `items` (those without one skipped), in first-seen order, at most
 * {@link MAX_SPAN_LINKS}.
 */
export function distinctTraceContexts<T>(
  items: readonly T[],
  traceContextOf: (item: T) => string | undefined,
): string[] {
  let seen: Set<string> | undefined;
  for (let i = 0; i < items.length; i++) {
    const value = traceContextOf(items[i]!);
    if (value === undefined) continue;
    seen ??= new Set();
    seen.add(value);
    if (seen.size >= MAX_SPAN_LINKS) break;
  }
  return seen === undefined ? [] : [...seen];
}
