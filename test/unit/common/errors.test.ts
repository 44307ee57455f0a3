import {
  childLogger,
  classifyAwsError,
  deserializeError,
  ErrorCodes,
  KinesisError,
  type Logger,
  rootCause,
  type SerializedError,
  ShardlineError,
  ShardlineOptionError,
  serializeError,
  silentLogger,
} from '@shardline/common';
import { expect } from 'chai';

/** An error shaped like the ones @aws-sdk/client-kinesis throws (no instanceof relation needed). */
function sdkError(name: string, status = 400, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, attempts: 1 },
    ...extra,
  });
}

/** `error` wrapped `depth` times in plain Errors with `cause`. */
function wrapped(error: unknown, depth: number): unknown {
  let current = error;
  for (let i = 0; i < depth; i++) current = new Error(`wrapper ${i}`, { cause: current });
  return current;
}

describe('common/errors', () => {
  describe('classifyAwsError', () => {
    const byName: Array<[string, string, boolean]> = [
      ['ProvisionedThroughputExceededException', ErrorCodes.THROTTLED, true],
      ['KMSThrottlingException', ErrorCodes.THROTTLED, true],
      ['ThrottlingException', ErrorCodes.THROTTLED, true],
      ['ExpiredIteratorException', ErrorCodes.EXPIRED_ITERATOR, true],
      ['LimitExceededException', ErrorCodes.LIMIT_EXCEEDED, true],
      ['ResourceNotFoundException', ErrorCodes.NOT_FOUND, false],
      ['AccessDeniedException', ErrorCodes.ACCESS_DENIED, false],
      ['UnrecognizedClientException', ErrorCodes.ACCESS_DENIED, false],
      ['ExpiredTokenException', ErrorCodes.ACCESS_DENIED, false],
      ['InvalidArgumentException', ErrorCodes.INVALID_REQUEST, false],
      ['ValidationException', ErrorCodes.INVALID_REQUEST, false],
      ['InternalFailure', ErrorCodes.TRANSIENT, true],
      ['ServiceUnavailable', ErrorCodes.TRANSIENT, true],
      ['TimeoutError', ErrorCodes.TRANSIENT, true],
    ];

    for (const [name, code, retriable] of byName) {
      it(`${name} -> ${code} (retriable: ${retriable}), also under 3 wrappers`, () => {
        for (const depth of [0, 1, 3]) {
          const root = sdkError(name);
          const error = wrapped(root, depth);
          const classified = classifyAwsError(error, 'GetRecords');
          expect(classified, `depth ${depth}`).to.be.instanceOf(KinesisError);
          expect(classified.code, `depth ${depth}`).to.equal(code);
          expect(classified.retriable, `depth ${depth}`).to.equal(retriable);
          expect((classified as KinesisError).awsName).to.equal(name);
          expect(classified.cause).to.equal(error);
          expect(classified.message).to.equal(`GetRecords: ${name}: ${name} happened`);
          expect(rootCause(classified)).to.equal(root);
        }
      });
    }

    it('uses the root cause, not a wrapper that looks like something else', () => {
      const root = sdkError('ResourceNotFoundException');
      const wrapper = Object.assign(new Error('outer', { cause: root }), {
        name: 'ProvisionedThroughputExceededException',
      });
      expect(classifyAwsError(wrapper).code).to.equal(ErrorCodes.NOT_FOUND);
    });

    it('network error codes are transient and retriable, however deep', () => {
      const codes = ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN'];
      for (const code of [
        ...codes,
        'ERR_HTTP2_ERROR',
        'ERR_HTTP2_STREAM_ERROR',
        'ERR_HTTP2_GOAWAY_SESSION',
      ]) {
        const net = Object.assign(new Error(`connect ${code}`), { code });
        const classified = classifyAwsError(wrapped(net, 2));
        expect(classified.code, code).to.equal(ErrorCodes.TRANSIENT);
        expect(classified.retriable, code).to.equal(true);
      }
    });

    it('an unknown name with a 5xx status is transient; with 429 it is a throttle', () => {
      const e500 = classifyAwsError(sdkError('SomethingNew', 503));
      expect([e500.code, e500.retriable]).to.deep.equal([ErrorCodes.TRANSIENT, true]);
      const e429 = classifyAwsError(wrapped(sdkError('SomethingNew', 429), 2));
      expect([e429.code, e429.retriable]).to.deep.equal([ErrorCodes.THROTTLED, true]);
      const serverFault = classifyAwsError(
        Object.assign(new Error('x'), { name: 'Weird', $fault: 'server', $metadata: {} }),
      );
      expect(serverFault.code).to.equal(ErrorCodes.TRANSIENT);
    });

    it('an unknown 4xx error is a non-retriable ERR_KINESIS', () => {
      const classified = classifyAwsError(sdkError('SomethingNew', 400));
      expect([classified.code, classified.retriable]).to.deep.equal([ErrorCodes.KINESIS, false]);
    });

    it('a response that is not a Kinesis error (SDK "Unknown") says what answered, with its status', () => {
      const classified = classifyAwsError(sdkError('Unknown', 404), 'ListStreams');
      expect([classified.code, classified.retriable]).to.deep.equal([ErrorCodes.KINESIS, false]);
      expect(classified.message).to.equal(
        'ListStreams: the endpoint answered HTTP 404 without a Kinesis error in the body: check that the endpoint is a Kinesis endpoint',
      );
    });

    it('AbortError (the caller aborted the request) is ERR_ABORTED and never retriable', () => {
      const abort = Object.assign(new Error('Request aborted'), { name: 'AbortError' });
      const classified = classifyAwsError(wrapped(abort, 1));
      expect([classified.code, classified.retriable]).to.deep.equal([ErrorCodes.ABORTED, false]);
    });

    it('passes a ShardlineError through unchanged, but looks inside an ERR_INTERNAL wrapper', () => {
      const own = new ShardlineError(ErrorCodes.LEASE_LOST, 'lost', { retriable: false });
      expect(classifyAwsError(own)).to.equal(own);
      const internal = new ShardlineError(ErrorCodes.INTERNAL, 'while reading', {
        cause: sdkError('ProvisionedThroughputExceededException'),
      });
      const classified = classifyAwsError(internal);
      expect(classified.code).to.equal(ErrorCodes.THROTTLED);
      expect(classified.cause).to.equal(internal);
    });

    it('non-Error throwables do not crash it', () => {
      for (const thrown of ['boom', 42, null, undefined, { weird: true }, Symbol('s')]) {
        const classified = classifyAwsError(thrown);
        expect(classified.code).to.equal(ErrorCodes.KINESIS);
        expect(classified.retriable).to.equal(false);
        expect(classified.message).to.be.a('string');
      }
      const plainThrottle = { name: 'ProvisionedThroughputExceededException', message: 'slow down' };
      expect(classifyAwsError(plainThrottle).code).to.equal(ErrorCodes.THROTTLED);
    });

    it('survives a cause cycle', () => {
      const a = new Error('a');
      const b = new Error('b', { cause: a });
      (a as { cause?: unknown }).cause = b;
      expect(() => classifyAwsError(a)).not.to.throw();
      expect(rootCause(a)).to.be.instanceOf(Error);
    });
  });

  describe('serializeError / deserializeError', () => {
    function chain(): ShardlineError {
      const root = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      const middle = classifyAwsError(root, 'GetRecords');
      return new ShardlineError(ErrorCodes.HANDLER, 'handler failed', {
        cause: middle,
        retriable: true,
        details: { shardId: 'shardId-000000000001', attempt: 3 },
      });
    }

    function expectChain(restored: ShardlineError, original: ShardlineError): void {
      expect(restored).to.be.instanceOf(ShardlineError);
      expect(restored.name).to.equal('ShardlineError');
      expect(restored.code).to.equal(ErrorCodes.HANDLER);
      expect(restored.message).to.equal('handler failed');
      expect(restored.retriable).to.equal(true);
      expect(restored.details).to.deep.equal({ shardId: 'shardId-000000000001', attempt: 3 });
      expect(restored.stack).to.equal(original.stack);
      const middle = restored.cause as ShardlineError;
      expect(middle).to.be.instanceOf(ShardlineError);
      expect(middle.name).to.equal('KinesisError');
      expect(middle.code).to.equal(ErrorCodes.TRANSIENT);
      expect(middle.retriable).to.equal(true);
      expect(middle.message).to.equal('GetRecords: Error: socket hang up');
      const root = middle.cause as ShardlineError;
      expect(root.code).to.equal('ECONNRESET');
      expect(root.message).to.equal('socket hang up');
      expect(root.cause).to.equal(undefined);
    }

    it('round-trips a cause chain', () => {
      const original = chain();
      expectChain(deserializeError(serializeError(original)), original);
    });

    it('round-trips through structuredClone and JSON', () => {
      const original = chain();
      const data = serializeError(original);
      expectChain(deserializeError(structuredClone(data)), original);
      expectChain(deserializeError(JSON.parse(JSON.stringify(data)) as SerializedError), original);
    });

    it('output is plain data even when details hold functions or symbols', () => {
      const error = new ShardlineError(ErrorCodes.INTERNAL, 'x', {
        details: { ok: 1, fn: () => 1, sym: Symbol('s'), when: new Date(0) },
      });
      const data = serializeError(error);
      expect(() => structuredClone(data)).not.to.throw();
      expect(data.details).to.deep.equal({ ok: 1, when: '1970-01-01T00:00:00.000Z' });
    });

    it('drops details that cannot be JSON (BigInt, cycles) instead of throwing', () => {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      for (const details of [{ big: 1n }, cyclic]) {
        const data = serializeError(new ShardlineError(ErrorCodes.INTERNAL, 'x', { details }));
        expect(data.details).to.equal(undefined);
        expect(() => structuredClone(data)).not.to.throw();
      }
    });

    it('keeps option errors recognisable by code and option name', () => {
      const data = serializeError(new ShardlineOptionError('leaseDurationMs', 'must be >= 1000 (got 10)'));
      const restored = deserializeError(structuredClone(data));
      expect(restored.code).to.equal(ErrorCodes.INVALID_OPTION);
      expect(restored.name).to.equal('ShardlineOptionError');
      expect(restored.message).to.equal('leaseDurationMs must be >= 1000 (got 10)');
      expect(restored.details).to.deep.equal({ option: 'leaseDurationMs' });
    });

    it('serialises non-Error throwables', () => {
      expect(serializeError('boom')).to.deep.equal({
        name: 'Error',
        code: ErrorCodes.INTERNAL,
        message: 'boom',
        retriable: false,
      });
      expect(serializeError(42).message).to.equal('42');
      expect(serializeError(undefined).message).to.equal('undefined');
      expect(serializeError(null).message).to.equal('null');
      expect(serializeError({ reason: 'nope' }).message).to.equal('{"reason":"nope"}');
      expect(serializeError(Symbol('s')).message).to.equal('Symbol(s)');
      for (const value of ['boom', 42, undefined, null, { reason: 'nope' }, Symbol('s')]) {
        expect(() => structuredClone(serializeError(value))).not.to.throw();
      }
    });

    it('keeps the fields of an error-like object (e.g. a structured-cloned error)', () => {
      const like = {
        name: 'ProvisionedThroughputExceededException',
        message: 'slow',
        code: 'X',
        retriable: true,
      };
      const data = serializeError(like);
      expect(data).to.include({ name: like.name, message: 'slow', code: 'X', retriable: true });
    });

    it('a non-Error cause becomes an ERR_INTERNAL cause', () => {
      const data = serializeError(new Error('outer', { cause: 'inner text' }));
      expect(data.cause).to.deep.equal({
        name: 'Error',
        code: ErrorCodes.INTERNAL,
        message: 'inner text',
        retriable: false,
      });
    });

    it('bounds a cyclic cause chain', () => {
      const a = new Error('a');
      const b = new Error('b', { cause: a });
      (a as { cause?: unknown }).cause = b;
      const data = serializeError(a);
      expect(() => structuredClone(data)).not.to.throw();
      let depth = 0;
      for (let c: SerializedError | undefined = data; c !== undefined; c = c.cause) depth++;
      expect(depth).to.be.at.most(9);
    });
  });

  describe('logger', () => {
    it('silentLogger accepts every call shape and never throws', () => {
      for (const level of ['debug', 'info', 'warn', 'error'] as const) {
        expect(() => silentLogger[level]('message')).not.to.throw();
        expect(() => silentLogger[level]({ shardId: 's' }, 'message', 1, 2)).not.to.throw();
        expect(() => silentLogger[level]({})).not.to.throw();
      }
      expect(Object.isFrozen(silentLogger)).to.equal(true);
    });

    it('childLogger uses child() where the logger has it', () => {
      const lines: Array<[Record<string, unknown>, string]> = [];
      const make = (bindings: Record<string, unknown>): Logger => {
        const log = (level: string) => (first: unknown, message?: unknown) => {
          lines.push([
            { ...bindings, level, ...(typeof first === 'object' ? first : {}) },
            String(message ?? first),
          ]);
        };
        return {
          debug: log('debug'),
          info: log('info'),
          warn: log('warn'),
          error: log('error'),
          child: (more) => make({ ...bindings, ...more }),
        };
      };
      const child = childLogger(make({ app: 'x' }), { shardId: 'shardId-1' });
      child.info({ records: 3 }, 'fetched');
      expect(lines).to.deep.equal([
        [{ app: 'x', shardId: 'shardId-1', level: 'info', records: 3 }, 'fetched'],
      ]);
      expect(childLogger(childLogger(silentLogger, { a: 1 }), { b: 2 })).to.equal(silentLogger);
    });

    it('childLogger returns the logger itself when it has no child()', () => {
      const calls: unknown[][] = [];
      const flat: Logger = {
        debug: (...args: unknown[]) => calls.push(args),
        info: (...args: unknown[]) => calls.push(args),
        warn: (...args: unknown[]) => calls.push(args),
        error: (...args: unknown[]) => calls.push(args),
      };
      const child = childLogger(flat, { shardId: 's' });
      expect(child).to.equal(flat);
      child.warn('careful');
      expect(calls).to.deep.equal([['careful']]);
    });
  });
});
