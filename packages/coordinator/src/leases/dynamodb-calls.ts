/**
 * The DynamoDB calls of the lease manager, on one lease table: each bounded by a timeout (an
 * AbortSignal), the table checked (or created) before the first, errors mapped to ShardlineErrors
 * naming the table and call (a failed condition comes back as a result, never as an error), and every
 * lease item read handed to the observer with the local time it was read at.
 */
import {
  type AttributeValue,
  DeleteItemCommand,
  type DynamoDBClient,
  GetItemCommand,
  PutItemCommand,
  ScanCommand,
  type ScanCommandOutput,
  UpdateItemCommand,
} from '@aws-sdk/client-dynamodb';
import { type Item, type ItemLease, KCL, leaseFromItem, SHARDLINE } from './dynamodb-item.js';
import { monotonicNow } from './dynamodb-observer.js';
import { dynamoError, ensureLeaseTable, isConditionFailed } from './dynamodb-table.js';

type Command = GetItemCommand | PutItemCommand | UpdateItemCommand | DeleteItemCommand | ScanCommand;

export const n = (value: number): AttributeValue => ({ N: String(value) });
export const s = (value: string): AttributeValue => ({ S: value });

/** The `#name` placeholders expressions may use, and their attributes. */
const NAMES: Record<string, string> = {
  '#key': KCL.leaseKey,
  '#owner': KCL.leaseOwner,
  '#counter': KCL.leaseCounter,
  '#acq': SHARDLINE.acquisitions,
  '#cpOwner': KCL.checkpointOwner,
  '#children': KCL.childShardIds,
  '#switches': KCL.ownerSwitchesSinceCheckpoint,
  '#cp': KCL.checkpoint,
  '#sub': KCL.checkpointSubSequenceNumber,
  '#pendingSub': KCL.pendingCheckpointSubSequenceNumber,
  '#pendingState': KCL.pendingCheckpointState,
  '#pending': KCL.pendingCheckpoint,
  '#whole': SHARDLINE.wholeRecord,
  '#handoffTo': SHARDLINE.handoffTo,
  '#handoffId': SHARDLINE.handoffId,
  '#failure': SHARDLINE.failure,
  '#firstAcq': SHARDLINE.firstAcquiredAt,
};

/** The placeholders an expression uses (DynamoDB refuses unused ones). */
function namesIn(expression: string): Record<string, string> {
  return Object.fromEntries(Object.entries(NAMES).filter(([k]) => new RegExp(`${k}\\b`).test(expression)));
}

export interface LeaseCallsOptions {
  client: DynamoDBClient;
  tableName: string;
  createTable: boolean;
  callTimeoutMs: number;
  /** Throws when the manager is closed (named by the call). */
  assertOpen(operation: string): void;
  /** Each lease item read, at the local time of the answer. */
  observe(lease: ItemLease, at: number): void;
  /**
   * KCL multi-stream identifier (`account:streamName:creationEpoch`): lease keys are
   * `<streamId>:<shardId>` and only this stream's items are seen. Undefined: lease key = shard id.
   */
  streamId?: string | undefined;
}

export class LeaseCalls {
  readonly #o: LeaseCallsOptions;
  #ready: Promise<void> | undefined;

  constructor(options: LeaseCallsOptions) {
    this.#o = options;
  }

