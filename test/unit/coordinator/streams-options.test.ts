/**
 * The `streams` option (several streams in one coordinator): validation of each entry, per-stream
 * overrides, exclusivity with the single-stream options; each stream's runtime options and lease key
 * naming (Redis namespace, DynamoDB's KCL multi-stream identifier).
 */
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import {
  type CoordinatorOptions,
  DynamoDbLeaseManager,
  resolveCoordinatorOptions,
} from '@shardline/coordinator';
import { expect } from 'chai';
import { leaseKeys } from '../../../packages/coordinator/src/leases/redis.js';
import { resolveStreamSpec } from '../../../packages/coordinator/src/options.js';
import { kclStreamId, streamOptions } from '../../../packages/coordinator/src/stream-runtime.js';
import { optionError } from '../../support/assertions.js';

function resolve(extra: Record<string, unknown>) {
  return resolveCoordinatorOptions({ group: 'billing', ...extra } as unknown as CoordinatorOptions);
}

describe('coordinator options: streams', () => {
  it('single-stream options resolve as before, as one stream entry', () => {
    const o = resolve({ streamName: 'orders', initialPosition: 'LATEST' });
    expect(o.multiStream).to.equal(false);
    expect(o.stream).to.equal('orders');
    expect(o.streams).to.deep.equal([
      {
        streamName: 'orders',
        streamArn: undefined,
        stream: 'orders',
        initialPosition: 'LATEST',
        fanOut: undefined,
      },
    ]);
  });

  it('streams: names or ARNs, per-stream initialPosition and fanOut overriding the top-level ones', () => {
    const at = new Date('2026-01-01T00:00:00Z');
    const o = resolve({
      streams: [
        { streamName: 'orders' },
        {
          streamArn: 'arn:aws:kinesis:eu-west-1:123456789012:stream/payments',
          initialPosition: { timestamp: at },
        },
        { streamName: 'audit', fanOut: { consumerName: 'audit-app' } },
      ],
      initialPosition: 'LATEST',
      fanOut: { consumerName: 'billing' },
    });
    expect(o.multiStream).to.equal(true);
    expect(o.stream).to.equal('orders,payments,audit');
    expect(o.streams.map((s) => s.stream)).to.deep.equal(['orders', 'payments', 'audit']);
    expect(o.streams[0]!.initialPosition).to.equal('LATEST');
    expect(o.streams[0]!.fanOut?.consumerName).to.equal('billing');
    expect(o.streams[1]!.streamArn).to.equal('arn:aws:kinesis:eu-west-1:123456789012:stream/payments');
    expect(o.streams[1]!.initialPosition).to.deep.equal({ timestamp: at });
    expect(o.streams[2]!.fanOut?.consumerName).to.equal('audit-app');
    expect(Object.isFrozen(o.streams)).to.equal(true);
  });

  it('an empty streams list is allowed (streams are added with addStream)', () => {
    const o = resolve({ streams: [] });
    expect(o.streams).to.deep.equal([]);
    expect(o.multiStream).to.equal(true);
  });

  it('streams is exclusive with streamName and streamArn, and must be an array', () => {
    optionError(() => resolve({ streamName: 'a', streams: [] }), 'streams', /streamName/);
    optionError(
      () => resolve({ streamArn: 'arn:aws:kinesis:eu-west-1:1:stream/a', streams: [{ streamName: 'b' }] }),
      'streams',
      /streamArn/,
    );
    optionError(() => resolve({ streams: { streamName: 'a' } }), 'streams', /array/);
    optionError(() => resolve({}), 'streamName', /streams/);
  });

  it('each entry: exactly one of streamName and streamArn, valid, no unknown keys; names the entry', () => {
    optionError(() => resolve({ streams: [{ streamName: 'a' }, {}] }), 'streams[1].streamName', /required/);
    optionError(
      () => resolve({ streams: [{ streamName: 'a', streamArn: 'arn:aws:kinesis:eu-west-1:1:stream/a' }] }),
      'streams[0].streamName',
      /exclusive/,
    );
    optionError(() => resolve({ streams: [{ streamName: 'bad name' }] }), 'streams[0].streamName');
    optionError(() => resolve({ streams: [{ streamArn: 'orders' }] }), 'streams[0].streamArn');
    optionError(() => resolve({ streams: ['orders'] }), 'streams[0]');
    optionError(() => resolve({ streams: [{ streamName: 'a', group: 'x' }] }), 'streams[0].group');
    optionError(
      () => resolve({ streams: [{ streamName: 'a', initialPosition: 'OLDEST' }] }),
      'streams[0].initialPosition',
    );
    optionError(
      () => resolve({ streams: [{ streamName: 'a', fanOut: {} }] }),
      'streams[0].fanOut.consumerName',
    );
  });

  it('rejects a stream named twice (by name or ARN), naming the second entry', () => {
    optionError(
      () => resolve({ streams: [{ streamName: 'a' }, { streamName: 'b' }, { streamName: 'a' }] }),
      'streams[2].streamName',
      /'a' a second time/,
    );
    optionError(
      () =>
        resolve({ streams: [{ streamName: 'a' }, { streamArn: 'arn:aws:kinesis:eu-west-1:1:stream/a' }] }),
      'streams[1].streamArn',
    );
  });

  it('resolveStreamSpec (addStream): names the spec, defaults to the coordinator options', () => {
    const o = resolve({ streams: [], initialPosition: 'LATEST' });
    expect(resolveStreamSpec({ streamName: 'x' }, 'stream', o).initialPosition).to.equal('LATEST');
    optionError(() => resolveStreamSpec({ streamName: '' }, 'stream', o), 'stream.streamName');
    optionError(() => resolveStreamSpec(undefined, 'stream', o), 'stream');
  });
});

