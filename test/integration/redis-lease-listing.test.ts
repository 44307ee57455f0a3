/**
 * RedisLeaseManager.listLeases against a real Redis (its own redis-server, so MONITOR sees only this
 * test): the group version and the cached listing. A listing is read in full only when a change other
 * hosts allocate by raised the version, or when a lease of the last listing may have run out; then
 * the cached listing is as a full read would be in everything but expiries (earlier, never past while
 * held) and other hosts' checkpoint positions. A dead host's lease is still found expired by the first
 * listing after it ran out, and a lapsed handoff reservation stops showing.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { type Lease, RedisLeaseManager, type RedisLeaseManagerOptions } from '@shardline/coordinator';
import { type RedisServer, startRedisServer } from '@shardline/testing';
import { expect } from 'chai';
import { Redis } from 'ioredis';

const LEASE_MS = 1_500;
/** A lease tick: leaseDurationMs / 3, as the coordinator's default renewal period. */
const TICK_MS = 500;
const GROUP = 'billing';
const STREAM = 'orders';

/** What a listing shows that a cached one must match a full read in (all but expiry and read time). */
function allocationView(leases: readonly Lease[], now: number) {
  return leases.map(({ expiresAtMs, readAtMs, ...rest }) => ({
    ...rest,
    held: rest.owner !== undefined && (expiresAtMs ?? 0) > now,
  }));
}

