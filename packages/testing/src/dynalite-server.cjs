'use strict';
/**
 * Runs dynalite (an in-memory DynamoDB) in a child process for startLocalDynamoDb(). Started as
 * `node --require watchdog.cjs dynalite-server.cjs '<options JSON>'` with an IPC channel. Listens on a
 * port the OS picks (no port race) and reports it:
 *   { v: 1, type: 'listening', port }   or   { v: 1, type: 'error', message }
 */

const dynalite = require('dynalite');

function send(message, then) {
  if (typeof process.send === 'function' && process.connected) process.send(message, then);
  else if (then !== undefined) then();
}

const options = JSON.parse(process.argv[2] || '{}');
// Tables change state at once: callers wait on ACTIVE, never on dynalite's 500 ms defaults.
const server = dynalite({ createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });

server.on('error', (error) => {
  process.stderr.write(`dynalite: ${error.stack || error}\n`);
  send({ v: 1, type: 'error', message: String(error.message || error) }, () => process.exit(1));
});

server.listen(options.port || 0, options.host || '127.0.0.1', () => {
  send({ v: 1, type: 'listening', port: server.address().port });
});
