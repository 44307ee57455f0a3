'use strict';
/**
 * Runs kinesalite in a child process for startLocalKinesis({ engine: 'kinesalite', inProcess: false }).
 * Started as `node --require watchdog.cjs kinesalite-server.cjs '<options JSON>'` with an IPC channel.
 * Listens on a port the OS picks (no port race) and reports it:
 *   { v: 1, type: 'listening', port }   or   { v: 1, type: 'error', message }
 */

const kinesalite = require('kinesalite');

function send(message, then) {
  if (typeof process.send === 'function' && process.connected) process.send(message, then);
  else if (then !== undefined) then();
}

const options = JSON.parse(process.argv[2] || '{}');
const server = kinesalite({
  createStreamMs: options.createStreamMs,
  deleteStreamMs: options.deleteStreamMs,
  updateStreamMs: options.updateStreamMs,
  shardLimit: options.shardLimit,
});

server.on('error', (error) => {
  process.stderr.write(`kinesalite: ${error.stack || error}\n`);
  send({ v: 1, type: 'error', message: String(error.message || error) }, () => process.exit(1));
});

server.listen(options.port || 0, options.host || '127.0.0.1', () => {
  send({ v: 1, type: 'listening', port: server.address().port });
});
