import { ErrorCodes, RateLimiter, type ShardlineError, TokenBucket } from '@shardline/common';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../../support/assertions.js';
import { seededRandom } from '../../support/random.js';

const MiB = 1024 * 1024;

/** A hand-driven clock. */
function manualClock(start = 0): {
  now: () => number;
  advance: (ms: number) => void;
  set: (ms: number) => void;
} {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
    set: (ms) => {
      t = ms;
    },
  };
}

function thrown(fn: () => unknown): ShardlineError {
  try {
    fn();
  } catch (error) {
    return error as ShardlineError;
  }
  expect.fail('expected an error, but the call returned');
}

describe('common/token-bucket', () => {
  describe('TokenBucket', () => {
    it('starts full (capacity = rate by default) and refills at the rate', () => {
      const clock = manualClock();
      const bucket = new TokenBucket({ ratePerSec: 5, clock: clock.now });
      expect(bucket.capacity).to.equal(5);
      for (let i = 0; i < 5; i++) expect(bucket.tryTake(), `take ${i}`).to.equal(true);
      expect(bucket.tryTake()).to.equal(false);
      expect(bucket.delayMs()).to.equal(200);
      clock.advance(199);
      expect(bucket.tryTake()).to.equal(false);
      expect(bucket.delayMs()).to.equal(1);
      clock.advance(1);
      expect(bucket.tryTake()).to.equal(true);
      clock.advance(60_000);
      expect(bucket.available()).to.equal(5);
    });

    it('honours capacity and initial', () => {
      const clock = manualClock();
      const bucket = new TokenBucket({ ratePerSec: 10, capacity: 3, initial: 1, clock: clock.now });
      expect(bucket.available()).to.equal(1);
      expect(bucket.tryTake(2)).to.equal(false);
      expect(bucket.delayMs(2)).to.equal(100);
      clock.advance(10_000);
      expect(bucket.available()).to.equal(3);
    });

    it('waiting exactly delayMs(n) always makes n available (integer clock and rates)', () => {
      const random = seededRandom(42);
      for (const rate of [1, 3, 5, 7, 1_000, MiB, 2 * MiB]) {
        const clock = manualClock(1_000);
        const bucket = new TokenBucket({ ratePerSec: rate, clock: clock.now, initial: 0 });
        for (let i = 0; i < 200; i++) {
          const n = Math.floor(random() * rate) + 1;
          const wait = bucket.delayMs(n);
          if (wait > 0) {
            clock.advance(wait - 1);
            expect(bucket.tryTake(n), `rate ${rate} n ${n}: one ms early`).to.equal(false);
            clock.advance(1);
          }
          expect(bucket.tryTake(n), `rate ${rate} n ${n} after ${wait} ms`).to.equal(true);
          if (random() < 0.3) clock.advance(Math.floor(random() * 500));
        }
      }
    });

    it('consume() goes into debt that later calls wait out: 10 MiB at 2 MiB/s', () => {
      const clock = manualClock();
      const bucket = new TokenBucket({ ratePerSec: 2 * MiB, clock: clock.now });
      expect(bucket.delayMs(0)).to.equal(0);
      bucket.consume(10 * MiB);
      expect(bucket.available()).to.equal(-8 * MiB);
      expect(bucket.tryTake(0)).to.equal(false);
      expect(bucket.delayMs(0)).to.equal(4_000);
      clock.advance(3_999);
      expect(bucket.tryTake(0)).to.equal(false);
      clock.advance(1);
      expect(bucket.tryTake(0)).to.equal(true);
    });

    it('a request larger than capacity waits for a full bucket, then leaves a debt', () => {
      const clock = manualClock();
      const bucket = new TokenBucket({ ratePerSec: 100, clock: clock.now, initial: 50 });
      expect(bucket.delayMs(250)).to.equal(500);
      expect(bucket.tryTake(250)).to.equal(false);
      expect(bucket.available()).to.equal(50);
      clock.advance(500);
      expect(bucket.tryTake(250)).to.equal(true);
      expect(bucket.available()).to.equal(-150);
      expect(bucket.delayMs(1)).to.equal(1_510);
    });

    it('a clock stepping back adds nothing, and the interval is not counted twice', () => {
      const clock = manualClock(1_000);
      const bucket = new TokenBucket({ ratePerSec: 1_000, clock: clock.now, initial: 0 });
      clock.set(500);
      expect(bucket.available()).to.equal(0);
      clock.set(1_100);
      expect(bucket.available()).to.equal(100);
    });

    it('setRate() counts earned tokens at the old rate, then caps to the new capacity', () => {
      const clock = manualClock();
      const bucket = new TokenBucket({ ratePerSec: 1_000, clock: clock.now, initial: 0 });
      clock.advance(500);
      bucket.setRate(4_000);
      expect(bucket.available()).to.equal(500);
      expect(bucket.ratePerSec).to.equal(4_000);
      expect(bucket.capacity).to.equal(4_000);
      clock.advance(500);
      expect(bucket.available()).to.equal(2_500);
      bucket.setRate(10, 20);
      expect(bucket.available()).to.equal(20);
      expect(bucket.delayMs(21)).to.equal(0);
    });

    describe('take()', () => {
      let clock: sinon.SinonFakeTimers;
      beforeEach(() => {
        clock = sinon.useFakeTimers();
      });
      afterEach(() => clock.restore());

      it('paces calls at the rate with the default clock and sleep', async () => {
        const bucket = new TokenBucket({ ratePerSec: 5 });
        const times: number[] = [];
        const loop = (async () => {
          for (let i = 0; i < 10; i++) {
            await bucket.take(1);
            times.push(Date.now());
          }
        })();
        await clock.tickAsync(5_000);
        await loop;
        expect(times).to.deep.equal([0, 0, 0, 0, 0, 200, 400, 600, 800, 1_000]);
      });

      it('rejects with ERR_ABORTED and takes nothing when aborted while waiting', async () => {
        const bucket = new TokenBucket({ ratePerSec: 1, initial: 0 });
        const controller = new AbortController();
        const outcome = rejection(bucket.take(1, controller.signal));
        await clock.tickAsync(500);
        controller.abort('stop');
        const error = await outcome;
        expect(error.code).to.equal(ErrorCodes.ABORTED);
        expect(error.cause).to.equal('stop');
        await clock.tickAsync(500);
        expect(bucket.available()).to.equal(1);
      });

      it('rejects at once with an aborted signal, even when tokens are there', async () => {
        const bucket = new TokenBucket({ ratePerSec: 5 });
        const error = await rejection(bucket.take(1, AbortSignal.abort()));
        expect(error.code).to.equal(ErrorCodes.ABORTED);
        expect(bucket.available()).to.equal(5);
      });

      it('uses an injected sleep', async () => {
        const now = manualClock();
        const bucket = new TokenBucket({ ratePerSec: 10, initial: 0, clock: now.now });
        const slept: number[] = [];
        await bucket.take(3, undefined, async (ms) => {
          slept.push(ms);
          now.advance(ms);
        });
        expect(slept).to.deep.equal([300]);
        expect(bucket.available()).to.equal(0);
      });
    });

    it('validates options and amounts, naming them', () => {
      const cases: Array<[() => unknown, RegExp]> = [
        [
          () => new TokenBucket({ ratePerSec: 0 }),
          /^tokenBucket\.ratePerSec must be a finite number > 0 \(got 0\)/,
        ],
        [() => new TokenBucket({ ratePerSec: -5 }), /^tokenBucket\.ratePerSec must be/],
        [() => new TokenBucket({ ratePerSec: Number.NaN }), /^tokenBucket\.ratePerSec must be/],
        [() => new TokenBucket({ ratePerSec: Number.POSITIVE_INFINITY }), /^tokenBucket\.ratePerSec must be/],
        [() => new TokenBucket({ ratePerSec: 5, capacity: 0 }), /^tokenBucket\.capacity must be/],
        [
          () => new TokenBucket({ ratePerSec: 5, initial: 6 }),
          /^tokenBucket\.initial must be a finite number <= capacity 5/,
        ],
        [
          () => new TokenBucket({ ratePerSec: 5, clock: 3 as never }),
          /^tokenBucket\.clock must be a function/,
        ],
        [() => new TokenBucket(undefined as never), /^tokenBucket must be an object/],
        [() => new TokenBucket({ ratePerSec: 5 }).tryTake(-1), /^tokenBucket\.tryTake\(n\) must be/],
        [() => new TokenBucket({ ratePerSec: 5 }).consume(Number.NaN), /^tokenBucket\.consume\(n\) must be/],
        [() => new TokenBucket({ ratePerSec: 5 }).setRate(0), /^tokenBucket\.setRate\.ratePerSec must be/],
      ];
      for (const [fn, message] of cases) {
        const error = thrown(fn);
        expect(error.code, String(message)).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(message);
      }
    });
  });

  describe('RateLimiter', () => {
    it('reader: waits for a call slot, then for byte debt after a large response', async () => {
      const clock = manualClock();
      const limiter = new RateLimiter({ callsPerSec: 5, bytesPerSec: 2 * MiB, clock: clock.now });
      const callTimes: number[] = [];
      const sleep = async (ms: number) => clock.advance(ms);
      const responses = [MiB / 4, MiB / 4, MiB / 4, 10 * MiB, 0, 0, 0, 0];
      for (const bytes of responses) {
        await limiter.take(0, 0, 1, undefined, sleep);
        callTimes.push(clock.now());
        limiter.consume(0, bytes);
      }
      // Calls 0-3 fit the burst; the 10 MiB reply leaves 2 - 0.75 - 10 = -8.75 MiB, paid off at 2 MiB/s.
      expect(callTimes.slice(0, 4)).to.deep.equal([0, 0, 0, 0]);
      expect(callTimes[4]).to.equal(4_375);
      // Then the call rate governs: the 5 slots refilled long ago, so 4 more go at once.
      expect(callTimes.slice(5)).to.deep.equal([4_375, 4_375, 4_375]);
    });

    it('producer: fit() says how many of these records may go now, delayMs() when the rest can', () => {
      const clock = manualClock();
      const limiter = new RateLimiter({ recordsPerSec: 1_000, bytesPerSec: MiB, clock: clock.now });
      const big = new Array<number>(600).fill(2_000);
      expect(limiter.fit(big)).to.equal(Math.floor(MiB / 2_000));
      const small = new Uint32Array(1_200).fill(100);
      expect(limiter.fit(small)).to.equal(1_000);
      expect(limiter.fit(small, 1_100)).to.equal(100);
      expect(limiter.fit(small, 10, 15)).to.equal(5);
      expect(limiter.fit(small, 5, 5)).to.equal(0);

      limiter.consume(1_000, 100_000);
      expect(limiter.fit(small, 1_000)).to.equal(0);
      expect(limiter.delayMs(1, small[1_000])).to.equal(1);
      clock.advance(100);
      expect(limiter.fit(small, 1_000)).to.equal(100);
    });

    it('fit() never goes beyond the byte capacity, except one oversized record on a full bucket', () => {
      const clock = manualClock();
      const limiter = new RateLimiter({ bytesPerSec: 1_000, clock: clock.now });
      expect(limiter.fit([400, 400, 400])).to.equal(2);
      expect(limiter.fit([5_000, 10])).to.equal(1);
      limiter.consume(0, 5_000);
      expect(limiter.fit([10])).to.equal(0);
      expect(limiter.delayMs(0, 5_000)).to.equal(5_000);
      clock.advance(4_000);
      expect(limiter.fit([10])).to.equal(0);
      clock.advance(10);
      expect(limiter.fit([10, 10])).to.equal(1);
    });

    it('fit() stops at a NaN size rather than letting everything through', () => {
      const limiter = new RateLimiter({ bytesPerSec: 1_000, clock: () => 0 });
      expect(limiter.fit([10, Number.NaN, 10])).to.equal(1);
    });

    it('tryTake() is all or nothing', () => {
      const clock = manualClock();
      const limiter = new RateLimiter({ recordsPerSec: 10, bytesPerSec: 100, clock: clock.now });
      expect(limiter.tryTake(5, 60)).to.equal(true);
      expect(limiter.tryTake(1, 60), 'records allow it, bytes do not').to.equal(false);
      expect(limiter.records!.available()).to.equal(5);
      expect(limiter.bytes!.available()).to.equal(40);
      expect(limiter.tryTake(6, 10), 'bytes allow it, records do not').to.equal(false);
      expect(limiter.records!.available()).to.equal(5);
      expect(limiter.bytes!.available()).to.equal(40);
      expect(limiter.delayMs(5, 60)).to.equal(200);
    });

    it('without limits everything fits at once', () => {
      const limiter = new RateLimiter({ recordsPerSec: Number.POSITIVE_INFINITY });
      expect(limiter.fit([1e9, 1e9])).to.equal(2);
      expect(limiter.delayMs(1e9, 1e9, 1e9)).to.equal(0);
      expect(limiter.tryTake(1e9, 1e9, 1e9)).to.equal(true);
    });

    it('setRates() scales the limits it has, and refuses one it lacks', () => {
      const clock = manualClock();
      const limiter = new RateLimiter({ recordsPerSec: 1_000, bytesPerSec: MiB, clock: clock.now });
      limiter.setRates({ recordsPerSec: 3_000, bytesPerSec: 3 * MiB });
      clock.advance(1_000);
      expect(limiter.fit(new Array<number>(5_000).fill(1))).to.equal(3_000);
      expect(thrown(() => limiter.setRates({ callsPerSec: 5 })).message).to.match(
        /^rateLimiter\.callsPerSec was not limited at construction/,
      );
    });

    it('validates options, naming them', () => {
      const cases: Array<[() => unknown, RegExp]> = [
        [() => new RateLimiter({ bytesPerSec: 0 }), /^rateLimiter\.bytesPerSec must be a finite number > 0/],
        [() => new RateLimiter({ callsPerSec: -1 }), /^rateLimiter\.callsPerSec must be/],
        [
          () => new RateLimiter({ recordsBurst: 5 }),
          /^rateLimiter\.recordsBurst needs rateLimiter\.recordsPerSec/,
        ],
        [() => new RateLimiter({ callsPerSec: 5, callsBurst: 0 }), /^rateLimiter\.callsBurst must be/],
        [() => new RateLimiter(null as never), /^rateLimiter must be an object/],
      ];
      for (const [fn, message] of cases) {
        const error = thrown(fn);
        expect(error.code, String(message)).to.equal(ErrorCodes.INVALID_OPTION);
        expect(error.message).to.match(message);
      }
    });
  });
});
