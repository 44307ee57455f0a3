/**
 * The delivery parts of the coordinator, together as a shard session wires them (see reader-run.ts):
 * a Lane per shard, the host's CreditLedger, the FailurePolicy and, in iterator mode, the BatchIterator.
 */
import { PROTOCOL_VERSION } from '@shardline/common';
import type { RecordBatch } from '@shardline/coordinator';
import { expect } from 'chai';
import sinon from 'sinon';
import { CreditLedger } from '../../../packages/coordinator/src/delivery/credit-ledger.js';
import { rejection } from '../../support/assertions.js';
import { batch, credit, delivery, lane, nextBatchId, revoked, tick } from './delivery-harness.js';

describe('coordinator delivery: lanes, credit ledger, failure policy, iterator', () => {
  it("delivers a shard's batches one at a time, in order; shards run concurrently", async () => {
    const log: string[] = [];
    const release = new Map<string, () => void>();
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        const name = `${b.shardId}:${b.records.map((r) => r.data.v).join(',')}`;
        log.push(`start ${name}`);
        return new Promise<void>((resolve) =>
          release.set(b.shardId, () => {
            log.push(`end ${name}`);
            resolve();
          }),
        );
      },
    });
    const a = lane();
    const b = lane();
    d.open('A', a);
    d.open('B', b);
    d.push('A', batch('A', [1, 2]));
    d.push('A', batch('A', [3], 102));
    d.push('B', batch('B', [9]));
    await tick();
    expect(log).to.deep.equal(['start A:1,2', 'start B:9']);
    expect(d.bufferedRecords).to.equal(4);
    release.get('A')!();
    await tick();
    expect(log).to.deep.equal(['start A:1,2', 'start B:9', 'end A:1,2', 'start A:3']);
    expect(a.processed).to.deep.equal([{ position: { sequenceNumber: '101' }, records: 2 }]);
    release.get('A')!();
    release.get('B')!();
    await tick();
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['101', '102']);
    expect(d.bufferedRecords).to.equal(0);
    expect(
      a.sent.filter((m) => m.type === 'ack').map((m) => (m.type === 'ack' ? m.batchId : -1)),
    ).to.have.length(2);
  });

  it('grants each reader its fair share of the host budget and re-grants as batches are processed', async () => {
    const d = delivery({ handler: () => undefined });
    d.ledger.expect(2);
    const a = lane();
    const b = lane();
    d.open('A', a);
    d.open('B', b);
    // Budget 100 over 2 readers: one GetRecords call can fill a whole fair share.
    expect(credit(a)).to.deep.equal([50]);
    expect(credit(b)).to.deep.equal([50]);
    // A response can overdraw the credit (a KPL aggregate counts once against Limit).
    const sixty = Array.from({ length: 60 }, (_, i) => i);
    d.push('A', batch('A', sixty));
    await tick();
    // Processed: A overdrew its credit by 10 and gets its share again, the debt forgiven (the records
    // that made it are processed): back to 50, not 40.
    expect(credit(a)).to.deep.equal([50, 60]);
    // A small top-up waits until the reader runs low: fewer, fuller fetches.
    d.push('A', batch('A', [1, 2], 200));
    await tick();
    expect(credit(a)).to.deep.equal([50, 60]);
    expect(a.sent.some((m) => m.type === 'revoke')).to.equal(false);
  });

  it('a deep overdraft (a response of KPL aggregates far beyond the credit) does not stall the reader', async () => {
    const d = delivery({ handler: () => undefined });
    d.ledger.expect(1);
    const a = lane();
    d.open('A', a);
    d.push(
      'A',
      batch(
        'A',
        Array.from({ length: 5_000 }, (_, i) => i),
      ),
    );
    await tick();
    // Credit was 100; 5,000 records came: once they are processed the reader holds 100 again.
    expect(credit(a)).to.deep.equal([100, 5_000]);
    expect(d.bufferedRecords).to.equal(0);
  });

  it('shares the byte budget too: a reader of large records is held by bytes, and gets them back as they are processed', async () => {
    const ledger = new CreditLedger({ maxBufferedRecords: 1_000, maxBufferedBytes: 4_000 });
    ledger.expect(2);
    const sent: Array<{ type: string; records: number; bytes?: number }> = [];
    const a = ledger.open('A', (m) => sent.push(m));
    ledger.open('B', () => undefined);
    // Each reader's fair share: 500 records, 2,000 bytes.
    expect(sent).to.deep.equal([{ v: PROTOCOL_VERSION, type: 'credit', records: 500, bytes: 2_000 }]);
    // Ten 300-byte records: the bytes run out long before the records.
    a.received(10, 3_000, true);
    expect(ledger.bufferedRecords).to.equal(10);
    expect(ledger.bufferedBytes).to.equal(3_000);
    sent.length = 0;
    a.release(10, 3_000);
    expect(ledger.bufferedBytes).to.equal(0);
    // Processed: the byte debt (1,000 over) is forgiven and the share granted again.
    expect(sent.at(-1)).to.deep.include({ type: 'credit', bytes: 3_000 });
  });

  it('leaves room for readers started later: shares come from the expected reader count', () => {
    const d = delivery({ handler: () => undefined });
    d.ledger.expect(4);
    const lanes = ['A', 'B', 'C', 'D'].map((id) => {
      const l = lane();
      d.open(id, l);
      return l;
    });
    expect(lanes.map(credit)).to.deep.equal([[25], [25], [25], [25]]);
  });

  it('a reader started after an idle one that took the whole budget gets credit revoked from it', () => {
    const d = delivery({ handler: () => undefined });
    d.ledger.expect(1);
    const a = lane();
    d.open('A', a);
    expect(credit(a)).to.deep.equal([100]);
    d.ledger.expect(2);
    const b = lane();
    d.open('B', b);
    expect(revoked(a)).to.deep.equal([50]);
    expect(credit(b)).to.deep.equal([50]);
    // Records fetched and not processed yet cannot be revoked: only the credit above the share is.
    d.ledger.expect(4);
    const c = lane();
    const dd = lane();
    d.push(
      'A',
      batch(
        'A',
        Array.from({ length: 40 }, (_, i) => i),
      ),
    );
    d.open('C', c);
    d.open('D', dd);
    // A: 10 credit + 40 buffered (its handler has not run yet) over a share of 25: 10 revoked.
    // B: 50 credit: 25 revoked.
    expect(revoked(a)).to.deep.equal([50, 10]);
    expect(revoked(b)).to.deep.equal([25]);
    // Granted minus revoked is what each reader holds (A's 40 records included): within the budget.
    const sum = (xs: number[]) => xs.reduce((n, x) => n + x, 0);
    const held = [a, b, c, dd].map((l) => sum(credit(l)) - sum(revoked(l)));
    expect(held.slice(0, 2)).to.deep.equal([40, 25]);
    expect(sum(held)).to.equal(100);
  });

  it('iterator mode: asking for the next batch marks the previous one processed', async () => {
    const d = delivery({ mode: 'iterator' });
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1]));
    d.push('A', batch('A', [2], 101));
    const first = await d.iterator.next();
    expect(first.done).to.equal(false);
    expect((first.value as RecordBatch<{ v: number }>).records.map((r) => r.data.v)).to.deep.equal([1]);
    await tick();
    expect(a.processed).to.deep.equal([]);
    const second = await d.iterator.next();
    expect((second.value as RecordBatch<{ v: number }>).records.map((r) => r.data.v)).to.deep.equal([2]);
    await tick();
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
    d.iterator.end();
    expect((await d.iterator.next()).done).to.equal(true);
    await tick();
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100', '101']);
  });

  describe('iterator mode: leaving the loop (break, or an exception in its body)', () => {
    it('does not count the batch in hand: the next loop gets it again, and an end() drops it unprocessed', async () => {
      const d = delivery({ mode: 'iterator' });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1]));
      d.push('A', batch('A', [2], 101));
      const held = (await d.iterator.next()).value as RecordBatch<{ v: number }>;
      expect(held.records.map((r) => r.data.v)).to.deep.equal([1]);
      await d.iterator.return();
      await tick();
      expect(a.processed, 'nothing counted by leaving the loop').to.deep.equal([]);
      // A new loop starts with the same batch: nothing skipped, order kept.
      const again = (await d.iterator.next()).value as RecordBatch<{ v: number }>;
      expect(again.records.map((r) => r.data.v)).to.deep.equal([1]);
      await d.iterator.return();
      d.iterator.end();
      await tick();
      expect(a.processed).to.deep.equal([]);
      // The ended iterator takes nothing more: the lane let go of both batches, acking neither.
      expect(d.lane('A').halted).to.equal(true);
      expect(d.bufferedRecords).to.equal(0);
      expect(a.sent.some((m) => m.type === 'ack')).to.equal(false);
    });

    it('counts the batch in hand once batch.checkpoint() covered all of it', async () => {
      const d = delivery({ mode: 'iterator' });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2]));
      d.push('A', batch('A', [3], 102));
      const held = (await d.iterator.next()).value as RecordBatch<{ v: number }>;
      await held.checkpoint(held.records[0]);
      await d.iterator.return();
      await tick();
      // Part of it checkpointed: still not counted, handed out again.
      expect(a.processed).to.deep.equal([]);
      const again = (await d.iterator.next()).value as RecordBatch<{ v: number }>;
      expect(again.records.map((r) => r.data.v)).to.deep.equal([1, 2]);
      await again.checkpoint();
      await d.iterator.return();
      await tick();
      expect(a.checkpoints.map((c) => c.sequenceNumber)).to.deep.equal(['100', '101']);
      expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal(['101/2']);
      const next = (await d.iterator.next()).value as RecordBatch<{ v: number }>;
      expect(next.records.map((r) => r.data.v)).to.deep.equal([3]);
    });
  });

  it("poison records split the batch: 'skip' delivers the rest and moves past them", async () => {
    const seen: number[][] = [];
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(b.records.map((r) => r.data.v));
      },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 5, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
    });
    const failures: string[] = [];
    d.events.on('handler.failed', (e) => failures.push(`${e.action}:${e.records}`));
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1, 2, 'poison', 4]));
    await tick();
    await tick();
    expect(seen).to.deep.equal([[1, 2], [4]]);
    expect(failures).to.deep.equal(['skip:1']);
    expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
      '101/2',
      '102/0',
      '103/1',
    ]);
  });

  it("'stop-shard' on a poison record: nothing after it is delivered or marked processed", async () => {
    const seen: number[][] = [];
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(b.records.map((r) => r.data.v));
      },
    });
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1, 'poison', 3]));
    d.push('A', batch('A', [4], 103));
    await tick();
    await tick();
    expect(seen).to.deep.equal([[1]]);
    expect(a.failed).to.deep.equal(['ERR_CODEC']);
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
    expect(d.bufferedRecords).to.equal(0);
  });

  it('retries a failing handler with backoff, then applies then', async () => {
    let calls = 0;
    const d = delivery({
      handler: () => {
        calls++;
        throw new Error('boom');
      },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 2, backoffMs: { initial: 1, max: 2 }, then: 'stop-shard' },
    });
    const actions: string[] = [];
    d.events.on('handler.failed', (e) => actions.push(`${e.action}:${e.attempt}:${e.error.code}`));
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1]));
    for (let i = 0; i < 50 && a.failed.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
    expect(calls).to.equal(3);
    expect(actions).to.deep.equal(['retry:1:ERR_HANDLER', 'retry:2:ERR_HANDLER', 'stop-shard:3:ERR_HANDLER']);
    expect(a.processed).to.deep.equal([]);
  });

  it("'dead-letter': the batch's records go to the queue (retried while it fails), then the shard moves on", async () => {
    const sent: Array<{ values: unknown[]; code: string; attempts: number }> = [];
    let queueFailures = 1;
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        if (b.records.some((r) => r.data.v === 2)) throw new Error('boom');
      },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'dead-letter' },
      deadLetter: async (
        _shardId: string,
        records: Array<{ data: unknown }>,
        error: { code: string },
        attempts: number,
      ) => {
        if (queueFailures-- > 0) throw new Error('redis down');
        sent.push({ values: records.map((r) => r.data), code: error.code, attempts });
      },
    });
    const errors: string[] = [];
    d.events.on('error', (e) => errors.push(e.error.code));
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1]));
    d.push('A', batch('A', [2, 'poison'], 101));
    d.push('A', batch('A', [4], 103));
    for (let i = 0; i < 50 && a.processed.length < 4; i++) await new Promise((r) => setTimeout(r, 2));
    expect(sent).to.deep.equal([
      { values: [{ v: 2 }], code: 'ERR_HANDLER', attempts: 1 },
      // The poison record goes as its raw bytes, without handler retries.
      { values: [new Uint8Array([1])], code: 'ERR_CODEC', attempts: 1 },
    ]);
    expect(errors).to.deep.equal(['ERR_HANDLER']);
    // The handler never saw the poison record: [2] failed as its own batch, the poison one followed.
    expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
      '100/1',
      '101/0',
      '102/0',
      '103/1',
    ]);
  });

  describe('a batch that keeps failing is isolated: its records are delivered one at a time', () => {
    const until = async (condition: () => boolean) => {
      for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 2));
    };
    /** Handles a batch (recording its values) unless it holds one of `poison`. */
    function poisonHandler(poison: number[], handled: number[]) {
      return (b: RecordBatch<{ v: number }>) => {
        if (b.records.some((r) => poison.includes(r.data.v))) throw new Error('poison');
        handled.push(...b.records.map((r) => r.data.v));
      };
    }

    it("'skip': every other record is handled exactly once, in order; only the poison one is skipped", async () => {
      const handled: number[] = [];
      const d = delivery({
        handler: poisonHandler([3], handled),
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 1, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      });
      const failures: string[] = [];
      d.events.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.records}`));
      let processedEvents = 0;
      d.events.on('batch.processed', (e) => {
        processedEvents += e.records;
      });
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3, 4, 5]));
      d.push('A', batch('A', [6, 7], 105));
      await until(() => handled.length >= 6);
      expect(handled).to.deep.equal([1, 2, 4, 5, 6, 7]);
      expect(failures).to.deep.equal(['retry:1:5', 'isolate:2:5', 'skip:3:1']);
      expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
        '100/1',
        '101/1',
        '102/0',
        '103/1',
        '104/1',
        '106/2',
      ]);
      expect(processedEvents).to.equal(6);
      expect(d.lane('A').delivered).to.equal(6);
      expect(a.failed).to.deep.equal([]);
      expect(d.bufferedRecords).to.equal(0);
    });

    it("'dead-letter': only the records that fail alone are dead-lettered, the others are handled", async () => {
      const handled: number[] = [];
      const sent: Array<{ values: unknown[]; attempts: number }> = [];
      const d = delivery({
        handler: poisonHandler([2, 4], handled),
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 2, backoffMs: { initial: 1, max: 1 }, then: 'dead-letter' },
        deadLetter: async (
          _shardId: string,
          records: Array<{ data: unknown }>,
          _e: unknown,
          attempts: number,
        ) => {
          sent.push({ values: records.map((r) => r.data), attempts });
        },
      });
      const failures: string[] = [];
      d.events.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.records}`));
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3, 4, 5]));
      await until(() => a.processed.length >= 5);
      expect(handled).to.deep.equal([1, 3, 5]);
      // Three attempts of the batch, then one alone.
      expect(sent).to.deep.equal([
        { values: [{ v: 2 }], attempts: 4 },
        { values: [{ v: 4 }], attempts: 4 },
      ]);
      expect(failures).to.deep.equal([
        'retry:1:5',
        'retry:2:5',
        'isolate:3:5',
        'dead-letter:4:1',
        'dead-letter:4:1',
      ]);
      expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
        '100/1',
        '101/0',
        '102/1',
        '103/0',
        '104/1',
      ]);
    });

    it("'stop-shard': stops at the first record that fails alone, after processing the ones before it", async () => {
      const handled: number[] = [];
      const d = delivery({
        handler: poisonHandler([3], handled),
      });
      const failures: string[] = [];
      d.events.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.records}`));
      const a = lane();
      d.open('A', a);
      d.push('A', batch('A', [1, 2, 3, 4]));
      d.push('A', batch('A', [5], 104));
      await until(() => a.failed.length > 0);
      await tick();
      expect(handled).to.deep.equal([1, 2]);
      expect(failures).to.deep.equal(['isolate:1:4', 'stop-shard:2:1']);
      expect(a.failed).to.deep.equal(['ERR_HANDLER']);
      expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
        '100/1',
        '101/1',
      ]);
      expect(d.bufferedRecords).to.equal(0);
    });

    it('a halt during isolation ends it before the next record; the records handled alone count', async () => {
      const handled: number[] = [];
      let halt = () => {};
      const d = delivery({
        handler: (b: RecordBatch<{ v: number }>) => {
          if (b.records.length > 1) throw new Error('too many');
          handled.push(b.records[0]!.data.v);
          if (b.records[0]!.data.v === 2) halt();
        },
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      });
      const a = lane();
      const l = d.open('A', a);
      halt = () => l.halt();
      d.push('A', batch('A', [1, 2, 3]));
      await until(() => handled.length >= 2);
      await l.close();
      expect(handled).to.deep.equal([1, 2]);
      expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
        '100/1',
        '101/1',
      ]);
    });

    it('a pause (the lease deadline) between isolated records holds the next one until resumed', async () => {
      const handled: number[] = [];
      let pause = () => {};
      const d = delivery({
        handler: (b: RecordBatch<{ v: number }>) => {
          if (b.records.length > 1) throw new Error('too many');
          handled.push(b.records[0]!.data.v);
          if (b.records[0]!.data.v === 1) pause();
        },
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      });
      const a = lane();
      const l = d.open('A', a);
      pause = () => l.pause();
      d.push('A', batch('A', [1, 2, 3]));
      await until(() => handled.length >= 1);
      for (let n = 0; n < 5; n++) await tick();
      expect(handled, 'nothing handed out while paused').to.deep.equal([1]);
      l.resume();
      await until(() => handled.length >= 3);
      expect(handled).to.deep.equal([1, 2, 3]);
    });
  });

  describe('the lease deadline (pause) and the lane closing (halt)', () => {
    let clock: sinon.SinonFakeTimers;
    beforeEach(() => {
      clock = sinon.useFakeTimers();
    });
    afterEach(() => {
      clock.restore();
      sinon.restore();
    });

    it('a handler retry waits for the gate: paused past its backoff, it runs only after resume', async () => {
      // Full jitter drawn at its top: the retry comes 100 ms later, not in the same tick.
      sinon.stub(Math, 'random').returns(0.999);
      let calls = 0;
      const d = delivery({
        handler: () => {
          calls++;
          if (calls === 1) throw new Error('once');
        },
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 5, backoffMs: { initial: 100, max: 100 }, then: 'stop-shard' },
      });
      const a = lane();
      const l = d.open('A', a);
      d.push('A', batch('A', [1]));
      await clock.tickAsync(0);
      expect(calls).to.equal(1);
      l.pause();
      await clock.tickAsync(10_000);
      expect(calls, 'no retry past the deadline').to.equal(1);
      l.resume();
      await clock.tickAsync(0);
      expect(calls).to.equal(2);
      expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
    });

    it('closing a lane ends its retry sleep at once (backoff 30 s), without waiting it out', async () => {
      let calls = 0;
      const d = delivery({
        handler: () => {
          calls++;
          throw new Error('always');
        },
        onHandlerError: {
          retries: Number.POSITIVE_INFINITY,
          backoffMs: { initial: 30_000, max: 30_000 },
          // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
          then: 'skip',
        },
      });
      const a = lane();
      const l = d.open('A', a);
      d.push('A', batch('A', [1]));
      await clock.tickAsync(0);
      expect(calls).to.equal(1);
      let closed = false;
      const closing = l.close().then(() => {
        closed = true;
      });
      await clock.tickAsync(0);
      expect(closed, 'closed before any backoff ran out').to.equal(true);
      expect(clock.now).to.be.below(30_000);
      await closing;
      expect(calls).to.equal(1);
      expect(a.processed, 'the failed batch is not counted').to.deep.equal([]);
      expect(d.bufferedRecords).to.equal(0);
    });

    it('another lane keeps its backoff: closing one lane does not cut the others short', async () => {
      // Full jitter drawn at its top, so B's retry is due at 1000 ms, not in the same tick.
      sinon.stub(Math, 'random').returns(0.999);
      const calls = new Map<string, number>();
      const d = delivery({
        handler: (b: RecordBatch<{ v: number }>) => {
          calls.set(b.shardId, (calls.get(b.shardId) ?? 0) + 1);
          if (calls.get(b.shardId) === 1) throw new Error('once');
        },
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 3, backoffMs: { initial: 1_000, max: 1_000 }, then: 'stop-shard' },
      });
      const a = lane();
      const b = lane();
      const la = d.open('A', a);
      d.open('B', b);
      d.push('A', batch('A', [1]));
      d.push('B', batch('B', [1]));
      await clock.tickAsync(0);
      await la.close();
      await clock.tickAsync(0);
      expect(calls.get('B'), 'B still backing off').to.equal(1);
      await clock.tickAsync(1_000);
      expect(calls.get('B')).to.equal(2);
      expect(b.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
      expect(calls.get('A')).to.equal(1);
    });

    it("iterator mode: next() does not hand out a paused lane's batch; another lane's is handed out, and resume wakes it", async () => {
      const d = delivery({ mode: 'iterator' });
      const a = lane();
      const b = lane();
      const la = d.open('A', a);
      d.open('B', b);
      la.pause();
      d.push('A', batch('A', [1]));
      await clock.tickAsync(0);
      let got: RecordBatch<{ v: number }> | undefined;
      const waiting = d.iterator.next().then((r) => {
        got = r.value as RecordBatch<{ v: number }>;
      });
      await clock.tickAsync(1_000);
      expect(got, 'paused: not handed out').to.equal(undefined);
      d.push('B', batch('B', [7]));
      await waiting;
      expect(got!.shardId).to.equal('B');
      let second: RecordBatch<{ v: number }> | undefined;
      const next = d.iterator.next().then((r) => {
        second = r.value as RecordBatch<{ v: number }>;
      });
      await clock.tickAsync(0);
      expect(second).to.equal(undefined);
      la.resume();
      await next;
      expect(second!.shardId).to.equal('A');
    });

    it('iterator mode: an offer of a lane that halts is withdrawn, and the batch is not counted', async () => {
      const d = delivery({ mode: 'iterator' });
      const a = lane();
      const la = d.open('A', a);
      d.push('A', batch('A', [1]));
      await clock.tickAsync(0);
      await la.close();
      d.iterator.end();
      expect((await d.iterator.next()).done).to.equal(true);
      expect(a.processed).to.deep.equal([]);
      expect(d.bufferedRecords).to.equal(0);
    });
  });

  it('a batch that breaks the wire format stops the shard there: nothing after it is delivered or counted', async () => {
    const seen: number[] = [];
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(...b.records.map((r) => r.data.v));
      },
    });
    const errors: string[] = [];
    d.events.on('error', (e) => errors.push(e.error.code));
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1]));
    d.push('A', {
      v: PROTOCOL_VERSION,
      type: 'batch',
      shardId: 'A',
      batchId: nextBatchId(),
      lastSequenceNumber: '102',
      bytes: 20,
      encoding: 'json',
      // Says two records, holds one item.
      json: '[{"v":2}]',
      count: 2,
      partitionKeys: ['k'],
      keyIndex: Uint32Array.of(0, 0),
      sequenceNumbers: '101,102',
      arrivalMs: Float64Array.of(0, 0),
      poison: [],
    });
    d.push('A', batch('A', [4], 103));
    await tick();
    await tick();
    expect(seen).to.deep.equal([1]);
    expect(errors).to.deep.equal(['ERR_PROTOCOL']);
    expect(a.failed).to.deep.equal(['ERR_PROTOCOL']);
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
    expect(d.bufferedRecords).to.equal(0);
  });

  it('holds a paused lane (past the lease deadline) until resumed', async () => {
    const seen: number[] = [];
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(...b.records.map((r) => r.data.v));
      },
    });
    const a = lane();
    const l = d.open('A', a);
    l.pause();
    d.push('A', batch('A', [1]));
    await tick();
    expect(seen).to.deep.equal([]);
    l.resume();
    await tick();
    expect(seen).to.deep.equal([1]);
  });

  it("batch.checkpoint(upTo) writes that record's position; a record of another batch is refused", async () => {
    let held: RecordBatch<{ v: number }> | undefined;
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        held = b;
      },
    });
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1, 2, 3]));
    await tick();
    await held!.checkpoint(held!.records[1]);
    await held!.checkpoint();
    expect(a.checkpoints).to.deep.equal([{ sequenceNumber: '101' }, { sequenceNumber: '102' }]);
    const stranger = { ...held!.records[0]!, sequenceNumber: '999' };
    const error = await rejection(held!.checkpoint(stranger));
    expect(error.code).to.equal('ERR_INVALID_OPTION');
  });

  it('close() drops queued batches and waits for the one in flight', async () => {
    let finish: (() => void) | undefined;
    const seen: number[] = [];
    const d = delivery({
      handler: (b: RecordBatch<{ v: number }>) =>
        new Promise<void>((resolve) => {
          finish = () => {
            seen.push(...b.records.map((r) => r.data.v));
            resolve();
          };
        }),
    });
    const a = lane();
    d.open('A', a);
    d.push('A', batch('A', [1]));
    d.push('A', batch('A', [2], 101));
    await tick();
    let closed = false;
    const closing = d
      .lane('A')
      .close()
      .then(() => {
        closed = true;
      });
    await tick();
    expect(closed).to.equal(false);
    finish!();
    await closing;
    expect(seen).to.deep.equal([1]);
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
    expect(d.bufferedRecords).to.equal(0);
  });
});
