/**
 * A server in a child process (kinesalite, dynalite) that listens on a port the OS picks and reports
 * it over IPC: `{ v: 1, type: 'listening', port }` or `{ v: 1, type: 'error', message }`. The child
 * is started with the parent-death watchdog (child-process.ts), so it never outlives the caller.
 */
import { ErrorCodes, type Logger, ShardlineError } from '@shardline/common';
import { packageScriptPath, spawnNodeWithWatchdog, stopLoggingUnexpectedExit } from './child-process.js';

/** What a listening child sends over IPC. */
export type ListeningChildMessage =
  | { v: 1; type: 'listening'; port: number }
  | { v: 1; type: 'error'; message: string };

export function isListeningChildMessage(value: unknown): value is ListeningChildMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as Record<string, unknown>;
  if (message.v !== 1) return false;
  if (message.type === 'listening') return Number.isInteger(message.port);
  if (message.type === 'error') return typeof message.message === 'string';
  return false;
}

export interface ListeningChildOptions {
  /** For messages, e.g. 'kinesalite'. */
  name: string;
  /** A .cjs script of this package's src/. */
  script: string;
  args: readonly string[];
  startupTimeoutMs: number;
  logger: Logger;
}

/** Starts the child and waits for its port; throws with its output when it fails or times out. */
export async function startListeningChild(
  o: ListeningChildOptions,
): Promise<{ port: number; pid: number; stop: () => Promise<void> }> {
  const child = spawnNodeWithWatchdog({ name: o.name, script: packageScriptPath(o.script), args: o.args });
  let timer: NodeJS.Timeout | undefined;
  let onMessage: ((message: unknown) => void) | undefined;
  const outcome = await new Promise<ListeningChildMessage | 'exited' | 'timeout'>((resolve) => {
    onMessage = (message) => {
      if (isListeningChildMessage(message)) resolve(message);
    };
    child.child.on('message', onMessage);
    void child.exited.then(() => resolve('exited'));
    timer = setTimeout(() => resolve('timeout'), o.startupTimeoutMs);
  });
  clearTimeout(timer);
  child.child.off('message', onMessage!);
  if (typeof outcome === 'object' && outcome.type === 'listening') {
    o.logger.debug({ port: outcome.port, pid: child.pid }, `${o.name} child listening`);
    return { port: outcome.port, pid: child.pid!, stop: stopLoggingUnexpectedExit(child, o.logger) };
  }
  await child.kill();
  const reason =
    outcome === 'timeout'
      ? `did not start within ${o.startupTimeoutMs} ms (startupTimeoutMs)`
      : outcome === 'exited'
        ? `${child.describeExit()} before it was ready`
        : `failed: ${outcome.message}`;
  const output = child.outputTail();
  throw new ShardlineError(
    ErrorCodes.INTERNAL,
    `${o.name} child process ${reason}${output === '' ? '' : `; its output ends with:\n${output}`}`,
    { details: { pid: child.pid, output } },
  );
}
