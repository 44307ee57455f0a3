/**
 * Runs the benchmark scenarios one after another and rewrites BENCHMARKS.md.
 *
 *   npm run bench                       every scenario
 *   npm run bench -- consumer scale     only those (names are file names without `.ts`)
 *   npm run bench -- --quick            small sizes: checks that the scripts work; writes to a temp file
 *   npm run bench -- --list             names the scenarios
 *
 * A scenario is every `scripts/bench/*.ts` except `run.ts` and `lib-*.ts`, so a new script is picked up
 * without being registered. Each runs as a child process (`node <tsx flags> <script> [--quick]`), so one
 * scenario's emulators, threads and heap never weigh on the next; its stdout (figures) and stderr
 * (progress) are shown prefixed with the scenario, its rank and the elapsed time. Each scenario writes
 * its own section; this runner writes the header: machine, date, command and wall times.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { BENCHMARKS_FILE } from './lib-benchmarks-md.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
/** A scenario silent this long gets a "still running" line, so a long phase does not look hung. */
const HEARTBEAT_MS = 30_000;

function scenarios(): string[] {
  return readdirSync(BENCH_DIR)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts') && f !== 'run.ts' && !f.startsWith('lib-'))
    .map((f) => f.slice(0, -3))
    .sort();
}

function clock(ms: number): string {
  const s = Math.round(ms / 1_000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

function osName(): string {
  try {
    const release = readFileSync('/etc/os-release', 'utf8').match(/^PRETTY_NAME="?([^"\n]*)"?/m)?.[1];
    if (release !== undefined) return `${release} (${os.type()} ${os.release()}, ${os.arch()})`;
  } catch {
    // Not Linux, or no os-release: the kernel names it.
  }
  return `${os.type()} ${os.release()} (${os.arch()})`;
}

function machine(): string {
  const cpus = os.cpus();
  const memGiB = (os.totalmem() / 1024 ** 3).toFixed(1);
  return `${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ${memGiB} GiB memory, Node ${process.version}, ${osName()}`;
}

let current: ChildProcess | undefined;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    // The scenario's own handlers stop its emulators and hosts; it gets the same signal.
    if (current?.pid !== undefined && current.exitCode === null) current.kill(signal);
    process.exitCode = 130;
  });
}

interface Outcome {
  name: string;
  ms: number;
  code: number | null;
  signal: NodeJS.Signals | null;
}

