import type {
  BatchMessage,
  CoordinatorMessage,
  DecodedRecordMessage,
  ShardPosition,
} from '@shardline/common';
import { CodecError, codecs, PROTOCOL_VERSION, serializeError, silentLogger } from '@shardline/common';
import type { RecordBatch } from '@shardline/coordinator';
import { expect } from 'chai';
import { Delivery, type LaneHooks } from '../../../packages/coordinator/src/delivery.js';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';
import { rejection } from '../../support/assertions.js';

interface Lane {
  sent: CoordinatorMessage[];
  processed: Array<{ position: ShardPosition; records: number }>;
  checkpoints: ShardPosition[];
  failed: string[];
  deliver: boolean;
  hooks: LaneHooks;
}

const credit = (l: Lane) =>
  l.sent.filter((m) => m.type === 'credit').map((m) => (m.type === 'credit' ? m.records : 0));
const revoked = (l: Lane) =>
  l.sent.filter((m) => m.type === 'revoke').map((m) => (m.type === 'revoke' ? m.records : 0));

function lane(): Lane {
  const l: Lane = {
    sent: [],
    processed: [],
    checkpoints: [],
    failed: [],
    deliver: true,
    hooks: undefined as unknown as LaneHooks,
  };
  l.hooks = {
    send: (m) => l.sent.push(m),
    processed: (position, records) => l.processed.push({ position, records }),
    checkpoint: async (position) => {
      l.checkpoints.push(position);
    },
    failed: (error) => l.failed.push(error.code),
    canDeliver: () => l.deliver,
  };
  return l;
}

