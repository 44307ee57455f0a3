import {
  formatTraceparent,
  hasTraceEnvelopeMagic,
  parseTraceparent,
  TRACE_ENVELOPE_HEADER_BYTES,
  traceEnvelopeBytes,
  unwrapTraceEnvelope,
  wrapTraceEnvelope,
} from '@shardline/common';
import { expect } from 'chai';

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN_ID = '00f067aa0ba902b7';
const TP = `00-${TRACE_ID}-${SPAN_ID}-01`;
const bytes = (text: string) => new TextEncoder().encode(text);

describe('trace envelope', () => {
  it('round-trips a payload and its traceparent; the payload is a view, not a copy', () => {
    const payload = bytes('{"id":1,"text":"héllo"}');
    const wrapped = wrapTraceEnvelope(TP, payload);
    expect(wrapped.length).to.equal(payload.length + traceEnvelopeBytes(TP));
    expect([...wrapped.subarray(0, 6)]).to.deep.equal([0xc1, 0x53, 0x4c, 0x54, 1, 55]);
    expect(new TextDecoder().decode(wrapped.subarray(6, 61))).to.equal(TP);
    const unwrapped = unwrapTraceEnvelope(wrapped);
    expect(unwrapped?.traceContext).to.equal(TP);
    expect(Buffer.from(unwrapped!.payload).equals(Buffer.from(payload))).to.equal(true);
    expect(unwrapped!.payload.buffer).to.equal(wrapped.buffer);
  });

  it('reads the traceparent versions the W3C format allows: a later version, longer ones; never ff', () => {
    for (const tp of [`01-${TRACE_ID}-${SPAN_ID}-01`, `01-${TRACE_ID}-${SPAN_ID}-01-more-fields`]) {
      expect(unwrapTraceEnvelope(wrapTraceEnvelope(tp, bytes('x')))?.traceContext).to.equal(tp);
    }
    const ff = wrapTraceEnvelope(TP, bytes('x')).map((b, i) => (i === 6 || i === 7 ? 0x66 : b));
    expect(unwrapTraceEnvelope(ff)).to.equal(undefined);
    const zeroSpan = wrapTraceEnvelope(TP, bytes('x')).map((b, i) => (i >= 42 && i < 58 ? 0x30 : b));
    expect(unwrapTraceEnvelope(zeroSpan)).to.equal(undefined);
  });

  it('round-trips an empty payload', () => {
    const unwrapped = unwrapTraceEnvelope(wrapTraceEnvelope(TP, new Uint8Array(0)));
    expect(unwrapped?.traceContext).to.equal(TP);
    expect(unwrapped?.payload.length).to.equal(0);
  });

  it('counts 6 header bytes plus the traceparent (61 for version 00)', () => {
    expect(TRACE_ENVELOPE_HEADER_BYTES).to.equal(6);
    expect(traceEnvelopeBytes(TP)).to.equal(61);
  });

  it('passes through data that merely starts with the magic: each malformed part alone', () => {
    const good = wrapTraceEnvelope(TP, bytes('x'));
    const variants: Array<[string, Uint8Array]> = [
      ['the magic alone', new Uint8Array([0xc1, 0x53, 0x4c, 0x54])],
      ['no length byte', new Uint8Array([0xc1, 0x53, 0x4c, 0x54, 1])],
      ['another version', Uint8Array.from(good, (b, i) => (i === 4 ? 2 : b))],
      ['a length past the end', Uint8Array.from(good.subarray(0, 40))],
      ['a length too short for a traceparent', Uint8Array.from(good, (b, i) => (i === 5 ? 10 : b))],
      ['a non-hex traceparent', Uint8Array.from(good, (b, i) => (i === 10 ? 0x7a : b))],
      ['a non-ASCII byte in it', Uint8Array.from(good, (b, i) => (i === 10 ? 0xff : b))],
      [
        'an all-zero trace id',
        wrapTraceEnvelope(TP, bytes('x')).map((b, i) => (i >= 9 && i < 41 ? 0x30 : b)),
      ],
    ];
    for (const [what, data] of variants) {
      expect(hasTraceEnvelopeMagic(data), what).to.equal(true);
      expect(unwrapTraceEnvelope(data), what).to.equal(undefined);
    }
    expect(unwrapTraceEnvelope(bytes('{"a":1}'))).to.equal(undefined);
    expect(hasTraceEnvelopeMagic(new Uint8Array([0xc1, 0x53]))).to.equal(false);
  });

  it('refuses to wrap something that is not a traceparent', () => {
    expect(() => wrapTraceEnvelope('not-a-traceparent', bytes('x'))).to.throw(TypeError, /traceparent/);
  });

  it('parses and formats W3C traceparents', () => {
    expect(parseTraceparent(TP)).to.deep.equal({ traceId: TRACE_ID, spanId: SPAN_ID, traceFlags: 1 });
    expect(formatTraceparent(TRACE_ID, SPAN_ID, 0)).to.equal(`00-${TRACE_ID}-${SPAN_ID}-00`);
    expect(parseTraceparent(`ff-${TRACE_ID}-${SPAN_ID}-01`)).to.equal(undefined);
    expect(parseTraceparent(`00-${TRACE_ID}-${SPAN_ID}-01-extra`)).to.equal(undefined);
    expect(parseTraceparent(`01-${TRACE_ID}-${SPAN_ID}-01-extra`)?.traceId).to.equal(TRACE_ID);
    expect(parseTraceparent(`00-${TRACE_ID.toUpperCase()}-${SPAN_ID}-01`)).to.equal(undefined);
    expect(parseTraceparent(`00-${TRACE_ID}-${'0'.repeat(16)}-01`)).to.equal(undefined);
  });
});
