#!/usr/bin/env node
import { runCli } from './cli.js';

// The SDK warns on stderr about its future Node.js requirement; that is noise in a command's output.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

const controller = new AbortController();
let interrupted = false;
process.on('SIGINT', () => {
  // The first Ctrl-C stops gracefully; a second one does not wait.
  if (interrupted) process.exit(130);
  interrupted = true;
  controller.abort();
});
// A closed pipe (`shardline tail s | head`) is not an error: stop reading.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') controller.abort();
});

const code = await runCli(
  process.argv.slice(2),
  {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
  },
  controller.signal,
);
// Aborted only because stdout closed: the reader left, which is not a failure.
process.exitCode = !interrupted && code === 130 ? 0 : code;
// Everything is closed by now; should a socket linger, it must not keep the process alive.
setTimeout(() => process.exit(process.exitCode), 2_000).unref();
