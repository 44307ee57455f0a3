/**
 * Writing to stdout and stderr: backpressure, JSON that never throws, plain tables.
 */
import type { Writable } from 'node:stream';

/**
 * Writes `chunk` and resolves when the stream can take more (so a slow pipe slows the command down
 * instead of buffering without bound). Rejects when the stream fails (e.g. EPIPE once the reader left).
 */
export function write(stream: Writable, chunk: string | Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed || stream.writableEnded) {
      reject(Object.assign(new Error('output closed'), { code: 'EPIPE' }));
      return;
    }
    const onError = (error: unknown) => reject(error);
    stream.once('error', onError);
    const done = () => {
      stream.off('error', onError);
      resolve();
    };
    if (stream.write(chunk)) {
      // Resolve after the write callback would be too slow for line-by-line output; 'error' still
      // rejects a later write.
      stream.off('error', onError);
      resolve();
    } else {
      stream.once('drain', done);
    }
  });
}

/** Uint8Array as base64 (also nested in decoded values, e.g. msgpack binaries), bigint as a string. */
function replacer(this: unknown, key: string, value: unknown): unknown {
  const original = (this as Record<string, unknown>)[key];
  if (original instanceof Uint8Array) return Buffer.from(original).toString('base64');
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/** `JSON.stringify` for output: bytes as base64, bigints as strings, never throws on those. */
export function toJson(value: unknown, indent?: number): string {
  return JSON.stringify(value, replacer, indent);
}

/** A plain text table: columns padded to their widest cell, two spaces apart. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}
