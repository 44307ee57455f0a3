/**
 * OpenTelemetry tracing end to end, against kinesalite and the local Redis, with the SDK's in-memory
 * exporter: producers inside active parent spans (propagation on, plain and KPL-aggregated), a
 * coordinator consuming with Redis leases; send spans, process spans and their links to the producers'
 * traces; every record delivered once, in order per key, with its payload exactly as sent (envelope
 * stripped) and its traceContext. With propagation off, the raw records hold no envelope bytes.
 */
import { fileURLToPath } from 'node:url';
import { BroadcastChannel } from 'node:worker_threads';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { SpanKind } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { hasTraceEnvelopeMagic, type ShardRecord, unwrapTraceEnvelope } from '@shardline/common';
import type { RecordBatch } from '@shardline/coordinator';
import { Producer } from '@shardline/producer';
import { type LocalKinesis, startLocalKinesis, type TestRedis, useTestRedis } from '@shardline/testing';
import { expect } from 'chai';
import { installTracing, type TestTracing } from '../support/tracing.js';
import {
  coordinatorStarter,
  expectExactlyOnceInOrder,
  type Item,
  keyedItems,
  waitFor,
} from './coordinator-helpers.js';
import { readStream } from './producer-helpers.js';

const FAST = {
  idleFetchIntervalMs: 50,
  idleFetchMaxIntervalMs: 50,
  workerThreads: 1,
  leaseDurationMs: 2_000,
  checkpoint: { mode: 'auto' as const, intervalMs: 100 },
};

