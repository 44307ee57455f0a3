/**
 * RedisLeaseManager connections: URL forms with AUTH, credentials kept out of errors and logs, Redis
 * unreachable / stopped / hung (prompt ERR_REDIS, never a hang), reconnection, instances passed in
 * (Redis and a real single-node Redis Cluster), option validation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { type Logger, type ShardlineError, serializeError } from '@shardline/common';
import { RedisLeaseManager, type RedisLeaseManagerOptions, redactRedisUrl } from '@shardline/coordinator';
import {
  getFreePort,
  type RedisServer,
  startRedisServer,
  type TestRedis,
  useTestRedis,
} from '@shardline/testing';
import { expect } from 'chai';
import { Cluster, Redis } from 'ioredis';
import { rejection } from '../support/assertions.js';

const PASSWORD = 'pa55-w0rd-s3cret';

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(50);
  }
}

/** A logger that keeps every line, to check what reaches logs. */
function recordingLogger(): Logger & { lines: { level: string; text: string }[] } {
  const lines: { level: string; text: string }[] = [];
  const log =
    (level: string) =>
    (...args: unknown[]): void => {
      lines.push({ level, text: JSON.stringify(args) });
    };
  return { lines, debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
}

function base(overrides: Partial<RedisLeaseManagerOptions> = {}): RedisLeaseManagerOptions {
  return {
    redis: 'redis://127.0.0.1:6379',
    group: 'g',
    stream: 's',
    hostId: 'A',
    keyPrefix: 'test:conn',
    ...overrides,
  };
}

describe('RedisLeaseManager connections (real Redis)', () => {
  const managers: RedisLeaseManager[] = [];
  function manager(options: RedisLeaseManagerOptions): RedisLeaseManager {
    const m = new RedisLeaseManager(options);
    managers.push(m);
    return m;
  }
  afterEach(async () => {
    await Promise.all(managers.splice(0).map((m) => m.close()));
  });

  describe('with a password (redis-server --requirepass)', () => {
    let server: RedisServer;
    before(async () => {
      server = await startRedisServer({ password: PASSWORD });
    });
    after(async () => {
      await server?.stop();
    });

    it('startRedisServer({ password }) requires AUTH and puts the password in its url', async () => {
      expect(server.url).to.equal(`redis://:${PASSWORD}@127.0.0.1:${server.port}`);
      const anonymous = new Redis(`redis://127.0.0.1:${server.port}`, {
        lazyConnect: true,
        maxRetriesPerRequest: 0,
      });
      anonymous.on('error', () => {});
      try {
        await anonymous.connect().catch(() => undefined);
        const error = await rejection(anonymous.get('k'));
        expect(error.message).to.match(/NOAUTH/);
      } finally {
        anonymous.disconnect();
      }
      const authed = new Redis(server.url);
      try {
        expect(await authed.ping()).to.equal('PONG');
      } finally {
        authed.disconnect();
      }
    });

    it('works with redis://:password@host and redis://default:password@host', async () => {
      for (const url of [server.url, `redis://default:${PASSWORD}@127.0.0.1:${server.port}`]) {
        const m = manager(base({ redis: url }));
        await m.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        const lease = (await m.acquire('s0'))!;
        await m.checkpoint('s0', lease.counter, { sequenceNumber: '1' });
        expect(await m.release('s0', lease.counter)).to.equal(true);
      }
      const m = manager(base({ redis: { host: '127.0.0.1', port: server.port, password: PASSWORD } }));
      expect((await m.listLeases()).map((l) => l.counter)).to.deep.equal([2]);
    });

    it('fails with ERR_REDIS (not retriable) on a wrong or missing password, never showing it', async () => {
      const wrong = `redis://:wrong-${PASSWORD}@127.0.0.1:${server.port}`;
      const logger = recordingLogger();
      for (const redis of [wrong, `redis://127.0.0.1:${server.port}`]) {
        const m = manager(base({ redis, logger }));
        const started = performance.now();
        const error = await rejection(m.acquire('s0'));
        expect(performance.now() - started).to.be.below(4_000);
        expect(error.code).to.equal('ERR_REDIS');
        expect(error.retriable).to.equal(false);
        expect(error.message).to.match(/WRONGPASS|NOAUTH/);
        const everything = JSON.stringify(serializeError(error)) + String(error.stack);
        expect(everything).to.not.include(PASSWORD);
      }
      expect(logger.lines.map((l) => l.text).join('\n')).to.not.include(PASSWORD);
    });
  });

  describe('Redis unreachable, stopped or hung', () => {
    it('fails promptly with a retriable ERR_REDIS when nothing listens, without the password', async () => {
      const port = await getFreePort({ host: '127.0.0.1' });
      const m = manager(
        base({ redis: `redis://user:${PASSWORD}@127.0.0.1:${port}`, commandTimeoutMs: 3_000 }),
      );
      for (const call of [
        () => m.acquire('s0'),
        () => m.renew('s0', 1),
        () => m.heartbeat(0),
        () => m.now(),
      ]) {
        const started = performance.now();
        const error = await rejection(call());
        expect(performance.now() - started).to.be.below(3_500);
        expect(error.code).to.equal('ERR_REDIS');
        expect(error.retriable).to.equal(true);
        expect(error.message).to.include(`redis://user:***@127.0.0.1:${port}`);
        expect(JSON.stringify(serializeError(error))).to.not.include(PASSWORD);
      }
      const closing = performance.now();
      await m.close();
      expect(performance.now() - closing).to.be.below(2_000);
    });

    it('fails 64 concurrent calls during an outage without piling up listeners (no MaxListeners warning)', async () => {
      const warnings: Error[] = [];
      const onWarning = (warning: Error): void => {
        warnings.push(warning);
      };
      process.on('warning', onWarning);
      try {
        const port = await getFreePort({ host: '127.0.0.1' });
        const m = manager(base({ redis: `redis://127.0.0.1:${port}`, commandTimeoutMs: 2_000 }));
        const errors = await Promise.all(
          Array.from({ length: 64 }, (_, i) => rejection(m.renew(`s${i}`, 1))),
        );
        expect(errors.every((e) => e.code === 'ERR_REDIS')).to.equal(true);
        await delay(20);
        expect(warnings.map((w) => w.name)).to.not.include('MaxListenersExceededWarning');
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('speaks TLS for rediss:// URLs (the first byte on the wire is a TLS handshake record)', async () => {
      const firstBytes: number[] = [];
      const server = createServer((socket) => {
        socket.once('data', (data) => {
          firstBytes.push(data[0]!);
          socket.destroy();
        });
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const { port } = server.address() as AddressInfo;
      try {
        const m = manager(
          base({ redis: `rediss://:${PASSWORD}@127.0.0.1:${port}`, commandTimeoutMs: 2_000 }),
        );
        const error = await rejection(m.now());
        expect(error.code).to.equal('ERR_REDIS');
        expect(error.message).to.not.include(PASSWORD);
        expect(firstBytes[0]).to.equal(0x16);
      } finally {
        await Promise.all(managers.splice(0).map((m) => m.close()));
        await new Promise((resolve) => server.close(resolve));
      }
    });

    it('fails fast while Redis is down, then works again once it is back, logging the outage once', async function () {
      this.timeout(60_000);
      const first = await startRedisServer();
      let second: RedisServer | undefined;
      try {
        const logger = recordingLogger();
        const m = manager(base({ redis: first.url, commandTimeoutMs: 1_000, logger }));
        await m.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        const lease = (await m.acquire('s0'))!;
        await first.stop();
        for (let i = 0; i < 3; i++) {
          const started = performance.now();
          const error = await rejection(m.renew('s0', lease.counter));
          expect(performance.now() - started).to.be.below(1_500);
          expect(error).to.include({ code: 'ERR_REDIS', retriable: true });
        }
        second = await startRedisServer({ port: first.port });
        await waitFor('the manager to reconnect', () =>
          m.now().then(
            () => true,
            () => false,
          ),
        );
        // A fresh server (nothing persisted): the lease is gone, and can be created and taken again.
        expect(await m.renew('s0', lease.counter)).to.equal(undefined);
        await m.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
        expect((await m.acquire('s0'))!.counter).to.equal(1);
        expect(
          logger.lines.filter((l) => l.level === 'warn' && l.text.includes('connection lost')),
        ).to.have.length(1);
        expect(logger.lines.some((l) => l.level === 'info' && l.text.includes('restored'))).to.equal(true);
      } finally {
        await first.stop();
        await second?.stop();
      }
    });

    it('times out on a hung server (SIGSTOP), also with an instance passed in that has no timeout', async function () {
      this.timeout(30_000);
      const server = await startRedisServer();
      const instance = new Redis(server.url);
      try {
        const own = manager(base({ redis: server.url, commandTimeoutMs: 800 }));
        const passed = manager(base({ redis: instance, hostId: 'B', commandTimeoutMs: 800 }));
        await own.now();
        await passed.now();
        process.kill(server.pid, 'SIGSTOP');
        try {
          for (const m of [own, passed]) {
            const started = performance.now();
            const error = await rejection(m.listLeases());
            const elapsed = performance.now() - started;
            expect(elapsed).to.be.within(700, 2_000);
            expect(error).to.include({ code: 'ERR_REDIS', retriable: true });
            expect(error.message).to.match(/800 ms|timed out/);
          }
        } finally {
          process.kill(server.pid, 'SIGCONT');
        }
      } finally {
        instance.disconnect();
        await server.stop();
      }
    });
  });

  describe('instances passed in', () => {
    let redis: TestRedis;
    beforeEach(async () => {
      redis = await useTestRedis('redis-leases-conn');
    });
    afterEach(async () => {
      await Promise.all(managers.splice(0).map((m) => m.close()));
      await redis.cleanup();
    });

    it('uses an ioredis instance and leaves it open on close()', async () => {
      const client = redis.client();
      const m = manager(base({ redis: client, keyPrefix: redis.keyPrefix }));
      await m.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      expect((await m.acquire('s0'))!.owner).to.equal('A');
      await m.close();
      expect(client.status).to.equal('ready');
      expect(await client.exists(`${redis.keyPrefix}:{g:s}:lease:s0`)).to.equal(1);
    });

    it('works through an instance with an ioredis keyPrefix of its own (lease keys derived inside the scripts)', async () => {
      const client = redis.client({ keyPrefix: `${redis.keyPrefix}:outer:` });
      const m = manager(base({ redis: client, keyPrefix: 'inner' }));
      await m.ensureLeases([{ shardId: 's0', parentShardIds: [] }]);
      const lease = (await m.acquire('s0'))!;
      await m.checkpoint('s0', lease.counter, 'SHARD_END');
      expect((await m.listLeases()).map((l) => [l.shardId, l.owner, l.checkpoint])).to.deep.equal([
        ['s0', 'A', 'SHARD_END'],
      ]);
      const raw = redis.client();
      expect(await raw.hget(`${redis.keyPrefix}:outer:inner:{g:s}:lease:s0`, 'checkpoint')).to.equal(
        'SHARD_END',
      );
    });
  });

  describe('Redis Cluster', () => {
    let server: RedisServer;
    let dir: string;
    before(async function () {
      this.timeout(30_000);
      dir = mkdtempSync(join(tmpdir(), 'shardline-cluster-'));
      server = await startRedisServer({
        // A lone node does not know its address until it meets another one: announce it.
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          '--cluster-announce-ip',
          '127.0.0.1',
        ],
      });
      const admin = new Redis(server.url);
      try {
        await admin.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
        await waitFor('the one-node cluster to be ok', async () =>
          String(await admin.call('CLUSTER', 'INFO')).includes('cluster_state:ok'),
        );
      } finally {
        admin.disconnect();
      }
    });
    after(async () => {
      await server?.stop();
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    });

    it('runs every transition through an ioredis Cluster instance', async () => {
      const cluster = new Cluster([{ host: '127.0.0.1', port: server.port }]);
      try {
        const a = manager(base({ redis: cluster, keyPrefix: 'cluster-test' }));
        const b = manager(base({ redis: cluster, keyPrefix: 'cluster-test', hostId: 'B' }));
        await a.ensureLeases([
          { shardId: 's0', parentShardIds: [] },
          { shardId: 's1', parentShardIds: ['s0'] },
        ]);
        const lease = (await a.acquire('s0'))!;
        expect(await b.requestHandoff('s0', 'B')).to.equal(true);
        expect((await a.renew('s0', lease.counter))!.handoffTo).to.equal('B');
        await a.checkpoint('s0', lease.counter, { sequenceNumber: '5', subSequenceNumber: 1 });
        expect(await a.release('s0', lease.counter)).to.equal(true);
        expect((await b.acquire('s0'))!.counter).to.equal(2);
        await a.heartbeat(0);
        await b.heartbeat(1);
        expect((await a.liveHosts()).map((h) => h.hostId)).to.deep.equal(['A', 'B']);
        expect((await b.listLeases()).map((l) => [l.shardId, l.owner])).to.deep.equal([
          ['s0', 'B'],
          ['s1', undefined],
        ]);
        expect(await a.now()).to.be.a('number');
        await a.close();
        expect(cluster.status).to.equal('ready');
      } finally {
        cluster.disconnect();
      }
    });
  });

  describe('options', () => {
    it('rejects bad options naming them, with credentials redacted', () => {
      const cases: [Partial<RedisLeaseManagerOptions>, string][] = [
        [{ redis: `http://:${PASSWORD}@host` }, 'redis'],
        [{ redis: 42 as never }, 'redis'],
        [{ redis: null as never }, 'redis'],
        [{ group: '' }, 'group'],
        [{ group: 'a{b' }, 'group'],
        [{ stream: 'x}' }, 'stream'],
        [{ keyPrefix: '{p}' }, 'keyPrefix'],
        [{ hostId: undefined as never }, 'hostId'],
        [{ leaseDurationMs: 50 }, 'leaseDurationMs'],
        [{ leaseDurationMs: 1.5e3 + 0.5 }, 'leaseDurationMs'],
        [{ commandTimeoutMs: 0 }, 'commandTimeoutMs'],
        [{ logger: {} as never }, 'logger'],
        [{ redisOptions: 'x' as never }, 'redisOptions'],
      ];
      for (const [overrides, option] of cases) {
        let error: ShardlineError | undefined;
        try {
          new RedisLeaseManager(base(overrides));
        } catch (e) {
          error = e as ShardlineError;
        }
        expect(error?.code, option).to.equal('ERR_INVALID_OPTION');
        expect(error?.message).to.match(new RegExp(`^${option} `));
        expect(error?.message).to.not.include(PASSWORD);
      }
    });

    it('redacts passwords and query strings from URLs', () => {
      expect(redactRedisUrl(`redis://:${PASSWORD}@h:6379`)).to.equal('redis://:***@h:6379');
      expect(redactRedisUrl(`rediss://user:${PASSWORD}@h:6380/2`)).to.equal('rediss://user:***@h:6380/2');
      expect(redactRedisUrl(`redis://${PASSWORD}@h`)).to.equal('redis://***@h');
      expect(redactRedisUrl(`redis://h:1?password=${PASSWORD}`)).to.equal('redis://h:1');
      expect(redactRedisUrl('not a url')).to.equal('<invalid Redis URL>');
    });

    it('startRedisServer rejects bad password and args options', async () => {
      for (const options of [{ password: '' }, { args: 'x' as never }, { args: [1] as never }]) {
        const error = await rejection(startRedisServer(options));
        expect(error.code).to.equal('ERR_INVALID_OPTION');
      }
    });
  });
});
