'use strict';
/**
 * Preloaded (`node --require watchdog.cjs ...`) into every Node process @shardline/testing spawns:
 * kinesis-mock, kinesalite-server.cjs and supervise.cjs (which runs redis-server).
 *
 * The parent kills its children on stop() and on exit, but exit handlers do not run when the parent
 * is SIGKILLed (or dies of an unhandled signal). The parent spawns each child with an IPC channel; the
 * channel disconnects whenever the parent goes away, however it dies, so the child ends itself then.
 *
 * Plain CommonJS on purpose: it must run before any ESM loader, in any Node process, and it ships
 * as is (package.json "files" holds src/), resolved from both src/ and dist/ as `../src/watchdog.cjs`.
 */

// Captured before the child's own code runs: kinesis-mock (a Cats Effect app) replaces process.exit
// with a graceful shutdown that can take 30 s or hang. Nothing in these children needs saving.
const hardExit = process.exit.bind(process);

const onParentGone = () => hardExit(0);

if (typeof process.send === 'function') {
  if (!process.connected) onParentGone();
  process.on('disconnect', onParentGone);
  // Listening for 'disconnect' refs the channel; unref it so the watchdog never keeps a child alive
  // that would otherwise exit on its own (for example after failing to bind its port).
  if (process.channel !== undefined && typeof process.channel.unref === 'function') process.channel.unref();
}
