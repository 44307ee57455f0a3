export type { CliIo } from './cli.js';
export { runCli } from './cli.js';
export { CliError, EXIT_CODES } from './exit.js';
