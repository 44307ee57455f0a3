/**
 * The option parser's dependency-free lists and defaults, kept equal to what the library and the
 * commands use (they are copies so that `--help` and usage errors never load the AWS SDK).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { codecs } from '@shardline/common';
import { expect } from 'chai';
import { DEMO_DEFAULTS as demoDefaults } from '../../../packages/cli/src/commands/demo.js';
import { LOCAL_DEFAULTS } from '../../../packages/cli/src/commands/local.js';
import { STATUS_DEFAULTS as statusDefaults } from '../../../packages/cli/src/commands/status.js';
import {
  CODEC_NAMES,
  DEMO_DEFAULTS,
  LOCAL_OPTION_DEFAULTS,
  STATUS_DEFAULTS,
} from '../../../packages/cli/src/defaults.js';

const CLI = fileURLToPath(new URL('../../../packages/cli/src/cli.ts', import.meta.url));
const KINESIS = fileURLToPath(new URL('../../../packages/cli/src/kinesis.ts', import.meta.url));
const HOOK = fileURLToPath(new URL('./fixtures/log-loads.mjs', import.meta.url));
/** What a usage error or `--help` should not pay for. */
const HEAVY =
  /@aws-sdk|@smithy|packages\/(coordinator|producer|testing|shard-worker)\/|ioredis|bullmq|piscina/;

describe('cli defaults', () => {
  it('offers exactly the codecs of @shardline/common', () => {
    expect([...CODEC_NAMES]).to.deep.equal(Object.keys(codecs));
  });

  it('the commands use the defaults the parser shows', () => {
    expect(demoDefaults).to.equal(DEMO_DEFAULTS);
    expect(statusDefaults).to.equal(STATUS_DEFAULTS);
    expect(LOCAL_DEFAULTS).to.deep.include(LOCAL_OPTION_DEFAULTS);
  });

  it('loading the CLI loads neither the AWS SDK nor the library; a command loads them when it runs', () => {
    const loadedBy = (code: string): string[] => {
      const log = join(mkdtempSync(join(tmpdir(), 'shardline-loads-')), 'loads.txt');
      writeFileSync(log, '');
      const script = `
        import { register } from 'node:module';
        register(${JSON.stringify(pathToFileURL(HOOK).href)});
        ${code}
      `;
      const out = spawnSync(process.execPath, ['--import=tsx', '--input-type=module', '-e', script], {
        encoding: 'utf8',
        env: { ...process.env, LOAD_LOG: log },
      });
      expect(out.status, out.stderr).to.equal(0);
      return readFileSync(log, 'utf8')
        .split('\n')
        .filter((url) => HEAVY.test(url));
    };
    expect(loadedBy(`await import(${JSON.stringify(pathToFileURL(CLI).href)});`)).to.deep.equal([]);
    // The check can see the SDK: a module that imports it shows up.
    expect(loadedBy(`await import(${JSON.stringify(pathToFileURL(KINESIS).href)});`)).to.not.deep.equal([]);
  });
});
