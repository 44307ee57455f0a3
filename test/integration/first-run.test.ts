/**
 * A newcomer's first run, on a fresh `git clone` of this repository, as the README says it: the quick
 * start (`npm ci && npm start`), then `npx shardline ...`, and the README's "CLI against a local
 * Kinesis" section (`npx shardline local` in one shell; `export AWS_ENDPOINT_URL_KINESIS=...` and
 * `npx shardline list` in another, with no AWS settings at all).
 *
 * The clone holds the HEAD commit: uncommitted changes are not in it (commit before running this).
 * About 45 s, most of it `npm ci` (from npm's cache when it has the packages).
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { type Child, exited, type Run, spawnCommand, waitUntil } from '../support/child.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const NPM_CI_TIMEOUT_MS = 120_000;
const COMMAND_TIMEOUT_MS = 60_000;

/** A newcomer's shell: no AWS variable (no endpoint, region or credentials), no npm script context. */
function newcomerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    // The CA bundle is the machine's, not an AWS setting; npm_* come from `npm test` running this.
    if ((name.startsWith('AWS_') && name !== 'AWS_CA_BUNDLE') || name.startsWith('npm_')) continue;
    env[name] = value;
  }
  return env;
}

describe('first run on a fresh clone (README quick start, npx shardline)', function () {
  this.timeout(NPM_CI_TIMEOUT_MS + 4 * COMMAND_TIMEOUT_MS);
  let dir: string;
  let clone: string;
  const children: Child[] = [];
  const env = newcomerEnv();

  /** `command ...args` in the clone, in a process group of its own (so Ctrl-C can reach all of it). */
  const start = (command: string, args: readonly string[], extraEnv: NodeJS.ProcessEnv = {}): Child => {
    const child = spawnCommand(command, args, { cwd: clone, env: { ...env, ...extraEnv }, detached: true });
    children.push(child);
    return child;
  };
  const run = (
    command: string,
    args: readonly string[],
    options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
  ): Promise<Run> =>
    exited(
      start(command, args, options.env),
      options.timeoutMs ?? COMMAND_TIMEOUT_MS,
      [command, ...args].join(' '),
    );
  const ok = (r: Run, what: string) =>
    expect(r.code, `${what}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).to.equal(0);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shardline-first-run-'));
    clone = join(dir, 'shardline');
    const head = execFileSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
    execFileSync('git', ['clone', '--quiet', ROOT, clone]);
    execFileSync('git', ['-C', clone, 'checkout', '--quiet', '--detach', head]);
    ok(
      await run('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline'], {
        timeoutMs: NPM_CI_TIMEOUT_MS,
      }),
      'npm ci',
    );
  });
  after(async () => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(-child.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('npm ci links the shardline bin; npm start builds and runs the demo; then npx shardline works', async () => {
    // Linked before anything is built: it says what to do (not npx's "could not determine executable").
    const early = await run('npx', ['shardline', '--help']);
    expect(early.code, early.stderr).to.equal(1);
    expect(early.stderr).to.match(/^shardline: the CLI is not built .*: run `npm run build` first\n$/);

    // The quick start's `npm start` (build, then the demo), smaller so that it stays quick.
    const demo = await run('npm', ['start', '--', '--records', '200', '--no-redis']);
    ok(demo, 'npm start');
    expect(demo.stdout).to.match(/^shardline demo: OK$/m);

    const help = await run('npx', ['shardline', '--help']);
    ok(help, 'npx shardline --help');
    expect(help.stdout).to.match(/^Usage: shardline /);
    expect(help.stdout).to.match(/^ {2}local \[options\] /m);
    expect(help.stdout).to.include('AWS_ENDPOINT_URL_KINESIS');
    const version = await run('npx', ['shardline', '--version']);
    ok(version, 'npx shardline --version');
    expect(version.stdout.trim()).to.match(/^\d+\.\d+\.\d+/);
  });

  it('npx shardline local in one shell, npx shardline list in another with only AWS_ENDPOINT_URL_KINESIS set', async () => {
    // Built by the test before; `tsc -b` on a built tree is a no-op.
    ok(await run('npm', ['run', 'build']), 'npm run build');
    const local = start('npx', [
      'shardline',
      'local',
      '--port',
      '0',
      '--stream',
      'orders',
      '--shards',
      '2',
      '--json',
    ]);
    const done = exited(local, COMMAND_TIMEOUT_MS, 'npx shardline local');
    await waitUntil('shardline local to print its endpoint', () => local.out().includes('\n'), 30_000);
    const ready = JSON.parse(local.out()) as {
      endpoint: string;
      env: Record<string, string>;
      streams: Array<{ streamName: string; shards: number }>;
    };
    expect(ready.streams).to.deep.equal([{ streamName: 'orders', shards: 2 }]);
    expect(ready.env.AWS_ENDPOINT_URL_KINESIS).to.equal(ready.endpoint);

    // The README's other shell: only the endpoint exported; region and credentials are the CLI's defaults.
    const shell = { AWS_ENDPOINT_URL_KINESIS: ready.endpoint };
    const list = await run('npx', ['shardline', 'list'], { env: shell });
    ok(list, 'npx shardline list');
    expect(list.stdout).to.equal('orders\n');
    // Nothing else on stderr: no credentials error, no AWS SDK Node.js version notice.
    expect(list.stderr).to.equal('');
    const put = await run('npx', ['shardline', 'put', 'orders', '--data', '{"id":1}', '-k', 'k'], {
      env: shell,
    });
    ok(put, 'npx shardline put');
    const tail = await run('npx', ['shardline', 'tail', 'orders', '-n', '1'], { env: shell });
    ok(tail, 'npx shardline tail');
    expect((JSON.parse(tail.stdout) as { data: unknown }).data).to.deep.equal({ id: 1 });

    // Ctrl-C in the first shell: the terminal signals the whole process group (npx, node, the emulator).
    process.kill(-local.pid!, 'SIGINT');
    const stopped = await done;
    expect(stopped.stderr).to.match(/shardline: local: kinesis-mock stopped\n/);
    expect(stopped.stderr).not.to.match(/\n\s+at /);
    const gone = await run('npx', ['shardline', 'list'], { env: shell });
    expect(gone.code, gone.stderr).to.equal(4);
    expect(gone.stderr).to.equal(`shardline: cannot reach Kinesis at ${ready.endpoint} (ECONNREFUSED)\n`);
  });
});
