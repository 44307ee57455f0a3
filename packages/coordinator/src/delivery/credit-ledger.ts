/**
 * The host-wide credit ledger: flow control for every reader of this host.
 *
 * The host budget (`maxBufferedRecords`) is granted to the readers as record credit and given back as
 * their batches are let go (processed, passed over or dropped), so records fetched and not processed
 * stay within the budget plus one response per reader, whatever the handler's speed. Byte credit is
 * kept topped up per reader on its own (a GetRecords response is at most 10 MiB).
 *
 * One ledger per host and one {@link CreditAccount} per running reader; the account is all a shard
 * session sees. In `handlerModule` mode batches never reach the coordinator thread: the session charges
 * the account when the worker says a batch arrived there and releases it when the worker finished it,
 * so the one ledger holds in every mode.
 */

import type { CreditMessage, RevokeMessage } from '@shardline/common';
import { ErrorCodes, PROTOCOL_VERSION, ShardlineError } from '@shardline/common';

export const CREDIT_DEFAULTS = Object.freeze({
  /** Byte credit each reader is kept topped up to (a GetRecords response is at most 10 MiB). */
  bytesPerReader: 16 * 1024 * 1024,
});

export interface CreditLedgerOptions {
  /** The host budget: records fetched and not yet processed, across readers. */
  maxBufferedRecords: number;
  /** @defaultValue CREDIT_DEFAULTS.bytesPerReader */
  bytesPerReader?: number;
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
  readonly #bytesPerReader: number;
  readonly #accounts = new Map<string, Account>();
  /** Readers the host expects to run (the allocation target): shares leave room for those not started. */
  #expected = 1;
  #rotation = 0;

  constructor(options: CreditLedgerOptions) {
    this.#budget = options.maxBufferedRecords;
    this.#bytesPerReader = options.bytesPerReader ?? CREDIT_DEFAULTS.bytesPerReader;
  }

  /** Records received from readers and not yet let go, across shards. */
  get bufferedRecords(): number {
    let n = 0;
    for (const account of this.#accounts.values()) n += account.buffered;
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
   * Shares the budget out as record credit. A reader may hold up to a fair share
   * (`budget / readers`, readers counting those expected to start) in credit plus records fetched and
   * not processed yet, so one GetRecords call can fill its whole share. When the fair share shrinks
   * (more readers), credit above it is revoked, so idle readers never keep room a new reader needs; a
   * fetch in flight may still overdraw a revoked credit by one response, the same bound as a KPL
   * aggregate's. Readers are served from a rotating start so none is always last.
   */
  #rebalance(): void {
    const open = [...this.#accounts.values()].filter((a) => !a.halted);
    if (open.length === 0) return;
    const fair = Math.max(1, Math.floor(this.#budget / Math.max(open.length, this.#expected)));
    for (const account of open) {
      const over = Math.min(account.credit, Math.max(0, account.credit) + account.buffered - fair);
      if (over <= 0) continue;
      account.credit -= over;
      account.send({ v: PROTOCOL_VERSION, type: 'revoke', records: over });
    }
    let free = this.#budget;
    for (const account of this.#accounts.values()) free -= Math.max(0, account.credit) + account.buffered;
    const start = this.#rotation++ % open.length;
    for (let n = 0; n < open.length; n++) {
      const account = open[(start + n) % open.length]!;
      const holding = Math.max(0, account.credit) + account.buffered;
      // A top-up is sent when worth a call (fewer, fuller GetRecords calls), or when the reader is out
      // of credit.
      let want = fair - holding;
      if (account.credit > 0 && want < fair / 2) want = 0;
      const records = Math.max(0, Math.min(want, free));
      // A response that overdrew the credit (KPL aggregates count once against Limit) is paid for once
      // it is processed: the debt is forgiven then, or a deep one would keep the reader from ever
      // fetching again.
      const debt = account.buffered === 0 && records > 0 ? Math.max(0, -account.credit) : 0;
      const bytesHolding = Math.max(0, account.bytesCredit) + account.bufferedBytes;
      let bytes = this.#bytesPerReader - bytesHolding;
      if (bytes <= 0 || (account.bytesCredit > 0 && bytes < this.#bytesPerReader / 2)) bytes = 0;
      const bytesDebt = account.bufferedBytes === 0 && bytes > 0 ? Math.max(0, -account.bytesCredit) : 0;
      if (records === 0 && bytes === 0) continue;
      account.credit += records + debt;
      account.bytesCredit += bytes + bytesDebt;
      free -= records;
      account.send({
        v: PROTOCOL_VERSION,
        type: 'credit',
        records: records + debt,
        bytes: bytes + bytesDebt,
      });
    }
  }
}