describe('multi-stream lease naming', () => {
  it("each stream's runtime options carry its name: Redis keys and memory namespaces are per stream", () => {
    const o = resolve({ streams: [{ streamName: 'a' }, { streamName: 'b', initialPosition: 'LATEST' }] });
    const a = streamOptions(o, o.streams[0]!, undefined);
    const b = streamOptions(o, o.streams[1]!, undefined);
    expect([a.stream, a.streamName, a.initialPosition]).to.deep.equal(['a', 'a', 'TRIM_HORIZON']);
    expect([b.stream, b.streamName, b.initialPosition]).to.deep.equal(['b', 'b', 'LATEST']);
    expect(leaseKeys('shardline', 'billing', 'a').lease('shardId-000000000000')).to.equal(
      'shardline:{billing:a}:lease:shardId-000000000000',
    );
    // The key of a single-stream coordinator of the same stream: one may move to the other.
    const single = resolve({ streamName: 'a' });
    expect(leaseKeys(single.leases.keyPrefix, single.group, single.stream).lease('s')).to.equal(
      leaseKeys(a.leases.keyPrefix, a.group, a.stream).lease('s'),
    );
  });

  it('DynamoDB: the runtime options carry the KCL stream identifier; a bad identifier is refused', () => {
    const o = resolve({
      streams: [{ streamName: 'a' }],
      leases: { dynamodb: { tableName: 'leases', region: 'eu-west-1' } },
    });
    const a = streamOptions(o, o.streams[0]!, '123456789012:a:1700000000');
    expect(a.leases.dynamodb?.streamId).to.equal('123456789012:a:1700000000');
    expect(o.leases.dynamodb?.streamId).to.equal(undefined);
    optionError(
      () =>
        new DynamoDbLeaseManager({ tableName: 'leases', region: 'eu-west-1', hostId: 'h', streamId: 'a' }),
      'streamId',
      /account:streamName:creationEpoch/,
    );
  });

  it('kclStreamId: account from the ARN, creation time in epoch seconds (DescribeStreamSummary)', async () => {
    const sent: unknown[] = [];
    const client = {
      send: async (command: { input: unknown }) => {
        sent.push(command.input);
        return {
          StreamDescriptionSummary: {
            StreamARN: 'arn:aws:kinesis:eu-west-1:123456789012:stream/orders',
            StreamCreationTimestamp: new Date(1_700_000_000_999),
          },
        };
      },
    } as unknown as KinesisClient;
    const o = resolve({ streams: [{ streamName: 'orders' }] });
    expect(await kclStreamId(client, o.streams[0]!)).to.equal('123456789012:orders:1700000000');
    expect(sent).to.deep.equal([{ StreamName: 'orders' }]);
  });
});
