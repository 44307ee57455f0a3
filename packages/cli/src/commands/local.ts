/**
 * `shardline local`: a local Kinesis (kinesis-mock or kinesalite, from @shardline/testing) that keeps
 * running for other shells, the CLI's other commands and your own code, until Ctrl-C. It prints the
 * endpoint and the environment to export, and creates the streams asked for.
 */
import {
  isPortOpen,
  LOCAL_KINESIS_DEFAULTS,
  type LocalKinesis,
  type LocalKinesisEngine,
  startLocalKinesis,
} from '@shardline/testing';
import type { CommandContext } from '../context.js';
import { LOCAL_OPTION_DEFAULTS } from '../defaults.js';
import { CliError, EXIT_CODES } from '../exit.js';
import { LOCAL_CREDENTIALS } from '../kinesis.js';
import { toJson } from '../output.js';

/** `shardline local` options (after commander's parsing). */
export interface LocalOptions {
  engine: LocalKinesisEngine;
  /** The plain HTTP port; 0 picks a free one. */
  port: number;
  /** Streams to create once it runs (`--stream`, repeatable). */
  stream: string[];
  /** Shards of each stream created. */
  shards: number;
}

export const LOCAL_DEFAULTS = Object.freeze({
  ...LOCAL_OPTION_DEFAULTS,
  region: LOCAL_KINESIS_DEFAULTS.region,
  /** How often the command checks that the emulator's process is still alive. */
  aliveCheckMs: 1_000,
});

/** What `--json` prints once the local Kinesis is ready (one line). */
export interface LocalResult {
  engine: LocalKinesisEngine;
  endpoint: string;
  port: number;
  region: string;
  /** kinesis-mock only: its TLS port (self-signed; HTTP/2 and HTTP/1.1). */
  tlsEndpoint?: string;
  /** The emulator's process, when it runs in one of its own. */
  pid?: number;
  streams: Array<{ streamName: string; shards: number }>;
  /** The variables to export for the CLI, the AWS SDK and Shardline in another shell. */
  env: Record<string, string>;
}

/** The environment that points the AWS SDK (and so Shardline and this CLI) at `endpoint`. */
export function localEnvironment(endpoint: string, region: string): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_KINESIS: endpoint,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: LOCAL_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: LOCAL_CREDENTIALS.secretAccessKey,
  };
}

function humanReport(result: LocalResult): string {
  const lines = [
    `local Kinesis (${result.engine}) at ${result.endpoint}, region ${result.region}`,
    ...result.streams.map(
      (s) => `stream ${s.streamName}: ${s.shards} shard${s.shards === 1 ? '' : 's'}, ACTIVE`,
    ),
    '',
    'In another shell (the CLI needs only the first line; the AWS SDK in your own code, all four):',
    ...Object.entries(result.env).map(([name, value]) => `  export ${name}=${value}`),
    '  npx shardline list',
    '',
    'Ctrl-C stops it; its streams live in memory and go with it.',
  ];
  return `${lines.join('\n')}\n`;
}

/** Resolves when the emulator's process is gone (never for an in-process kinesalite), or on `signal`. */
function untilStopped(local: LocalKinesis, signal: AbortSignal): Promise<'interrupted' | 'exited'> {
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      clearInterval(timer);
      resolve('interrupted');
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    const pid = local.pid;
    if (pid === undefined) return;
    timer = setInterval(() => {
      try {
        // Signal 0 checks that the process exists without touching it.
        process.kill(pid, 0);
      } catch {
        clearInterval(timer);
        signal.removeEventListener('abort', onAbort);
        resolve('exited');
      }
    }, LOCAL_DEFAULTS.aliveCheckMs);
  });
}

/** `shardline local`: see the file comment. Resolves with the exit code (130 after Ctrl-C). */
export async function localCommand(ctx: CommandContext, options: LocalOptions): Promise<number> {
  const port = options.port === 0 ? undefined : options.port;
  if (port !== undefined && (await isPortOpen(port))) {
    throw new CliError(
      `local: port ${port} is in use (a local Kinesis already running?): pass --port <port>, or --port 0 for a free one`,
      EXIT_CODES.USAGE,
    );
  }
  ctx.warn(`local: starting ${options.engine}${port === undefined ? '' : ` on port ${port}`}...`);
  const local = await startLocalKinesis({
    engine: options.engine,
    region: LOCAL_DEFAULTS.region,
    ...(port === undefined ? {} : { port }),
  });
  try {
    ctx.debug(
      `local: ${options.engine} at ${local.endpoint}${local.pid === undefined ? '' : ` (pid ${local.pid})`}`,
    );
    const streams: LocalResult['streams'] = [];
    for (const name of options.stream) {
      if (ctx.signal.aborted) return EXIT_CODES.INTERRUPTED;
      await local.createStream(name, { shards: options.shards });
      streams.push({ streamName: name, shards: options.shards });
    }
    if (ctx.signal.aborted) return EXIT_CODES.INTERRUPTED;
    const result: LocalResult = {
      engine: local.engine,
      endpoint: local.endpoint,
      port: Number(new URL(local.endpoint).port),
      region: local.region,
      ...(local.tlsEndpoint === undefined ? {} : { tlsEndpoint: local.tlsEndpoint }),
      ...(local.pid === undefined ? {} : { pid: local.pid }),
      streams,
      env: localEnvironment(local.endpoint, local.region),
    };
    await ctx.out(ctx.globals.json === true ? `${toJson(result)}\n` : humanReport(result));
    const how = await untilStopped(local, ctx.signal);
    // A terminal's Ctrl-C reaches the emulator's process too (same process group): gone then is no failure.
    if (how === 'exited' && !ctx.signal.aborted) {
      throw new CliError(`local: ${local.engine} (pid ${local.pid}) exited on its own`, EXIT_CODES.FAILURE);
    }
    return EXIT_CODES.INTERRUPTED;
  } finally {
    await local.stop();
    ctx.warn(`local: ${options.engine} stopped`);
  }
}
