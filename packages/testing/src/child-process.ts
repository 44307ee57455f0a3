/**
 * Child processes that never outlive their parent: killed on stop(), on the parent's 'exit', and, when
 * the parent is SIGKILLed, by the watchdog preloaded into them (it exits when the IPC channel drops).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes, type Logger, ShardlineError } from '@shardline/common';

/** Bytes of a child's combined stdout + stderr kept for error messages. */
const OUTPUT_TAIL_BYTES = 8 * 1024;
/** How long kill() waits for the OS to report a SIGKILLed child gone. */
const KILL_WAIT_MS = 10_000;

/**
 * `../src/<name>` works from this module in src/ (tests, tsx) and in dist/ (the published build):
 * tsc does not copy .cjs files to dist, and package.json "files" ships src/.
 */
export function packageScriptPath(name: string): string {
  const path = fileURLToPath(new URL(`../src/${name}`, import.meta.url));
  if (!existsSync(path)) {
    throw new ShardlineError(ErrorCodes.INTERNAL, `@shardline/testing is incomplete: ${path} is missing`);
  }
  return path;
}

/** The watchdog preload for Node children: `node --require <this> script.js`. */
export function watchdogPath(): string {
  return packageScriptPath('watchdog.cjs');
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all (ENOENT, EACCES...). */
  error?: Error;
}

const live = new Set<ManagedProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' listeners must be synchronous: a signal is all we can do, and all we need.
  process.on('exit', () => {
    for (const managed of live) managed.killNow();
  });
}

export interface ManagedProcessOptions {
  /** A short name for error messages, e.g. 'kinesis-mock'. */
  name: string;
  command: string;
  args: readonly string[];
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Open an IPC channel (fd 3): needed by the watchdog and by child scripts that report back. */
  ipc?: boolean;
}

/** A spawned child with its output tail, its exit as a promise, and a guaranteed kill. */
export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves when the process ended (or failed to spawn); never rejects. */
  readonly exited: Promise<ExitInfo>;
  #exitInfo: ExitInfo | undefined;
  #output = '';
  /** Extra pids to SIGKILL with this one (a grandchild reported over IPC, e.g. redis-server). */
  readonly #extraPids = new Set<number>();

  constructor(options: ManagedProcessOptions) {
    this.name = options.name;
    installExitHook();
    this.child = spawn(options.command, [...options.args], {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: options.ipc === true ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
      windowsHide: true,
    });
    live.add(this);
    const append = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES);
    };
    // Always drain the pipes: a child blocks once a pipe buffer fills.
    this.child.stdout?.on('data', append);
    this.child.stderr?.on('data', append);
    this.exited = new Promise<ExitInfo>((resolve) => {
      const finish = (info: ExitInfo) => {
        if (this.#exitInfo !== undefined) return;
        this.#exitInfo = info;
        live.delete(this);
        for (const pid of this.#extraPids) signalQuietly(pid, 'SIGKILL');
        resolve(info);
      };
      // 'close' (not 'exit') so the output tail is complete when someone reads it.
      this.child.once('close', (code, signal) => finish({ code, signal }));
      this.child.once('error', (error) => {
        // 'error' without a pid: the spawn itself failed and no 'close' may follow.
        if (this.child.pid === undefined) finish({ code: null, signal: null, error });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Undefined while running. */
  get exitInfo(): ExitInfo | undefined {
    return this.#exitInfo;
  }

  /** The last few KiB of stdout + stderr, trimmed. */
  outputTail(): string {
    return this.#output.trim();
  }

  /**
   * Stop this child from keeping the parent's event loop alive (it is still killed when the parent
   * exits). For helpers that live as long as the process, such as a shared Redis server.
   */
  unref(): void {
    this.child.unref();
    this.child.channel?.unref();
    for (const stream of [this.child.stdout, this.child.stderr]) {
      (stream as { unref?: () => void } | null)?.unref?.();
    }
  }

  /** Kill `pid` together with this process (on kill(), on parent exit, and when this one ends). */
  addExtraPid(pid: number): void {
    this.#extraPids.add(pid);
  }

  /** SIGKILL now, without waiting. Safe to call at any time, also from an 'exit' listener. */
  killNow(): void {
    for (const pid of this.#extraPids) signalQuietly(pid, 'SIGKILL');
    if (this.#exitInfo === undefined && this.child.pid !== undefined)
      signalQuietly(this.child.pid, 'SIGKILL');
  }

  /** SIGKILL and wait until the process is gone. Idempotent. */
  async kill(): Promise<void> {
    this.killNow();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), KILL_WAIT_MS);
    });
    const outcome = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      throw new ShardlineError(
        ErrorCodes.INTERNAL,
        `${this.name} (pid ${this.child.pid}) did not exit within ${KILL_WAIT_MS} ms of SIGKILL`,
      );
    }
  }

  /** A one-line description of how the process ended, for error messages. */
  describeExit(): string {
    const info = this.#exitInfo;
    if (info === undefined) return 'is still running';
    if (info.error !== undefined) return `could not be started: ${info.error.message}`;
    return info.signal !== null ? `was killed by ${info.signal}` : `exited with code ${info.code}`;
  }
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * The stop function of a long-running child: kills it, and logs an exit that nobody asked for (the
 * caller's requests then fail with ECONNREFUSED, and the log says why).
 */
export function stopLoggingUnexpectedExit(child: ManagedProcess, logger: Logger): () => Promise<void> {
  let stopping = false;
  void child.exited.then(() => {
    if (!stopping)
      logger.error({ pid: child.pid, output: child.outputTail() }, `${child.name} ${child.describeExit()}`);
  });
  return () => {
    stopping = true;
    return child.kill();
  };
}

/** `node --require <watchdog> <script> ...args` with an IPC channel, so the child dies with us. */
export function spawnNodeWithWatchdog(
  options: Omit<ManagedProcessOptions, 'command' | 'args' | 'ipc'> & {
    script: string;
    args?: readonly string[];
  },
): ManagedProcess {
  return new ManagedProcess({
    ...options,
    command: process.execPath,
    args: ['--require', watchdogPath(), options.script, ...(options.args ?? [])],
    ipc: true,
  });
}

/** Resolves after `ms`. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
