/**
 * RedisLeaseManager and its Lua scripts against the real Redis: the LeaseManager contract shared with
 * the other stores (lease-store-cases.ts), and what only Redis has: expiry on the server clock, the
 * renewal cap of a handoff at the request's server time, membership by heartbeats, keys.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { type Lease, RedisLeaseManager, type RedisLeaseManagerOptions } from '@shardline/coordinator';
import { startRedisServer, type TestRedis, useTestRedis } from '@shardline/testing';
import { expect } from 'chai';
import sinon from 'sinon';
import { rejection } from '../support/assertions.js';
import { leaseStoreCases, waitFor } from './lease-store-cases.js';

describe('RedisLeaseManager (real Redis)', () => {
  let redis: TestRedis;
  let managers: RedisLeaseManager[];

  beforeEach(async () => {
    redis = await useTestRedis('redis-leases');
    managers = [];
  });

  afterEach(async () => {
    await Promise.all(managers.map((m) => m.close()));
    await redis.cleanup();
  });

  function manager(hostId: string, options: Partial<RedisLeaseManagerOptions> = {}): RedisLeaseManager {
    const m = new RedisLeaseManager({
      redis: redis.url,
      group: 'billing',
      stream: 'orders',
      hostId,
      keyPrefix: redis.keyPrefix,
      ...options,
    });
    managers.push(m);
    return m;
  }

  leaseStoreCases({ manager: (hostId, options) => manager(hostId, options) });

  describe('acquire, renew, release (Redis)', () => {
    it('renewLeases honours a per-call timeout shorter than commandTimeoutMs (a hung server)', async function () {
      this.timeout(20_000);
      const server = await startRedisServer();
      try {
        const a = manager('A', { redis: server.url, commandTimeoutMs: 5_000 });
        await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        const lease = (await a.acquire('s0'))!;
        process.kill(server.pid, 'SIGSTOP');
        const started = performance.now();
        const error = await rejection(
          a.renewLeases([{ shardId: 's0', counter: lease.counter }], { timeoutMs: 300 }),
        );
        const tookMs = performance.now() - started;
        process.kill(server.pid, 'SIGCONT');
        expect(error.code).to.equal('ERR_REDIS');
        expect(error.message).to.match(/300 ms/);
        expect(tookMs, 'bounded by the call timeout, not commandTimeoutMs').to.be.below(4_000);
      } finally {
        process.kill(server.pid, 'SIGCONT');
        await server.stop();
      }
    });
  });

  describe('expiry (Redis)', () => {
    it('expires on the Redis server clock, whatever this host clock says', async () => {
      // This host's clock is an hour ahead: a lease timed on it would look expired at once.
      const clock = sinon.useFakeTimers({ now: Date.now() + 3_600_000, toFake: ['Date'] });
      try {
        const a = manager('A', { leaseDurationMs: 2_000 });
        const b = manager('B', { leaseDurationMs: 2_000 });
        await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        const lease = (await a.acquire('s0'))!;
        expect(Math.abs(lease.readAtMs! - Date.now())).to.be.greaterThan(3_000_000);
        expect(lease.expiresAtMs! - lease.readAtMs!).to.equal(2_000);
        expect(await b.acquire('s0')).to.equal(undefined);
        expect(await a.renew('s0', lease.counter)).to.not.equal(undefined);
      } finally {
        clock.restore();
      }
    });
  });

  describe('handoff (Redis)', () => {
    it('caps the owner renewals at the request deadline, so the requester can take the lease without overlap', async () => {
      const leaseDurationMs = 1_500;
      const a = manager('A', { leaseDurationMs });
      const b = manager('B', { leaseDurationMs });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await a.acquire('s0'))!;
      expect(await b.requestHandoff('s0', 'B')).to.equal(true);
      const requested = (await b.getLease('s0'))!;
      // The request was made before this read: its deadline is at most this.
      const deadline = requested.readAtMs! + leaseDurationMs;
      expect(await b.acquire('s0')).to.equal(undefined);
      // The owner keeps renewing: its lease never reaches past the deadline, and then it is lost.
      let last: Lease | undefined = (await a.renew('s0', lease.counter))!;
      let renewals = 0;
      while (last !== undefined) {
        renewals++;
        expect(last.expiresAtMs).to.be.at.most(deadline);
        expect(last.expiresAtMs! - last.readAtMs!).to.be.at.most(leaseDurationMs);
        await delay(50);
        last = await a.renew('s0', lease.counter);
      }
      expect(renewals).to.be.at.least(2);
      expect(await b.now()).to.be.at.least(deadline);
      const taken = (await b.acquire('s0'))!;
      expect(taken).to.include({ owner: 'B', counter: lease.counter + 1 });
    });
  });

  describe('heartbeat and live hosts', () => {
    it('lists live hosts with their lease counts, drops silent ones after a lease duration, and prunes them', async () => {
      const leaseDurationMs = 1_000;
      const a = manager('A', { leaseDurationMs });
      const b = manager('B', { leaseDurationMs });
      await b.heartbeat(1);
      await a.heartbeat(2);
      const before = await a.now();
      const hosts = await a.liveHosts();
      expect(hosts.map((h) => [h.hostId, h.shards])).to.deep.equal([
        ['A', 2],
        ['B', 1],
      ]);
      for (const h of hosts) expect(h.lastSeenAtMs).to.be.within(before - leaseDurationMs, before);

      // A keeps beating, B stops.
      const seenB = hosts[1]!.lastSeenAtMs;
      await waitFor('B to drop out', async () => {
        await a.heartbeat(3);
        const live = await a.liveHosts();
        return !live.some((h) => h.hostId === 'B') && live;
      });
      expect(await a.now()).to.be.at.least(seenB + leaseDurationMs);
      await a.heartbeat(3);
      const raw = redis.client();
      expect(await raw.zrange(a.keys.hosts, 0, -1)).to.deep.equal(['A']);
      expect(await raw.hgetall(a.keys.hostShards)).to.deep.equal({ A: '3' });
      expect((await a.liveHosts()).map((h) => [h.hostId, h.shards])).to.deep.equal([['A', 3]]);
    });

    it('close() takes the host out of the live hosts at once', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.heartbeat(0);
      await b.heartbeat(0);
      expect((await a.liveHosts()).map((h) => h.hostId)).to.deep.equal(['A', 'B']);
      await b.close();
      expect((await a.liveHosts()).map((h) => h.hostId)).to.deep.equal(['A']);
    });
  });

  describe('keys, clock and lifecycle', () => {
    it('puts every key under <keyPrefix>:{<group>:<stream>}: (one Cluster slot)', async () => {
      const a = manager('A');
      const b = manager('B');
      await a.ensureLeases([
        { shardId: 's0', parentShardIds: [] },
        { shardId: 's1', parentShardIds: ['s0'] },
      ]);
      const lease = (await a.acquire('s0'))!;
      await a.checkpoint('s0', lease.counter, 'SHARD_END');
      await b.requestHandoff('s0', 'B');
      await a.heartbeat(1);
      await b.heartbeat(0);
      const raw = redis.client();
      const keys: string[] = [];
      let cursor = '0';
      do {
        const [next, page] = await raw.scan(cursor, 'MATCH', `${redis.keyPrefix}*`, 'COUNT', 1_000);
        cursor = next;
        keys.push(...page);
      } while (cursor !== '0');
      expect(keys.sort()).to.deep.equal(
        [
          `${redis.keyPrefix}:{billing:orders}:host-shards`,
          `${redis.keyPrefix}:{billing:orders}:hosts`,
          `${redis.keyPrefix}:{billing:orders}:lease:s0`,
          `${redis.keyPrefix}:{billing:orders}:lease:s1`,
          `${redis.keyPrefix}:{billing:orders}:shards`,
          `${redis.keyPrefix}:{billing:orders}:version`,
        ].sort(),
      );
      // Redis Cluster hashes the text between the first '{' and the next '}'.
      for (const key of keys) expect(/\{([^}]*)\}/.exec(key)![1]).to.equal('billing:orders');
    });

    it('keeps groups and streams apart', async () => {
      const a = manager('A');
      const other = manager('A', { group: 'analytics' });
      await a.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      expect(await other.listLeases()).to.deep.equal([]);
      await other.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      expect((await a.acquire('s0'))!.counter).to.equal(1);
      expect((await other.acquire('s0'))!.counter).to.equal(1);
    });

    it('now() is the Redis server time', async () => {
      const a = manager('A');
      const [seconds, micros] = await redis.client().time();
      const serverMs = Number(seconds) * 1_000 + Math.floor(Number(micros) / 1_000);
      expect(await a.now()).to.be.within(serverMs, serverMs + 1_000);
    });
  });
});

describe('lease Lua scripts on disk', () => {
  // Loaded both ways a user can run the package: built (dist/) and from source (tsx, src/).
  const modules = {
    dist: '../../packages/coordinator/dist/leases/scripts.js',
    src: '../../packages/coordinator/src/leases/scripts.js',
  };
  for (const [from, path] of Object.entries(modules)) {
    it(`are found from ${from}/, one file per script with a KEYS / ARGV / Returns header`, async () => {
      const { loadLeaseScripts } = (await import(
        path
      )) as typeof import('../../packages/coordinator/src/leases/scripts.js');
      const scripts = [...loadLeaseScripts().values()];
      expect(scripts.map((s) => s.file).sort()).to.deep.equal([
        'acquire-2.lua',
        'checkpoint-2.lua',
        'ensure-leases-1.lua',
        'get-lease-1.lua',
        'heartbeat-2.lua',
        'leave-2.lua',
        'list-leases-1.lua',
        'live-hosts-2.lua',
        'release-2.lua',
        'remove-lease-1.lua',
        'renew-leases-1.lua',
        'request-handoff-2.lua',
        'time-1.lua',
      ]);
      for (const script of scripts) {
        expect(script.command, script.file).to.match(/^shardline[A-Z][A-Za-z]+V\d+$/);
        expect(script.lua.endsWith(script.source), `${script.file} runs its own source last`).to.equal(true);
        const header = /^--\[\[([\s\S]*?)\]\]/.exec(script.source)?.[1];
        expect(header, `${script.file} header`).to.be.a('string');
        expect(header).to.match(/ARGV/);
        expect(header).to.match(/Returns /);
        // Every KEYS[n] the header documents, and no more than numberOfKeys of them.
        const documented = new Set([...header!.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1])));
        expect([...documented].sort(), script.file).to.deep.equal(
          Array.from({ length: script.numberOfKeys }, (_, i) => i + 1),
        );
        const used = new Set([...script.source.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1])));
        expect(Math.max(...used), script.file).to.equal(script.numberOfKeys);
      }
    });
  }
});
