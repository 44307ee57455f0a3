import { ListShardsCommand, type ListShardsCommandInput, type Shard } from '@aws-sdk/client-kinesis';
import {
  ErrorCodes,
  isExpiredNextToken,
  LIST_SHARDS_DEFAULTS,
  type ListShardsPageOutput,
  listAllShards,
  type ShardlineOptionError,
} from '@shardline/common';
import { expect } from 'chai';
import { rejection } from '../../support/assertions.js';

function shard(id: string, fields: Partial<Shard> = {}): Shard {
  return {
    ShardId: id,
    HashKeyRange: { StartingHashKey: '0', EndingHashKey: '100' },
    SequenceNumberRange: { StartingSequenceNumber: '1' },
    ...fields,
  };
}

function awsError(name: string): Error {
  return Object.assign(new Error(`${name} happened`), { name, $metadata: { httpStatusCode: 400 } });
}

/** A scripted ListShards function: each call takes the next answer (an output, or an error to throw). */
function scripted(answers: Array<ListShardsPageOutput | Error>) {
  const calls: ListShardsCommandInput[] = [];
  const signals: Array<AbortSignal | undefined> = [];
  const page = async (input: ListShardsCommandInput, signal?: AbortSignal) => {
    calls.push({ ...input });
    signals.push(signal);
    const next = answers.shift();
    if (next === undefined) throw new Error('no more scripted answers');
    if (next instanceof Error) throw next;
    return next;
  };
  return { page, calls, signals };
}

const ids = (shards: Shard[]) => shards.map((s) => s.ShardId);

