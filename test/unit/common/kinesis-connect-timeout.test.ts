/**
 * `kinesis.connectTimeoutMs`, Shardline's own setting in the Kinesis config: the HTTP/1.1 handler's
 * connection timeout, kept from the SDK, carried to worker threads, and described by
 * kinesisClientSettings (with the endpoint) for the messages of the packages that use the client.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { type KinesisClient, ListShardsCommand } from '@aws-sdk/client-kinesis';
import {
  createKinesisClient,
  ErrorCodes,
  KINESIS_CLIENT_DEFAULTS,
  kinesisClientSettings,
  portableClientConfig,
  type ShardlineError,
} from '@shardline/common';
import type { NodeHttpHandler } from '@smithy/node-http-handler';
import { expect } from 'chai';

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };

describe('common/kinesis-client: kinesis.connectTimeoutMs', () => {
  let server: http.Server;
  let endpoint: string;
  const clients: KinesisClient[] = [];
  const track = (client: KinesisClient) => {
    clients.push(client);
    return client;
  };

  before(async () => {
    server = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
        res.end('{"Shards":[]}');
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(() => {
    for (const client of clients.splice(0)) client.destroy();
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('is the connection timeout of the HTTP/1.1 handler, and the SDK never sees it', async () => {
    const client = track(
      createKinesisClient({ region: 'us-east-1', endpoint, credentials, connectTimeoutMs: 1_500 }),
    );
    await client.send(new ListShardsCommand({ StreamName: 's' }));
    const handler = (client.config.requestHandler as NodeHttpHandler).httpHandlerConfigs();
    expect(handler.connectionTimeout).to.equal(1_500);
    expect((client.config as unknown as Record<string, unknown>).connectTimeoutMs).to.equal(undefined);
  });

  it("wins over kinesisClientOptions.connectionTimeoutMs; a plain requestHandler's connectionTimeout wins over it", async () => {
    const a = track(
      createKinesisClient(
        { region: 'us-east-1', endpoint, credentials, connectTimeoutMs: 700 },
        { connectionTimeoutMs: 5_000 },
      ),
    );
    const b = track(
      createKinesisClient({
        region: 'us-east-1',
        endpoint,
        credentials,
        connectTimeoutMs: 700,
        requestHandler: { connectionTimeout: 300 },
      }),
    );
    for (const client of [a, b]) await client.send(new ListShardsCommand({ StreamName: 's' }));
    const timeoutOf = (c: KinesisClient) =>
      (c.config.requestHandler as NodeHttpHandler).httpHandlerConfigs().connectionTimeout;
    expect([timeoutOf(a), timeoutOf(b)]).to.deep.equal([700, 300]);
  });

  it('travels to worker threads with the plain config', () => {
    const client = track(
      createKinesisClient({ region: 'us-east-1', endpoint, credentials, connectTimeoutMs: 2_000 }),
    );
    const portable = portableClientConfig(client);
    expect(portable.connectTimeoutMs).to.equal(2_000);
    const rebuilt = track(createKinesisClient(structuredClone(portable)));
    expect(kinesisClientSettings(rebuilt).connectTimeoutMs).to.equal(2_000);
  });

  it('kinesisClientSettings: the endpoint, region and timeout; defaults for other objects', () => {
    const client = track(createKinesisClient({ region: 'eu-west-1', endpoint: { url: new URL(endpoint) } }));
    expect(kinesisClientSettings(client)).to.deep.equal({
      endpoint: `${endpoint}/`,
      region: 'eu-west-1',
      connectTimeoutMs: KINESIS_CLIENT_DEFAULTS.connectionTimeoutMs,
    });
    expect(kinesisClientSettings({})).to.deep.equal({
      endpoint: undefined,
      region: undefined,
      connectTimeoutMs: 10_000,
    });
  });

  it('kinesisClientSettings: the endpoint the SDK takes from AWS_ENDPOINT_URL_KINESIS when the config has none', () => {
    const saved = { ...process.env };
    try {
      process.env.AWS_ENDPOINT_URL = 'http://127.0.0.1:2';
      process.env.AWS_ENDPOINT_URL_KINESIS = 'http://127.0.0.1:1';
      expect(kinesisClientSettings(track(createKinesisClient({ region: 'us-east-1' }))).endpoint).to.equal(
        'http://127.0.0.1:1',
      );
      process.env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS = 'true';
      expect(kinesisClientSettings(track(createKinesisClient({ region: 'us-east-1' }))).endpoint).to.equal(
        undefined,
      );
    } finally {
      for (const name of [
        'AWS_ENDPOINT_URL',
        'AWS_ENDPOINT_URL_KINESIS',
        'AWS_IGNORE_CONFIGURED_ENDPOINT_URLS',
      ]) {
        if (saved[name] === undefined) delete process.env[name];
        else process.env[name] = saved[name];
      }
    }
  });

  it('a bad value is an option error naming kinesis.connectTimeoutMs', () => {
    for (const value of [-1, Number.NaN, '1000']) {
      let error: ShardlineError | undefined;
      try {
        createKinesisClient({ region: 'us-east-1', connectTimeoutMs: value as number });
      } catch (e) {
        error = e as ShardlineError;
      }
      expect(error?.code, String(value)).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error?.message).to.match(
        /^kinesis\.connectTimeoutMs must be a finite number of milliseconds >= 0/,
      );
    }
  });
});
