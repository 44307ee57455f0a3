import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/**
 * Writes `section` (which opens with `## <title>`) into BENCHMARKS.md: replaces that section when it is
 * there, else appends it, leaving the other scripts' sections as they are.
 */
export function writeBenchmarkSection(title: string, section: string): void {
  const file = new URL('../../BENCHMARKS.md', import.meta.url);
  let text = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# Benchmarks\n\nEach section names its command, machine and date. Re-run a script to refresh its section.\n\n';
  const start = text.indexOf(`## ${title}\n`);
  if (start === -1) {
    text = `${text.trimEnd()}\n\n${section}`;
  } else {
    const next = text.indexOf('\n## ', start + 1);
    text = text.slice(0, start) + section + (next === -1 ? '' : text.slice(next + 1));
  }
  writeFileSync(file, text);
  console.log(`BENCHMARKS.md: ${title} section written`);
}
