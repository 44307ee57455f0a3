import { getEventListeners } from 'node:events';
import {
  backoffDelay,
  ErrorCodes,
  isRetriable,
  type RetryOptions,
  retry,
  ShardlineError,
  sleep,
  validateRetryOptions,
} from '@shardline/common';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../../support/assertions.js';

function throttle(): Error {
  return Object.assign(new Error('Rate exceeded for shard'), {
    name: 'ProvisionedThroughputExceededException',
    $metadata: { httpStatusCode: 400 },
  });
}

/** Whether `promise` has settled, without waiting. */
function settledFlag(promise: Promise<unknown>): { settled: boolean } {
  const flag = { settled: false };
  promise.then(
    () => {
      flag.settled = true;
    },
    () => {
      flag.settled = true;
    },
  );
  return flag;
}

describe('common/retry', () => {
  describe('backoffDelay', () => {
    it('is random() * min(max, initial * 2^attempt)', () => {
      const backoff = { initial: 100, max: 1_000 };
      expect([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, backoff, () => 0.5))).to.deep.equal([
        50, 100, 200, 400, 500, 500,
      ]);
      expect(backoffDelay(2, backoff, () => 0)).to.equal(0);
      expect(backoffDelay(2, backoff, () => 0.999)).to.be.closeTo(399.6, 1e-9);
    });

    it('honours a custom multiplier', () => {
      const backoff = { initial: 10, max: 10_000, multiplier: 3 };
      expect([0, 1, 2, 3].map((a) => backoffDelay(a, backoff, () => 1))).to.deep.equal([10, 30, 90, 270]);
    });

    it('stays finite and capped for huge attempts, and 0 with initial 0', () => {
      expect(backoffDelay(5_000, { initial: 100, max: 30_000 }, () => 1)).to.equal(30_000);
      expect(backoffDelay(5_000, { initial: 0, max: 30_000 }, () => 1)).to.equal(0);
    });

    it('uses Math.random by default: within [0, cap)', () => {
      for (let i = 0; i < 200; i++) {
        const d = backoffDelay(3, { initial: 100, max: 10_000 });
        expect(d).to.be.at.least(0).and.below(800);
      }
    });
  });

  describe('sleep', () => {
    let clock: sinon.SinonFakeTimers;
    beforeEach(() => {
      clock = sinon.useFakeTimers();
    });
    afterEach(() => clock.restore());

    it('resolves after exactly ms', async () => {
      const done = sleep(1_000);
      const flag = settledFlag(done);
      await clock.tickAsync(999);
      expect(flag.settled).to.equal(false);
      await clock.tickAsync(1);
      expect(flag.settled).to.equal(true);
      await done;
    });

    it('rejects with ERR_ABORTED (cause: the reason) when aborted while waiting', async () => {
      const controller = new AbortController();
      const done = sleep(60_000, controller.signal);
      await clock.tickAsync(10);
      const reason = new Error('stopping');
      controller.abort(reason);
      const error = await rejection(done);
      expect(error).to.be.instanceOf(ShardlineError);
      expect(error.code).to.equal(ErrorCodes.ABORTED);
      expect(error.cause).to.equal(reason);
      expect(clock.countTimers()).to.equal(0);
    });

    it('rejects at once when the signal already aborted', async () => {
      const error = await rejection(sleep(1_000, AbortSignal.abort('gone')));
      expect(error.code).to.equal(ErrorCodes.ABORTED);
      expect(error.cause).to.equal('gone');
    });

    it('stops listening to the signal once resolved', async () => {
      const controller = new AbortController();
      const done = sleep(10, controller.signal);
      expect(getEventListeners(controller.signal, 'abort')).to.have.length(1);
      await clock.tickAsync(10);
      await done;
      expect(getEventListeners(controller.signal, 'abort')).to.have.length(0);
    });

    it('waits longer than setTimeout allows (2^31 ms) by chaining timers', async () => {
      const long = 2 ** 31 + 5_000;
      const done = sleep(long);
      const flag = settledFlag(done);
      await clock.tickAsync(2 ** 31);
      expect(flag.settled).to.equal(false);
      await clock.tickAsync(5_000);
      expect(flag.settled).to.equal(true);
    });

    it('refuses a negative or NaN delay', async () => {
      for (const ms of [-1, Number.NaN]) {
        const error = await rejection(sleep(ms));
        expect(error.code).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(/^sleep\.ms must be a number >= 0/);
      }
    });
  });

  describe('retry', () => {
    /** A sleep that records the delays and resolves at once. */
    function recordingSleep(): { delays: number[]; sleep: RetryOptions['sleep'] } {
      const delays: number[] = [];
      return {
        delays,
        sleep: async (ms) => {
          delays.push(ms);
        },
      };
    }

    const backoffMs = { initial: 100, max: 1_000 };

    it('returns the first success without waiting', async () => {
      const rec = recordingSleep();
      const result = await retry(({ attempt }) => `ok ${attempt}`, {
        retries: 3,
        backoffMs,
        sleep: rec.sleep,
      });
      expect(result).to.equal('ok 0');
      expect(rec.delays).to.deep.equal([]);
    });

    it('retries retriable errors with full-jitter backoff, then succeeds', async () => {
      const rec = recordingSleep();
      const attempts: number[] = [];
      const onRetry: Array<[string, number, number]> = [];
      const result = await retry(
        async ({ attempt }) => {
          attempts.push(attempt);
          if (attempt < 4) throw throttle();
          return 'done';
        },
        {
          retries: 10,
          backoffMs,
          random: () => 0.5,
          sleep: rec.sleep,
          onRetry: (error, attempt, delayMs) => onRetry.push([(error as Error).name, attempt, delayMs]),
        },
      );
      expect(result).to.equal('done');
      expect(attempts).to.deep.equal([0, 1, 2, 3, 4]);
      expect(rec.delays).to.deep.equal([50, 100, 200, 400]);
      expect(onRetry.map(([, attempt, delay]) => [attempt, delay])).to.deep.equal([
        [0, 50],
        [1, 100],
        [2, 200],
        [3, 400],
      ]);
      expect(onRetry[0]![0]).to.equal('ProvisionedThroughputExceededException');
    });

    it('rejects with the last error, unchanged, when retries are exhausted', async () => {
      const rec = recordingSleep();
      const errors: Error[] = [];
      const error = await rejection(
        retry(
          () => {
            const e = throttle();
            errors.push(e);
            throw e;
          },
          { retries: 2, backoffMs, sleep: rec.sleep },
        ),
      );
      expect(errors).to.have.length(3);
      expect(error).to.equal(errors[2]);
      expect(rec.delays).to.have.length(2);
    });

    it('retries: 0 runs once', async () => {
      let calls = 0;
      await rejection(
        retry(
          () => {
            calls++;
            throw throttle();
          },
          { retries: 0, backoffMs },
        ),
      );
      expect(calls).to.equal(1);
    });

    it('does not retry a non-retriable error by default', async () => {
      const rec = recordingSleep();
      for (const make of [
        () => new Error('plain bug'),
        () => Object.assign(new Error('no'), { name: 'AccessDeniedException' }),
        () => new ShardlineError(ErrorCodes.INVALID_RECORD, 'too big', { retriable: false }),
      ]) {
        let calls = 0;
        const thrown = make();
        const error = await rejection(
          retry(
            () => {
              calls++;
              throw thrown;
            },
            { retries: 5, backoffMs, sleep: rec.sleep },
          ),
        );
        expect(error).to.equal(thrown);
        expect(calls).to.equal(1);
      }
      expect(rec.delays).to.deep.equal([]);
    });

    it('retries forever with retries: Infinity until success', async () => {
      const rec = recordingSleep();
      const result = await retry(
        ({ attempt }) => {
          if (attempt < 50) throw new ShardlineError(ErrorCodes.TRANSIENT, 'again', { retriable: true });
          return attempt;
        },
        { retries: Number.POSITIVE_INFINITY, backoffMs, sleep: rec.sleep, random: () => 1 },
      );
      expect(result).to.equal(50);
      expect(rec.delays).to.have.length(50);
      expect(rec.delays.at(-1)).to.equal(1_000);
    });

    it('uses shouldRetry (with the failed attempt) instead of the default', async () => {
      const seen: number[] = [];
      const rec = recordingSleep();
      const error = await rejection(
        retry(
          () => {
            throw new Error('custom');
          },
          {
            retries: 10,
            backoffMs,
            sleep: rec.sleep,
            shouldRetry: (_error, attempt) => {
              seen.push(attempt);
              return attempt < 2;
            },
          },
        ),
      );
      expect(error.message).to.equal('custom');
      expect(seen).to.deep.equal([0, 1, 2]);
      expect(rec.delays).to.have.length(2);
    });

    it('bail() stops at once with its error, even when fn catches it', async () => {
      const rec = recordingSleep();
      const fatal = new Error('fatal');
      let calls = 0;
      const error = await rejection(
        retry(
          ({ bail }) => {
            calls++;
            bail(fatal);
          },
          { retries: 10, backoffMs, sleep: rec.sleep },
        ),
      );
      expect(error).to.equal(fatal);
      expect(calls).to.equal(1);

      const swallowed = new Error('swallowed bail');
      const error2 = await rejection(
        retry(
          async ({ bail }) => {
            try {
              bail(swallowed);
            } catch {
              // user code catching everything
            }
            throw throttle();
          },
          { retries: 10, backoffMs, sleep: rec.sleep },
        ),
      );
      expect(error2).to.equal(swallowed);
      expect(rec.delays).to.deep.equal([]);
    });

    it('an exception in onRetry ends the retries with it', async () => {
      const boom = new Error('listener');
      const error = await rejection(
        retry(
          () => {
            throw throttle();
          },
          {
            retries: 10,
            backoffMs,
            onRetry: () => {
              throw boom;
            },
          },
        ),
      );
      expect(error).to.equal(boom);
    });

    describe('with fake timers and the real sleep', () => {
      let clock: sinon.SinonFakeTimers;
      beforeEach(() => {
        clock = sinon.useFakeTimers();
      });
      afterEach(() => clock.restore());

      it('waits the backoff delays in real (fake) time', async () => {
        const calledAt: number[] = [];
        const done = retry(
          ({ attempt }) => {
            calledAt.push(Date.now());
            if (attempt < 3) throw throttle();
            return 'ok';
          },
          { retries: 5, backoffMs, random: () => 1 },
        );
        await clock.tickAsync(10_000);
        expect(await done).to.equal('ok');
        expect(calledAt).to.deep.equal([0, 100, 300, 700]);
      });

      it('abort during the wait rejects with ERR_ABORTED, cause = signal.reason, and stops calling fn', async () => {
        const controller = new AbortController();
        let calls = 0;
        const done = retry(
          () => {
            calls++;
            throw throttle();
          },
          { retries: Number.POSITIVE_INFINITY, backoffMs, random: () => 1, signal: controller.signal },
        );
        const outcome = rejection(done);
        await clock.tickAsync(150);
        expect(calls).to.equal(2);
        const reason = new Error('shutdown');
        controller.abort(reason);
        const error = await outcome;
        expect(error.code).to.equal(ErrorCodes.ABORTED);
        expect(error.cause).to.equal(reason);
        await clock.tickAsync(10_000);
        expect(calls).to.equal(2);
      });

      it('an abort that makes the attempt fail is reported as ERR_ABORTED, not as that failure', async () => {
        const controller = new AbortController();
        const done = retry(
          async () => {
            controller.abort('stop');
            throw new Error('request aborted');
          },
          { retries: 5, backoffMs, signal: controller.signal },
        );
        const error = await rejection(done);
        expect(error.code).to.equal(ErrorCodes.ABORTED);
        expect(error.cause).to.equal('stop');
      });

      it('does not call fn at all when the signal already aborted', async () => {
        let calls = 0;
        const error = await rejection(
          retry(
            () => {
              calls++;
            },
            { retries: 1, backoffMs, signal: AbortSignal.abort() },
          ),
        );
        expect(error.code).to.equal(ErrorCodes.ABORTED);
        expect(calls).to.equal(0);
      });
    });

    it('validates its options, naming the field', async () => {
      const cases: Array<[unknown, RegExp]> = [
        [undefined, /^retry must be an object/],
        [{ retries: -1, backoffMs }, /^retry\.retries must be an integer >= 0 or Infinity \(got -1\)/],
        [{ retries: 1.5, backoffMs }, /^retry\.retries must be an integer/],
        [{ retries: Number.NaN, backoffMs }, /^retry\.retries must be/],
        [{ retries: '3', backoffMs }, /^retry\.retries must be/],
        [{ retries: 1 }, /^retry\.backoffMs must be an object/],
        [
          { retries: 1, backoffMs: { initial: -1, max: 10 } },
          /^retry\.backoffMs\.initial must be a finite number/,
        ],
        [
          { retries: 1, backoffMs: { initial: 100, max: 10 } },
          /^retry\.backoffMs\.max must be >= retry\.backoffMs\.initial/,
        ],
        [
          { retries: 1, backoffMs: { initial: 1, max: Number.POSITIVE_INFINITY } },
          /^retry\.backoffMs\.max must be a finite/,
        ],
        [
          { retries: 1, backoffMs: { initial: 1, max: 10, multiplier: 0.5 } },
          /^retry\.backoffMs\.multiplier must be/,
        ],
        [{ retries: 1, backoffMs, onRetry: 'x' }, /^retry\.onRetry must be a function/],
        [{ retries: 1, backoffMs, signal: {} }, /^retry\.signal must be an AbortSignal/],
      ];
      for (const [options, message] of cases) {
        const error = await rejection(retry(() => 1, options as RetryOptions));
        expect(error.code, String(message)).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(message);
      }
      expect(() => validateRetryOptions({ retries: -1, backoffMs }, 'onHandlerError')).to.throw(
        /^onHandlerError\.retries must be/,
      );
    });
  });

  describe('isRetriable', () => {
    it('follows classifyAwsError for SDK and network errors, and an own boolean retriable otherwise', () => {
      expect(isRetriable(throttle())).to.equal(true);
      expect(isRetriable(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).to.equal(true);
      expect(isRetriable(Object.assign(new Error('x'), { $metadata: { httpStatusCode: 502 } }))).to.equal(
        true,
      );
      expect(isRetriable(Object.assign(new Error('x'), { name: 'ResourceNotFoundException' }))).to.equal(
        false,
      );
      expect(isRetriable(new Error('bug'))).to.equal(false);
      expect(isRetriable({ retriable: true, message: 'from another copy' })).to.equal(true);
      expect(isRetriable(new ShardlineError(ErrorCodes.LEASE_LOST, 'x', { retriable: true }))).to.equal(true);
      expect(
        isRetriable(new ShardlineError(ErrorCodes.INTERNAL, 'wrapped', { cause: throttle() })),
        'an ERR_INTERNAL wrapper is judged by its root cause',
      ).to.equal(true);
      expect(isRetriable(undefined)).to.equal(false);
      expect(isRetriable('string')).to.equal(false);
    });
  });
});
