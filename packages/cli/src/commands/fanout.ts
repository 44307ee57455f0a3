/**
 * `shardline fanout list <stream>` and `shardline fanout deregister <stream> --consumer NAME`: the
 * enhanced fan-out consumers of a stream. A coordinator registers its consumer but never deregisters
 * it (other hosts may still read with it), so removing one is this explicit command.
 */
import type { Consumer, KinesisClient } from '@aws-sdk/client-kinesis';
import {
  DeregisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  ListStreamConsumersCommand,
} from '@aws-sdk/client-kinesis';
import type { CommandContext } from '../context.js';
import { describeStreamSummary } from '../kinesis.js';
import { table, toJson } from '../output.js';

/** One consumer as `fanout list --json` prints it. */
export interface FanOutConsumer {
  consumerName: string;
  consumerArn: string;
  status: string;
  createdAt: string | undefined;
}

export interface FanOutDeregisterOptions {
  consumer: string;
}

function describeConsumer(c: Consumer): FanOutConsumer {
  return {
    consumerName: c.ConsumerName ?? '',
    consumerArn: c.ConsumerARN ?? '',
    status: c.ConsumerStatus ?? '',
    createdAt: c.ConsumerCreationTimestamp?.toISOString(),
  };
}

async function streamArn(client: KinesisClient, stream: string, signal: AbortSignal): Promise<string> {
  if (stream.startsWith('arn:')) return stream;
  const summary = await describeStreamSummary(client, stream, signal);
  if (summary.StreamARN === undefined)
    throw new Error(`DescribeStreamSummary returned no ARN for '${stream}'`);
  return summary.StreamARN;
}

/** `shardline fanout list <stream>`: the registered consumers, their status and ARN. */
export async function fanOutListCommand(ctx: CommandContext, stream: string): Promise<number> {
  const client = ctx.client();
  const arn = await streamArn(client, stream, ctx.signal);
  const consumers: FanOutConsumer[] = [];
  let token: string | undefined;
  do {
    const out = await client.send(
      new ListStreamConsumersCommand(
        token === undefined ? { StreamARN: arn } : { StreamARN: arn, NextToken: token },
      ),
      { abortSignal: ctx.signal },
    );
    consumers.push(...(out.Consumers ?? []).map(describeConsumer));
    token = out.NextToken;
  } while (token !== undefined);
  if (ctx.globals.json === true) {
    await ctx.out(`${toJson(consumers, 2)}\n`);
    return 0;
  }
  if (consumers.length === 0) {
    await ctx.out(`no enhanced fan-out consumers on ${stream}\n`);
    return 0;
  }
  await ctx.out(
    table(
      ['CONSUMER', 'STATUS', 'CREATED', 'ARN'],
      consumers.map((c) => [c.consumerName, c.status, c.createdAt ?? '-', c.consumerArn]),
    ),
  );
  return 0;
}

/** `shardline fanout deregister <stream> --consumer NAME`: removes the consumer (its readers stop). */
export async function fanOutDeregisterCommand(
  ctx: CommandContext,
  stream: string,
  options: FanOutDeregisterOptions,
): Promise<number> {
  const client = ctx.client();
  const arn = await streamArn(client, stream, ctx.signal);
  // Describe first: a missing consumer fails with ERR_NOT_FOUND (exit 3) and names what was asked for.
  const described = await client.send(
    new DescribeStreamConsumerCommand({ StreamARN: arn, ConsumerName: options.consumer }),
    { abortSignal: ctx.signal },
  );
  await client.send(new DeregisterStreamConsumerCommand({ StreamARN: arn, ConsumerName: options.consumer }), {
    abortSignal: ctx.signal,
  });
  const consumerArn = described.ConsumerDescription?.ConsumerARN ?? '';
  if (ctx.globals.json === true) {
    await ctx.out(`${toJson({ deregistered: options.consumer, consumerArn }, 2)}\n`);
  } else {
    await ctx.out(`deregistered consumer ${options.consumer} (${consumerArn})\n`);
  }
  return 0;
}