describe('tracing end to end (kinesalite, Redis leases, in-memory exporter)', function () {
  this.timeout(30_000);
  let kinesis: LocalKinesis;
  let client: KinesisClient;
  let redis: TestRedis;
  let tracing: TestTracing;
  const base = `trace-${process.pid}`;
  const coordinators = coordinatorStarter(() => ({
    kinesis: kinesis.clientConfig,
    leases: { redis: redis.url, keyPrefix: redis.keyPrefix },
    ...FAST,
  }));

  before(async () => {
    tracing = installTracing();
    [kinesis, redis] = await Promise.all([
      startLocalKinesis({ engine: 'kinesalite' }),
      useTestRedis('tracing'),
    ]);
    client = kinesis.client();
    await Promise.all(
      ['plain', 'kpl', 'off', 'module'].map((name) => kinesis.createStream(`${base}-${name}`, { shards: 2 })),
    );
  });
  afterEach(async () => {
    await coordinators.stopAll();
    tracing.exporter.reset();
  });
  after(async () => {
    await kinesis?.stop();
    await redis?.cleanup();
    await tracing?.uninstall();
  });

  /**
   * Puts `items` from `parents` producers-side parent spans (item n inside parent n % parents), in order
   * per key; returns each item's parent traceparent by `k/i`.
   */
  async function produce(
    stream: string,
    items: readonly Item[],
    parents: number,
    options: { propagate: boolean; aggregate: boolean },
  ): Promise<Map<string, string>> {
    const producer = new Producer<Item>({
      streamName: stream,
      kinesis: kinesis.clientConfig,
      aggregate: options.aggregate,
      tracing: { propagate: options.propagate },
      maxInFlightPerShard: 1,
      lingerMs: 20,
      rateLimitPerShard: false,
    });
    const contexts = new Map<string, string>();
    const puts: Promise<unknown>[] = [];
    try {
      for (let p = 0; p < parents; p++) {
        await tracing.inSpan(`request-${p}`, async (span) => {
          const sc = span.spanContext();
          for (let n = p; n < items.length; n += parents) {
            const item = items[n]!;
            contexts.set(`${item.k}/${item.i}`, `00-${sc.traceId}-${sc.spanId}-01`);
          }
        });
      }
      // Put in item order (per-key order), each inside its parent's context.
      for (let n = 0; n < items.length; n++) {
        const item = items[n]!;
        const parent = contexts.get(`${item.k}/${item.i}`)!;
        puts.push(tracing.inContext(parent, () => producer.put(item, { partitionKey: item.k })));
      }
      await Promise.all(puts);
    } finally {
      await producer.close();
    }
    return contexts;
  }

  async function consume(stream: string, group: string, count: number): Promise<ShardRecord<Item>[]> {
    const received: ShardRecord<Item>[] = [];
    await coordinators.start<Item>({
      streamName: stream,
      group,
      handler: (batch: RecordBatch<Item>) => {
        received.push(...batch.records);
      },
    });
    await waitFor(
      () => received.length >= count,
      () => `received ${received.length} of ${count}`,
      15_000,
    );
    return received;
  }

  const traceIdOf = (traceparent: string) => traceparent.slice(3, 35);

  function checkProcessSpans(stream: string, group: string, records: number): ReadableSpan[] {
    const spans = tracing.spans(`process ${stream}`);
    expect(spans.length).to.be.greaterThan(0);
    let total = 0;
    for (const span of spans) {
      expect(span.kind).to.equal(SpanKind.CONSUMER);
      expect(span.attributes['messaging.system']).to.equal('aws_kinesis');
      expect(span.attributes['messaging.destination.name']).to.equal(stream);
      expect(span.attributes['messaging.consumer.group.name']).to.equal(group);
      expect(span.attributes['messaging.operation.type']).to.equal('process');
      expect(String(span.attributes['messaging.destination.partition.id'])).to.match(/^shardId-/);
      total += span.attributes['messaging.batch.message_count'] as number;
    }
    expect(total, 'records over the process spans').to.equal(records);
    return spans;
  }

  function checkSendSpans(stream: string, records: number): ReadableSpan[] {
    const spans = tracing.spans(`send ${stream}`);
    expect(spans.length).to.be.greaterThan(0);
    let total = 0;
    for (const span of spans) {
      expect(span.kind).to.equal(SpanKind.PRODUCER);
      expect(span.attributes).to.deep.include({
        'messaging.system': 'aws_kinesis',
        'messaging.destination.name': stream,
        'messaging.operation.type': 'send',
        'shardline.kinesis.failed_entries': 0,
      });
      total += span.attributes['messaging.batch.message_count'] as number;
    }
    expect(total, 'records over the send spans').to.equal(records);
    return spans;
  }

  for (const aggregate of [false, true]) {
    const name = aggregate ? 'kpl' : 'plain';
    it(`propagation on${aggregate ? ', KPL-aggregated' : ''}: spans, links to the producer traces, every record once and in order with its payload and traceContext`, async () => {
      const stream = `${base}-${name}`;
      const items = keyedItems(120, 6);
      const contexts = await produce(stream, items, 4, { propagate: true, aggregate });
      if (!aggregate) {
        // On the wire: each record is its envelope (its parent's traceparent), then the JSON as sent.
        const raw = await readStream(kinesis, client, stream);
        expect(raw).to.have.length(items.length);
        for (const record of raw) {
          const unwrapped = unwrapTraceEnvelope(record.data);
          expect(unwrapped, 'an envelope').to.not.equal(undefined);
          const item = JSON.parse(Buffer.from(unwrapped!.payload).toString('utf8')) as Item;
          expect(Buffer.from(unwrapped!.payload).toString('utf8')).to.equal(JSON.stringify(item));
          expect(unwrapped!.traceContext).to.equal(contexts.get(`${item.k}/${item.i}`));
        }
      }
      const received = await consume(stream, `g-${name}`, items.length);

      expectExactlyOnceInOrder(
        received.map((r) => r.data),
        items,
      );
      // Payloads exactly as sent (the envelope stripped before decoding), each with its parent's context.
      for (const record of received) {
        expect(Object.keys(record.data).sort()).to.deep.equal(['i', 'k']);
        expect(record.traceContext).to.equal(contexts.get(`${record.data.k}/${record.data.i}`));
      }
      if (aggregate) expect(received.every((r) => r.subSequenceNumber !== undefined)).to.equal(true);

      const parentTraces = new Set([...contexts.values()].map(traceIdOf));
      expect(parentTraces.size).to.equal(4);
      const sends = checkSendSpans(stream, items.length);
      expect(new Set(sends.flatMap((s) => s.links.map((l) => l.context.traceId)))).to.deep.equal(
        parentTraces,
      );
      const processes = checkProcessSpans(stream, `g-${name}`, items.length);
      const linked = new Set(processes.flatMap((s) => s.links.map((l) => l.context.traceId)));
      expect(linked).to.deep.equal(parentTraces);
      // A batch links each distinct producer context once.
      for (const span of processes) {
        const ids = span.links.map((l) => `${l.context.traceId}/${l.context.spanId}`);
        expect(new Set(ids).size).to.equal(ids.length);
      }
    });
  }

  it('propagation off: no envelope bytes on the wire, no traceContext, process spans without links', async () => {
    const stream = `${base}-off`;
    const items = keyedItems(40, 4);
    await produce(stream, items, 2, { propagate: false, aggregate: false });
    const raw = await readStream(kinesis, client, stream);
    expect(raw).to.have.length(items.length);
    for (const record of raw) {
      expect(hasTraceEnvelopeMagic(record.data)).to.equal(false);
      expect(unwrapTraceEnvelope(record.data)).to.equal(undefined);
      expect(Object.keys(JSON.parse(record.data.toString('utf8'))).sort()).to.deep.equal(['i', 'k']);
    }
    const received = await consume(stream, 'g-off', items.length);
    expectExactlyOnceInOrder(
      received.map((r) => r.data),
      items,
    );
    expect(received.filter((r) => r.traceContext !== undefined)).to.deep.equal([]);
    // The send spans still link to the contexts the records were put in; nothing reaches the consumer.
    expect(checkSendSpans(stream, items.length).some((s) => s.links.length > 0)).to.equal(true);
    for (const span of checkProcessSpans(stream, 'g-off', items.length)) expect(span.links).to.deep.equal([]);
  });

  it('handlerModule: process spans in the worker thread (its own provider), linked, the handler in the span', async () => {
    const stream = `${base}-module`;
    const items = keyedItems(40, 4);
    const contexts = await produce(stream, items, 2, { propagate: true, aggregate: false });
    interface Report {
      span?: {
        name: string;
        kind: number;
        spanId: string;
        attributes: Record<string, unknown>;
        links: string[];
      };
      handled?: Array<{ data: Item; traceContext?: string }>;
      activeSpanId?: string;
    }
    const reports: Report[] = [];
    const channel = new BroadcastChannel('shardline-tracing-module-test');
    channel.onmessage = (event) => reports.push((event as { data: Report }).data);
    try {
      await coordinators.start({
        streamName: stream,
        group: 'g-module',
        handlerModule: fileURLToPath(new URL('./fixtures/traced-handler-module.mjs', import.meta.url)),
      });
      const handled = () => reports.flatMap((r) => r.handled ?? []);
      const spans = () => reports.flatMap((r) => (r.span === undefined ? [] : [r.span]));
      await waitFor(
        () => handled().length >= items.length && spans().length >= reports.filter((r) => r.handled).length,
        () => `handled ${handled().length} of ${items.length}, ${spans().length} spans`,
        15_000,
      );
      expectExactlyOnceInOrder(
        handled().map((h) => h.data),
        items,
      );
      for (const h of handled()) expect(h.traceContext).to.equal(contexts.get(`${h.data.k}/${h.data.i}`));
      const processes = spans().filter((s) => s.name === `process ${stream}`);
      expect(processes.map((s) => s.spanId).sort()).to.deep.equal(
        reports
          .filter((r) => r.handled)
          .map((r) => r.activeSpanId)
          .sort(),
      );
      for (const span of processes) {
        expect(span.kind).to.equal(SpanKind.CONSUMER);
        expect(span.attributes['messaging.consumer.group.name']).to.equal('g-module');
        expect(String(span.attributes['messaging.destination.partition.id'])).to.match(/^shardId-/);
      }
      const parents = new Set([...contexts.values()].map(traceIdOf));
      expect(new Set(processes.flatMap((s) => s.links))).to.deep.equal(parents);
    } finally {
      channel.close();
    }
  });
});
