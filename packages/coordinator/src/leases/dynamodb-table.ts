/**
 * The lease table's checks and creation, and DynamoDB errors as ShardlineErrors that name the table,
 * the call and (for AccessDenied) the IAM permission it needs.
 */
import {
  CreateTableCommand,
  DescribeTableCommand,
  type DescribeTableCommandOutput,
  type DynamoDBClient,
} from '@aws-sdk/client-dynamodb';
import { ErrorCodes, ShardlineError } from '@shardline/common';
import { KCL } from './dynamodb-item.js';
import { DYNAMODB_LEASE_DEFAULTS } from './dynamodb-options.js';

const THROTTLES = new Set([
  'ProvisionedThroughputExceededException',
  'ThrottlingException',
  'RequestLimitExceeded',
  'LimitExceededException',
]);

function errorName(error: unknown): string {
  const e = error as { name?: unknown; code?: unknown } | null;
  return typeof e?.name === 'string' ? e.name : typeof e?.code === 'string' ? e.code : 'Error';
}

export function isConditionFailed(error: unknown): boolean {
  return errorName(error) === 'ConditionalCheckFailedException';
}

/** A failed DynamoDB call as a ShardlineError naming the table and the call. */
export function dynamoError(error: unknown, operation: string, tableName: string): ShardlineError {
  if (error instanceof ShardlineError) return error;
  const name = errorName(error);
  const message = (error as { message?: unknown } | null)?.message;
  const detail = typeof message === 'string' && message !== '' ? `: ${message}` : '';
  const details = { tableName, operation, errorName: name };
  if (name === 'ResourceNotFoundException') {
    return new ShardlineError(
      ErrorCodes.NOT_FOUND,
      `DynamoDB lease table '${tableName}' does not exist (${operation}${detail}); create it (hash key leaseKey, type S) or set leases.dynamodb.createTable: true`,
      { cause: error, details },
    );
  }
  if (name === 'AccessDeniedException' || name === 'UnrecognizedClientException') {
    return new ShardlineError(
      ErrorCodes.ACCESS_DENIED,
      `DynamoDB refused ${operation} on lease table '${tableName}' (${name}${detail}): the host's credentials need the permission dynamodb:${operation} on that table`,
      { cause: error, details: { ...details, permission: `dynamodb:${operation}` } },
    );
  }
  if (THROTTLES.has(name)) {
    return new ShardlineError(
      ErrorCodes.THROTTLED,
      `DynamoDB throttled ${operation} on lease table '${tableName}' (${name}${detail}); the call is retried on the next round`,
      { cause: error, details, retriable: true },
    );
  }
  if (name === 'AbortError' || name === 'TimeoutError') {
    return new ShardlineError(
      ErrorCodes.TRANSIENT,
      `DynamoDB ${operation} on lease table '${tableName}' got no answer in time (${name}): its outcome is unknown`,
      { cause: error, details, retriable: true },
    );
  }
  return new ShardlineError(
    ErrorCodes.TRANSIENT,
    `DynamoDB ${operation} on lease table '${tableName}' failed (${name}${detail})`,
    { cause: error, details, retriable: true },
  );
}

function checkKeySchema(tableName: string, table: DescribeTableCommandOutput['Table']): void {
  const keys = table?.KeySchema ?? [];
  const types = new Map((table?.AttributeDefinitions ?? []).map((d) => [d.AttributeName, d.AttributeType]));
  const ok =
    keys.length === 1 &&
    keys[0]!.AttributeName === KCL.leaseKey &&
    keys[0]!.KeyType === 'HASH' &&
    types.get(KCL.leaseKey) === 'S';
  if (!ok) {
    const shown = keys
      .map((k) => `${k.AttributeName} ${k.KeyType} (${types.get(k.AttributeName) ?? '?'})`)
      .join(', ');
    throw new ShardlineError(
      ErrorCodes.INVALID_OPTION,
      `DynamoDB table '${tableName}' is not a lease table: its key schema is [${shown}], a KCL lease table has only the hash key leaseKey of type S; give another leases.dynamodb.tableName`,
      { details: { tableName, option: 'leases.dynamodb.tableName' } },
    );
  }
}

async function describe(
  client: DynamoDBClient,
  tableName: string,
): Promise<DescribeTableCommandOutput | undefined> {
  try {
    return await client.send(new DescribeTableCommand({ TableName: tableName }), {
      abortSignal: AbortSignal.timeout(DYNAMODB_LEASE_DEFAULTS.callTimeoutMs),
    });
  } catch (error) {
    if (errorName(error) === 'ResourceNotFoundException') return undefined;
    throw dynamoError(error, 'DescribeTable', tableName);
  }
}

/** Checks the table's key schema; creates it first (on demand) when missing and `create` is set. */
export async function ensureLeaseTable(
  client: DynamoDBClient,
  tableName: string,
  create: boolean,
): Promise<void> {
  let described = await describe(client, tableName);
  if (described === undefined) {
    if (!create) {
      throw new ShardlineError(
        ErrorCodes.NOT_FOUND,
        `DynamoDB lease table '${tableName}' does not exist; create it (hash key leaseKey of type S, on-demand billing) or set leases.dynamodb.createTable: true`,
        { details: { tableName, option: 'leases.dynamodb.tableName' } },
      );
    }
    try {
      await client.send(
        new CreateTableCommand({
          TableName: tableName,
          KeySchema: [{ AttributeName: KCL.leaseKey, KeyType: 'HASH' }],
          AttributeDefinitions: [{ AttributeName: KCL.leaseKey, AttributeType: 'S' }],
          BillingMode: 'PAY_PER_REQUEST',
        }),
        { abortSignal: AbortSignal.timeout(DYNAMODB_LEASE_DEFAULTS.callTimeoutMs) },
      );
    } catch (error) {
      // Another host created it first: fine.
      if (errorName(error) !== 'ResourceInUseException') throw dynamoError(error, 'CreateTable', tableName);
    }
    const deadline = Date.now() + DYNAMODB_LEASE_DEFAULTS.createTableTimeoutMs;
    for (;;) {
      described = await describe(client, tableName);
      if (described?.Table?.TableStatus === 'ACTIVE') break;
      if (Date.now() > deadline) {
        throw new ShardlineError(
          ErrorCodes.TRANSIENT,
          `DynamoDB lease table '${tableName}' did not become ACTIVE within ${DYNAMODB_LEASE_DEFAULTS.createTableTimeoutMs} ms of its creation`,
          { details: { tableName }, retriable: true },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
  checkKeySchema(tableName, described?.Table);
}
