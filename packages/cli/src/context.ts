/**
 * What every command runs with: the I/O streams, the global options, the stop signal (Ctrl-C) and a
 * lazily built Kinesis client that is destroyed when the command ends.
 */
import type { Readable, Writable } from 'node:stream';
import type { KinesisClient, KinesisClientConfig } from '@aws-sdk/client-kinesis';
import { createKinesisClient } from '@shardline/common';
import type { GlobalOptions } from './kinesis.js';
import { clientConfig } from './kinesis.js';
import { write } from './output.js';

/** The process streams and environment; injectable so the CLI runs in-process too. */
export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

/** A CLI waits less for a dead endpoint than a long-running consumer does. */
const CLI_CONNECTION_TIMEOUT_MS = 5_000;

export class CommandContext {
  readonly io: CliIo;
  readonly globals: GlobalOptions;
  /** Aborted on Ctrl-C (or when stdout closes): commands stop gracefully. */
  readonly signal: AbortSignal;
  #config: KinesisClientConfig | undefined;
  #client: KinesisClient | undefined;

  constructor(io: CliIo, globals: GlobalOptions, signal: AbortSignal) {
    this.io = io;
    this.globals = globals;
    this.signal = signal;
  }

  /**
   * The Kinesis client config (see `clientConfig`), made on first use: commands that run their own
   * Kinesis (`demo`, `local`) never fail on a bad AWS_ENDPOINT_URL they do not use.
   */
  get config(): KinesisClientConfig {
    this.#config ??= clientConfig(this.globals, this.io.env);
    return this.#config;
  }

  /** The endpoint the commands talk to (for messages), once the config was made; else `--endpoint`. */
  get endpoint(): string | undefined {
    const endpoint = this.#config?.endpoint;
    return typeof endpoint === 'string' ? endpoint : this.globals.endpoint;
  }

  /** The shared client for control-plane calls (the SDK's own retries on: a CLI call should just work). */
  client(): KinesisClient {
    this.#client ??= createKinesisClient(
      { ...this.config },
      { connectionTimeoutMs: CLI_CONNECTION_TIMEOUT_MS },
    );
    return this.#client;
  }

  /** A new client with the given SDK attempts, for readers that retry on their own. The caller destroys it. */
  newClient(maxAttempts: number): KinesisClient {
    return createKinesisClient(
      { ...this.config, maxAttempts },
      { connectionTimeoutMs: CLI_CONNECTION_TIMEOUT_MS },
    );
  }

  out(text: string | Uint8Array): Promise<void> {
    return write(this.io.stdout, text);
  }

  /** A diagnostic line on stderr. */
  warn(message: string): void {
    this.io.stderr.write(`shardline: ${message}\n`);
  }

  /** A diagnostic line on stderr, only with -v. */
  debug(message: string): void {
    if (this.globals.verbose === true) this.io.stderr.write(`shardline: ${message}\n`);
  }

  close(): void {
    this.#client?.destroy();
    this.#client = undefined;
  }
}
