import { createKinesisClient, resolveKinesisTransport } from '@shardline/common';
import { NodeHttp2Handler, NodeHttpHandler } from '@smithy/node-http-handler';
import { expect } from 'chai';

describe('Kinesis client transport (HTTP/1.1 or HTTP/2)', () => {
  it("'auto' picks HTTP/1.1 for http:// endpoints (local emulators) and HTTP/2 for https:// or AWS", () => {
    expect(resolveKinesisTransport('auto', 'http://127.0.0.1:4567')).to.equal('http1');
    expect(resolveKinesisTransport('auto', 'HTTP://localhost:1')).to.equal('http1');
    expect(resolveKinesisTransport('auto', { url: 'http://127.0.0.1:4567' })).to.equal('http1');
    expect(resolveKinesisTransport('auto', new URL('http://127.0.0.1:4567'))).to.equal('http1');
    expect(resolveKinesisTransport('auto', 'https://127.0.0.1:4568')).to.equal('http2');
    expect(resolveKinesisTransport('auto', undefined)).to.equal('http2');
    expect(resolveKinesisTransport('http1', 'https://kinesis.eu-west-1.amazonaws.com')).to.equal('http1');
    expect(resolveKinesisTransport('http2', 'http://127.0.0.1:4567')).to.equal('http2');
  });

  it('rejects anything else, naming the option', () => {
    expect(() => resolveKinesisTransport('http3', undefined, 'fanOut.transport')).to.throw(
      /fanOut\.transport must be 'auto', 'http1' or 'http2' \(got 'http3'\)/,
    );
    expect(() => createKinesisClient({}, { transport: 'h2' as never })).to.throw(
      /kinesisClientOptions\.transport/,
    );
  });

  it('createKinesisClient builds the handler the transport asks for (HTTP/1.1 by default)', () => {
    const handlerOf = (client: ReturnType<typeof createKinesisClient>) => client.config.requestHandler;
    const plain = createKinesisClient({ region: 'eu-west-1' });
    const h1 = createKinesisClient({ region: 'eu-west-1', endpoint: 'https://x' }, { transport: 'http1' });
    const h2 = createKinesisClient({ region: 'eu-west-1' }, { transport: 'http2' });
    const autoLocal = createKinesisClient(
      { region: 'eu-west-1', endpoint: 'http://127.0.0.1:1' },
      { transport: 'auto' },
    );
    const autoAws = createKinesisClient({ region: 'eu-west-1' }, { transport: 'auto' });
    try {
      expect(handlerOf(plain)).to.be.instanceOf(NodeHttpHandler);
      expect(handlerOf(h1)).to.be.instanceOf(NodeHttpHandler);
      expect(handlerOf(h2)).to.be.instanceOf(NodeHttp2Handler);
      expect(handlerOf(autoLocal)).to.be.instanceOf(NodeHttpHandler);
      expect(handlerOf(autoAws)).to.be.instanceOf(NodeHttp2Handler);
    } finally {
      for (const c of [plain, h1, h2, autoLocal, autoAws]) c.destroy();
    }
  });
});
