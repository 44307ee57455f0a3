/**
 * The `shardline` program: commander setup, global options, and the mapping of every outcome to an
 * exit code (see EXIT_CODES). Usage errors print commander's message; other errors print one line
 * (`shardline: <message>`), with the stack only under -v.
 */
import { createRequire } from 'node:module';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import type { DemoOptions } from './commands/demo.js';
import type { FanOutDeregisterOptions } from './commands/fanout.js';
import type { LocalOptions } from './commands/local.js';
import type { PutOptions } from './commands/put.js';
import type { StatusOptions } from './commands/status.js';
import type { TailOptions } from './commands/tail.js';
import type { CliIo, CommandContext } from './context.js';
import { CODEC_NAMES, DEMO_DEFAULTS, LOCAL_OPTION_DEFAULTS, STATUS_DEFAULTS } from './defaults.js';
import { endpointProblem } from './endpoint.js';
import { EXIT_CODES } from './exit-codes.js';
import type { GlobalOptions } from './kinesis.js';

// Only commander and the dependency-free modules above load up front: a command's module (and with it
// the AWS SDK and the library) loads when the command runs, so `--help` and usage errors answer at once.

export type { CliIo } from './context.js';

/** The environment the Kinesis commands read, for `shardline --help`. */
const ENVIRONMENT_HELP = `
Environment:
  AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL
      the endpoint without --endpoint (the AWS SDK's own variables; AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true
      ignores them)
  AWS_REGION
      the region without --region (us-east-1 when there is an endpoint)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ...
      credentials (the AWS SDK's default chain). For an endpoint on this machine (localhost, 127.x, ::1)
      with neither AWS_ACCESS_KEY_ID nor AWS_PROFILE set: dummy credentials, which local emulators accept.

A local Kinesis for the other commands: shardline local (then export what it prints).`;

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

function parseEndpoint(value: string): string {
  // commander quotes the value itself ("argument 'localhost:4567' is invalid"): only say what is wrong.
  const problem = endpointProblem(value);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return value;
}

function parseCount(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(n) || n < 1) {
    throw new InvalidArgumentError('must be an integer >= 1');
  }
  return n;
}

function parseShardCount(value: string): number {
  const n = parseCount(value);
  // The demo runs one local emulator on this machine: more shards only make it slower to watch.
  if (n > 64) throw new InvalidArgumentError('must be an integer from 1 to 64');
  return n;
}

function parseHostCount(value: string): number {
  const n = parseCount(value);
  if (n > DEMO_DEFAULTS.maxHosts)
    throw new InvalidArgumentError(`must be an integer from 1 to ${DEMO_DEFAULTS.maxHosts}`);
  return n;
}

function parsePort(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n < 1 || n > 65_535)
    throw new InvalidArgumentError('must be a port from 1 to 65535');
  return n;
}

function parseListenPort(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+$/.test(value) || n > 65_535)
    throw new InvalidArgumentError('must be a port from 1 to 65535, or 0 for a free one');
  return n;
}

/** Kinesis stream names: 1 to 128 of a-z, A-Z, 0-9, `_`, `.` and `-`. */
function collectStreamName(value: string, previous: string[]): string[] {
  if (!/^[a-zA-Z0-9_.-]{1,128}$/.test(value)) {
    throw new InvalidArgumentError('must be a stream name: 1 to 128 letters, digits, _ . or -');
  }
  return [...previous, value];
}

function parseWatchSeconds(value: string): number {
  const n = Number(value);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(value) || !(n >= 0.5 && n <= 3600)) {
    throw new InvalidArgumentError('must be a number of seconds from 0.5 to 3600');
  }
  return n;
}

function parseTimestamp(value: string): Date {
  const date = new Date(value);
  if (value.trim() === '' || Number.isNaN(date.getTime())) {
    throw new InvalidArgumentError('must be an ISO 8601 date, e.g. 2026-01-31T12:00:00Z');
  }
  return date;
}

function codecOption(): Option {
  return new Option('--codec <name>', 'codec of the record payloads')
    .choices([...CODEC_NAMES])
    .default('json');
}

/**
 * Runs `shardline` with `argv` (the user's arguments, without node and the script) and resolves with
 * the exit code. Never rejects. `signal` aborting (Ctrl-C) stops the command gracefully: 130.
 */