async function runScenario(
  name: string,
  rank: number,
  total: number,
  quick: boolean,
  file: string,
  runStart: number,
): Promise<Outcome> {
  const started = Date.now();
  const child = spawn(
    process.execPath,
    [...process.execArgv, path.join(BENCH_DIR, `${name}.ts`), ...(quick ? ['--quick'] : [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        SHARDLINE_BENCH_FILE: file,
        // The SDK's 8-line notice that its 2027 releases need Node 22 (the repo pins a release that runs on
        // Node 20), printed by every process and worker thread, would drown the progress lines.
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED:
          process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ?? 'true',
      },
    },
  );
  current = child;
  let lastLine = Date.now();
  const tag = () =>
    `[${rank}/${total} ${name} ${clock(Date.now() - started)}, total ${clock(Date.now() - runStart)}]`;
  const show = (stream: NodeJS.WriteStream) => (line: string) => {
    lastLine = Date.now();
    stream.write(`${tag()} ${line}\n`);
  };
  createInterface({ input: child.stdout! }).on('line', show(process.stdout));
  createInterface({ input: child.stderr! }).on('line', show(process.stderr));
  const heartbeat = setInterval(() => {
    if (Date.now() - lastLine >= HEARTBEAT_MS) {
      lastLine = Date.now();
      process.stderr.write(`${tag()} (still running)\n`);
    }
  }, 1_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
    child.once('exit', (c, s) => resolve([c, s])),
  );
  clearInterval(heartbeat);
  current = undefined;
  return { name, ms: Date.now() - started, code, signal };
}

function writeHeader(file: string, command: string, outcomes: readonly Outcome[], totalMs: number): void {
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const firstSection = text.search(/^## /m);
  const sections = firstSection === -1 ? '' : text.slice(firstSection);
  const failed = outcomes.filter((o) => o.code !== 0);
  const header = [
    '# Benchmarks',
    '',
    `Last run: \`${command}\` on ${new Date().toISOString()}, wall time ${clock(totalMs)} ` +
      `(${outcomes.map((o) => `${o.name} ${clock(o.ms)}${o.code === 0 ? '' : ' FAILED'}`).join(', ')}).`,
    '',
    `Machine: ${machine()}. The machine may be shared with other work: expect figures to vary by 10-20% between runs.`,
    '',
    "Run `npx tsc -b` first (the scripts use the packages' `dist/`); `npm run bench` does. Each section names " +
      'the scenario, its date and its standalone command (`npx tsx scripts/bench/<name>.ts`); every ratio in a ' +
      'section compares figures measured in the same run. Sections not refreshed by the last run keep their own date.' +
      (failed.length > 0
        ? ` Failed in the last run (sections not refreshed): ${failed.map((o) => o.name).join(', ')}.`
        : ''),
    '',
  ].join('\n');
  writeFileSync(file, `${header}\n${sections}`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quick = args.includes('--quick');
  const all = scenarios();
  if (args.includes('--list')) {
    console.log(all.join('\n'));
    return;
  }
  const unknownFlags = args.filter((a) => a.startsWith('-') && a !== '--quick');
  const wanted = args.filter((a) => !a.startsWith('-')).map((a) => a.replace(/\.ts$/, ''));
  const unknown = wanted.filter((w) => !all.includes(w));
  if (unknownFlags.length > 0 || unknown.length > 0) {
    console.error(
      `unknown ${unknown.length > 0 ? `scenario ${unknown.join(', ')}` : `flag ${unknownFlags.join(', ')}`}; ` +
        `scenarios: ${all.join(', ')}; flags: --quick, --list`,
    );
    process.exitCode = 2;
    return;
  }
  const chosen = wanted.length > 0 ? all.filter((s) => wanted.includes(s)) : all;
  const command = ['npm run bench', ...(args.length > 0 ? ['--', ...args] : [])].join(' ');
  // Quick figures mean nothing: they go to a fresh temp file, never into BENCHMARKS.md.
  const file = quick ? path.join(os.tmpdir(), 'shardline-BENCHMARKS.quick.md') : BENCHMARKS_FILE;
  if (quick) rmSync(file, { force: true });
  console.log(`${command}: ${chosen.length} scenario(s): ${chosen.join(', ')}; writing ${file}`);
  console.log(`machine: ${machine()}`);

  const runStart = Date.now();
  const outcomes: Outcome[] = [];
  for (const [n, name] of chosen.entries()) {
    if (process.exitCode === 130) break;
    process.stderr.write(
      `[${n + 1}/${chosen.length} ${name}] starting, total ${clock(Date.now() - runStart)}\n`,
    );
    const outcome = await runScenario(name, n + 1, chosen.length, quick, file, runStart);
    outcomes.push(outcome);
    const how = outcome.code === 0 ? 'done' : `FAILED (${outcome.signal ?? `exit code ${outcome.code}`})`;
    process.stderr.write(`[${n + 1}/${chosen.length} ${name}] ${how} in ${clock(outcome.ms)}\n`);
  }
  const totalMs = Date.now() - runStart;
  if (process.exitCode === 130) {
    // Interrupted: the header keeps describing the last complete run.
    console.log(`interrupted after ${clock(totalMs)}; ${path.basename(file)} header left as it was`);
    return;
  }
  writeHeader(file, command, outcomes, totalMs);
  console.log(`wall time ${clock(totalMs)}: ${outcomes.map((o) => `${o.name} ${clock(o.ms)}`).join(', ')}`);
  console.log(`written: ${file}`);
  if (outcomes.some((o) => o.code !== 0) && process.exitCode !== 130) process.exitCode = 1;
}

await main();
