/**
 * ShardSession with fakes for the reader (a controllable ReaderHandle) and the real lane, credit
 * ledger, failure policy, checkpointer and in-memory lease store, under sinon fake timers: the lease
 * deadline and expiry timers, handler results, renewals, handoffs, shard end, crashes and stop, as
 * scenarios (one per defect they fixed) and as random schedules (fast-check) checked for the
 * session's invariants.
 */
import type { BatchMessage, DecodedRecordMessage, ShardPosition, WorkerMessage } from '@shardline/common';
import { codecs, PROTOCOL_VERSION, SHARD_END, ShardlineError, silentLogger } from '@shardline/common';
import type { RecordBatch } from '@shardline/coordinator';
import type { ShardReaderTaskOptions } from '@shardline/shard-worker';
import { expect } from 'chai';
import fc from 'fast-check';
import sinon from 'sinon';
import { comparePositions } from '../../../packages/coordinator/src/checkpointer.js';
import { BatchIterator } from '../../../packages/coordinator/src/delivery/batch-iterator.js';
import { CreditLedger } from '../../../packages/coordinator/src/delivery/credit-ledger.js';
import { FailurePolicy } from '../../../packages/coordinator/src/delivery/failure-policy.js';
import { Lane } from '../../../packages/coordinator/src/delivery/lane.js';
import { CoordinatorEvents } from '../../../packages/coordinator/src/events.js';
import { MemoryLeaseManager, MemoryLeaseStore } from '../../../packages/coordinator/src/leases/memory.js';
import type { Lease } from '../../../packages/coordinator/src/leases/types.js';
import type { ModuleWorkerMessage } from '../../../packages/coordinator/src/module-protocol.js';
import {
  SESSION_TIMING,
  ShardSession,
  type ShardSessionState,
  TRANSITIONS,
} from '../../../packages/coordinator/src/shard-session.js';
import {
  CrashGuard,
  type ReaderExit,
  type ReaderHandle,
} from '../../../packages/coordinator/src/supervisor.js';

const LEASE_MS = 10_000;
const SHARD = 'shardId-000000000000';
type Item = { n: number };

/** A reader task the test drives: it posts batches from its start position, exits when told. */
class FakeReader implements ReaderHandle {
  readonly shardId = SHARD;
  readonly exited: Promise<ReaderExit>;
  readonly sent: unknown[] = [];
  stopReason: string | undefined;
  #exit!: (exit: ReaderExit) => void;
  #done = false;
  #next: number;
  #batchId = 0;

  constructor(
    readonly options: ShardReaderTaskOptions,
    readonly onMessage: (message: WorkerMessage | ModuleWorkerMessage) => void,
  ) {
    this.exited = new Promise((resolve) => {
      this.#exit = resolve;
    });
    this.#next = options.checkpoint === undefined ? 1 : Number(options.checkpoint.sequenceNumber) + 1;
  }

  get running(): boolean {
    return !this.#done;
  }

