/**
 * startCoordinator() against a dead endpoint, with the real AWS SDK: a port nobody listens on (every
 * connection refused) and a blackhole (a server that accepts connections and never answers). It rejects
 * after `kinesis.connectTimeoutMs` (10 s by default) with a message that names the endpoint, the time
 * and the requests, instead of retrying on (a blackhole used to hold it for many minutes).
 */
import net from 'node:net';
import type { KinesisError } from '@shardline/common';
import { startCoordinator } from '@shardline/coordinator';
import { getFreePort } from '@shardline/testing';
import { expect } from 'chai';
import { rejection } from '../support/assertions.js';

const credentials = { accessKeyId: 'shardline-local', secretAccessKey: 'shardline-local' };

/** Accepts TCP connections, reads what comes, never writes a byte. */
async function blackhole(): Promise<{ endpoint: string; connections: () => number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.resume();
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    connections: () => connections,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function startAgainst(endpoint: string, extra: { connectTimeoutMs?: number } = {}) {
  const startedAt = Date.now();
  const error = await rejection<KinesisError>(
    startCoordinator({
      streamName: 'orders',
      group: 'g',
      kinesis: { endpoint, region: 'us-east-1', credentials, ...extra },
      workerThreads: 1,
      handler: async () => {},
    }),
  );
  return { error, ms: Date.now() - startedAt };
}

describe('startCoordinator against a dead endpoint', function () {
  this.timeout(60_000);

  it('a port nobody listens on: rejects after connectTimeoutMs, saying where, how long and how many requests', async () => {
    const endpoint = `http://127.0.0.1:${await getFreePort()}`;
    const { error, ms } = await startAgainst(endpoint, { connectTimeoutMs: 1_500 });
    expect(error.code).to.equal('ERR_TRANSIENT');
    expect(error.message).to.match(
      new RegExp(
        `^ListShards: cannot reach Kinesis at ${endpoint.replace(/\./g, '\\.')} \\(stream 'orders'\\): nothing answered (\\d+) requests in 1\\.\\d s \\((\\d+) calls, with the SDK's own retries\\): connect ECONNREFUSED 127\\.0\\.0\\.1:\\d+; kinesis\\.connectTimeoutMs \\(1500 ms\\) bounds how long it tries$`,
      ),
    );
    const details = error.details as {
      attempts: number;
      requests: number;
      elapsedMs: number;
      endpoint: string;
    };
    expect(details.endpoint).to.equal(endpoint);
    expect(details.attempts).to.be.at.least(2);
    // The SDK retries each call itself (3 attempts by default; the deadline may cut the last call short).
    expect(details.requests).to.be.above(details.attempts);
    expect(ms).to.be.at.least(1_500).and.below(10_000);
  });

  it('a blackhole (accepts, never answers): the request in flight is cut at connectTimeoutMs', async () => {
    const hole = await blackhole();
    try {
      const { error, ms } = await startAgainst(hole.endpoint, { connectTimeoutMs: 1_000 });
      expect(error.code).to.equal('ERR_TRANSIENT');
      // The time is when the deadline's timer ran: 1.0 s, or a little later on a busy machine.
      expect(error.message).to.match(
        /^ListShards: cannot reach Kinesis at http:\/\/127\.0\.0\.1:\d+ \(stream 'orders'\): nothing answered 1 request in 1\.\d s: /,
      );
      expect(error.message).to.match(
        /: a request was still waiting for a response; kinesis\.connectTimeoutMs \(1000 ms\) bounds how long it tries$/,
      );
      expect(hole.connections()).to.equal(1);
      expect(ms).to.be.at.least(1_000).and.below(10_000);
    } finally {
      await hole.close();
    }
  });

  it('a blackhole with the defaults: rejects after 10 s (it used to wait out 9 x 3 request timeouts of 30 s)', async () => {
    const hole = await blackhole();
    try {
      const { error, ms } = await startAgainst(hole.endpoint);
      expect(error.message).to.match(/nothing answered 1 request in 10\.\d s: a request was still waiting/);
      expect(error.details).to.include({ connectTimeoutMs: 10_000, attempts: 1 });
      expect(ms).to.be.at.least(10_000).and.below(30_000);
    } finally {
      await hole.close();
    }
  });
});
