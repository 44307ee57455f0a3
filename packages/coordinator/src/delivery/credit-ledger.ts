/**
 * The host-wide credit ledger: flow control for every reader of this host.
 *
 * Two host budgets, `maxBufferedRecords` and `maxBufferedBytes` (record data as fetched), are granted to
 * the readers as credit and given back as their batches are let go (processed, passed over or
 * dropped), so what was fetched and not processed stays within both budgets plus one response per
 * reader, whatever the handler's speed. A reader fetches only while it holds credit of both kinds.
 *
 * One ledger per host and one {@link CreditAccount} per running reader; the account is all a shard
 * session sees. In `handlerModule` mode batches never reach the coordinator thread: the session charges
 * the account when the worker says a batch arrived there and releases it when the worker finished it,
 * so the one ledger holds in every mode.
 */

import type { CreditMessage, RevokeMessage } from '@shardline/common';
import { ErrorCodes, PROTOCOL_VERSION, ShardlineError } from '@shardline/common';

export interface CreditLedgerOptions {
  /** Records fetched and not yet processed, across readers. */
  maxBufferedRecords: number;
  /** Record data bytes (as fetched) not yet processed, across readers. */
  maxBufferedBytes: number;
}

/** One reader's account. */
export interface CreditAccount {
  readonly shardId: string;
  /** Records received and not yet let go. */
  readonly buffered: number;
  /**
   * A batch reached its consumer: taken off the reader's credit. `keep`: it waits to be processed (and
   * is charged until {@link release}d); false for a batch dropped on arrival (a lane being closed).
   */
  received(records: number, bytes: number, keep: boolean): void;
  /** Kept records were let go (processed, passed over, or dropped): their room is shared out again. */
  release(records: number, bytes: number): void;
  /** No more grants (the reader is being stopped); what it holds still counts until {@link close}. */
  halt(): void;
  /** Removes the account: what it held goes back to the budget. Idempotent. */
  close(): void;
}

interface Account extends CreditAccount {
  send: (message: CreditMessage | RevokeMessage) => void;
  halted: boolean;
  /** Record credit the reader holds: granted - received (negative by at most one response). */
  credit: number;
  bytesCredit: number;
  buffered: number;
  bufferedBytes: number;
}

export class CreditLedger {
  readonly #budget: number;
  readonly #bytesBudget: number;
  readonly #accounts = new Map<string, Account>();
  /** Readers the host expects to run (the allocation target): shares leave room for those not started. */
  #expected = 1;
  #rotation = 0;

  constructor(options: CreditLedgerOptions) {
    this.#budget = options.maxBufferedRecords;
    this.#bytesBudget = options.maxBufferedBytes;
  }

  /** Records received from readers and not yet let go, across shards. */
  get bufferedRecords(): number {
    let n = 0;
    for (const account of this.#accounts.values()) n += account.buffered;
    return n;
  }

  /** Record data bytes (as fetched) received from readers and not yet let go, across shards. */
  get bufferedBytes(): number {
    let n = 0;
    for (const account of this.#accounts.values()) n += account.bufferedBytes;
    return n;
  }

  /** How many readers the host expects to run at once (the allocation target). */
  expect(count: number): void {
    this.#expected = Math.max(1, count);
  }

  /** Opens a reader's account and grants it a share of the budget; `send` reaches the reader. */
  open(shardId: string, send: (message: CreditMessage | RevokeMessage) => void): CreditAccount {
    if (this.#accounts.has(shardId)) {
      throw new ShardlineError(ErrorCodes.INTERNAL, `credit account ${shardId} is open`);
    }
    const ledger = this;
    const account: Account = {
      shardId,
      send,
      halted: false,
      credit: 0,
      bytesCredit: 0,
      buffered: 0,
      bufferedBytes: 0,
      received(records, bytes, keep) {
        this.credit -= records;
        this.bytesCredit -= bytes;
        if (keep) {
          this.buffered += records;
          this.bufferedBytes += bytes;
        } else ledger.#rebalance();
      },
      release(records, bytes) {
        this.buffered -= records;
        this.bufferedBytes -= bytes;
        ledger.#rebalance();
      },
      halt() {
        this.halted = true;
      },
      close() {
        if (ledger.#accounts.get(shardId) !== this) return;
        ledger.#accounts.delete(shardId);
        ledger.#rebalance();
      },
    };
    this.#accounts.set(shardId, account);
    this.#rebalance();
    return account;
  }

  /**
   * Shares both budgets out as credit. A reader may hold up to a fair share (`budget / readers`, readers
   * counting those expected to start) in credit plus what it fetched and has not had processed, so one
   * GetRecords call can fill its whole share. When the fair share shrinks (more readers), credit above
   * it is revoked, so idle readers never keep room a new reader needs; a fetch in flight may still
   * overdraw a revoked credit by one response, the same bound as a KPL aggregate's. Readers are served
   * from a rotating start so none is always last.
   */
  #rebalance(): void {
    const open = [...this.#accounts.values()].filter((a) => !a.halted);
    if (open.length === 0) return;
    const readers = Math.max(open.length, this.#expected);
    const fair = Math.max(1, Math.floor(this.#budget / readers));
    const fairBytes = Math.max(1, Math.floor(this.#bytesBudget / readers));
    for (const account of open) {
      const over = Math.max(
        0,
        Math.min(account.credit, Math.max(0, account.credit) + account.buffered - fair),
      );
      const overBytes = Math.max(
        0,
        Math.min(account.bytesCredit, Math.max(0, account.bytesCredit) + account.bufferedBytes - fairBytes),
      );
      if (over === 0 && overBytes === 0) continue;
      account.credit -= over;
      account.bytesCredit -= overBytes;
      account.send({ v: PROTOCOL_VERSION, type: 'revoke', records: over, bytes: overBytes });
    }
    let free = this.#budget;
    let freeBytes = this.#bytesBudget;
    for (const account of this.#accounts.values()) {
      free -= Math.max(0, account.credit) + account.buffered;
      freeBytes -= Math.max(0, account.bytesCredit) + account.bufferedBytes;
    }
    const start = this.#rotation++ % open.length;
    for (let n = 0; n < open.length; n++) {
      const account = open[(start + n) % open.length]!;
      const records = grant(fair, account.credit, account.buffered, free);
      const bytes = grant(fairBytes, account.bytesCredit, account.bufferedBytes, freeBytes);
      // A response that overdrew the credit (KPL aggregates count once against Limit; a response's
      // bytes are known only once it came) is paid for once it is processed: the debt is forgiven then,
      // or a deep one would keep the reader from ever fetching again.
      const debt = account.buffered === 0 && records > 0 ? Math.max(0, -account.credit) : 0;
      const bytesDebt = account.bufferedBytes === 0 && bytes > 0 ? Math.max(0, -account.bytesCredit) : 0;
      if (records === 0 && bytes === 0) continue;
      account.credit += records + debt;
      account.bytesCredit += bytes + bytesDebt;
      free -= records;
      freeBytes -= bytes;
      account.send({
        v: PROTOCOL_VERSION,
        type: 'credit',
        records: records + debt,
        bytes: bytes + bytesDebt,
      });
    }
  }
}

/**
 * What to grant a reader of one kind: up to its fair share minus what it holds, from what is free. A
 * top-up is sent when worth a call (fewer, fuller GetRecords calls), or when the reader is out of credit.
 */
function grant(fair: number, credit: number, buffered: number, free: number): number {
  let want = fair - (Math.max(0, credit) + buffered);
  if (credit > 0 && want < fair / 2) want = 0;
  return Math.max(0, Math.min(want, free));
}