  send(message: unknown): void {
    if (!this.#done) this.sent.push(message);
  }

  stop(reason: string): void {
    this.stopReason ??= reason;
    queueMicrotask(() => this.finish({ kind: 'finished', outcome: { shardId: SHARD, state: 'stopped' } }));
  }

  /** Posts a batch of `count` records, next in the shard. */
  fetch(count: number): void {
    if (this.#done || count === 0) return;
    const records: DecodedRecordMessage[] = [];
    for (let i = 0; i < count; i++) {
      const n = this.#next++;
      records.push({ data: { n }, partitionKey: 'k', sequenceNumber: String(n), arrivalMs: 0 });
    }
    const message: BatchMessage = {
      v: PROTOCOL_VERSION,
      type: 'batch',
      shardId: SHARD,
      batchId: this.#batchId++,
      lastSequenceNumber: records.at(-1)!.sequenceNumber,
      bytes: count,
      encoding: 'decoded',
      records,
    };
    this.onMessage(message);
  }

  finish(exit: ReaderExit): void {
    if (this.#done) return;
    this.#done = true;
    this.#exit(exit);
  }
}

interface Harness {
  session: ShardSession<Item>;
  readers: FakeReader[];
  reader(): FakeReader;
  leases: MemoryLeaseManager;
  other: MemoryLeaseManager;
  ledger: CreditLedger;
  events: CoordinatorEvents;
  log: string[];
  /** Every handler call: when it started (fake ms) and its records. */
  calls: Array<{ at: number; first: number; last: number }>;
  iterator: BatchIterator<Item> | undefined;
  /** Renews the lease in the store and tells the session, as the coordinator's renewal loop does. */
  renew(): Promise<Lease | undefined>;
  lease: Lease;
}

interface HarnessOptions {
  handler?: (batch: RecordBatch<Item>) => Promise<void> | void;
  iterator?: boolean;
  initialPosition?: 'TRIM_HORIZON' | 'LATEST';
  retries?: number;
  checkpoint?: { mode: 'auto' | 'manual'; intervalMs: number };
  /** Another host held the lease first (acquired, then released without a checkpoint). */
  earlierOwner?: boolean;
}

async function harness(options: HarnessOptions = {}): Promise<Harness> {
  const store = new MemoryLeaseStore();
  const leases = new MemoryLeaseManager({ hostId: 'me', leaseDurationMs: LEASE_MS, store });
  const other = new MemoryLeaseManager({ hostId: 'other', leaseDurationMs: LEASE_MS, store });
  await leases.ensureLeases([{ shardId: SHARD, parentShardIds: [] }]);
  const events = new CoordinatorEvents(silentLogger);
  const ledger = new CreditLedger({ maxBufferedRecords: 1_000, maxBufferedBytes: 1 << 20 });
  const iterator = options.iterator === true ? new BatchIterator<Item>() : undefined;
  const policy = new FailurePolicy({
    // biome-ignore lint/suspicious/noThenProperty: the API's option name, a string
    onHandlerError: { retries: options.retries ?? 2, backoffMs: { initial: 50, max: 200 }, then: 'skip' },
    events,
    logger: silentLogger,
  });
  const log: string[] = [];
  for (const name of [
    'lease.acquired',
    'lease.lost',
    'lease.released',
    'shard.ended',
    'checkpoint',
    'shard.started',
  ] as const) {
    events.on(name, (payload) => log.push(`${name} ${JSON.stringify(payload)}`));
  }
  const readers: FakeReader[] = [];
  const calls: Harness['calls'] = [];
  const handler = options.handler ?? (() => undefined);
  if (options.earlierOwner === true) {
    const earlier = (await other.acquire(SHARD))!;
    expect(await other.release(SHARD, earlier.counter)).to.equal(true);
  }
  const sent = performance.now();
  const lease = (await leases.acquire(SHARD))!;
  const session = new ShardSession<Item>(lease, sent, true, {
    hostId: 'me',
    leaseDurationMs: LEASE_MS,
    leases,
    events,
    logger: silentLogger,
    metrics: undefined,
    checkpoint: options.checkpoint ?? { mode: 'auto', intervalMs: 1_000 },
    ledger,
    crashGuard: new CrashGuard(),
    stats: { recordsDelivered: 0, recordsExpired: 0, throttled: 0 },
    initialPosition: options.initialPosition ?? 'TRIM_HORIZON',
    readerOptions: (start) => ({
      shardId: SHARD,
      streamName: 's',
      kinesis: {},
      initialPosition: 'initialPosition' in start ? start.initialPosition : 'TRIM_HORIZON',
      ...('checkpoint' in start ? { checkpoint: start.checkpoint } : {}),
    }),
    startReader: (readerOptions, onMessage) => {
      const reader = new FakeReader(readerOptions, onMessage);
      readers.push(reader);
      return reader;
    },
    threadIndex: () => 0,
    lane: (hooks) =>
      new Lane<Item>({
        shardId: SHARD,
        codec: codecs.json as never,
        sink:
          iterator !== undefined
            ? { mode: 'iterator', iterator }
            : {
                mode: 'handler',
                handler: (batch) => {
                  calls.push({
                    at: performance.now(),
                    first: batch.records[0]!.data.n,
                    last: batch.records.at(-1)!.data.n,
                  });
                  return handler(batch);
                },
              },
        policy,
        hooks,
        events,
        logger: silentLogger,
      }),
    deadLetter: async () => undefined,
    noteChildren: () => undefined,
    stopping: () => false,
    report: (error, message) => log.push(`report ${message}: ${(error as Error).message}`),
    failed: (failure) => log.push(`failed ${failure.reason} ${failure.error.code}`),
  });
  const h: Harness = {
    session,
    readers,
    reader: () => readers.at(-1)!,
    leases,
    other,
    ledger,
    events,
    log,
    calls,
    iterator,
    lease,
    async renew() {
      const at = performance.now();
      const renewed = await leases.renew(SHARD, lease.counter);
      if (renewed === undefined) session.renewRefused();
      else session.renewed(renewed, at);
      return renewed;
    },
  };
  session.start();
  return h;
}

const storedCheckpoint = async (h: Harness) => (await h.leases.getLease(SHARD))?.checkpoint;

/** Runs the fake clock until the session is terminal (its flows wait on timers and the reader). */
async function ended(h: Harness, clock: sinon.SinonFakeTimers): Promise<void> {
  for (let n = 0; n < 100 && !h.session.terminal; n++) await clock.tickAsync(10);
  expect(h.session.terminal, `terminal (state ${h.session.state})`).to.equal(true);
}

describe('ShardSession', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers({
      now: 1_000_000,
      toFake: [
        'setTimeout',
        'clearTimeout',
        'setInterval',
        'clearInterval',
        'Date',
        'performance',
        'queueMicrotask',
        'setImmediate',
      ],
    });
  });
  afterEach(() => {
    clock.restore();
    sinon.restore();
  });

  it('every transition of the table is the only way the state changes; an illegal one is refused', () => {
    const states = Object.keys(TRANSITIONS) as ShardSessionState[];
    for (const terminal of ['ended', 'released', 'failed', 'closed'] as const) {
      expect(TRANSITIONS[terminal], terminal).to.deep.equal([]);
    }
    // Every state is reachable from 'starting'.
    const reached = new Set<ShardSessionState>(['starting']);
    for (let grew = true; grew; ) {
      grew = false;
      for (const from of [...reached])
        for (const to of TRANSITIONS[from]) if (!reached.has(to)) grew = reached.add(to) !== null;
    }
    expect([...reached].sort()).to.deep.equal(states.sort());
  });

  it('reads from TRIM_HORIZON, delivers in order, checkpoints what was processed, releases on stop', async () => {
    const h = await harness();
    h.reader().fetch(3);
    await clock.tickAsync(0);
    h.reader().fetch(2);
    await clock.tickAsync(0);
    expect(h.calls.map((c) => `${c.first}-${c.last}`)).to.deep.equal(['1-3', '4-5']);
    h.session.release('stop');
    await ended(h, clock);
    expect(h.session.state).to.equal('released');
    expect(await storedCheckpoint(h)).to.deep.equal({ sequenceNumber: '5' });
    expect((await h.leases.getLease(SHARD))?.owner).to.equal(undefined);
    expect(h.ledger.bufferedRecords).to.equal(0);
  });

  describe('the local lease deadline is a timer', () => {
    it('past the deadline, queued batches and handler retries wait, with no renew failing; a good renew resumes', async () => {
      // Full jitter drawn at its top: a retry's backoff is 50 ms.
      sinon.stub(Math, 'random').returns(0.999);
      let fail = false;
      const h = await harness({
        handler: async () => {
          if (fail) {
            fail = false;
            throw new Error('once');
          }
        },
        retries: 5,
      });
      const deadline = performance.now() + LEASE_MS * (1 - SESSION_TIMING.deadlineMarginFraction);
      h.reader().fetch(1);
      await clock.tickAsync(0);
      expect(h.calls).to.have.length(1);
      // A batch that fails 10 ms before the deadline: its retry would come 40 ms after it.
      await clock.tickAsync(deadline - performance.now() - 10);
      fail = true;
      h.reader().fetch(1);
      await clock.tickAsync(0);
      expect(h.calls).to.have.length(2);
      h.reader().fetch(1);
      await clock.tickAsync(1_000);
      expect(
        h.calls.filter((c) => c.at >= deadline),
        'handler calls past the deadline',
      ).to.deep.equal([]);
      expect(h.calls).to.have.length(2);
      expect(h.session.state, 'paused, not lost: no renew failed').to.equal('reading');
      await h.renew();
      await clock.tickAsync(0);
      // The retry, then the queued batch.
      expect(h.calls.map((c) => `${c.first}`)).to.deep.equal(['1', '2', '2', '3']);
    });

    it('at the latest the lease can still be ours (sent + remaining), it is lost: nothing is written', async () => {
      const h = await harness();
      h.reader().fetch(2);
      await clock.tickAsync(0);
      await clock.tickAsync(LEASE_MS);
      expect(h.log.some((l) => l.startsWith('lease.lost') && l.includes('"expired"'))).to.equal(true);
      await ended(h, clock);
      expect(h.session.state).to.equal('closed');
      expect(h.reader().stopReason).to.equal('lease-lost');
      // Processed records were never checkpointed (auto interval 1 s > ... no: the lease outlived it).
      const checkpoints = h.log.filter((l) => l.startsWith('checkpoint'));
      for (const c of checkpoints) expect(c).to.include('"sequenceNumber":"2"');
    });

    it('iterator mode: a queued batch is not handed out past the deadline', async () => {
      const h = await harness({ iterator: true });
      h.reader().fetch(1);
      h.reader().fetch(1);
      const first = await h.iterator!.next();
      expect((first.value as RecordBatch<Item>).records[0]!.data.n).to.equal(1);
      await clock.tickAsync(LEASE_MS * 0.8 + 1);
      let second: IteratorResult<RecordBatch<Item>> | undefined;
      void h.iterator!.next().then((r) => {
        second = r;
      });
      await clock.tickAsync(100);
      expect(second, 'past the deadline').to.equal(undefined);
      await h.renew();
      await clock.tickAsync(0);
      expect((second!.value as RecordBatch<Item>).records[0]!.data.n).to.equal(2);
    });
  });

  it('stop with a handler slower than the lease: the lease stays held (and renewed) until it finished, then is released', async () => {
    let finish = () => {};
    const h = await harness({
      handler: () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
    });
    h.reader().fetch(1);
    await clock.tickAsync(0);
    h.session.release('stop');
    for (let t = 0; t < 3; t++) {
      await clock.tickAsync(LEASE_MS / 3);
      expect(h.session.holdsLease, 'renewed while the handler runs').to.equal(true);
      expect(await h.renew()).to.not.equal(undefined);
    }
    expect(await h.other.acquire(SHARD), 'nobody else can take it').to.equal(undefined);
    finish();
    await ended(h, clock);
    expect(h.session.state).to.equal('released');
    expect(await storedCheckpoint(h)).to.deep.equal({ sequenceNumber: '1' });
  });

  it('a lease lost while the shard is ending: the session closes, gives its buffered room back, no SHARD_END, no shard.ended', async () => {
    let finish = () => {};
    const h = await harness({
      handler: () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
    });
    h.reader().fetch(2);
    h.reader().fetch(3);
    await clock.tickAsync(0);
    h.reader().finish({ kind: 'finished', outcome: { shardId: SHARD, state: 'ended' } });
    await clock.tickAsync(0);
    expect(h.session.state).to.equal('ending');
    expect(h.ledger.bufferedRecords).to.equal(5);
    h.session.renewRefused();
    finish();
    await ended(h, clock);
    expect(h.session.state).to.equal('closed');
    expect(h.ledger.bufferedRecords).to.equal(0);
    expect(h.calls, 'the queued batch is not delivered after the loss').to.have.length(1);
    expect(await storedCheckpoint(h)).to.not.equal(SHARD_END);
    expect(h.log.some((l) => l.startsWith('shard.ended'))).to.equal(false);
  });

  it('shard end: the rest is delivered, SHARD_END written, the lease released, then shard.ended', async () => {
    const h = await harness();
    h.reader().fetch(2);
    h.reader().finish({
      kind: 'finished',
      outcome: { shardId: SHARD, state: 'ended', childShardIds: ['c1'] },
    });
    await ended(h, clock);
    expect(h.session.state).to.equal('ended');
    expect(await storedCheckpoint(h)).to.equal(SHARD_END);
    const order = h.log.filter((l) => /^(lease.released|shard.ended)/.test(l)).map((l) => l.split(' ')[0]);
    expect(order).to.deep.equal(['lease.released', 'shard.ended']);
  });

  it('a SHARD_END write refused because the lease moved: no shard.ended', async () => {
    const h = await harness({ handler: () => undefined });
    h.reader().fetch(1);
    await clock.tickAsync(0);
    // Another host took the lease meanwhile (expired here, e.g. after a pause of this process).
    await clock.tickAsync(LEASE_MS + 1);
    expect(await h.other.acquire(SHARD)).to.not.equal(undefined);
    h.reader().finish({ kind: 'finished', outcome: { shardId: SHARD, state: 'ended' } });
    await clock.tickAsync(0);
    await ended(h, clock);
    expect(h.log.some((l) => l.startsWith('shard.ended'))).to.equal(false);
    expect(await storedCheckpoint(h)).to.not.equal(SHARD_END);
  });

  it('a crash before the first processed batch at LATEST resumes from the start time, not from LATEST again', async () => {
    const h = await harness({ initialPosition: 'LATEST' });
    const startedAt = Date.now();
    expect(h.reader().options.initialPosition).to.equal('LATEST');
    await clock.tickAsync(2_000);
    h.reader().finish({ kind: 'crashed', error: new ShardlineError('ERR_WORKER_CRASHED', 'boom') });
    await clock.tickAsync(0);
    expect(h.readers).to.have.length(2);
    const restarted = h.reader().options.initialPosition as { timestamp: Date };
    expect(restarted.timestamp.getTime()).to.equal(startedAt - SESSION_TIMING.latestSkewMarginMs);
    // Once something was processed, a crash resumes after it.
    h.reader().fetch(2);
    await clock.tickAsync(0);
    h.reader().finish({ kind: 'crashed', error: new ShardlineError('ERR_WORKER_CRASHED', 'boom') });
    await clock.tickAsync(0);
    expect(h.reader().options.checkpoint).to.deep.equal({ sequenceNumber: '2' });
  });

  it('a lease another host held first, with no checkpoint, at LATEST: read from its first acquisition, not LATEST', async () => {
    const firstAcquiredAt = Date.now();
    const h = await harness({ initialPosition: 'LATEST', earlierOwner: true });
    expect(h.lease.counter).to.equal(2);
    expect(h.lease.firstAcquiredAtMs).to.equal(firstAcquiredAt);
    const start = h.reader().options.initialPosition as { timestamp: Date };
    expect(start.timestamp.getTime()).to.equal(firstAcquiredAt - SESSION_TIMING.latestSkewMarginMs);
    expect(h.log.find((l) => l.startsWith('shard.started'))).to.contain('"position":"AT_TIMESTAMP"');
    // A crash before anything was processed resumes from the same time.
    await clock.tickAsync(2_000);
    h.reader().finish({ kind: 'crashed', error: new ShardlineError('ERR_WORKER_CRASHED', 'boom') });
    await clock.tickAsync(0);
    expect(h.readers).to.have.length(2);
    const restarted = h.reader().options.initialPosition as { timestamp: Date };
    expect(restarted.timestamp.getTime()).to.equal(firstAcquiredAt - SESSION_TIMING.latestSkewMarginMs);
  });

  it('a lease another host held first, at TRIM_HORIZON: the initial position is kept', async () => {
    const h = await harness({ initialPosition: 'TRIM_HORIZON', earlierOwner: true });
    expect(h.reader().options.initialPosition).to.equal('TRIM_HORIZON');
  });

  it('a handoff request seen in a renew: the batch in hand finishes, the checkpoint is written, the lease released', async () => {
    let finish = () => {};
    const h = await harness({
      handler: () =>
        new Promise<void>((resolve) => {
          finish = resolve;
        }),
    });
    h.reader().fetch(1);
    h.reader().fetch(1);
    await clock.tickAsync(0);
    expect(await h.other.requestHandoff(SHARD, 'other')).to.equal(true);
    await h.renew();
    expect(h.session.state).to.equal('releasing');
    finish();
    await ended(h, clock);
    expect(h.calls).to.have.length(1);
    expect(await storedCheckpoint(h)).to.deep.equal({ sequenceNumber: '1' });
    expect((await h.other.acquire(SHARD))?.owner).to.equal('other');
  });

  it('random schedules: never a delivery past the deadline or after loss, checkpoints only of processed records and never backwards, always terminal after stop', async function () {
    this.timeout(60_000);
    type Action =
      | { kind: 'fetch'; count: number }
      | { kind: 'settle'; ok: boolean }
      | { kind: 'advance'; ms: number }
      | { kind: 'renew' }
      | { kind: 'renew-failed' }
      | { kind: 'renew-refused' }
      | { kind: 'handoff' }
      | { kind: 'shard-end' }
      | { kind: 'crash' }
      | { kind: 'steal' }
      | { kind: 'stop' };
    const action: fc.Arbitrary<Action> = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({ kind: fc.constant('fetch' as const), count: fc.integer({ min: 1, max: 4 }) }),
      },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('settle' as const), ok: fc.boolean() }) },
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('advance' as const),
          ms: fc.integer({ min: 1, max: 6_000 }),
        }),
      },
      { weight: 3, arbitrary: fc.constant({ kind: 'renew' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'renew-failed' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'renew-refused' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'handoff' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'shard-end' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'crash' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'steal' as const }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'stop' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(action, { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        // Where backoff jitter is drawn: 0 makes a retry come in the same tick.
        fc.constantFrom(0, 0.5, 0.999),
        async (actions, manual, jitter) => {
          const random = sinon.stub(Math, 'random').returns(jitter);
          const pending: Array<{ resolve(): void; reject(e: Error): void; last: number }> = [];
          /** The highest record the handler finished successfully, or the policy skipped. */
          let processedUpTo = 0;
          /** The last record of the latest handler call. */
          let lastCall = 0;
          /** When the last renew that the store accepted was sent, and what it left: the deadline. */
          let deadline = 0;
          let lostAt: number | undefined;
          const violations: string[] = [];
          const h = await harness({
            retries: 1,
            checkpoint: manual ? { mode: 'manual', intervalMs: 0 } : { mode: 'auto', intervalMs: 500 },
            handler: async (batch) => {
              const now = performance.now();
              if (now >= deadline) violations.push(`handler at ${now} past the deadline ${deadline}`);
              if (lostAt !== undefined)
                violations.push(`handler at ${now} after the lease was lost at ${lostAt}`);
              const last = batch.records.at(-1)!.data.n;
              lastCall = last;
              await new Promise<void>((resolve, reject) => pending.push({ resolve, reject, last }));
              processedUpTo = Math.max(processedUpTo, last);
              if (manual) await batch.checkpoint().catch(() => undefined);
            },
          });
          deadline = performance.now() + LEASE_MS * (1 - SESSION_TIMING.deadlineMarginFraction);
          const checkpoints: ShardPosition[] = [];
          h.events.on('checkpoint', (c) => {
            if (c.sequenceNumber !== SHARD_END) checkpoints.push({ sequenceNumber: c.sequenceNumber });
          });
          // 'skip' counts a record that failed alone as processed: the one the handler just had.
          h.events.on('handler.failed', (e) => {
            if (e.action === 'skip') processedUpTo = Math.max(processedUpTo, lastCall);
          });
          h.events.on('lease.lost', () => {
            lostAt ??= performance.now();
          });
          /** A renew as the coordinator's renewal loop does it; the model's deadline follows what the store granted. */
          const renew = async () => {
            const at = performance.now();
            const renewed = await h.leases.renew(SHARD, h.lease.counter);
            if (renewed !== undefined && h.session.holdsLease) {
              deadline =
                at + (renewed.expiresAtMs! - renewed.readAtMs!) * (1 - SESSION_TIMING.deadlineMarginFraction);
            }
            if (renewed === undefined) h.session.renewRefused();
            else h.session.renewed(renewed, at);
          };
          const settle = (ok: boolean) => {
            const p = pending.shift();
            if (p === undefined) return;
            if (ok) p.resolve();
            else p.reject(new Error('handler failed'));
          };
          for (const a of actions) {
            switch (a.kind) {
              case 'fetch':
                h.reader().fetch(a.count);
                break;
              case 'settle':
                settle(a.ok);
                break;
              case 'advance':
                await clock.tickAsync(a.ms);
                break;
              case 'renew':
                await renew();
                break;
              case 'renew-failed':
                h.session.renewFailed();
                break;
              case 'renew-refused':
                h.session.renewRefused();
                break;
              case 'handoff':
                // Another host asks for the lease; the owner sees it in its next renew.
                await h.other.requestHandoff(SHARD, 'other');
                await renew();
                break;
              case 'shard-end':
                h.reader().finish({ kind: 'finished', outcome: { shardId: SHARD, state: 'ended' } });
                break;
              case 'crash':
                h.reader().finish({
                  kind: 'crashed',
                  error: new ShardlineError('ERR_WORKER_CRASHED', 'boom'),
                });
                break;
              case 'steal':
                // Another host takes the lease once it expired in the store.
                await clock.tickAsync(LEASE_MS + 1);
                await h.other.acquire(SHARD);
                break;
              case 'stop':
                h.session.release('stop');
                break;
            }
            await clock.tickAsync(0);
          }
          // Stop, let every handler finish, and the session must end.
          h.session.release('stop');
          for (let n = 0; n < 100 && !h.session.terminal; n++) {
            settle(true);
            await clock.tickAsync(100);
          }
          expect(h.session.terminal, `terminal after stop (state ${h.session.state})`).to.equal(true);
          expect(violations).to.deep.equal([]);
          expect(h.ledger.bufferedRecords, 'every buffered record given back').to.equal(0);
          for (let i = 1; i < checkpoints.length; i++) {
            expect(
              comparePositions(checkpoints[i]!, checkpoints[i - 1]!),
              'checkpoints never go back',
            ).to.be.above(0);
          }
          for (const c of checkpoints) {
            expect(Number(c.sequenceNumber), 'checkpoint within what was processed').to.be.at.most(
              processedUpTo,
            );
          }
          random.restore();
          const reports = h.log.filter((l) => l.startsWith('report shard session failed'));
          expect(reports, 'no illegal transition or bug in a flow').to.deep.equal([]);
        },
      ),
      {
        numRuns: 300,
        // Found by an earlier run: a retry with no backoff (jitter drawn at 0) that fails too, so the
        // record is skipped; a skipped record counts as processed.
        examples: [
          [
            [
              { kind: 'advance', ms: 3952 },
              { kind: 'fetch', count: 1 },
              { kind: 'settle', ok: false },
              { kind: 'settle', ok: false },
              { kind: 'advance', ms: 2712 },
              { kind: 'advance', ms: 2917 },
            ],
            false,
            0,
          ],
        ],
      },
    );
  });
});
