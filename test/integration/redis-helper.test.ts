import {
  getFreePort,
  isPortOpen,
  pingRedis,
  resolveRedisUrl,
  startRedisServer,
  useTestRedis,
} from '@shardline/testing';
import { expect } from 'chai';
import { Redis } from 'ioredis';
import { rejection } from '../support/assertions.js';
import { isProcessAlive } from '../support/process.js';

async function withClient<T>(url: string, use: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await use(redis);
  } finally {
    redis.disconnect();
  }
}

describe('Redis helper: startRedisServer', () => {
  it('starts a real redis-server on loopback, and stop() kills it and closes the port', async () => {
    const server = await startRedisServer();
    try {
      expect(server.url).to.equal(`redis://127.0.0.1:${server.port}`);
      const info = await withClient(server.url, async (redis) => {
        await redis.set('k', 'v');
        expect(await redis.get('k')).to.equal('v');
        return redis.info('server');
      });
      expect(info).to.include(`process_id:${server.pid}`);
      expect(info).to.include(`tcp_port:${server.port}`);
      const persistence = await withClient(server.url, (redis) => redis.config('GET', 'save'));
      expect(persistence).to.deep.equal(['save', '']);
    } finally {
      await Promise.all([server.stop(), server.stop()]);
    }
    expect(isProcessAlive(server.pid)).to.equal(false);
    expect(await isPortOpen(server.port)).to.equal(false);
    await server.stop();
  });

  it('listens on a given port, and starts again on it after stop() (a Redis outage)', async () => {
    const port = await getFreePort({ host: '127.0.0.1' });
    const first = await startRedisServer({ port });
    expect(first.port).to.equal(port);
    await first.stop();
    expect(await pingRedis(first.url, 300)).to.equal(false);
    const second = await startRedisServer({ port });
    try {
      expect(second.pid).to.not.equal(first.pid);
      expect(await pingRedis(second.url)).to.equal(true);
    } finally {
      await second.stop();
    }
  });

  it('fails with the server output when the given port is taken', async () => {
    const running = await startRedisServer();
    try {
      const error = await rejection<Error & { code?: string }>(startRedisServer({ port: running.port }));
      expect(error.code).to.equal('ERR_REDIS');
      expect(error.message).to.include('Address already in use');
    } finally {
      await running.stop();
    }
  });

  it('fails clearly when the program does not exist', async () => {
    const error = await rejection<Error & { code?: string }>(
      startRedisServer({ command: '/nonexistent/redis-server' }),
    );
    expect(error.code).to.equal('ERR_REDIS');
    expect(error.message).to.include('could not be started');
    expect(error.message).to.include('ENOENT');
  });

  it('rejects bad options with the option named', async () => {
    const error = await rejection<Error & { code?: string }>(startRedisServer({ port: 0 }));
    expect(error.code).to.equal('ERR_INVALID_OPTION');
    expect(error.message).to.match(/^port must be an integer from 1 to 65535/);
  });
});

