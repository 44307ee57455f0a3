/**
 * kinesis-mock (npm `kinesis-local`) as a child process: `node --require watchdog.cjs main.js`,
 * configured only by environment variables, on two ports it always opens on all interfaces.
 */
import { request } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ErrorCodes, ShardlineError } from '@shardline/common';
import {
  delay,
  type ManagedProcess,
  spawnNodeWithWatchdog,
  stopLoggingUnexpectedExit,
} from './child-process.js';
import type { EmulatorHandle, ResolvedLocalKinesisOptions } from './local-kinesis.js';
import { getFreePorts, isPortOpen } from './ports.js';

/** Operations kinesis-mock delays by default (500 ms each); zero makes tests fast and deterministic. */
const DURATION_VARIABLES = [
  'CREATE_STREAM_DURATION',
  'DELETE_STREAM_DURATION',
  'REGISTER_STREAM_CONSUMER_DURATION',
  'DEREGISTER_STREAM_CONSUMER_DURATION',
  'START_STREAM_ENCRYPTION_DURATION',
  'STOP_STREAM_ENCRYPTION_DURATION',
  'MERGE_SHARDS_DURATION',
  'SPLIT_SHARD_DURATION',
  'UPDATE_SHARD_COUNT_DURATION',
  'UPDATE_STREAM_MODE_DURATION',
] as const;

/** Variables kinesis-mock reads that must not leak in from the parent's environment. */
const INHERITED_VARIABLES_TO_DROP = new Set([
  'INITIALIZE_STREAMS',
  'SHARD_LIMIT',
  'ON_DEMAND_STREAM_COUNT_LIMIT',
  'AWS_ACCOUNT_ID',
  'AWS_REGION',
  'LOG_LEVEL',
  'ROOT_LOG_LEVEL',
  'LOAD_DATA_IF_EXISTS',
  'SHOULD_PERSIST_DATA',
  'PERSIST_PATH',
  'PERSIST_FILE_NAME',
  'PERSIST_INTERVAL',
]);

const BIND_FAILURE = /EADDRINUSE|Address already in use/i;
/** Attempts with fresh ports when a picked port was taken between the check and the child's bind. */
const MAX_BIND_ATTEMPTS = 3;
const HEALTH_POLL_MS = 100;
const HEALTH_REQUEST_TIMEOUT_MS = 1_000;

/** The seams the tests replace. */
export interface KinesisMockDependencies {
  getFreePorts(count: number): Promise<number[]>;
}

const defaultDependencies: KinesisMockDependencies = { getFreePorts: (count) => getFreePorts(count) };

function kinesisMockMain(): string {
  return createRequire(import.meta.url).resolve('kinesis-local');
}

function childEnvironment(
  options: ResolvedLocalKinesisOptions,
  plainPort: number,
  tlsPort: number,
  certPath: string,
) {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (INHERITED_VARIABLES_TO_DROP.has(key) || key.startsWith('KINESIS_MOCK_') || key.endsWith('_DURATION'))
      continue;
    env[key] = value;
  }
  for (const variable of DURATION_VARIABLES) env[variable] = '0ms';
  Object.assign(env, {
    KINESIS_MOCK_PLAIN_PORT: String(plainPort),
    KINESIS_MOCK_TLS_PORT: String(tlsPort),
    KINESIS_MOCK_CERT_PATH: certPath,
    SHARD_LIMIT: String(options.shardLimit),
    AWS_REGION: options.region,
    LOG_LEVEL: 'ERROR',
    ROOT_LOG_LEVEL: 'ERROR',
    SHOULD_PERSIST_DATA: 'false',
    LOAD_DATA_IF_EXISTS: 'false',
  });
  return env;
}

function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/healthcheck',
        method: 'GET',
        agent: false,
        timeout: HEALTH_REQUEST_TIMEOUT_MS,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(false));
    req.end();
  });
}

type Readiness = 'ready' | 'exited' | 'timeout';

/** Healthy on the plain port and accepting on the TLS port (a failed TLS bind ends the process late). */
async function waitUntilReady(
  child: ManagedProcess,
  plainPort: number,
  tlsPort: number,
  deadline: number,
): Promise<Readiness> {
  while (child.exitInfo === undefined) {
    if ((await healthy(plainPort)) && (await isPortOpen(tlsPort))) {
      return child.exitInfo === undefined ? 'ready' : 'exited';
    }
    if (Date.now() >= deadline) return 'timeout';
    await Promise.race([delay(HEALTH_POLL_MS), child.exited]);
  }
  return 'exited';
}

function startupError(
  message: string,
  child: ManagedProcess,
  details: Record<string, unknown>,
): ShardlineError {
  const output = child.outputTail();
  return new ShardlineError(
    ErrorCodes.INTERNAL,
    `kinesis-mock ${message}${output === '' ? ' (no output)' : `; its output ends with:\n${output}`}`,
    { details: { ...details, output } },
  );
}

/** Starts kinesis-mock and resolves when it answers; on failure nothing is left running. */
export async function startKinesisMock(
  options: ResolvedLocalKinesisOptions,
  dependencies: KinesisMockDependencies = defaultDependencies,
): Promise<EmulatorHandle> {
  const main = kinesisMockMain();
  const packageDir = dirname(main);
  const deadline = Date.now() + options.startupTimeoutMs;
  for (let attempt = 1; ; attempt++) {
    let plainPort: number;
    let tlsPort: number;
    if (options.port === undefined)
      [plainPort, tlsPort] = (await dependencies.getFreePorts(2)) as [number, number];
    else {
      plainPort = options.port;
      [tlsPort] = (await dependencies.getFreePorts(1)) as [number];
    }
    const child = spawnNodeWithWatchdog({
      name: 'kinesis-mock',
      script: main,
      // The relative default cert path (server.json) and any relative persistence path resolve here.
      cwd: packageDir,
      env: childEnvironment(options, plainPort, tlsPort, join(packageDir, 'server.json')),
    });
    const details = { plainPort, tlsPort, pid: child.pid, attempt };
    options.logger.debug(details, 'kinesis-mock spawned');
    const readiness = await waitUntilReady(child, plainPort, tlsPort, deadline);
    if (readiness === 'ready') {
      return {
        endpoint: `http://127.0.0.1:${plainPort}`,
        tlsEndpoint: `https://127.0.0.1:${tlsPort}`,
        port: plainPort,
        pid: child.pid!,
        stop: stopLoggingUnexpectedExit(child, options.logger),
      };
    }
    await child.kill();
    if (readiness === 'timeout') {
      throw startupError(
        `did not become healthy on port ${plainPort} within ${options.startupTimeoutMs} ms (startupTimeoutMs)`,
        child,
        details,
      );
    }
    const output = child.outputTail();
    // A port we picked can be taken before the child binds it: retry with others. A port the caller
    // chose is theirs to fix.
    const lostPickedPort =
      BIND_FAILURE.test(output) &&
      (options.port === undefined || !new RegExp(`:${plainPort}(?!\\d)`).test(output));
    if (!lostPickedPort || attempt >= MAX_BIND_ATTEMPTS || Date.now() >= deadline) {
      throw startupError(`${child.describeExit()} before it was ready`, child, details);
    }
    options.logger.debug(details, 'kinesis-mock lost a port race; retrying with other ports');
  }
}
