/**
 * `shardline put <stream>`: one record from --data, or one record per stdin line, through the
 * library's Producer (batching, pacing, retries, optional KPL aggregation).
 */
import { createInterface } from 'node:readline';
import type { Codec, CodecName } from '@shardline/common';
import { resolveCodec } from '@shardline/common';
import type { PutReceipt } from '@shardline/producer';
import { Producer } from '@shardline/producer';
import type { CommandContext } from '../context.js';
import { CliError, EXIT_CODES, toCliError } from '../exit.js';
import { describeStreamSummary } from '../kinesis.js';
import { toJson } from '../output.js';

export interface PutOptions {
  /** One record; without it, records are read from stdin, one per line. */
  data?: string;
  /** @defaultValue a random key per record */
  partitionKey?: string;
  /** @defaultValue false */
  aggregate?: boolean;
  /** @defaultValue 'json' */
  codec?: string;
}

/** Records accepted and not yet acknowledged before reading more of stdin (the producer's buffer size). */
const WINDOW = 10_000;

/** Codecs whose items are JSON values: their input text is parsed as JSON. */
const JSON_CODECS = new Set(['json', 'jsonl', 'msgpack', 'json-array']);

/** A line of input as the item the codec encodes. */
function parseItem(text: string, codec: Codec, where: string): unknown {
  if (codec.name === 'raw') return Buffer.from(text, 'utf8');
  if (!JSON_CODECS.has(codec.name)) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw new CliError(`${where}: ${(error as Error).message}`, EXIT_CODES.USAGE);
  }
}

export async function putCommand(ctx: CommandContext, stream: string, options: PutOptions): Promise<number> {
  const codec = resolveCodec((options.codec ?? 'json') as CodecName, '--codec');
  if (options.data === undefined && ctx.io.stdin.isTTY === true) {
    throw new CliError(
      'nothing to put: pass --data <value>, or pipe records on stdin (one per line)',
      EXIT_CODES.USAGE,
    );
  }
  // Fails fast (exit 3 or 4) before reading any input.
  await describeStreamSummary(ctx.client(), stream, ctx.signal);

  const producer = new Producer<unknown>({
    streamName: stream,
    kinesis: { ...ctx.config },
    codec,
    aggregate: options.aggregate === true,
    // A CLI gives up on a record after a while instead of retrying forever.
    retry: { retries: 10, backoffMs: { initial: 100, max: 2_000 } },
    signal: ctx.signal,
  });
  const putOptions = options.partitionKey === undefined ? {} : { partitionKey: options.partitionKey };
  const receipts = new ReceiptReporter(ctx, stream);
  let inputError: CliError | undefined;
  try {
    if (options.data !== undefined) {
      receipts.track(undefined, producer.put(parseItem(options.data, codec, '--data'), putOptions));
    } else {
      inputError = await readStdin(ctx, codec, async (item, line) => {
        receipts.track(line, producer.put(item, putOptions));
        await receipts.room(WINDOW);
      });
    }
    // Records read before a bad line are still sent and reported.
    await receipts.settled();
  } finally {
    await producer.close();
  }
  if (ctx.signal.aborted) return EXIT_CODES.INTERRUPTED;
  if (ctx.globals.json !== true) {
    const { sent, shards } = receipts;
    await ctx.out(
      `put ${sent} record${sent === 1 ? '' : 's'} to '${stream}'` +
        ` (${shards.size} shard${shards.size === 1 ? '' : 's'})\n`,
    );
  }
  if (inputError !== undefined) throw inputError;
  if (receipts.firstFailure !== undefined) {
    // Each failure is already on stderr with its line; the exit code is the first one's.
    const { failed } = receipts;
    throw new CliError(`${failed} record${failed === 1 ? '' : 's'} not sent`, receipts.firstFailure.exitCode);
  }
  return EXIT_CODES.OK;
}

type Outcome = { ok: true; receipt: PutReceipt } | { ok: false; error: unknown };

interface Tracked {
  line: number | undefined;
  outcome: Outcome | undefined;
}

/**
 * Reports each record's outcome in input order as soon as it and every record before it have
 * settled (a receipt line with --json, a stderr line for a failure), so a long-running pipe into
 * `put` reports as it goes.
 */
class ReceiptReporter {
  sent = 0;
  failed = 0;
  readonly shards = new Set<string>();
  firstFailure: CliError | undefined;
  readonly #ctx: CommandContext;
  readonly #stream: string;
  #queue: Tracked[] = [];
  #head = 0;
  #printing: Promise<void> = Promise.resolve();
  #wake: (() => void) | undefined;
  #outputClosed = false;

  constructor(ctx: CommandContext, stream: string) {
    this.#ctx = ctx;
    this.#stream = stream;
  }

  get #unreported(): number {
    return this.#queue.length - this.#head;
  }

  track(line: number | undefined, result: Promise<PutReceipt>): void {
    const tracked: Tracked = { line, outcome: undefined };
    this.#queue.push(tracked);
    result.then(
      (receipt) => this.#settle(tracked, { ok: true, receipt }),
      (error: unknown) => this.#settle(tracked, { ok: false, error }),
    );
  }

  /** Resolves once at most `limit` records are unreported (backpressure on stdin). */
  async room(limit: number): Promise<void> {
    while (this.#unreported > limit) await this.#next();
  }

  /** Resolves once every tracked record is reported. */
  async settled(): Promise<void> {
    while (this.#unreported > 0) await this.#next();
    await this.#printing;
  }

  #next(): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
    });
  }

  #settle(tracked: Tracked, outcome: Outcome): void {
    tracked.outcome = outcome;
    this.#printing = this.#printing.then(() => this.#report());
  }

  async #report(): Promise<void> {
    while (this.#head < this.#queue.length && this.#queue[this.#head]!.outcome !== undefined) {
      const tracked = this.#queue[this.#head]!;
      const outcome = tracked.outcome!;
      const line = tracked.line;
      this.#head++;
      if (outcome.ok) {
        this.sent++;
        this.shards.add(outcome.receipt.shardId);
        if (this.#ctx.globals.json === true && !this.#outputClosed) {
          const receipt = outcome.receipt;
          try {
            await this.#ctx.out(`${toJson(line === undefined ? receipt : { line, ...receipt })}\n`);
          } catch {
            // stdout closed (EPIPE): nobody reads receipts any more (the bin stops the command as well).
            this.#outputClosed = true;
          }
        }
      } else if (!this.#ctx.signal.aborted) {
        const failure = toCliError(outcome.error, {
          stream: this.#stream,
          endpoint: this.#ctx.endpoint,
        });
        this.#ctx.warn(`${line === undefined ? 'record' : `stdin line ${line}`}: ${failure.message}`);
        this.failed++;
        this.firstFailure ??= failure;
      }
    }
    if (this.#head > 4_096) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/**
 * Reads stdin line by line (blank lines skipped) until its end, a bad line (returned, and nothing
 * after it is read), or Ctrl-C.
 */
async function readStdin(
  ctx: CommandContext,
  codec: Codec,
  onItem: (item: unknown, line: number) => Promise<void>,
): Promise<CliError | undefined> {
  const lines = createInterface({ input: ctx.io.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  const onAbort = () => lines.close();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  let n = 0;
  try {
    for await (const text of lines) {
      n++;
      if (ctx.signal.aborted) break;
      if (text.trim() === '') continue;
      let item: unknown;
      try {
        item = parseItem(text, codec, `stdin line ${n}`);
      } catch (error) {
        return error as CliError;
      }
      await onItem(item, n);
    }
    return undefined;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    lines.close();
  }
}