describe('Redis helper: resolveRedisUrl', () => {
  let server: Awaited<ReturnType<typeof startRedisServer>>;
  let closedUrl: string;

  before(async () => {
    server = await startRedisServer();
    closedUrl = `redis://127.0.0.1:${await getFreePort({ host: '127.0.0.1' })}`;
  });

  after(async () => {
    await server?.stop();
  });

  it('honours REDIS_URL without probing it', async () => {
    expect(await resolveRedisUrl({ env: { REDIS_URL: 'redis://redis.example:6390/2' } })).to.equal(
      'redis://redis.example:6390/2',
    );
  });

  it('reads REDIS_URL from process.env by default', async () => {
    const saved = process.env.REDIS_URL;
    process.env.REDIS_URL = server.url;
    try {
      expect(await resolveRedisUrl()).to.equal(server.url);
    } finally {
      if (saved === undefined) delete process.env.REDIS_URL;
      else process.env.REDIS_URL = saved;
    }
  });

  it('rejects a REDIS_URL that is not a redis:// URL', async () => {
    const error = await rejection<Error & { code?: string }>(
      resolveRedisUrl({ env: { REDIS_URL: 'localhost:6379' } }),
    );
    expect(error.code).to.equal('ERR_INVALID_OPTION');
    expect(error.message).to.include('REDIS_URL must be a redis:// or rediss:// URL');
  });

  it('uses the default server when it answers PING', async () => {
    expect(await resolveRedisUrl({ env: {}, defaultUrl: server.url })).to.equal(server.url);
  });

  it('defaults to redis://127.0.0.1:6379 when that answers', async () => {
    // The default address itself, as a user without REDIS_URL gets it.
    const answers = await pingRedis('redis://127.0.0.1:6379');
    const url = await resolveRedisUrl({ env: {} });
    if (answers) expect(url).to.equal('redis://127.0.0.1:6379');
    else expect(await pingRedis(url)).to.equal(true);
  });

  it('starts redis-server when nothing answers, once per process', async () => {
    const started = Date.now();
    const url = await resolveRedisUrl({ env: {}, defaultUrl: closedUrl });
    expect(url).to.not.equal(closedUrl);
    expect(url).to.match(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect(await pingRedis(url)).to.equal(true);
    expect(Date.now() - started).to.be.lessThan(10_000);
    expect(await resolveRedisUrl({ env: {}, defaultUrl: closedUrl })).to.equal(url);
  });

  it('says how to provide Redis when none can be found or started', async () => {
    const error = await rejection<Error & { code?: string }>(
      resolveRedisUrl({ env: {}, defaultUrl: closedUrl, redisServerCommand: '/nonexistent/redis-server' }),
    );
    expect(error.code).to.equal('ERR_REDIS');
    expect(error.message).to.include('no Redis available');
    expect(error.message).to.include(closedUrl);
    expect(error.message).to.include('Set REDIS_URL=redis://HOST:PORT');
    expect(error.message).to.include('apt-get install -y redis-server');
  });
});

describe('Redis helper: useTestRedis', () => {
  it('gives each call its own prefix', async () => {
    const a = await useTestRedis('helper');
    const b = await useTestRedis('helper');
    expect(a.keyPrefix).to.match(/^test:helper:[0-9a-f]{12}$/);
    expect(b.keyPrefix).to.not.equal(a.keyPrefix);
    expect((await useTestRedis()).keyPrefix).to.match(/^test:shardline:/);
    await Promise.all([a.cleanup(), b.cleanup()]);
  });

  it('cleanup() deletes only its prefix (over many SCAN pages) and closes its clients', async () => {
    const mine = await useTestRedis('cleanup');
    const other = await useTestRedis('cleanup');
    const client = mine.client();
    const outsider = `${mine.keyPrefix.replace(/^test:/, 'not-test:')}:survivor`;
    try {
      const pipeline = client.pipeline();
      for (let i = 0; i < 2_500; i++) pipeline.set(`${mine.keyPrefix}:k${i}`, String(i));
      pipeline.hset(`${mine.keyPrefix}:hash`, 'f', 'v');
      pipeline.set(`${other.keyPrefix}:kept`, 'x');
      pipeline.set(outsider, 'x');
      await pipeline.exec();
      await mine.cleanup();
      expect(client.status).to.equal('end');
      await withClient(mine.url, async (redis) => {
        const keys = Array.from({ length: 2_500 }, (_, i) => `${mine.keyPrefix}:k${i}`);
        expect(await redis.exists(...keys, `${mine.keyPrefix}:hash`)).to.equal(0);
        expect(await redis.get(`${other.keyPrefix}:kept`)).to.equal('x');
        expect(await redis.get(outsider)).to.equal('x');
      });
    } finally {
      await withClient(mine.url, (redis) => redis.del(outsider));
      await other.cleanup();
    }
    await withClient(mine.url, async (redis) => {
      expect(await redis.exists(`${other.keyPrefix}:kept`)).to.equal(0);
    });
  });

  it('treats glob characters in the name literally', async () => {
    const redis = await useTestRedis('br[ack]e*t?');
    const client = redis.client();
    await client.set(`${redis.keyPrefix}:a`, '1');
    await redis.cleanup();
    await withClient(redis.url, async (admin) => {
      expect(await admin.exists(`${redis.keyPrefix}:a`)).to.equal(0);
    });
  });

  it('rejects an empty name', async () => {
    const error = await rejection<Error & { code?: string }>(useTestRedis(''));
    expect(error.code).to.equal('ERR_INVALID_OPTION');
  });
});
