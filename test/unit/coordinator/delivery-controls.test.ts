// biome-ignore-all lint/suspicious/noThenProperty: onHandlerError.then is the API option name (a string, never a thenable)
/**
 * The Lambda-style handler controls of the delivery lane: `maxRecordAgeMs`, the partial-batch answer
 * and `parallelism` (key groups), with fake timers (Date and setTimeout; setImmediate stays real).
 */
import type { RecordBatch } from '@shardline/coordinator';
import { expect } from 'chai';
import sinon from 'sinon';
import { keyGroups } from '../../../packages/coordinator/src/delivery/key-groups.js';
import { batch, delivery, lane, tick } from './delivery-harness.js';

const NOW = 1_800_000_000_000;
type Batch = RecordBatch<{ v: number }>;
const values = (b: Batch) => b.records.map((r) => r.data.v);
const progress = (l: ReturnType<typeof lane>) =>
  l.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`);

describe('coordinator delivery controls', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: NOW, toFake: ['Date', 'setTimeout', 'clearTimeout'] });
  });
  afterEach(() => clock.restore());

  describe('maxRecordAgeMs', () => {
    it("'skip': records past the age are not handed out, counted processed, and evented", async () => {
      const seen: number[][] = [];
      const d = delivery({
        handler: (b: Batch) => {
          seen.push(values(b));
        },
        maxRecordAgeMs: 60_000,
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      });
      const expired: unknown[] = [];
      d.events.on('record.expired', (e) => expired.push(e));
      const a = lane();
      d.open('A', a);
      const arrivalMs = [NOW - 120_000, NOW - 61_000, NOW - 59_000, NOW];
      d.push('A', batch('A', [1, 2, 3, 4], 100, { arrivalMs }));
      await clock.tickAsync(0);
      await tick();
      expect(seen).to.deep.equal([[3, 4]]);
      expect(progress(a)).to.deep.equal(['101/0', '103/2']);
      expect(expired).to.deep.equal([
        { shardId: 'A', records: 2, sequenceNumber: '100', ageMs: 120_000, action: 'skip' },
      ]);
      expect(d.bufferedRecords).to.equal(0);
    });

    it('bounds the retries of a failing batch: its record expires at a later attempt and gets then', async () => {
      let calls = 0;
      const d = delivery({
        handler: (b: Batch) => {
          calls++;
          if (b.records.some((r) => r.data.v === 1)) throw new Error('down');
        },
        maxRecordAgeMs: 10_000,
        onHandlerError: {
          retries: Number.POSITIVE_INFINITY,
          backoffMs: { initial: 1_000, max: 1_000 },
          then: 'skip',
        },
      });
      const actions: string[] = [];
      d.events.on('handler.failed', (e) => actions.push(e.action));
      d.events.on('record.expired', (e) => actions.push(`expired:${e.records}`));
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1], 100, { arrivalMs: [NOW] }));
      d.push('A', batch('A', [2], 101, { arrivalMs: [NOW + 20_000] }));
      await clock.tickAsync(9_000);
      expect(a.processed).to.deep.equal([]);
      // Full-jitter backoff of up to 1 s: at least one retry within 9 s.
      expect(calls).to.be.at.least(2);
      await clock.tickAsync(3_000);
      await tick();
      // Retried until it was past 10 s old, then skipped; the next batch was handled.
      expect(progress(a)).to.deep.equal(['100/0', '101/1']);
      expect(actions.at(-1)).to.equal('expired:1');
      expect(actions.filter((x) => x === 'retry').length).to.equal(calls - 1);
    });

    it("'dead-letter' sends the expired records with ERR_RECORD_EXPIRED; 'stop-shard' stops before them", async () => {
      const sent: Array<{ values: unknown[]; code: string }> = [];
      const seen: number[][] = [];
      const d = delivery({
        handler: (b: Batch) => {
          seen.push(values(b));
        },
        maxRecordAgeMs: 1_000,
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'dead-letter' },
        deadLetter: async (_s, records, error) => {
          sent.push({ values: records.map((r) => r.data), code: error.code });
        },
      });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3], 100, { arrivalMs: [NOW, NOW - 5_000, NOW - 5_000] }));
      await clock.tickAsync(0);
      await tick();
      expect(seen).to.deep.equal([[1]]);
      expect(sent).to.deep.equal([{ values: [{ v: 2 }, { v: 3 }], code: 'ERR_RECORD_EXPIRED' }]);
      expect(progress(a)).to.deep.equal(['100/1', '102/0']);

      const s = delivery({
        handler: (b: Batch) => {
          seen.push(values(b));
        },
        maxRecordAgeMs: 1_000,
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'stop-shard' },
      });
      const b = lane();
      s.open('B', b);
      s.push('B', batch('B', [7, 8], 200, { arrivalMs: [NOW - 5_000, NOW] }));
      s.push('B', batch('B', [9], 202, { arrivalMs: [NOW] }));
      await clock.tickAsync(0);
      await tick();
      expect(b.failed).to.deep.equal(['ERR_RECORD_EXPIRED']);
      expect(b.processed).to.deep.equal([]);
      expect(seen).to.deep.equal([[1]]);
    });

    it('an isolated record that expired by its turn gets then instead of a handler call', async () => {
      const seen: number[][] = [];
      const d = delivery({
        handler: async (b: Batch) => {
          seen.push(values(b));
          // Each call takes 4 s: the batch's last record is past the age by its turn alone.
          await new Promise((resolve) => setTimeout(resolve, 4_000));
          if (b.records.length > 1) throw new Error('batch fails');
        },
        maxRecordAgeMs: 10_000,
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3], 100, { arrivalMs: [NOW, NOW, NOW] }));
      await clock.tickAsync(20_000);
      await tick();
      expect(seen).to.deep.equal([[1, 2, 3], [1], [2]]);
      expect(progress(a)).to.deep.equal(['100/1', '101/1', '102/0']);
    });
  });

  describe('partial-batch answer', () => {
    it('{ failedAt }: the records before it are processed at once, only the rest is retried', async () => {
      const seen: number[][] = [];
      const d = delivery({
        handler: (b: Batch) => {
          seen.push(values(b));
          const bad = b.records.find((r) => r.data.v === 3);
          return seen.length === 1 ? { failedAt: bad } : undefined;
        },
        onHandlerError: { retries: 3, backoffMs: { initial: 100, max: 100 }, then: 'stop-shard' },
      });
      const failures: string[] = [];
      d.events.on('handler.failed', (e) => failures.push(`${e.action}:${e.records}:${e.error.message}`));
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3, 4, 5]));
      await clock.tickAsync(0);
      expect(progress(a)).to.deep.equal(['101/2']);
      await clock.tickAsync(200);
      expect(seen).to.deep.equal([
        [1, 2, 3, 4, 5],
        [3, 4, 5],
      ]);
      expect(progress(a)).to.deep.equal(['101/2', '104/3']);
      expect(failures).to.deep.equal(['retry:3:the handler reported record 102 of A failed']);
      expect(d.lane('A').delivered).to.equal(5);
    });

    it("Lambda's { batchItemFailures }: the earliest record named counts; an empty list is success", async () => {
      const seen: number[][] = [];
      const answers: unknown[] = [
        { batchItemFailures: [{ itemIdentifier: '103' }, { itemIdentifier: '101' }] },
        { batchItemFailures: [] },
        { failedAt: null },
      ];
      const d = delivery({
        handler: (b: Batch) => {
          seen.push(values(b));
          return answers.shift() as never;
        },
        onHandlerError: { retries: 3, backoffMs: { initial: 10, max: 10 }, then: 'stop-shard' },
      });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3, 4]));
      d.push('A', batch('A', [5], 104));
      await clock.tickAsync(50);
      expect(seen).to.deep.equal([[1, 2, 3, 4], [2, 3, 4], [5]]);
      expect(progress(a)).to.deep.equal(['100/1', '103/3', '104/1']);
    });

    it('an answer naming no record of the batch fails the whole batch', async () => {
      const seen: number[][] = [];
      const d = delivery({
        handler: (b: Batch) => {
          seen.push(values(b));
          if (seen.length === 1) return { failedAt: { sequenceNumber: '999' } };
          if (seen.length === 2) return { batchItemFailures: [{ itemIdentifier: '' }] };
          return undefined;
        },
        onHandlerError: { retries: 5, backoffMs: { initial: 10, max: 10 }, then: 'stop-shard' },
      });
      const errors: string[] = [];
      d.events.on('handler.failed', (e) => errors.push(e.error.message));
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2]));
      await clock.tickAsync(50);
      expect(seen).to.deep.equal([
        [1, 2],
        [1, 2],
        [1, 2],
      ]);
      expect(errors[0]).to.match(/names failedAt 999, which is no record of the batch/);
      expect(errors[1]).to.match(/without a non-empty itemIdentifier/);
      expect(progress(a)).to.deep.equal(['101/2']);
    });

    it("retries spent: the rest is isolated and 'skip' passes over only the record that fails alone", async () => {
      const handled: number[] = [];
      const d = delivery({
        handler: (b: Batch) => {
          const bad = b.records.find((r) => r.data.v === 3);
          if (bad !== undefined) return { failedAt: bad };
          handled.push(...values(b));
          return undefined;
        },
        onHandlerError: { retries: 1, backoffMs: { initial: 10, max: 10 }, then: 'skip' },
      });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3, 4]));
      await clock.tickAsync(50);
      // [1, 2] processed with the first answer; [3, 4] failed twice, then alone: 3 skipped, 4 handled.
      expect(progress(a)).to.deep.equal(['101/2', '102/0', '103/1']);
      expect(handled).to.deep.equal([4]);
    });
  });

  describe('parallelism (key groups)', () => {
    /** Two keys that fall in different groups of 2 (checked, so the test does not depend on luck). */
    function twoGroupKeys(): [string, string] {
      const keys = ['a', 'b', 'c', 'd', 'e', 'f'];
      const records = keys.map((partitionKey) => ({ partitionKey }) as never);
      const groups = keyGroups(records, 2) as unknown as Array<Array<{ partitionKey: string }>>;
      return [groups[0]![0]!.partitionKey, groups[1]![0]!.partitionKey];
    }

    it('splits a batch by key: one key stays in order in one call, keys run concurrently up to N', async () => {
      const keys = Array.from({ length: 40 }, (_, n) => `key-${n % 8}`);
      const running = { now: 0, max: 0 };
      const seen: Array<{ keys: string[]; values: number[] }> = [];
      const d = delivery({
        parallelism: 4,
        handler: async (b: Batch) => {
          running.now++;
          running.max = Math.max(running.max, running.now);
          seen.push({ keys: b.records.map((r) => r.partitionKey), values: values(b) });
          await new Promise((resolve) => setTimeout(resolve, 100));
          running.now--;
        },
      });
      const a = lane();
      d.open('A', a);
      d.push(
        'A',
        batch(
          'A',
          keys.map((_, n) => n),
          100,
          { keys },
        ),
      );
      await clock.tickAsync(150);
      await tick();
      expect(running.max).to.be.within(2, 4);
      const all = seen.flatMap((s) => s.values).sort((x, y) => x - y);
      expect(all).to.deep.equal(keys.map((_, n) => n));
      for (const s of seen) {
        // Each call holds whole keys, in the batch's order.
        expect(s.values).to.deep.equal([...s.values].sort((x, y) => x - y));
        for (const k of new Set(s.keys)) {
          expect(seen.filter((o) => o.keys.includes(k))).to.have.length(1);
        }
      }
      expect(a.processed.at(-1)?.position.sequenceNumber).to.equal('139');
      expect(a.processed.reduce((n, p) => n + p.records, 0)).to.equal(40);
      expect(d.bufferedRecords).to.equal(0);
    });

    it('the processed position moves only below the first record not processed, whatever group finishes first', async () => {
      const [k1, k2] = twoGroupKeys();
      const release = new Map<string, () => void>();
      const d = delivery({
        parallelism: 2,
        handler: (b: Batch) =>
          new Promise<void>((resolve) => {
            release.set(b.records[0]!.partitionKey, resolve);
          }),
      });
      const a = lane();
      d.open('A', a);
      // 100:k1 101:k2 102:k1 103:k2
      d.push('A', batch('A', [0, 1, 2, 3], 100, { keys: [k1, k2, k1, k2] }));
      d.push('A', batch('A', [4], 104, { keys: [k1] }));
      await clock.tickAsync(0);
      expect(release.size).to.equal(2);
      release.get(k2)!();
      await clock.tickAsync(0);
      // 101 and 103 are done, but 100 is not: nothing can be checkpointed yet.
      expect(a.processed).to.deep.equal([]);
      release.delete(k2);
      release.get(k1)!();
      release.delete(k1);
      await clock.tickAsync(0);
      expect(progress(a)).to.deep.equal(['103/4']);
      // The next batch started only after every group of the first finished.
      expect([...release.keys()]).to.deep.equal([k1]);
    });

    it("a failing group retries alone; 'stop-shard' there leaves the position before its record", async () => {
      const [k1, k2] = twoGroupKeys();
      const handled: number[] = [];
      const d = delivery({
        parallelism: 2,
        handler: (b: Batch) => {
          const bad = b.records.find((r) => r.data.v === 2);
          if (bad !== undefined) return { failedAt: bad };
          handled.push(...values(b));
          return undefined;
        },
        onHandlerError: { retries: 2, backoffMs: { initial: 10, max: 10 }, then: 'stop-shard' },
      });
      const a = lane();
      d.open('A', a);
      // 100:k1 101:k2 102:k1(fails) 103:k2 104:k1
      d.push('A', batch('A', [0, 1, 2, 3, 4], 100, { keys: [k1, k2, k1, k2, k1] }));
      d.push('A', batch('A', [5], 105, { keys: [k2] }));
      await clock.tickAsync(100);
      await tick();
      // k2's group was handled once; k1's got 0 through (its partial answer), then stopped at 102.
      expect(handled.sort()).to.deep.equal([1, 3]);
      expect(a.failed).to.deep.equal(['ERR_HANDLER']);
      expect(a.processed.at(-1)?.position.sequenceNumber).to.equal('101');
      expect(a.processed.every((p) => BigInt(p.position.sequenceNumber) < 102n)).to.equal(true);
    });

    it('two groups failing at once stop the shard once: the other group is abandoned, not reported', async () => {
      const [k1, k2] = twoGroupKeys();
      const d = delivery({
        parallelism: 2,
        handler: async () => {
          throw new Error('every key fails');
        },
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'stop-shard' },
      });
      const stops: number[] = [];
      d.events.on('handler.failed', (e) => {
        if (e.action === 'stop-shard') stops.push(e.records);
      });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [0, 1], 100, { keys: [k1, k2] }));
      await clock.tickAsync(0);
      await tick();
      expect(a.failed).to.deep.equal(['ERR_HANDLER']);
      expect(a.processed).to.deep.equal([]);
      expect(stops).to.deep.equal([1]);
    });

    it('the lease deadline (pause) holds every group; resume lets them go on', async () => {
      const [k1, k2] = twoGroupKeys();
      let calls = 0;
      const d = delivery({
        parallelism: 2,
        handler: (b: Batch) => {
          calls++;
          if (calls <= 2 && b.records.length > 0) throw new Error('first try fails');
        },
        onHandlerError: { retries: 5, backoffMs: { initial: 1_000, max: 1_000 }, then: 'stop-shard' },
      });
      const a = lane();
      const l = d.open('A', a);
      d.push('A', batch('A', [0, 1], 100, { keys: [k1, k2] }));
      await clock.tickAsync(0);
      expect(calls).to.equal(2);
      l.pause();
      await clock.tickAsync(5_000);
      expect(calls).to.equal(2);
      expect(a.processed).to.deep.equal([]);
      l.resume();
      await clock.tickAsync(0);
      expect(calls).to.equal(4);
      expect(a.processed.at(-1)?.position.sequenceNumber).to.equal('101');
    });
  });
});