export async function runCli(argv: readonly string[], io: CliIo, signal: AbortSignal): Promise<number> {
  let exitCode: number = EXIT_CODES.OK;
  let ctx: CommandContext | undefined;
  let stream: string | undefined;
  const program = new Command('shardline');

  const run =
    <A extends unknown[]>(fn: (ctx: CommandContext, ...args: A) => Promise<number>) =>
    async (...args: A) => {
      // commander passes (...arguments, options, command): the command is last.
      const command = args[args.length - 1] as Command;
      const first = args[0];
      stream = typeof first === 'string' ? first : undefined;
      const { CommandContext } = await import('./context.js');
      ctx = new CommandContext(io, command.optsWithGlobals<GlobalOptions>(), signal);
      exitCode = await fn(ctx, ...args);
    };

  program
    .description('Inspect, read and write Amazon Kinesis data streams.')
    .version(version, '-V, --version')
    .option(
      '--endpoint <url>',
      'Kinesis endpoint, e.g. http://127.0.0.1:4567 for a local Kinesis (default: AWS_ENDPOINT_URL_KINESIS, else AWS_ENDPOINT_URL); on this machine (localhost, 127.x, ::1) dummy credentials unless AWS_ACCESS_KEY_ID or AWS_PROFILE is set',
      parseEndpoint,
    )
    .option('--region <region>', 'AWS region (default: AWS_REGION, else us-east-1 with an endpoint)')
    .option('--json', 'machine-readable output')
    .option('-v, --verbose', 'diagnostics on stderr, stacks with errors')
    .exitOverride()
    .showHelpAfterError('shardline: run with --help for usage')
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // commander words its usage errors "error: ...": every diagnostic of this program says "shardline: ".
      outputError: (text, write) => write(text.replace(/^error: /, 'shardline: ')),
    })
    .addHelpText('after', ENVIRONMENT_HELP);

  program
    .command('list')
    .description('list the streams')
    .action(run(async (c) => (await import('./commands/list.js')).listCommand(c)));

  program
    .command('describe')
    .description('show a stream and its shards: parents, hash key ranges, open or closed')
    .argument('<stream>', 'stream name')
    .action(
      run(async (c, name: string) => (await import('./commands/describe.js')).describeCommand(c, name)),
    );

  program
    .command('tail')
    .description('print the records of a stream, one JSON line each (stops when caught up unless --follow)')
    .argument('<stream>', 'stream name')
    .addOption(
      new Option(
        '--from <position>',
        'where to start (default: latest with --follow, else trim-horizon)',
      ).choices(['trim-horizon', 'latest', 'timestamp']),
    )
    .option('--timestamp <iso>', 'start at this arrival time (implies --from timestamp)', parseTimestamp)
    .addOption(
      new Option('--format <format>', 'output format')
        .choices(['json', 'json-pretty', 'raw'])
        .default('json'),
    )
    .addOption(codecOption())
    .option('-n, --count <count>', 'stop after this many records', parseCount)
    .option('-f, --follow', 'keep reading new records until Ctrl-C')
    .action(
      run(async (c, name: string, options: TailOptions) =>
        (await import('./commands/tail.js')).tailCommand(c, name, options),
      ),
    );

  program
    .command('put')
    .description('put one record (--data) or one record per stdin line (JSON for JSON codecs)')
    .argument('<stream>', 'stream name')
    .option('--data <value>', 'the record (JSON for the json, jsonl, msgpack and json-array codecs)')
    .option('-k, --partition-key <key>', 'partition key of every record (default: a random key per record)')
    .option('--aggregate', 'KPL-aggregate the records')
    .addOption(codecOption())
    .action(
      run(async (c, name: string, options: PutOptions) =>
        (await import('./commands/put.js')).putCommand(c, name, options),
      ),
    );

  program
    .command('status')
    .description(
      "a consumer group's leases in Redis: owner, counter, checkpoint, expiry and lag per shard, live hosts",
    )
    .argument('<stream>', 'stream name')
    .requiredOption('--group <group>', 'consumer group')
    .requiredOption('--redis <url>', 'Redis holding the leases, e.g. redis://127.0.0.1:6379')
    .option('--key-prefix <prefix>', 'prefix of the lease keys (leases.keyPrefix)', STATUS_DEFAULTS.keyPrefix)
    .option(
      '--watch [seconds]',
      `redraw every N seconds until Ctrl-C (default ${STATUS_DEFAULTS.watchIntervalSeconds})`,
      parseWatchSeconds,
    )
    .action(
      run(async (c, name: string, options: StatusOptions) =>
        (await import('./commands/status.js')).statusCommand(c, name, options),
      ),
    );

  const fanout = program
    .command('fanout')
    .description('enhanced fan-out consumers of a stream: list them, deregister one (never automatic)');
  fanout
    .command('list')
    .description('list the registered consumers of a stream')
    .argument('<stream>', 'stream name or ARN')
    .action(
      run(async (c, name: string) => (await import('./commands/fanout.js')).fanOutListCommand(c, name)),
    );
  fanout
    .command('deregister')
    .description('deregister a consumer (every reader subscribed with it stops receiving)')
    .argument('<stream>', 'stream name or ARN')
    .requiredOption('--consumer <name>', 'the consumer name (fanOut.consumerName)')
    .action(
      run(async (c, name: string, options: FanOutDeregisterOptions) =>
        (await import('./commands/fanout.js')).fanOutDeregisterCommand(c, name, options),
      ),
    );

  program
    .command('local')
    .description(
      'run a local Kinesis (kinesis-mock or kinesalite) until Ctrl-C: prints its endpoint and the environment to export',
    )
    .addOption(
      new Option('--engine <engine>', 'the emulator')
        .choices(['kinesis-mock', 'kinesalite'])
        .default(LOCAL_OPTION_DEFAULTS.engine),
    )
    .option(
      '--port <port>',
      'port of its endpoint (0: a free one)',
      parseListenPort,
      LOCAL_OPTION_DEFAULTS.port,
    )
    .addOption(
      new Option('--stream <name>', 'create this stream once it runs (repeatable)')
        .argParser(collectStreamName)
        .default([], 'none'),
    )
    .option('--shards <n>', 'shards of each --stream', parseCount, LOCAL_OPTION_DEFAULTS.shards)
    .action(
      run(async (c, options: LocalOptions) => (await import('./commands/local.js')).localCommand(c, options)),
    );

  program
    .command('demo')
    .description(
      'run a local Kinesis, a producer and a consumer with a shard split half-way, and check that every record arrived in order',
    )
    .option('--records <n>', 'records to produce', parseCount, DEMO_DEFAULTS.records)
    .option(
      '--shards <n>',
      'shards of the stream (one is split half-way)',
      parseShardCount,
      DEMO_DEFAULTS.shards,
    )
    .option('--rate <n>', 'records per second', parseCount, DEMO_DEFAULTS.rate)
    .option('--no-redis', 'in-memory leases even when a Redis answers (REDIS_URL, else 127.0.0.1:6379)')
    .option(
      '--hosts <n>',
      `coordinator host processes sharing Redis leases, 1 to ${DEMO_DEFAULTS.maxHosts} (more than 1 needs Redis)`,
      parseHostCount,
      DEMO_DEFAULTS.hosts,
    )
    .option('--kill-one', 'SIGKILL one host part-way and show its shards move (needs --hosts 2 or more)')
    .option(
      '--metrics-port <port>',
      'serve GET /metrics (Prometheus text) on 127.0.0.1:<port> during the run',
      parsePort,
    )
    .action(
      run(async (c, options: DemoOptions) => (await import('./commands/demo.js')).demoCommand(c, options)),
    );

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; every usage error (already printed by commander) exits 2.
      return error.exitCode === 0 ? EXIT_CODES.OK : EXIT_CODES.USAGE;
    }
    if (signal.aborted) return EXIT_CODES.INTERRUPTED;
    const verbose = ctx?.globals.verbose === true || argv.includes('-v') || argv.includes('--verbose');
    const { toCliError } = await import('./exit.js');
    const failure = toCliError(error, { stream, endpoint: ctx?.endpoint });
    io.stderr.write(`shardline: ${failure.message}\n`);
    if (verbose) {
      const original = failure.cause ?? failure;
      io.stderr.write(`${(original as Error).stack ?? String(original)}\n`);
    }
    return failure.exitCode;
  } finally {
    ctx?.close();
  }
  return signal.aborted ? EXIT_CODES.INTERRUPTED : exitCode;
}
