/**
 * The Kinesis calls the commands share: the client from the global options, the stream check,
 * paginated ListStreams (ListShards is `listAllShards` of @shardline/common).
 */
import { isIP } from 'node:net';
import type {
  KinesisClient,
  KinesisClientConfig,
  Shard,
  StreamDescriptionSummary,
} from '@aws-sdk/client-kinesis';
import { DescribeStreamSummaryCommand, ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { endpointProblem } from './endpoint.js';
import { CliError, EXIT_CODES } from './exit.js';

export { endpointProblem };

/** The global options every command gets. */
export interface GlobalOptions {
  endpoint?: string;
  region?: string;
  json?: boolean;
  verbose?: boolean;
}

/** Where the endpoint came from: the option, or the AWS SDK's own environment variables. */
export type EndpointSource = '--endpoint' | 'AWS_ENDPOINT_URL_KINESIS' | 'AWS_ENDPOINT_URL';

/** The Kinesis endpoint of a command, and where it came from. */
export interface CliEndpoint {
  url: string;
  source: EndpointSource;
}

/**
 * Credentials for a loopback endpoint when none are configured: local emulators accept any signature.
 * Not 12 digits: kinesis-mock would take that as the account id.
 */
export const LOCAL_CREDENTIALS = Object.freeze({
  accessKeyId: 'shardline-local',
  secretAccessKey: 'shardline-local',
});

/** The region when an endpoint is given and no region is: emulators accept any. */
export const ENDPOINT_DEFAULT_REGION = 'us-east-1';

/**
 * The endpoint: `--endpoint`, else `AWS_ENDPOINT_URL_KINESIS`, else `AWS_ENDPOINT_URL` (the variables
 * the AWS SDK reads itself, read here too so that the region and credential defaults and the error
 * messages know the endpoint), unless `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is true (as for the SDK).
 * @throws CliError (usage) when a variable holds no http:// or https:// URL.
 */
export function resolveEndpoint(globals: GlobalOptions, env: NodeJS.ProcessEnv): CliEndpoint | undefined {
  if (globals.endpoint !== undefined) return { url: globals.endpoint, source: '--endpoint' };
  if (env.AWS_IGNORE_CONFIGURED_ENDPOINT_URLS?.toLowerCase() === 'true') return undefined;
  for (const source of ['AWS_ENDPOINT_URL_KINESIS', 'AWS_ENDPOINT_URL'] as const) {
    const value = env[source];
    if (value === undefined || value === '') continue;
    const problem = endpointProblem(value);
    if (problem !== undefined) throw new CliError(`${source}='${value}' ${problem}`, EXIT_CODES.USAGE);
    return { url: value, source };
  }
  return undefined;
}

/** Whether the endpoint's host is this machine: `localhost`, 127.0.0.0/8 or ::1. */
export function isLoopbackEndpoint(url: string): boolean {
  let host: string;
  try {
    host = new URL(url).hostname.toLowerCase();
  } catch {
    return false;
  }
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === 'localhost' || host.endsWith('.localhost') || host === '::1') return true;
  return isIP(host) === 4 && host.startsWith('127.');
}

/**
 * The client config for the global options.
 * - Endpoint: see {@link resolveEndpoint}.
 * - Region: `--region`, else `AWS_REGION`, else `us-east-1` when there is an endpoint (local emulators
 *   accept any), else whatever the SDK finds (the profile's region).
 * - Credentials: the SDK's default chain, except for a loopback endpoint when neither
 *   `AWS_ACCESS_KEY_ID` nor `AWS_PROFILE` is set: {@link LOCAL_CREDENTIALS} (an emulator accepts any;
 *   a real Kinesis behind a tunnel on localhost gets real ones from those variables).
 */
export function clientConfig(globals: GlobalOptions, env: NodeJS.ProcessEnv): KinesisClientConfig {
  const config: KinesisClientConfig = {};
  const endpoint = resolveEndpoint(globals, env);
  const region =
    globals.region || env.AWS_REGION || (endpoint === undefined ? undefined : ENDPOINT_DEFAULT_REGION);
  if (region !== undefined && region !== '') config.region = region;
  if (endpoint !== undefined) {
    config.endpoint = endpoint.url;
    if (isLoopbackEndpoint(endpoint.url) && !env.AWS_ACCESS_KEY_ID && !env.AWS_PROFILE) {
      config.credentials = { ...LOCAL_CREDENTIALS };
    }
  }
  return config;
}

/** Stream summary; rejects with the SDK's ResourceNotFoundException when it does not exist. */
export async function describeStreamSummary(
  client: KinesisClient,
  stream: string,
  signal?: AbortSignal,
): Promise<StreamDescriptionSummary> {
  const out = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }), {
    abortSignal: signal,
  });
  if (out.StreamDescriptionSummary === undefined) {
    throw new Error(`DescribeStreamSummary returned no summary for '${stream}'`);
  }
  return out.StreamDescriptionSummary;
}

/** Every stream name, following NextToken (or, from older servers such as kinesalite, HasMoreStreams). */
export async function listAllStreams(client: KinesisClient, signal?: AbortSignal): Promise<string[]> {
  const names: string[] = [];
  let nextToken: string | undefined;
  for (;;) {
    const exclusiveStart = nextToken === undefined ? names.at(-1) : undefined;
    const out = await client.send(
      new ListStreamsCommand(
        nextToken !== undefined
          ? { NextToken: nextToken }
          : exclusiveStart === undefined
            ? {}
            : { ExclusiveStartStreamName: exclusiveStart },
      ),
      { abortSignal: signal },
    );
    const page = out.StreamNames ?? [];
    names.push(...page);
    if (out.HasMoreStreams !== true || page.length === 0) break;
    // A server that repeats its token would loop forever: stop when paging makes no progress.
    if (out.NextToken !== undefined && out.NextToken === nextToken) break;
    nextToken = out.NextToken;
  }
  return names;
}

/** The parents of a shard (two after a merge). */
export function parentsOf(shard: Shard): string[] {
  const parents: string[] = [];
  if (shard.ParentShardId) parents.push(shard.ParentShardId);
  if (shard.AdjacentParentShardId) parents.push(shard.AdjacentParentShardId);
  return parents;
}

/** A shard is closed once it has an ending sequence number. */
export function isOpen(shard: Shard): boolean {
  return shard.SequenceNumberRange?.EndingSequenceNumber === undefined;
}
