import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { distinctTraceContexts, loadTracing, MAX_SPAN_LINKS } from '@shardline/common';
import { expect } from 'chai';

const tp = (i: number) => `00-${i.toString(16).padStart(32, 'a')}-${'b'.repeat(16)}-01`;

describe('tracing (optional @opentelemetry/api)', () => {
  describe('without the API', () => {
    it('a loader that throws (package not installed) gives no tracing, and does not throw', () => {
      const tracing = loadTracing(() => {
        throw Object.assign(new Error("Cannot find module '@opentelemetry/api'"), {
          code: 'MODULE_NOT_FOUND',
        });
      });
      expect(tracing).to.equal(undefined);
    });

    it('a module that is not the API (an old or broken copy) gives no tracing', () => {
      expect(loadTracing(() => ({}))).to.equal(undefined);
      expect(loadTracing(() => null)).to.equal(undefined);
      expect(loadTracing(() => ({ trace: {}, context: {} }))).to.equal(undefined);
    });
  });

  describe('with the API', () => {
    const exporter = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
    const manager = new AsyncLocalStorageContextManager();

    before(() => {
      context.setGlobalContextManager(manager.enable());
      trace.setGlobalTracerProvider(provider);
    });
    after(async () => {
      trace.disable();
      context.disable();
      await provider.shutdown();
    });
    afterEach(() => exporter.reset());

    it('loads with the default loader and starts root spans with links, kind and attributes', () => {
      const tracing = loadTracing();
      expect(tracing).to.not.equal(undefined);
      const parent = trace.getTracer('test').startSpan('parent');
      // Started under an active span, the span is still a root: the links say where its records came from.
      const span = context.with(trace.setSpan(context.active(), parent), () =>
        tracing!.startSpan('send s', 'producer', { 'messaging.system': 'aws_kinesis' }, [tp(1), tp(2)]),
      );
      span.setAttribute('n', 3);
      span.end();
      span.end();
      parent.end();
      const [exported] = exporter.getFinishedSpans().filter((s) => s.name === 'send s');
      expect(exported!.kind).to.equal(SpanKind.PRODUCER);
      expect(exported!.parentSpanContext).to.equal(undefined);
      expect(exported!.attributes).to.deep.equal({ 'messaging.system': 'aws_kinesis', n: 3 });
      expect(exported!.links.map((l) => l.context.traceId)).to.deep.equal([
        tp(1).slice(3, 35),
        tp(2).slice(3, 35),
      ]);
      expect(exported!.links.every((l) => l.context.isRemote)).to.equal(true);
    });

    it('activeTraceparent is the active span context, undefined outside any span', () => {
      const tracing = loadTracing()!;
      expect(tracing.activeTraceparent()).to.equal(undefined);
      const parent = trace.getTracer('test').startSpan('parent');
      const inside = context.with(trace.setSpan(context.active(), parent), () => tracing.activeTraceparent());
      const sc = parent.spanContext();
      expect(inside).to.equal(`00-${sc.traceId}-${sc.spanId}-01`);
      parent.end();
    });

    it('run() makes the span active; fail() sets status ERROR, the exception and error.type', () => {
      const tracing = loadTracing()!;
      const span = tracing.startSpan('process s', 'consumer', {}, []);
      const child = span.run(() => trace.getTracer('test').startSpan('child'));
      child.end();
      span.fail(Object.assign(new Error('boom'), { code: 'ERR_HANDLER' }));
      span.end();
      const spans = exporter.getFinishedSpans();
      const processed = spans.find((s) => s.name === 'process s')!;
      expect(spans.find((s) => s.name === 'child')!.parentSpanContext?.spanId).to.equal(
        processed.spanContext().spanId,
      );
      expect(processed.kind).to.equal(SpanKind.CONSUMER);
      expect(processed.status).to.deep.equal({ code: SpanStatusCode.ERROR, message: 'boom' });
      expect(processed.attributes['error.type']).to.equal('ERR_HANDLER');
      expect(processed.events.map((e) => e.name)).to.deep.equal(['exception']);
    });

    it('skips invalid links and keeps at most MAX_SPAN_LINKS', () => {
      const tracing = loadTracing()!;
      const links = Array.from({ length: 200 }, (_, i) => tp(i + 1));
      tracing.startSpan('many', 'consumer', {}, ['garbage', ...links]).end();
      expect(exporter.getFinishedSpans()[0]!.links).to.have.length(MAX_SPAN_LINKS);
    });
  });

  it('distinctTraceContexts dedupes in first-seen order, skips undefined, caps at MAX_SPAN_LINKS', () => {
    const items = [tp(1), undefined, tp(2), tp(1), tp(3), undefined];
    expect(distinctTraceContexts(items, (x) => x)).to.deep.equal([tp(1), tp(2), tp(3)]);
    expect(distinctTraceContexts([undefined], (x) => x)).to.deep.equal([]);
    const many = Array.from({ length: 300 }, (_, i) => tp(i + 1));
    expect(distinctTraceContexts(many, (x) => x)).to.have.length(MAX_SPAN_LINKS);
  });
});