  /** One call bounded by `timeoutMs`; a failed condition is rethrown as it is. */
  async #send<T>(operation: string, command: Command, timeoutMs = this.#o.callTimeoutMs): Promise<T> {
    this.#o.assertOpen(operation);
    this.#ready ??= ensureLeaseTable(this.#o.client, this.#o.tableName, this.#o.createTable).catch(
      (error: unknown) => {
        // Checked again by the next call: the table may be created meanwhile.
        this.#ready = undefined;
        throw error;
      },
    );
    await this.#ready;
    try {
      return (await this.#o.client.send(command as never, {
        abortSignal: AbortSignal.timeout(timeoutMs),
      })) as T;
    } catch (error) {
      if (isConditionFailed(error)) throw error;
      throw dynamoError(error, operation, this.#o.tableName);
    }
  }

  #key(shardId: string): Item {
    const id = this.#o.streamId;
    return { [KCL.leaseKey]: s(id === undefined ? shardId : `${id}:${shardId}`) };
  }

  /** The lease of an item, its shard id without the stream prefix; undefined: not this stream's lease. */
  #read(item: Item): ItemLease | undefined {
    const lease = leaseFromItem(item);
    const id = this.#o.streamId;
    if (lease === undefined || id === undefined) return lease;
    if (!lease.shardId.startsWith(`${id}:`)) return undefined;
    return { ...lease, shardId: lease.shardId.slice(id.length + 1) };
  }

  #seen(item: Item | undefined): ItemLease | undefined {
    const lease = item === undefined ? undefined : this.#read(item);
    if (lease !== undefined) this.#o.observe(lease, monotonicNow());
    return lease;
  }

  /** A strongly consistent read of one lease. */
  async get(shardId: string): Promise<ItemLease | undefined> {
    const out = await this.#send<{ Item?: Item }>(
      'GetItem',
      new GetItemCommand({ TableName: this.#o.tableName, Key: this.#key(shardId), ConsistentRead: true }),
    );
    return this.#seen(out.Item);
  }

  /** A conditional update of an existing lease: the item after it, undefined when the condition failed. */
  async update(
    shardId: string,
    update: string,
    condition: string,
    values: Record<string, AttributeValue>,
    timeoutMs?: number,
  ): Promise<ItemLease | undefined> {
    try {
      const out = await this.#send<{ Attributes?: Item }>(
        'UpdateItem',
        new UpdateItemCommand({
          TableName: this.#o.tableName,
          Key: this.#key(shardId),
          UpdateExpression: update,
          ConditionExpression: `attribute_exists(#key) AND ${condition}`,
          ExpressionAttributeNames: { ...namesIn(`${update} ${condition}`), '#key': KCL.leaseKey },
          ExpressionAttributeValues: values,
          ReturnValues: 'ALL_NEW',
        }),
        timeoutMs,
      );
      return this.#seen(out.Attributes);
    } catch (error) {
      if (isConditionFailed(error)) return undefined;
      throw error;
    }
  }

  /** Creates the item unless one with its key exists; false when one did. */
  async putNew(given: Item): Promise<boolean> {
    const id = this.#o.streamId;
    const shardId = given[KCL.leaseKey]?.S ?? '';
    // KCL's MultiStreamLease: the stream identifier under `streamName`, the shard under `shardId`.
    const item: Item =
      id === undefined
        ? given
        : { ...given, ...this.#key(shardId), [KCL.streamName]: s(id), [KCL.shardId]: s(shardId) };
    try {
      await this.#send(
        'PutItem',
        new PutItemCommand({
          TableName: this.#o.tableName,
          Item: item,
          ConditionExpression: 'attribute_not_exists(#key)',
          ExpressionAttributeNames: { '#key': KCL.leaseKey },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw error;
    }
  }

  /** Deletes the lease if its `leaseCounter` is still `leaseCounter`; false otherwise. */
  async deleteAt(shardId: string, leaseCounter: number): Promise<boolean> {
    try {
      await this.#send(
        'DeleteItem',
        new DeleteItemCommand({
          TableName: this.#o.tableName,
          Key: this.#key(shardId),
          ConditionExpression: '#counter = :seen',
          ExpressionAttributeNames: { '#counter': KCL.leaseCounter },
          ExpressionAttributeValues: { ':seen': n(leaseCounter) },
        }),
      );
      return true;
    } catch (error) {
      if (isConditionFailed(error)) return false;
      throw error;
    }
  }

  /** Every lease of the table (strongly consistent pages), in shard id order. */
  async scan(): Promise<ItemLease[]> {
    const leases: ItemLease[] = [];
    let start: Item | undefined;
    do {
      const out: ScanCommandOutput = await this.#send(
        'Scan',
        new ScanCommand({ TableName: this.#o.tableName, ConsistentRead: true, ExclusiveStartKey: start }),
      );
      const at = monotonicNow();
      for (const item of out.Items ?? []) {
        const lease = this.#read(item);
        if (lease === undefined) continue;
        this.#o.observe(lease, at);
        leases.push(lease);
      }
      start = out.LastEvaluatedKey;
    } while (start !== undefined);
    return leases.sort((a, b) => (a.shardId < b.shardId ? -1 : a.shardId > b.shardId ? 1 : 0));
  }
}
