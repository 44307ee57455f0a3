import { finished } from 'node:stream/promises';
import type { KinesisClient, PutRecordsCommandInput } from '@aws-sdk/client-kinesis';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import {
  deaggregate,
  ErrorCodes,
  KINESIS_LIMITS,
  type ShardlineError,
  TRACE_ENVELOPE_HEADER_BYTES,
  unwrapTraceEnvelope,
} from '@shardline/common';
import { Producer, type ProducerOptions, resolveProducerOptions } from '@shardline/producer';
import { expect } from 'chai';
import { rejection } from '../../support/assertions.js';
import { installTracing, type TestTracing } from '../../support/tracing.js';
import { awsError, evenShards, StubKinesis } from './stub-kinesis.js';

const decoder = new TextDecoder();

describe('producer tracing (unit, stub Kinesis, in-memory exporter)', () => {
  let tracing: TestTracing;
  let stub: StubKinesis;
  const producers: Producer[] = [];

  function make(options: Partial<ProducerOptions> = {}): Producer {
    const producer = new Producer({
      streamName: 'orders',
      kinesis: stub as unknown as KinesisClient,
      shardRefreshIntervalMs: 0,
      lingerMs: 0,
      rateLimitPerShard: false,
      ...options,
    });
    producers.push(producer);
    return producer;
  }

  const entries = (): NonNullable<PutRecordsCommandInput['Records']> =>
    stub.puts.flatMap((p) => p.Records ?? []);

  before(() => {
    tracing = installTracing();
  });
  after(() => tracing.uninstall());
  beforeEach(() => {
    stub = new StubKinesis();
    stub.shards = evenShards(2);
  });
  afterEach(async () => {
    for (const p of producers.splice(0)) await p.close();
    tracing.exporter.reset();
  });

  describe('options', () => {
    const base = { streamName: 'orders' };
    it('defaults to { enabled: true, propagate: false }', () => {
      expect(resolveProducerOptions(base).tracing).to.deep.equal({ enabled: true, propagate: false });
      expect(resolveProducerOptions({ ...base, tracing: { propagate: true } }).tracing).to.deep.equal({
        enabled: true,
        propagate: true,
      });
    });
    it('refuses bad values naming the option', () => {
      const bad: Array<[unknown, RegExp]> = [
        [true, /^tracing must be an object/],
        [{ enabled: 'yes' }, /^tracing\.enabled must be a boolean \(got "yes"\)/],
        [{ propagate: 1 }, /^tracing\.propagate must be a boolean \(got 1\)/],
        [{ links: true }, /^tracing\.links is not a tracing option/],
      ];
      for (const [tracingOption, message] of bad) {
        expect(() => resolveProducerOptions({ ...base, tracing: tracingOption as never }))
          .to.throw(message)
          .with.property('code', ErrorCodes.INVALID_OPTION);
      }
    });
    it('refuses propagate with a framed codec unless aggregate is on', () => {
      for (const codec of ['jsonl', 'msgpack', 'json-array'] as const) {
        expect(() => resolveProducerOptions({ ...base, codec, tracing: { propagate: true } })).to.throw(
          /^tracing\.propagate cannot be used with the framed codec .* without aggregate: true/,
        );
        expect(
          resolveProducerOptions({ ...base, codec, aggregate: true, tracing: { propagate: true } }).tracing
            .propagate,
        ).to.equal(true);
      }
    });
  });

  it('a send span per PutRecords call, linked to the contexts the records were put in', async () => {
    const producer = make();
    const parents: string[] = [];
    for (let i = 0; i < 3; i++) {
      await tracing.inSpan(`request-${i}`, async (span) => {
        parents.push(span.spanContext().traceId);
        await producer.put({ i }, { partitionKey: `k${i}` });
      });
    }
    await producer.put({ outside: true });
    const sends = tracing.spans('send orders');
    expect(sends).to.have.length(stub.puts.length);
    const first = sends[0]!;
    expect(first.kind).to.equal(SpanKind.PRODUCER);
    expect(first.parentSpanContext, 'a root span: batching decouples it from the put').to.equal(undefined);
    expect(first.attributes).to.deep.include({
      'messaging.system': 'aws_kinesis',
      'messaging.destination.name': 'orders',
      'messaging.operation.type': 'send',
      'messaging.operation.name': 'send',
      'messaging.batch.message_count': 1,
      'shardline.kinesis.entries': 1,
      'shardline.kinesis.failed_entries': 0,
    });
    expect(sends.flatMap((s) => s.links.map((l) => l.context.traceId))).to.deep.equal(parents);
    expect(sends.at(-1)!.links).to.deep.equal([]);
    // Propagation is off by default: the payloads are the codec's bytes, nothing more.
    expect(entries().map((e) => decoder.decode(e.Data))).to.deep.equal([
      '{"i":0}',
      '{"i":1}',
      '{"i":2}',
      '{"outside":true}',
    ]);
  });

  it('propagate: records put inside a span carry its traceparent in an envelope; others are plain', async () => {
    const producer = make({ tracing: { propagate: true } });
    let traceparent = '';
    await tracing.inSpan('parent', async (span) => {
      const sc = span.spanContext();
      traceparent = `00-${sc.traceId}-${sc.spanId}-01`;
      await producer.put({ n: 1 }, { partitionKey: 'a' });
    });
    await producer.put({ n: 2 }, { partitionKey: 'a' });
    const [inside, outside] = entries();
    const unwrapped = unwrapTraceEnvelope(inside!.Data!);
    expect(unwrapped?.traceContext).to.equal(traceparent);
    expect(decoder.decode(unwrapped!.payload)).to.equal('{"n":1}');
    expect(decoder.decode(outside!.Data)).to.equal('{"n":2}');
  });

  it('propagate with aggregation: an envelope per user record inside the aggregate', async () => {
    const producer = make({ tracing: { propagate: true }, aggregate: true, lingerMs: 50 });
    const traceIds: string[] = [];
    const puts: Promise<unknown>[] = [];
    for (let i = 0; i < 4; i++) {
      await tracing.inSpan(`p${i}`, async (span) => {
        traceIds.push(span.spanContext().traceId);
        puts.push(producer.put({ i }, { partitionKey: 'same-key' }));
      });
    }
    puts.push(producer.put({ i: 4 }, { partitionKey: 'same-key' }));
    await Promise.all(puts);
    const [entry, ...rest] = entries();
    expect(rest, 'one aggregate').to.deep.equal([]);
    const subs = deaggregate({ data: entry!.Data!, partitionKey: 'same-key', sequenceNumber: '1' });
    const unwrapped = subs.map((s) => unwrapTraceEnvelope(s.data));
    expect(unwrapped.map((u) => u?.traceContext.slice(3, 35))).to.deep.equal([...traceIds, undefined]);
    expect(subs.map((s, j) => decoder.decode(unwrapped[j]?.payload ?? s.data))).to.deep.equal(
      [0, 1, 2, 3, 4].map((i) => `{"i":${i}}`),
    );
    const [send] = tracing.spans('send orders');
    expect(send!.attributes['messaging.batch.message_count']).to.equal(5);
    expect(send!.attributes['shardline.kinesis.entries']).to.equal(1);
    expect(send!.links.map((l) => l.context.traceId)).to.deep.equal(traceIds);
  });

  it('the envelope counts against the record size limit, with an error that says so', async () => {
    const producer = make({ tracing: { propagate: true } });
    // Fits the classic 1 MiB limit by itself; not with the 61-byte envelope.
    const key = 'k';
    const text = 'x'.repeat(KINESIS_LIMITS.classicMaxRecordBytes - key.length - 2 - 30);
    await producer.put(text, { partitionKey: key });
    const error = await tracing.inSpan('parent', () => rejection(producer.put(text, { partitionKey: key })));
    expect((error as ShardlineError).code).to.equal(ErrorCodes.INVALID_RECORD);
    expect((error as Error).message).to.match(
      new RegExp(`\\(${TRACE_ENVELOPE_HEADER_BYTES + 55} of them the trace envelope of tracing.propagate\\)`),
    );
    expect((error as ShardlineError).details?.envelopeBytes).to.equal(61);
  });

  it('a failed call ends its span with status ERROR', async () => {
    stub.onPut = () => {
      throw awsError('ResourceNotFoundException', 'Stream orders not found');
    };
    const producer = make({ retry: { retries: 0 } });
    await rejection(producer.put({ n: 1 }));
    const [send] = tracing.spans('send orders');
    expect(send!.status.code).to.equal(SpanStatusCode.ERROR);
    expect(send!.events.map((e) => e.name)).to.include('exception');
  });

  it('writable(): a record written inside a span carries the context of that span', async () => {
    const producer = make({ tracing: { propagate: true } });
    let traceparent = '';
    await tracing.inSpan('parent', async (span) => {
      const sc = span.spanContext();
      traceparent = `00-${sc.traceId}-${sc.spanId}-01`;
      const writable = producer.writable();
      writable.end({ data: { n: 1 }, partitionKey: 'a' });
      await finished(writable);
    });
    const unwrapped = unwrapTraceEnvelope(entries()[0]!.Data!);
    expect(unwrapped?.traceContext).to.equal(traceparent);
    expect(decoder.decode(unwrapped!.payload)).to.equal('{"n":1}');
  });

  it('enabled: false starts no span (and propagate still works without spans of its own)', async () => {
    const producer = make({ tracing: { enabled: false, propagate: true } });
    await tracing.inSpan('parent', () => producer.put({ n: 1 }));
    expect(tracing.spans('send orders')).to.deep.equal([]);
    expect(unwrapTraceEnvelope(entries()[0]!.Data!)).to.not.equal(undefined);
  });
});
