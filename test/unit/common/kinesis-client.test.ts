import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { KinesisClient, ListShardsCommand } from '@aws-sdk/client-kinesis';
import {
  classifyAwsError,
  createKinesisClient,
  ErrorCodes,
  isKinesisClient,
  KINESIS_CLIENT_DEFAULTS,
  portableClientConfig,
  type ShardlineError,
} from '@shardline/common';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { expect } from 'chai';

const credentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };
/** What portableClientConfig must return for `credentials`: the SDK adds `$source` to the object it is given. */
const plainCredentials = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'secret' };

interface SeenRequest {
  httpVersion: string;
  target: string | undefined;
  contentType: string | undefined;
  body: Record<string, unknown>;
}

/** A tiny Kinesis stand-in that answers ListShards in awsJson1_1, and records what it saw. */
async function fakeKinesis(options: { hang?: boolean } = {}) {
  const seen: SeenRequest[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        httpVersion: req.httpVersion,
        target: req.headers['x-amz-target'] as string | undefined,
        contentType: req.headers['content-type'],
        body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>,
      });
      if (options.hang) return;
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': 'r-1' });
      res.end(
        JSON.stringify({
          Shards: [
            {
              ShardId: 'shardId-000000000000',
              HashKeyRange: {
                StartingHashKey: '0',
                EndingHashKey: '340282366920938463463374607431768211455',
              },
              SequenceNumberRange: {
                StartingSequenceNumber: '49590338271490256608559692538361571095921575989136588898',
              },
            },
          ],
        }),
      );
    });
  });
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    seen,
    connections: () => connections,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

type Server = Awaited<ReturnType<typeof fakeKinesis>>;

/** The agents the handler actually uses (visible once it has handled a request). */
type AgentInfo = http.Agent & { keepAlive: boolean };
function agentsOf(client: KinesisClient): { httpAgent: AgentInfo; httpsAgent: AgentInfo } {
  const handler = client.config.requestHandler as NodeHttpHandler;
  return handler.httpHandlerConfigs() as unknown as { httpAgent: AgentInfo; httpsAgent: AgentInfo };
}

function thrown(fn: () => unknown): ShardlineError {
  try {
    fn();
  } catch (error) {
    return error as ShardlineError;
  }
  expect.fail('expected an error, but the call returned');
}