let nextBatchId = 0;
function batch(shardId: string, values: Array<number | 'poison'>, firstSeq = 100): BatchMessage {
  const records: DecodedRecordMessage[] = values.map((v, n) => {
    const record: DecodedRecordMessage = {
      data: v === 'poison' ? new Uint8Array([1]) : { v },
      partitionKey: 'k',
      sequenceNumber: String(firstSeq + n),
      arrivalMs: 0,
    };
    if (v === 'poison') record.error = serializeError(new CodecError('json', 'undecodable'));
    return record;
  });
  return {
    v: PROTOCOL_VERSION,
    type: 'batch',
    shardId,
    batchId: nextBatchId++,
    lastSequenceNumber: String(firstSeq + values.length - 1),
    bytes: values.length * 10,
    encoding: 'decoded',
    records,
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

function delivery(options: Partial<ConstructorParameters<typeof Delivery>[0]> = {}) {
  const events = new CoordinatorEvents(silentLogger);
  const d = new Delivery<{ v: number }>({
    mode: 'handler',
    handler: undefined,
    codec: codecs.json as never,
    maxBufferedRecords: 100,
    // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
    onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'stop-shard' },
    events,
    logger: silentLogger,
    ...options,
  } as never);
  return { d, events };
}

describe('coordinator Delivery', () => {
  it("delivers a shard's batches one at a time, in order; shards run concurrently", async () => {
    const log: string[] = [];
    const release = new Map<string, () => void>();
    const { d } = delivery({
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
    } as never);
    const a = lane();
    const b = lane();
    d.open('A', a.hooks);
    d.open('B', b.hooks);
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
    const { d } = delivery({ handler: () => undefined } as never);
    d.expectLanes(2);
    const a = lane();
    const b = lane();
    d.open('A', a.hooks);
    d.open('B', b.hooks);
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
    const { d } = delivery({ handler: () => undefined } as never);
    d.expectLanes(1);
    const a = lane();
    d.open('A', a.hooks);
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

  it('leaves room for readers started later: shares come from the expected reader count', () => {
    const { d } = delivery({ handler: () => undefined } as never);
    d.expectLanes(4);
    const lanes = ['A', 'B', 'C', 'D'].map((id) => {
      const l = lane();
      d.open(id, l.hooks);
      return l;
    });
    expect(lanes.map(credit)).to.deep.equal([[25], [25], [25], [25]]);
  });

  it('a reader started after an idle one that took the whole budget gets credit revoked from it', () => {
    const { d } = delivery({ handler: () => undefined } as never);
    d.expectLanes(1);
    const a = lane();
    d.open('A', a.hooks);
    expect(credit(a)).to.deep.equal([100]);
    d.expectLanes(2);
    const b = lane();
    d.open('B', b.hooks);
    expect(revoked(a)).to.deep.equal([50]);
    expect(credit(b)).to.deep.equal([50]);
    // Records fetched and not processed yet cannot be revoked: only the credit above the share is.
    d.expectLanes(4);
    const c = lane();
    const dd = lane();
    d.push(
      'A',
      batch(
        'A',
        Array.from({ length: 40 }, (_, i) => i),
      ),
    );
    d.open('C', c.hooks);
    d.open('D', dd.hooks);
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
    const { d } = delivery({ mode: 'iterator' } as never);
    const a = lane();
    d.open('A', a.hooks);
    d.push('A', batch('A', [1]));
    d.push('A', batch('A', [2], 101));
    const first = await d.next();
    expect(first.done).to.equal(false);
    expect((first.value as RecordBatch<{ v: number }>).records.map((r) => r.data.v)).to.deep.equal([1]);
    await tick();
    expect(a.processed).to.deep.equal([]);
    const second = await d.next();
    expect((second.value as RecordBatch<{ v: number }>).records.map((r) => r.data.v)).to.deep.equal([2]);
    await tick();
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100']);
    await d.return();
    await tick();
    expect(a.processed.map((p) => p.position.sequenceNumber)).to.deep.equal(['100', '101']);
    d.stopping();
    expect((await d.next()).done).to.equal(true);
  });

  it("poison records split the batch: 'skip' delivers the rest and moves past them", async () => {
    const seen: number[][] = [];
    const { d, events } = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(b.records.map((r) => r.data.v));
      },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 5, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
    } as never);
    const failures: string[] = [];
    events.on('handler.failed', (e) => failures.push(`${e.action}:${e.records}`));
    const a = lane();
    d.open('A', a.hooks);
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
    const { d } = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(b.records.map((r) => r.data.v));
      },
    } as never);
    const a = lane();
    d.open('A', a.hooks);
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
    const { d, events } = delivery({
      handler: () => {
        calls++;
        throw new Error('boom');
      },
      // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
      onHandlerError: { retries: 2, backoffMs: { initial: 1, max: 2 }, then: 'stop-shard' },
    } as never);
    const actions: string[] = [];
    events.on('handler.failed', (e) => actions.push(`${e.action}:${e.attempt}:${e.error.code}`));
    const a = lane();
    d.open('A', a.hooks);
    d.push('A', batch('A', [1]));
    for (let i = 0; i < 50 && a.failed.length === 0; i++) await new Promise((r) => setTimeout(r, 2));
    expect(calls).to.equal(3);
    expect(actions).to.deep.equal(['retry:1:ERR_HANDLER', 'retry:2:ERR_HANDLER', 'stop-shard:3:ERR_HANDLER']);
    expect(a.processed).to.deep.equal([]);
  });

  it("'dead-letter': the batch's records go to the queue (retried while it fails), then the shard moves on", async () => {
    const sent: Array<{ values: unknown[]; code: string; attempts: number }> = [];
    let queueFailures = 1;
    const { d, events } = delivery({
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
    } as never);
    const errors: string[] = [];
    events.on('error', (e) => errors.push(e.error.code));
    const a = lane();
    d.open('A', a.hooks);
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
      const { d, events } = delivery({
        handler: poisonHandler([3], handled),
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 1, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      } as never);
      const failures: string[] = [];
      events.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.records}`));
      let processedEvents = 0;
      events.on('batch.processed', (e) => {
        processedEvents += e.records;
      });
      const a = lane();
      d.open('A', a.hooks);
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
      expect(d.delivered('A')).to.equal(6);
      expect(a.failed).to.deep.equal([]);
      expect(d.bufferedRecords).to.equal(0);
    });

    it("'dead-letter': only the records that fail alone are dead-lettered, the others are handled", async () => {
      const handled: number[] = [];
      const sent: Array<{ values: unknown[]; attempts: number }> = [];
      const { d, events } = delivery({
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
      } as never);
      const failures: string[] = [];
      events.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.records}`));
      const a = lane();
      d.open('A', a.hooks);
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
      const { d, events } = delivery({
        handler: poisonHandler([3], handled),
      } as never);
      const failures: string[] = [];
      events.on('handler.failed', (e) => failures.push(`${e.action}:${e.attempt}:${e.records}`));
      const a = lane();
      d.open('A', a.hooks);
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

    it('a stop during isolation ends it before the next record; the records handled alone count', async () => {
      const handled: number[] = [];
      let d: Delivery<{ v: number }>;
      ({ d } = delivery({
        handler: (b: RecordBatch<{ v: number }>) => {
          if (b.records.length > 1) throw new Error('too many');
          handled.push(b.records[0]!.data.v);
          if (b.records[0]!.data.v === 2) d.stopping();
        },
        // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
        onHandlerError: { retries: 0, backoffMs: { initial: 1, max: 1 }, then: 'skip' },
      } as never));
      const a = lane();
      d.open('A', a.hooks);
      d.push('A', batch('A', [1, 2, 3]));
      await until(() => !d.busy);
      expect(handled).to.deep.equal([1, 2]);
      expect(a.processed.map((p) => `${p.position.sequenceNumber}/${p.records}`)).to.deep.equal([
        '100/1',
        '101/1',
      ]);
    });
  });

  it('holds a lane while canDeliver() is false (past the lease deadline) until resumed', async () => {
    const seen: number[] = [];
    const { d } = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        seen.push(...b.records.map((r) => r.data.v));
      },
    } as never);
    const a = lane();
    a.deliver = false;
    d.open('A', a.hooks);
    d.push('A', batch('A', [1]));
    await tick();
    expect(seen).to.deep.equal([]);
    a.deliver = true;
    d.resume('A');
    await tick();
    expect(seen).to.deep.equal([1]);
  });

  it("batch.checkpoint(upTo) writes that record's position; a record of another batch is refused", async () => {
    let held: RecordBatch<{ v: number }> | undefined;
    const { d } = delivery({
      handler: (b: RecordBatch<{ v: number }>) => {
        held = b;
      },
    } as never);
    const a = lane();
    d.open('A', a.hooks);
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
    const { d } = delivery({
      handler: (b: RecordBatch<{ v: number }>) =>
        new Promise<void>((resolve) => {
          finish = () => {
            seen.push(...b.records.map((r) => r.data.v));
            resolve();
          };
        }),
    } as never);
    const a = lane();
    d.open('A', a.hooks);
    d.push('A', batch('A', [1]));
    d.push('A', batch('A', [2], 101));
    await tick();
    let closed = false;
    const closing = d.close('A').then(() => {
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