describe('listAllShards', () => {
  it('follows NextToken: the first page names the stream and the filter, later pages only the token', async () => {
    const { page, calls } = scripted([
      { Shards: [shard('a'), shard('b')], NextToken: 't1' },
      { Shards: [shard('c')], NextToken: 't2' },
      { Shards: [] },
    ]);
    const shards = await listAllShards(page, {
      streamName: 'orders',
      shardFilter: { Type: 'AT_LATEST' },
      maxResults: 2,
    });
    expect(ids(shards)).to.deep.equal(['a', 'b', 'c']);
    expect(calls).to.deep.equal([
      { StreamName: 'orders', ShardFilter: { Type: 'AT_LATEST' }, MaxResults: 2 },
      { NextToken: 't1', MaxResults: 2 },
      { NextToken: 't2', MaxResults: 2 },
    ]);
  });

  it('names the stream by ARN, or by both; without maxResults no MaxResults is sent', async () => {
    const arn = 'arn:aws:kinesis:us-east-1:000000000000:stream/orders';
    const byArn = scripted([{ Shards: [shard('a')], NextToken: 'n' }, { Shards: [shard('b')] }]);
    expect(ids(await listAllShards(byArn.page, { streamArn: arn }))).to.deep.equal(['a', 'b']);
    expect(byArn.calls).to.deep.equal([{ StreamARN: arn }, { NextToken: 'n' }]);
    const both = scripted([{ Shards: [] }]);
    await listAllShards(both.page, { streamArn: arn, streamName: 'orders' });
    expect(both.calls).to.deep.equal([{ StreamName: 'orders', StreamARN: arn }]);
  });

  it('keeps a shard listed twice once, the first time it came (a server that ignores paging)', async () => {
    const { page } = scripted([
      { Shards: [shard('a'), shard('b', { ParentShardId: 'first' }), shard('a')], NextToken: 't' },
      { Shards: [shard('b', { ParentShardId: 'second' }), shard('c')] },
    ]);
    const shards = await listAllShards(page, { streamName: 's', maxResults: 1 });
    expect(ids(shards)).to.deep.equal(['a', 'b', 'c']);
    expect(shards[1]!.ParentShardId).to.equal('first');
  });

  it('sends each page through a KinesisClient-like sender as a ListShardsCommand, with the signal', async () => {
    const sent: Array<{ input: ListShardsCommandInput; abortSignal: AbortSignal | undefined }> = [];
    const pages: ListShardsPageOutput[] = [
      { Shards: [shard('a')], NextToken: 'n' },
      { Shards: [shard('b')] },
    ];
    const client = {
      send: async (command: unknown, options?: { abortSignal?: AbortSignal }) => {
        expect(command).to.be.instanceOf(ListShardsCommand);
        sent.push({ input: (command as ListShardsCommand).input, abortSignal: options?.abortSignal });
        return pages.shift()!;
      },
    };
    const controller = new AbortController();
    const shards = await listAllShards(client as never, { streamName: 's', signal: controller.signal });
    expect(ids(shards)).to.deep.equal(['a', 'b']);
    expect(sent.map((s) => s.input)).to.deep.equal([{ StreamName: 's' }, { NextToken: 'n' }]);
    expect(sent.every((s) => s.abortSignal === controller.signal)).to.equal(true);
  });

  it('starts over after an expired NextToken, up to maxRestarts, telling onRestart', async () => {
    const { page, calls } = scripted([
      { Shards: [shard('a')], NextToken: 't1' },
      awsError('ExpiredNextTokenException'),
      { Shards: [shard('a')], NextToken: 't9' },
      { Shards: [shard('b')] },
    ]);
    const restarts: number[] = [];
    const shards = await listAllShards(page, {
      streamName: 's',
      onRestart: (restart, error) => {
        expect(isExpiredNextToken(error)).to.equal(true);
        restarts.push(restart);
      },
    });
    expect(ids(shards)).to.deep.equal(['a', 'b']);
    expect(calls.map((c) => c.NextToken ?? c.StreamName)).to.deep.equal(['s', 't1', 's', 't9']);
    expect(restarts).to.deep.equal([1]);
  });

  it('throws the expired-token error itself once the restarts are spent', async () => {
    const expired = awsError('ExpiredNextTokenException');
    const answers: Array<ListShardsPageOutput | Error> = [];
    for (let i = 0; i < 3; i++) answers.push({ Shards: [shard('a')], NextToken: 't' }, expired);
    const { page, calls } = scripted(answers);
    const error = await rejection<Error>(listAllShards(page, { streamName: 's', maxRestarts: 2 }));
    expect(error).to.equal(expired);
    expect(calls).to.have.length(6);
    expect(LIST_SHARDS_DEFAULTS.maxRestarts).to.equal(3);
  });

  it('passes any other error of a page on unchanged, without a restart', async () => {
    const missing = awsError('ResourceNotFoundException');
    const { page, calls } = scripted([missing]);
    expect(await rejection<Error>(listAllShards(page, { streamName: 's' }))).to.equal(missing);
    expect(calls).to.have.length(1);
  });

  it('refuses a server that repeats a NextToken, or pages on past maxPages (no endless loop)', async () => {
    const same = scripted([
      { Shards: [shard('a')], NextToken: 'same' },
      { Shards: [shard('b')], NextToken: 'same' },
    ]);
    const repeated = await rejection(listAllShards(same.page, { streamName: 's' }));
    expect(repeated.code).to.equal(ErrorCodes.KINESIS);
    expect(repeated.retriable).to.equal(false);
    expect(repeated.message).to.equal('ListShards: the same NextToken came back twice');
    let n = 0;
    const endless = async () => ({ Shards: [shard(`s${n}`)], NextToken: `t${n++}` });
    const tooMany = await rejection(listAllShards(endless, { streamName: 's', maxPages: 5 }));
    expect(tooMany.code).to.equal(ErrorCodes.KINESIS);
    expect(tooMany.message).to.equal('ListShards: more than 5 pages');
    expect(n).to.equal(5);
  });

  it('runs every page through pageRetry: a failed page is retried alone, with its context', async () => {
    const { page, calls, signals } = scripted([
      { Shards: [shard('a')], NextToken: 't1' },
      awsError('LimitExceededException'),
      { Shards: [shard('b')] },
    ]);
    const contexts: Array<{ page: number; restart: number; token: string | undefined }> = [];
    const own = new AbortController();
    const shards = await listAllShards(page, {
      streamName: 's',
      pageRetry: async (call, context) => {
        contexts.push({ page: context.page, restart: context.restart, token: context.input.NextToken });
        try {
          return await call();
        } catch {
          return call(own.signal);
        }
      },
    });
    expect(ids(shards)).to.deep.equal(['a', 'b']);
    expect(calls.map((c) => c.NextToken ?? c.StreamName)).to.deep.equal(['s', 't1', 't1']);
    expect(contexts).to.deep.equal([
      { page: 0, restart: 0, token: undefined },
      { page: 1, restart: 0, token: 't1' },
    ]);
    expect(signals).to.deep.equal([undefined, undefined, own.signal]);
  });

  it('stops with ERR_ABORTED when the signal aborts between pages', async () => {
    const controller = new AbortController();
    const { page, calls } = scripted([{ Shards: [shard('a')], NextToken: 't1' }, { Shards: [] }]);
    const aborting = async (input: ListShardsCommandInput, signal?: AbortSignal) => {
      const out = await page(input, signal);
      controller.abort(new Error('shutting down'));
      return out;
    };
    const error = await rejection(listAllShards(aborting, { streamName: 's', signal: controller.signal }));
    expect(error.code).to.equal(ErrorCodes.ABORTED);
    expect((error.cause as Error).message).to.equal('shutting down');
    expect(calls).to.have.length(1);
  });

  it('passes on a shard without ShardId for the caller to judge', async () => {
    const { page } = scripted([{ Shards: [{} as Shard, shard('a')] }]);
    expect(await listAllShards(page, { streamName: 's' })).to.have.length(2);
  });

  it('validates its arguments, naming the option', async () => {
    const { page } = scripted([]);
    const cases: Array<[unknown, unknown, string]> = [
      [{}, { streamName: 's' }, 'client'],
      [page, null, 'options'],
      [page, {}, 'streamName'],
      [page, { streamName: '' }, 'streamName'],
      [page, { streamArn: 7 }, 'streamArn'],
      [page, { streamName: 's', maxResults: 0 }, 'maxResults'],
      [page, { streamName: 's', maxResults: 10_001 }, 'maxResults'],
      [page, { streamName: 's', shardFilter: 'AT_LATEST' }, 'shardFilter'],
      [page, { streamName: 's', maxRestarts: -1 }, 'maxRestarts'],
      [page, { streamName: 's', maxPages: 0 }, 'maxPages'],
      [page, { streamName: 's', pageRetry: 'yes' }, 'pageRetry'],
      [page, { streamName: 's', onRestart: 1 }, 'onRestart'],
    ];
    for (const [source, options, option] of cases) {
      const error = await rejection<ShardlineOptionError>(listAllShards(source as never, options as never));
      expect(error.code, JSON.stringify(options)).to.equal(ErrorCodes.INVALID_OPTION);
      expect(error.option, JSON.stringify(options)).to.equal(option);
    }
    expect((await rejection(listAllShards(page, { streamName: 's', maxResults: 0 }))).message).to.equal(
      'maxResults must be an integer from 1 to 10000 (got 0)',
    );
  });
});
