import { SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import type { BatchMessage } from '@shardline/common';
import { ErrorCodes } from '@shardline/common';
import { resolveCoordinatorOptions } from '@shardline/coordinator';
import { expect } from 'chai';
import { processTracing } from '../../../packages/coordinator/src/delivery/tracing.js';
import { installTracing, type TestTracing } from '../../support/tracing.js';
import { batch, delivery, lane } from './delivery-harness.js';

const tp = (trace: number, span = 1) =>
  `00-${trace.toString(16).padStart(32, '0')}-${span.toString(16).padStart(16, '0')}-01`;

/** `batch()` with a traceContext on each record (undefined: none). */
function tracedBatch(shardId: string, contexts: Array<string | undefined>, firstSeq = 100): BatchMessage {
  const message = batch(
    shardId,
    contexts.map((_, i) => i),
    firstSeq,
  );
  if (message.encoding !== 'decoded') throw new Error('expected a decoded batch');
  message.records.forEach((r, i) => {
    if (contexts[i] !== undefined) r.traceContext = contexts[i];
  });
  return message;
}

/** Waits (real time, polling) until `condition` holds, failing after 2 s. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

const skip = {
  retries: 0,
  backoffMs: { initial: 1, max: 1 },
  // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
  then: 'skip',
};

describe('coordinator tracing', () => {
  describe('options', () => {
    const base = { streamName: 'orders', group: 'g' };
    it('defaults to { enabled: true, links: true }', () => {
      expect(resolveCoordinatorOptions(base).tracing).to.deep.equal({ enabled: true, links: true });
      expect(resolveCoordinatorOptions({ ...base, tracing: { links: false } }).tracing).to.deep.equal({
        enabled: true,
        links: false,
      });
    });
    it('refuses bad values naming the option', () => {
      const bad: Array<[unknown, RegExp]> = [
        [false, /^tracing must be an object like \{ enabled: true, links: true \} \(got false\)/],
        [{ enabled: 'no' }, /^tracing\.enabled must be a boolean \(got "no"\)/],
        [{ links: 1 }, /^tracing\.links must be a boolean \(got 1\)/],
        [{ link: true }, /^tracing\.link is not an option \(did you mean 'tracing\.links'\?\)/],
      ];
      for (const [value, message] of bad) {
        expect(() => resolveCoordinatorOptions({ ...base, tracing: value as never }))
          .to.throw(message)
          .with.property('code', ErrorCodes.INVALID_OPTION);
      }
    });
  });

  describe('processTracing()', () => {
    const o = { tracing: { enabled: true, links: true }, stream: 's', group: 'g' };
    it('is off when tracing.enabled is false', () => {
      expect(processTracing({ ...o, tracing: { enabled: false, links: true } })).to.equal(undefined);
    });
    it('is off, without an error, when @opentelemetry/api cannot be loaded', () => {
      const absent = () => {
        throw new Error("Cannot find module '@opentelemetry/api'");
      };
      expect(processTracing(o, absent)).to.equal(undefined);
    });
  });

  describe('process spans (in-memory exporter)', () => {
    let tracing: TestTracing;
    before(() => {
      tracing = installTracing();
    });
    after(() => tracing.uninstall());
    afterEach(() => tracing.exporter.reset());

    const tracer = (links = true) =>
      processTracing({ tracing: { enabled: true, links }, stream: 'orders', group: 'billing' });

    it('one CONSUMER span per handler call, with the messaging attributes; the handler runs in it', async () => {
      const active: Array<string | undefined> = [];
      const d = delivery({
        tracing: tracer(),
        handler: () => {
          active.push(trace.getActiveSpan()?.spanContext().spanId);
        },
      });
      d.open('shardId-1', lane());
      d.push('shardId-1', tracedBatch('shardId-1', [tp(1), undefined, tp(2), tp(1)]));
      d.push('shardId-1', tracedBatch('shardId-1', [undefined], 104));
      await until(() => tracing.spans('process orders').length === 2);
      const spans = tracing.spans('process orders');
      const [first, second] = spans;
      expect(first!.kind).to.equal(SpanKind.CONSUMER);
      expect(first!.parentSpanContext).to.equal(undefined);
      expect(first!.attributes).to.deep.equal({
        'messaging.system': 'aws_kinesis',
        'messaging.destination.name': 'orders',
        'messaging.destination.partition.id': 'shardId-1',
        'messaging.consumer.group.name': 'billing',
        'messaging.operation.type': 'process',
        'messaging.operation.name': 'process',
        'messaging.batch.message_count': 4,
      });
      // Distinct producer contexts, in order.
      expect(first!.links.map((l) => l.context.traceId)).to.deep.equal(
        [tp(1), tp(2)].map((t) => t.slice(3, 35)),
      );
      expect(second!.links).to.deep.equal([]);
      expect(active).to.deep.equal(spans.map((s) => s.spanContext().spanId));
      expect(first!.status.code).to.equal(SpanStatusCode.UNSET);
    });

    it('links: false gives no links', async () => {
      const d = delivery({ tracing: tracer(false), handler: () => undefined });
      d.open('s', lane());
      d.push('s', tracedBatch('s', [tp(1)]));
      await until(() => tracing.spans('process orders').length === 1);
      expect(tracing.spans('process orders')[0]!.links).to.deep.equal([]);
    });

    it('a handler that throws ends its span with status ERROR; each attempt has its own span', async () => {
      const d = delivery({
        tracing: tracer(),
        onHandlerError: { ...skip, retries: 1 },
        handler: () => {
          throw new Error('boom');
        },
      });
      d.open('s', lane());
      d.push('s', tracedBatch('s', [tp(1)]));
      await until(() => tracing.spans('process orders').length === 2);
      const spans = tracing.spans('process orders');
      expect(spans).to.have.length(2);
      for (const span of spans) {
        expect(span.status.code).to.equal(SpanStatusCode.ERROR);
        expect(span.status.message).to.match(/boom/);
        expect(span.attributes['error.type']).to.equal(ErrorCodes.HANDLER);
      }
    });

    it('a partial-batch answer (a failed record) ends the span with status ERROR', async () => {
      let first = true;
      const d = delivery({
        tracing: tracer(),
        onHandlerError: { ...skip, retries: 1 },
        handler: (b) => {
          if (!first) return undefined;
          first = false;
          return { failedAt: b.records[1] };
        },
      });
      d.open('s', lane());
      d.push('s', tracedBatch('s', [tp(1), tp(2)]));
      await until(() => tracing.spans('process orders').length === 2);
      const [failed, retried] = tracing.spans('process orders');
      expect(failed!.status.code).to.equal(SpanStatusCode.ERROR);
      expect(failed!.attributes['messaging.batch.message_count']).to.equal(2);
      // The retry is of the failed record alone: its own producer context only.
      expect(retried!.attributes['messaging.batch.message_count']).to.equal(1);
      expect(retried!.links.map((l) => l.context.traceId)).to.deep.equal([tp(2).slice(3, 35)]);
      expect(retried!.status.code).to.equal(SpanStatusCode.UNSET);
    });
  });
});
