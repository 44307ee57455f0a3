/**
 * Child processes of the integration tests (the `shardline` CLI, the examples): output captured as it
 * arrives, an exit awaited with a deadline (a child that hangs is killed and the test fails with its
 * output), and a condition polled with a deadline.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { TestRedis } from '@shardline/testing';

/**
 * The `shardline` bin as npm links it (`npx shardline`): the committed shim, which loads the built
 * packages/cli/dist/bin.js (run `npm run build` first, as `npm test` does).
 */
export const SHARDLINE_BIN = fileURLToPath(new URL('../../packages/cli/bin/shardline.js', import.meta.url));

/** How a child ended, with all it printed. */
export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** From the spawn to the exit. */
  ms: number;
}

/** A child whose stdout and stderr so far can be read at any time. */
export type Child = ChildProcess & { out(): string; err(): string; readonly startedAt: number };

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** `'pipe'` to write to the child's stdin. @defaultValue 'ignore' */
  stdin?: 'pipe' | 'ignore';
  /**
   * A process group of its own, so that `process.kill(-child.pid, signal)` reaches it and its own
   * children, as a terminal's Ctrl-C does (e.g. through `npx`).
   * @defaultValue false
   */
  detached?: boolean;
}

/** `node ...args`, its output captured. */
export function spawnNode(args: readonly string[], options: SpawnOptions = {}): Child {
  return spawnCommand(process.execPath, args, options);
}

/** `command ...args` (no shell), its output captured. */
export function spawnCommand(command: string, args: readonly string[], options: SpawnOptions = {}): Child {
  const child = spawn(command, [...args], {
    env: options.env ?? process.env,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.detached === true ? { detached: true } : {}),
    stdio: [options.stdin ?? 'ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  return Object.assign(child, { out: () => stdout, err: () => stderr, startedAt: Date.now() });
}

/**
 * The environment of a CLI run against a local Kinesis: credentials the emulators accept (not 12
 * digits, kinesis-mock's default account), and no region or profile, so the CLI's own default applies.
 */
export function localCliEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    AWS_ACCESS_KEY_ID: 'shardline-local',
    AWS_SECRET_ACCESS_KEY: 'shardline-local',
  };
  delete env.AWS_REGION;
  delete env.AWS_DEFAULT_REGION;
  delete env.AWS_PROFILE;
  return env;
}

/** `shardline ...args` (the built CLI). */
export function spawnCli(args: readonly string[], options: SpawnOptions = {}): Child {
  return spawnNode([SHARDLINE_BIN, ...args], { env: localCliEnv(), ...options });
}

/** Resolves when the child exits; past `timeoutMs` it is SIGKILLed and this rejects with its output. */
export function exited(child: Child, timeoutMs: number, what = 'the child process'): Promise<Run> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${what} did not exit within ${timeoutMs} ms\nstdout:\n${child.out()}\nstderr:\n${child.err()}`,
        ),
      );
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout: child.out(), stderr: child.err(), ms: Date.now() - child.startedAt });
    });
  });
}

/** Polls `condition` until it holds; rejects naming `what` after `timeoutMs`. */
export async function waitUntil(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
  intervalMs = 25,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Every Redis key under `prefix:` (SCAN, so a busy shared Redis is not blocked). */
export async function keysWithPrefix(redis: TestRedis, prefix: string): Promise<string[]> {
  const client = redis.client();
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1_000);
    cursor = next;
    found.push(...keys);
  } while (cursor !== '0');
  return found;
}
