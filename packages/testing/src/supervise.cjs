'use strict';
/**
 * Runs a non-Node program (redis-server) so that it dies with the process that asked for it.
 * Started as `node --require watchdog.cjs supervise.cjs <command> [...args]` with an IPC channel:
 * reports `{ v: 1, type: 'spawned', pid }`, exits with the program's exit code, and SIGKILLs the
 * program whenever it exits itself (the watchdog exits it when the parent is gone).
 */

const { spawn } = require('node:child_process');
const { constants } = require('node:os');

const [command, ...args] = process.argv.slice(2);
if (command === undefined) {
  process.stderr.write('usage: supervise.cjs <command> [...args]\n');
  process.exit(2);
}

const child = spawn(command, args, { stdio: ['ignore', 'inherit', 'inherit'] });

process.on('exit', () => {
  if (child.exitCode === null && child.signalCode === null) {
    try {
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
});
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) {
  process.on(signal, () => process.exit(128 + constants.signals[signal]));
}

child.once('spawn', () => {
  if (typeof process.send === 'function' && process.connected)
    process.send({ v: 1, type: 'spawned', pid: child.pid });
});
child.once('error', (error) => {
  process.stderr.write(`${command}: ${error.message}\n`);
  process.exit(127);
});
child.once('exit', (code, signal) => {
  process.exit(code !== null ? code : 128 + (constants.signals[signal] || 0));
});
