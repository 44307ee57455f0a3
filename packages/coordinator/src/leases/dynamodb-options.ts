/**
 * Options of the DynamoDB lease manager (`leases: { dynamodb }`): their validation, with errors naming
 * the field, and the DynamoDBClient built from them when no client is given. The client follows the
 * Kinesis client's conventions (common's `createKinesisClient`): an HTTP/1.1 `NodeHttpHandler` with
 * keep-alive agents and a connection timeout, `region`, `endpoint` and `credentials` passed through.
 */
import http from 'node:http';
import https from 'node:https';
import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb';
import { ShardlineOptionError } from '@shardline/common';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { isObject, rejectUnknownKeys, show } from '../options/checks.js';

/** `leases.dynamodb`: where the lease table is and how to reach it. */
export interface DynamoDbLeasesOptions {
  /**
   * The lease table, one per consumer group and stream (a KCL application's table can be given: its
   * items are read and written in the KCL format, see docs/dynamodb-lease-table.md).
   */
  tableName: string;
  /**
   * A DynamoDBClient of your own (used as it is, not destroyed by close()). Exclusive with region,
   * endpoint and credentials.
   */
  client?: DynamoDBClient;
  /** @defaultValue the SDK's (AWS_REGION, the profile) */
  region?: string;
  /** e.g. `http://127.0.0.1:4567` for a local DynamoDB. @defaultValue the regional endpoint */
  endpoint?: string;
  /** @defaultValue the SDK's default credential chain */
  credentials?: DynamoDBClientConfig['credentials'];
  /**
   * Create the table (on-demand billing, hash key `leaseKey`) when it does not exist. Otherwise a
   * missing table is an error naming it.
   * @defaultValue false
   */
  createTable?: boolean;
}

export interface DynamoDbLeaseManagerOptions extends DynamoDbLeasesOptions {
  /** This host's id, unique among the hosts of the group; written as `leaseOwner`. */
  hostId: string;
  /**
   * How long a lease lasts without renewal, judged on each host's monotonic clock: a lease whose
   * `leaseCounter` has not changed for this long is expired (KCL's `failoverTimeMillis`).
   * @defaultValue 10000
   */
  leaseDurationMs?: number;
  /**
   * Longest one DynamoDB call may take (calls on the renewal path take the shorter per-call timeout).
   * @defaultValue 5000
   */
  callTimeoutMs?: number;
  /**
   * One stream of a multi-stream lease table (KCL 3.x multi-stream mode): its identifier
   * `account:streamName:creationEpoch` (account and creation time in epoch seconds from
   * DescribeStreamSummary). Lease keys are then `<streamId>:<shardId>`, the items carry `streamName`
   * (the identifier) and `shardId` as KCL's MultiStreamLease does, and this manager only sees its
   * stream's items. Undefined: one stream per table, lease key = shard id.
   * @defaultValue undefined
   */
  streamId?: string;
}

export const DYNAMODB_LEASE_DEFAULTS = Object.freeze({
  leaseDurationMs: 10_000,
  callTimeoutMs: 5_000,
  connectionTimeoutMs: 3_000,
  maxSockets: 64,
  /** How long createTable waits for the new table to become ACTIVE. */
  createTableTimeoutMs: 60_000,
});

/** DynamoDB table names: 3..255 of [a-zA-Z0-9_.-]. */
const TABLE_NAME = /^[a-zA-Z0-9_.-]{3,255}$/;

const KEYS = ['tableName', 'client', 'region', 'endpoint', 'credentials', 'createTable'] as const;

export function isDynamoDbClient(value: unknown): value is DynamoDBClient {
  return value instanceof DynamoDBClient;
}

/** Checks `leases.dynamodb` (or a manager's options when `option` is ''), naming the bad field. */
export function resolveDynamoDbLeases(value: unknown, option: string): Readonly<DynamoDbLeasesOptions> {
  const prefix = option === '' ? '' : `${option}.`;
  if (!isObject(value)) {
    throw new ShardlineOptionError(
      option === '' ? 'options' : option,
      `must be an object like { tableName: 'orders-leases', region: 'eu-west-1' } (got ${show(value)})`,
    );
  }
  if (option !== '') rejectUnknownKeys(value, KEYS, prefix);
  const { tableName, client, region, endpoint, credentials, createTable } = value;
  if (typeof tableName !== 'string' || !TABLE_NAME.test(tableName)) {
    throw new ShardlineOptionError(
      `${prefix}tableName`,
      `must be a DynamoDB table name: 3 to 255 letters, digits, '_', '-' or '.' (got ${show(tableName)})`,
    );
  }
  if (client !== undefined) {
    if (!isDynamoDbClient(client)) {
      throw new ShardlineOptionError(
        `${prefix}client`,
        `must be a DynamoDBClient from @aws-sdk/client-dynamodb (got ${show(client)})`,
      );
    }
    for (const key of ['region', 'endpoint', 'credentials'] as const) {
      if (value[key] !== undefined) {
        throw new ShardlineOptionError(
          `${prefix}${key}`,
          `cannot be combined with ${prefix}client: configure the client you pass instead`,
        );
      }
    }
  }
  if (region !== undefined && (typeof region !== 'string' || !/^[a-z0-9-]{1,64}$/.test(region))) {
    throw new ShardlineOptionError(
      `${prefix}region`,
      `must be an AWS region like 'eu-west-1' (got ${show(region)})`,
    );
  }
  if (endpoint !== undefined) {
    let url: URL | undefined;
    try {
      url = typeof endpoint === 'string' ? new URL(endpoint) : undefined;
    } catch {
      url = undefined;
    }
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new ShardlineOptionError(
        `${prefix}endpoint`,
        `must be an http:// or https:// URL like 'http://127.0.0.1:4567' (got ${show(endpoint)})`,
      );
    }
  }
  if (credentials !== undefined && typeof credentials !== 'function' && !isObject(credentials)) {
    throw new ShardlineOptionError(
      `${prefix}credentials`,
      `must be { accessKeyId, secretAccessKey, sessionToken? } or a credential provider function (got ${show(credentials)})`,
    );
  }
  if (createTable !== undefined && typeof createTable !== 'boolean') {
    throw new ShardlineOptionError(
      `${prefix}createTable`,
      `must be true or false (got ${show(createTable)})`,
    );
  }
  return Object.freeze({
    tableName,
    ...(client === undefined ? {} : { client }),
    ...(region === undefined ? {} : { region: region as string }),
    ...(endpoint === undefined ? {} : { endpoint: endpoint as string }),
    ...(credentials === undefined ? {} : { credentials: credentials as DynamoDBClientConfig['credentials'] }),
    createTable: createTable === true,
  });
}

/** A DynamoDBClient for the options, on HTTP/1.1 keep-alive (see the module notes). */
export function createDynamoDbClient(o: Readonly<DynamoDbLeasesOptions>): DynamoDBClient {
  const agent = { keepAlive: true, maxSockets: DYNAMODB_LEASE_DEFAULTS.maxSockets };
  return new DynamoDBClient({
    ...(o.region === undefined ? {} : { region: o.region }),
    ...(o.endpoint === undefined ? {} : { endpoint: o.endpoint }),
    ...(o.credentials === undefined ? {} : { credentials: o.credentials }),
    requestHandler: new NodeHttpHandler({
      connectionTimeout: DYNAMODB_LEASE_DEFAULTS.connectionTimeoutMs,
      requestTimeout: DYNAMODB_LEASE_DEFAULTS.callTimeoutMs,
      httpAgent: new http.Agent(agent),
      httpsAgent: new https.Agent(agent),
    }),
  });
}