describe('common/kinesis-client', () => {
  let server: Server;
  const clients: KinesisClient[] = [];
  function track(client: KinesisClient): KinesisClient {
    clients.push(client);
    return client;
  }

  beforeEach(async () => {
    server = await fakeKinesis();
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await server.close();
  });

  it('the SDK default handler really is HTTP/2 (the reason this factory exists)', () => {
    const plain = track(new KinesisClient({ region: 'us-east-1', credentials }));
    const handler = plain.config.requestHandler as { metadata?: { handlerProtocol?: string } };
    expect(handler.metadata?.handlerProtocol).to.equal('h2');
  });

  it('builds an HTTP/1.1 NodeHttpHandler with keep-alive agents and 256 sockets by default', async () => {
    const client = track(
      createKinesisClient({ region: 'us-east-1', endpoint: server.endpoint, credentials }),
    );
    expect(client).to.be.instanceOf(KinesisClient);
    const handler = client.config.requestHandler;
    expect(handler).to.be.instanceOf(NodeHttpHandler);
    expect((handler as NodeHttpHandler).metadata.handlerProtocol).to.equal('http/1.1');

    const out = await client.send(new ListShardsCommand({ StreamName: 'orders' }));
    expect(out.Shards?.map((s) => s.ShardId)).to.deep.equal(['shardId-000000000000']);
    const { httpAgent, httpsAgent } = agentsOf(client);
    expect(httpAgent).to.be.instanceOf(http.Agent);
    expect([httpAgent.keepAlive, httpAgent.maxSockets]).to.deep.equal([true, 256]);
    expect([httpsAgent.keepAlive, httpsAgent.maxSockets]).to.deep.equal([true, 256]);
    expect(KINESIS_CLIENT_DEFAULTS.maxSockets).to.equal(256);
  });

  it('speaks awsJson1_1 over HTTP/1.1 and reuses one connection (keep-alive)', async () => {
    const client = track(
      createKinesisClient({ region: 'us-east-1', endpoint: server.endpoint, credentials }),
    );
    for (let i = 0; i < 3; i++) await client.send(new ListShardsCommand({ StreamName: 'orders' }));
    expect(server.seen).to.have.length(3);
    for (const request of server.seen) {
      expect(request.httpVersion).to.equal('1.1');
      expect(request.target).to.equal('Kinesis_20131202.ListShards');
      expect(request.contentType).to.equal('application/x-amz-json-1.1');
      expect(request.body).to.deep.equal({ StreamName: 'orders' });
    }
    expect(server.connections()).to.equal(1);
  });

  it('applies maxSockets and the timeouts', async () => {
    const client = track(
      createKinesisClient(
        { region: 'us-east-1', endpoint: server.endpoint, credentials },
        { maxSockets: 8, connectionTimeoutMs: 1_234, requestTimeoutMs: 2_345, socketTimeoutMs: 3_456 },
      ),
    );
    await client.send(new ListShardsCommand({ StreamName: 'orders' }));
    const config = (client.config.requestHandler as NodeHttpHandler).httpHandlerConfigs();
    expect(config).to.include({
      connectionTimeout: 1_234,
      requestTimeout: 2_345,
      socketTimeout: 3_456,
      throwOnRequestTimeout: true,
    });
    const { httpAgent, httpsAgent } = agentsOf(client);
    expect([httpAgent.maxSockets, httpsAgent.maxSockets]).to.deep.equal([8, 8]);
  });

  it('a request that gets no answer fails with a retriable TimeoutError', async () => {
    const silent = await fakeKinesis({ hang: true });
    try {
      const client = track(
        createKinesisClient(
          { region: 'us-east-1', endpoint: silent.endpoint, credentials, maxAttempts: 1 },
          { requestTimeoutMs: 200 },
        ),
      );
      let error: unknown;
      try {
        await client.send(new ListShardsCommand({ StreamName: 'orders' }));
      } catch (e) {
        error = e;
      }
      expect((error as Error | undefined)?.name).to.equal('TimeoutError');
      const classified = classifyAwsError(error);
      expect([classified.code, classified.retriable]).to.deep.equal([ErrorCodes.TRANSIENT, true]);
    } finally {
      await silent.close();
    }
  });

  it('returns a ready client as is', () => {
    const ready = track(new KinesisClient({ region: 'us-east-1', credentials }));
    expect(createKinesisClient(ready)).to.equal(ready);
    expect(createKinesisClient(ready, { maxSockets: 1 })).to.equal(ready);
  });

  it('keeps a requestHandler instance the config provides', () => {
    const mine = new NodeHttpHandler({ requestTimeout: 99 });
    const client = track(createKinesisClient({ region: 'us-east-1', credentials, requestHandler: mine }));
    expect(client.config.requestHandler).to.equal(mine);
  });

  it('applies plain requestHandler options to the HTTP/1.1 handler (the SDK would make them HTTP/2)', async () => {
    const client = track(
      createKinesisClient({
        region: 'us-east-1',
        endpoint: server.endpoint,
        credentials,
        requestHandler: { requestTimeout: 4_321, httpAgent: { maxSockets: 3 } },
      }),
    );
    expect(client.config.requestHandler).to.be.instanceOf(NodeHttpHandler);
    await client.send(new ListShardsCommand({ StreamName: 'orders' }));
    expect(server.seen[0]!.httpVersion).to.equal('1.1');
    const config = (client.config.requestHandler as NodeHttpHandler).httpHandlerConfigs();
    expect(config.requestTimeout).to.equal(4_321);
    const { httpAgent } = agentsOf(client);
    expect([httpAgent.keepAlive, httpAgent.maxSockets]).to.deep.equal([true, 3]);
  });

  it('uses an http.Agent the config provides', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    try {
      const client = track(
        createKinesisClient({
          region: 'us-east-1',
          endpoint: server.endpoint,
          credentials,
          requestHandler: { httpAgent: agent },
        }),
      );
      await client.send(new ListShardsCommand({ StreamName: 'orders' }));
      expect(agentsOf(client).httpAgent).to.equal(agent);
    } finally {
      agent.destroy();
    }
  });

  it('validates its input, naming the option', () => {
    const cases: Array<[() => unknown, RegExp]> = [
      [
        () => createKinesisClient('eu-west-1' as never),
        /^kinesis must be a KinesisClientConfig object .*\(got string\)/,
      ],
      [() => createKinesisClient(null as never), /^kinesis must be .*\(got null\)/],
      [
        () => createKinesisClient({}, { maxSockets: 0 }),
        /^kinesisClientOptions\.maxSockets must be an integer >= 1/,
      ],
      [
        () => createKinesisClient({}, { requestTimeoutMs: -1 }),
        /^kinesisClientOptions\.requestTimeoutMs must be/,
      ],
      [
        () => createKinesisClient({}, { connectionTimeoutMs: Number.NaN }),
        /^kinesisClientOptions\.connectionTimeoutMs/,
      ],
      [
        () => createKinesisClient({ requestHandler: 5 as never }),
        /^kinesis\.requestHandler must be an HttpHandler/,
      ],
    ];
    for (const [fn, message] of cases) {
      const error = thrown(fn);
      expect(error.code, String(message)).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.message).to.match(message);
    }
  });

  describe('isKinesisClient', () => {
    it('recognises clients, also a look-alike from another SDK copy, and nothing else', () => {
      const client = track(createKinesisClient({ region: 'us-east-1', credentials }));
      expect(isKinesisClient(client)).to.equal(true);
      const otherCopy = { send: () => {}, destroy: () => {}, config: { serviceId: 'Kinesis' } };
      expect(isKinesisClient(otherCopy)).to.equal(true);
      for (const value of [
        undefined,
        null,
        {},
        { region: 'us-east-1' },
        { send: () => {}, destroy: () => {}, config: { serviceId: 'DynamoDB' } },
      ]) {
        expect(isKinesisClient(value)).to.equal(false);
      }
    });
  });

  describe('portableClientConfig', () => {
    it('keeps the plain parts, survives structuredClone, and rebuilds a working client', async () => {
      const portable = portableClientConfig({
        region: 'us-east-1',
        endpoint: { url: new URL(server.endpoint) },
        credentials: { ...credentials, sessionToken: 'tok', expiration: new Date(0) },
        maxAttempts: 2,
        requestHandler: new NodeHttpHandler(),
        logger: { debug() {}, info() {}, warn() {}, error() {} },
        extensions: [],
      });
      expect(portable).to.deep.equal({
        region: 'us-east-1',
        endpoint: `${server.endpoint}/`,
        credentials: { ...plainCredentials, sessionToken: 'tok', expiration: new Date(0) },
        maxAttempts: 2,
      });
      const inWorker = structuredClone(portable);
      const client = track(createKinesisClient(inWorker));
      const out = await client.send(new ListShardsCommand({ StreamName: 'orders' }));
      expect(out.Shards).to.have.length(1);
      expect(server.seen[0]!.httpVersion).to.equal('1.1');
    });

    it('describes a client made by createKinesisClient from its original config', () => {
      const client = track(
        createKinesisClient({ region: 'eu-west-1', endpoint: server.endpoint, credentials }),
      );
      expect(portableClientConfig(client)).to.deep.equal({
        region: 'eu-west-1',
        endpoint: server.endpoint,
        credentials: plainCredentials,
      });
    });

    it('refuses what cannot cross threads, saying what to do', () => {
      const provider = async () => credentials;
      const cases: Array<[() => unknown, string, RegExp]> = [
        [
          () => portableClientConfig({ region: 'us-east-1', credentials: provider }),
          'kinesis.credentials',
          /credential provider function, which cannot cross to worker threads\. Either leave credentials unset .* or pass static credentials/,
        ],
        [
          () => portableClientConfig({ region: async () => 'us-east-1' }),
          'kinesis.region',
          /is a function, which cannot cross to worker threads: pass plain data/,
        ],
        [
          () => portableClientConfig({ endpoint: async () => ({ url: new URL('http://x') }) }),
          'kinesis.endpoint',
          /pass the URL as a string/,
        ],
        [
          () => portableClientConfig({ requestHandler: { httpAgent: new http.Agent() } }),
          'kinesis.requestHandler',
          /cannot cross to worker threads/,
        ],
        [
          () => portableClientConfig(track(new KinesisClient({ region: 'us-east-1', credentials }))),
          'kinesis',
          /KinesisClient built outside Shardline.*Pass the plain config instead/,
        ],
      ];
      for (const [fn, option, message] of cases) {
        const error = thrown(fn);
        expect(error.code, option).to.equal(ErrorCodes.INVALID_OPTION);
        expect((error as ShardlineError & { option: string }).option).to.equal(option);
        expect(error.message).to.match(message);
      }
    });

    it('keeps an endpoint object with headers, and plain requestHandler options', () => {
      const portable = portableClientConfig({
        endpoint: { url: new URL('http://127.0.0.1:4567'), headers: { 'x-test': ['1'] } },
        requestHandler: { requestTimeout: 5 },
      });
      expect(portable).to.deep.equal({
        endpoint: { url: 'http://127.0.0.1:4567/', headers: { 'x-test': ['1'] } },
        requestHandler: { requestTimeout: 5 },
      });
      expect(structuredClone(portable)).to.deep.equal(portable);
    });
  });
});
