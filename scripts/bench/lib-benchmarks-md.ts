import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** BENCHMARKS.md at the repository root. */
export const BENCHMARKS_FILE = fileURLToPath(new URL('../../BENCHMARKS.md', import.meta.url));

/** `--quick` on the command line: small sizes, to check that a scenario works (figures mean nothing). */
export const QUICK = process.argv.includes('--quick');

/**
 * Where sections go: BENCHMARKS.md, except in quick mode, whose figures must not replace real ones
 * (a file in the temp folder then). `SHARDLINE_BENCH_FILE` overrides both (the runner uses it).
 */
export function benchmarksFile(): string {
  const override = process.env.SHARDLINE_BENCH_FILE;
  if (override !== undefined && override !== '') return override;
  return QUICK ? path.join(os.tmpdir(), 'shardline-BENCHMARKS.quick.md') : BENCHMARKS_FILE;
}

/** A progress line on stderr (figures go to stdout): the runner shows both. */
export function progress(message: string): void {
  process.stderr.write(`${message}\n`);
}

/**
 * Writes `section` (which opens with `## <title>`) into BENCHMARKS.md: replaces that section when it is
 * there, else appends it, leaving the other scripts' sections as they are.
 */
export function writeBenchmarkSection(title: string, section: string): void {
  const file = benchmarksFile();
  let text = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nEach section names its command, machine and date. Re-run a script to refresh its section.\n\n';
  const body = `${section.trimEnd()}\n`;
  const start = text.indexOf(`## ${title}\n`);
  if (start === -1) {
    text = `${text.trimEnd()}\n\n${body}`;
  } else {
    // A blank line before the next section, whatever the section's own ending.
    const next = text.indexOf('\n## ', start + 1);
    text = text.slice(0, start) + body + (next === -1 ? '' : `\n${text.slice(next + 1)}`);
  }
  writeFileSync(file, text);
  console.log(`${path.basename(file)}: ${title} section written${QUICK ? ` (quick mode: ${file})` : ''}`);
}
