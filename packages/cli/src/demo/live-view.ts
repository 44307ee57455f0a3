/**
 * The demo's progress on stderr. On a terminal: a block (totals, then one row per shard, then the
 * hosts) redrawn in place, with phase messages printed above it. Elsewhere (a pipe, a log file): one
 * plain line per refresh, and phase messages as they come.
 */
import type { Writable } from 'node:stream';
import type { DemoShardView } from './hosts.js';

/** What one refresh shows. */
export interface ProgressSnapshot {
  elapsedMs: number;
  produced: number;
  requested: number;
  consumed: number;
  duplicates: number;
  shards: readonly DemoShardView[];
  /** With --hosts: records handled per host (a killed host marked). */
  hosts?: ReadonlyArray<{ hostId: string; records: number; killed: boolean; reading: number }>;
}

/** Shard rows in the terminal block at most. */
export const MAX_SHARD_ROWS = 20;

export function shortShardId(shardId: string): string {
  return `#${Number(shardId.replace(/^shardId-/, ''))}`;
}

function lagText(shard: DemoShardView): string {
  return shard.state === 'reading' && shard.millisBehindLatest !== undefined
    ? `${(shard.millisBehindLatest / 1000).toFixed(1)}s`
    : '-';
}

function bar(done: number, total: number, width: number): string {
  const filled = total === 0 ? width : Math.min(width, Math.round((done / total) * width));
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** The terminal block, one string per line. */
export function progressBlock(p: ProgressSnapshot): string[] {
  const secs = `${(p.elapsedMs / 1000).toFixed(1)}s`;
  const lines = [
    `demo ${secs}  produced ${bar(p.produced, p.requested, 20)} ${p.produced}/${p.requested}  consumed ${bar(p.consumed, p.requested, 20)} ${p.consumed}  dup ${p.duplicates}`,
    `  ${'shard'.padEnd(6)} ${'state'.padEnd(18)} ${'owner'.padEnd(8)} ${'lag'.padStart(6)} ${'records'.padStart(8)}`,
  ];
  // The block is redrawn by moving the cursor up over it: it must fit on a terminal.
  for (const s of p.shards.slice(0, MAX_SHARD_ROWS)) {
    lines.push(
      `  ${shortShardId(s.shardId).padEnd(6)} ${s.state.padEnd(18)} ${(s.owner ?? '-').padEnd(8)} ${lagText(s).padStart(6)} ${String(s.recordsDelivered).padStart(8)}`,
    );
  }
  if (p.shards.length > MAX_SHARD_ROWS) lines.push(`  ... ${p.shards.length - MAX_SHARD_ROWS} more shards`);
  if (p.hosts !== undefined) {
    lines.push(
      `  hosts: ${p.hosts
        .map(
          (h) =>
            `${h.hostId} ${h.killed ? 'KILLED' : `${h.reading} shard${h.reading === 1 ? '' : 's'}`}, ${h.records} rec`,
        )
        .join(' | ')}`,
    );
  }
  return lines;
}

/** The plain line for a pipe. */
export function progressLine(p: ProgressSnapshot): string {
  const parts = [
    `${(p.elapsedMs / 1000).toFixed(1).padStart(5)}s`,
    `produced ${p.produced}/${p.requested}`,
    `consumed ${p.consumed}`,
    `dup ${p.duplicates}`,
    `leases ${p.shards.filter((s) => s.state === 'reading').length}`,
    `| ${p.shards.map((s) => `${shortShardId(s.shardId)} ${s.state}${s.owner === undefined ? '' : `@${s.owner}`}${lagText(s) === '-' ? '' : ` ${lagText(s)}`}`).join(', ')}`,
  ];
  if (p.hosts !== undefined) {
    parts.push(`| ${p.hosts.map((h) => `${h.hostId} ${h.killed ? 'killed' : h.records}`).join(', ')}`);
  }
  return `shardline: demo: ${parts.join('  ')}`;
}

export class LiveView {
  readonly #out: Writable;
  readonly #tty: boolean;
  /** Lines of the block on screen now (to erase before the next draw). */
  #drawn = 0;
  #last: ProgressSnapshot | undefined;

  constructor(out: Writable) {
    this.#out = out;
    this.#tty = (out as { isTTY?: boolean }).isTTY === true;
  }

  get interactive(): boolean {
    return this.#tty;
  }

  #erase(): string {
    // Up to the block's first line, then clear to the end of the screen.
    const text = this.#drawn === 0 ? '' : `\x1b[${this.#drawn}F\x1b[0J`;
    this.#drawn = 0;
    return text;
  }

  #draw(p: ProgressSnapshot): string {
    const lines = progressBlock(p);
    this.#drawn = lines.length;
    return `${lines.join('\n')}\n`;
  }

  /** A refresh: the block redrawn on a terminal, a plain line otherwise. */
  update(p: ProgressSnapshot): void {
    this.#last = p;
    if (this.#tty) this.#out.write(`${this.#erase()}${this.#draw(p)}`);
    else this.#out.write(`${progressLine(p)}\n`);
  }

  /** A phase message (`shardline: <message>`): above the block on a terminal. */
  message(text: string): void {
    const line = `shardline: ${text}\n`;
    if (this.#tty && this.#drawn > 0 && this.#last !== undefined) {
      this.#out.write(`${this.#erase()}${line}${this.#draw(this.#last)}`);
    } else {
      this.#out.write(line);
    }
  }

  /** Leaves the last block on screen as it is and stops redrawing it. */
  finish(): void {
    this.#drawn = 0;
  }
}