describe('RedisLeaseManager listings: group version and cached listing (real Redis)', function () {
  this.timeout(60_000);
  let server: RedisServer;
  let raw: Redis;
  let monitor: Redis;
  let seen: Array<{ args: string[]; lua: boolean }>;
  let managers: RedisLeaseManager[];
  let prefixNo = 0;
  let keyPrefix: string;

  before(async () => {
    server = await startRedisServer();
    raw = new Redis(server.url);
    monitor = await raw.monitor();
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      seen.push({ args, lua: source === 'lua' });
    });
  });

  after(async () => {
    monitor?.disconnect();
    raw?.disconnect();
    await server?.stop();
  });

  beforeEach(() => {
    seen = [];
    managers = [];
    keyPrefix = `listing-${prefixNo++}`;
  });

  afterEach(async () => {
    await Promise.all(managers.map((m) => m.close()));
  });

  function manager(hostId: string, options: Partial<RedisLeaseManagerOptions> = {}): RedisLeaseManager {
    const m = new RedisLeaseManager({
      redis: server.url,
      group: GROUP,
      stream: STREAM,
      hostId,
      keyPrefix,
      leaseDurationMs: LEASE_MS,
      ...options,
    });
    managers.push(m);
    return m;
  }

  /** Sends an ECHO and waits for the monitor to show it: it has shown every command before it, then. */
  async function monitorSync(): Promise<number> {
    const marker = `marker-${Math.random()}`;
    await raw.echo(marker);
    const deadline = Date.now() + 5_000;
    for (;;) {
      const at = seen.findIndex((c) => c.args[0]?.toLowerCase() === 'echo' && c.args[1] === marker);
      if (at !== -1) return at;
      if (Date.now() > deadline) throw new Error('the monitor did not show the marker within 5 s');
      await delay(5);
    }
  }

  /** The commands `run` made Redis execute, between two monitor syncs. */
  async function commandsOf(run: () => Promise<unknown>): Promise<Array<{ name: string; lua: boolean }>> {
    const from = (await monitorSync()) + 1;
    await run();
    const end = await monitorSync();
    return seen.slice(from, end).map((c) => ({ name: c.args[0]!.toLowerCase(), lua: c.lua }));
  }

  /** A full read by a manager that never listed before (no cache). */
  async function fullRead(): Promise<Lease[]> {
    const fresh = manager('fresh-reader');
    try {
      return await fresh.listLeases();
    } finally {
      await fresh.close();
    }
  }

  /** `m`'s listing, with the commands it ran and how many leases it read (HGETALL). */
  async function listCounted(m: RedisLeaseManager) {
    let leases: Lease[] = [];
    const commands = await commandsOf(async () => {
      leases = await m.listLeases();
    });
    return { leases, commands, reads: commands.filter((c) => c.name === 'hgetall').length };
  }

  /** A (cached) listing checked against a full read taken right after it. */
  async function compareWithFullRead(cached: readonly Lease[]): Promise<void> {
    const full = await fullRead();
    const now = cached[0]?.readAtMs ?? 0;
    expect(allocationView(cached, now)).to.deep.equal(allocationView(full, now));
    for (const [i, lease] of cached.entries()) {
      if (lease.owner === undefined) continue;
      // Earlier than the stored expiry at most, and still ahead while the lease is held.
      expect(lease.expiresAtMs!, lease.shardId).to.be.at.most(full[i]!.expiresAtMs!);
    }
  }

  it('confirms an idle host listing in one script call reading no lease, across its renewals', async () => {
    const a = manager('A');
    await a.ensureLeases(['s0', 's1', 's2', 's3'].map((shardId) => ({ shardId, parentShardIds: [] })));
    const held = [(await a.acquire('s0'))!, (await a.acquire('s1'))!];

    expect((await listCounted(a)).reads, 'the first listing reads every lease').to.equal(4);
    for (let round = 0; round < (2 * LEASE_MS) / TICK_MS; round++) {
      // Over two lease durations: every expiry of the first listing passes meanwhile.
      await delay(TICK_MS);
      const renewed = await a.renewLeases(held.map(({ shardId, counter }) => ({ shardId, counter })));
      const { leases, commands, reads } = await listCounted(a);
      expect(commands.filter((c) => !c.lua).map((c) => c.name)).to.deep.equal(['evalsha']);
      expect(reads, `round ${round}`).to.equal(0);
      // This host's own leases follow its renewals.
      for (const [i, lease] of held.entries()) {
        expect(leases[i]).to.include({ owner: 'A', expiresAtMs: renewed.get(lease.shardId)!.expiresAtMs });
      }
      await compareWithFullRead(leases);
    }
  });

  it('sees at its next listing every change another host allocates by, and nothing else reads all', async () => {
    const a = manager('A');
    const b = manager('B');
    await b.ensureLeases([
      { shardId: 's0', parentShardIds: [] },
      { shardId: 's1', parentShardIds: [] },
    ]);
    await compareWithFullRead(await a.listLeases());
    const steps: Array<[string, () => Promise<unknown>]> = [];
    let held: Lease | undefined;
    steps.push(['created', () => b.ensureLeases([{ shardId: 's2', parentShardIds: ['s0'] }])]);
    steps.push([
      'children set',
      () => b.ensureLeases([{ shardId: 's0', parentShardIds: [], childShardIds: ['s2'] }]),
    ]);
    steps.push([
      'acquired',
      async () => {
        held = await b.acquire('s0');
      },
    ]);
    steps.push(['first checkpoint', () => b.checkpoint('s0', held!.counter, { sequenceNumber: '10' })]);
    steps.push(['handoff requested', () => a.requestHandoff('s0', 'A')]);
    steps.push(['shard end', () => b.checkpoint('s0', held!.counter, 'SHARD_END')]);
    steps.push([
      'released with a failure note',
      () =>
        b.release('s0', held!.counter, {
          hostId: 'B',
          reason: 'reader',
          code: 'ERR_X',
          message: 'x',
          atMs: 1,
        }),
    ]);
    steps.push(['removed', () => b.removeLease('s1', 0)]);
    for (const [what, step] of steps) {
      await step();
      const { leases, reads } = await listCounted(a);
      expect(reads, `${what}: read in full`).to.be.greaterThan(0);
      await compareWithFullRead(leases);
    }

    // An ordinary checkpoint moves no version: A's listing stays as it was, the position included.
    const s2 = (await b.acquire('s2'))!;
    await b.checkpoint('s2', s2.counter, { sequenceNumber: '1' });
    const before = await a.listLeases();
    await b.checkpoint('s2', s2.counter, { sequenceNumber: '2' });
    const { leases: after, reads } = await listCounted(a);
    expect(reads).to.equal(0);
    expect(after.find((l) => l.shardId === 's2')!.checkpoint).to.deep.equal(
      before.find((l) => l.shardId === 's2')!.checkpoint,
    );
    expect((await b.getLease('s2'))!.checkpoint).to.deep.equal({ sequenceNumber: '2' });
  });

  it('B stops renewing: A, listing from its cache, sees B hold the lease until it runs out and takes it at the first tick after', async () => {
    const a = manager('A');
    const b = manager('B');
    await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
    const bLease = (await b.acquire('s0'))!;
    let expiresAt = bLease.expiresAtMs!;
    let renewedAt = bLease.readAtMs!;
    let renewing = true;
    const bRenewals = (async () => {
      // B renews each tick for two lease durations: every expiry A listed early on passes while B lives.
      for (let i = 0; i < (2 * LEASE_MS) / TICK_MS; i++) {
        await delay(TICK_MS);
        const renewed = (await b.renewLeases([{ shardId: 's0', counter: bLease.counter }])).get('s0');
        // Refused: this machine stalled B past its lease. It stopped renewing then, as a dead host.
        if (renewed === undefined) break;
        expiresAt = renewed.expiresAtMs!;
        renewedAt = renewed.readAtMs!;
      }
      renewing = false;
    })();

    // A's lease tick: list, and take the lease once the listing shows it free or expired.
    let taken: Lease | undefined;
    let heldSeen = 0;
    const deadline = Date.now() + 10 * LEASE_MS;
    while (taken === undefined) {
      if (Date.now() > deadline) throw new Error('A never took the lease of B, which stopped renewing');
      const listing = (await a.listLeases())[0]!;
      const now = listing.readAtMs!;
      // The expiry B's last renewal set, as known here when this listing was made.
      const realExpiry = expiresAt;
      const held = listing.owner === 'B' && listing.expiresAtMs! > now;
      if (now < realExpiry) {
        // Read before B's lease really ran out (B may still renew): it must show as held.
        expect(held, `listing at ${now}, B's lease runs to ${realExpiry}`).to.equal(true);
        heldSeen++;
      } else if (!renewing) {
        // B stopped and its lease ran out: the first listing after shows it expired, and A takes it.
        expect(held, `listing at ${now}, B's lease ran out at ${realExpiry}`).to.equal(false);
        taken = await a.acquire('s0');
        expect(taken, 'A takes the expired lease').to.not.equal(undefined);
        // Within leaseDurationMs + one tick of B's last renewal on the server clock (one tick more
        // for this loop's own timer on a busy machine: the listing above is the first at or past it).
        expect(taken!.readAtMs! - renewedAt).to.be.at.most(LEASE_MS + 2 * TICK_MS);
      }
      await delay(TICK_MS);
    }
    await bRenewals;
    expect(heldSeen, 'listings made while B renewed').to.be.at.least(4);
    expect(taken!.counter).to.equal(bLease.counter + 1);
  });

  it('drops a lapsed handoff reservation from a cached listing once its deadline passed, so any host may take the lease', async () => {
    const owner = manager('O');
    const requester = manager('R');
    const x = manager('X');
    await owner.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
    const lease = (await owner.acquire('s0'))!;
    expect(await requester.requestHandoff('s0', 'R')).to.equal(true);
    expect(await owner.release('s0', lease.counter)).to.equal(true);
    // R dies before taking it: the lease is free, reserved for R until the request's deadline.
    const first = (await x.listLeases())[0]!;
    expect(first).to.include({ owner: undefined, handoffTo: 'R' });
    expect(await x.acquire('s0')).to.equal(undefined);
    const deadline = Date.now() + 10 * LEASE_MS;
    for (;;) {
      const listing = (await x.listLeases())[0]!;
      if (listing.handoffTo === undefined) break;
      if (Date.now() > deadline) throw new Error('the lapsed reservation never left the listing');
      await delay(TICK_MS / 4);
    }
    expect((await x.acquire('s0'))!.owner).to.equal('X');
  });

  it('never matches a missing version: listings are read in full until a change sets it again, at a new value', async () => {
    const a = manager('A');
    await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
    const versionKey = `${keyPrefix}:{${GROUP}:${STREAM}}:version`;
    const version = await raw.get(versionKey);
    expect(version).to.be.a('string');
    await a.listLeases();
    expect((await listCounted(a)).reads).to.equal(0);

    await raw.del(versionKey);
    expect((await listCounted(a)).reads).to.equal(1);
    expect((await listCounted(a)).reads).to.equal(1);
    // Lost with its data, the version starts again at the server time in µs, not where it was.
    await a.acquire('s0');
    const restarted = await raw.get(versionKey);
    expect(Number(restarted)).to.be.greaterThan(Number(version));
    await a.listLeases();
    expect((await listCounted(a)).reads).to.equal(0);
  });

  it('stays a consistent snapshot while hosts race for the leases and one lists all along', async () => {
    const hosts = ['A', 'B', 'C'].map((id) => manager(id));
    const observer = manager('O');
    const ids = Array.from({ length: 8 }, (_, i) => `s${i}`);
    await observer.ensureLeases(ids.map((shardId) => ({ shardId, parentShardIds: [] })));
    let stop = false;
    const listing = (async () => {
      while (!stop) {
        const leases = await observer.listLeases();
        expect(leases.map((l) => l.shardId)).to.deep.equal(ids);
      }
    })();
    await Promise.all(
      hosts.map(async (host, h) => {
        for (let round = 0; round < 15; round++) {
          const shardId = ids[(round * 3 + h) % ids.length]!;
          const lease = await host.acquire(shardId);
          if (lease !== undefined && round % 2 === 0) await host.release(shardId, lease.counter);
        }
      }),
    );
    stop = true;
    await listing;
    await compareWithFullRead(await observer.listLeases());
  });
});
