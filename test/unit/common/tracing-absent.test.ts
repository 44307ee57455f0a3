/**
 * Without `@opentelemetry/api` (made unresolvable in a child process, not uninstalled): the default
 * loader gives no tracing, and a producer with tracing and propagation on, and a coordinator's tracing,
 * construct and run without an error.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const run = promisify(execFile);
const PRELOAD = fileURLToPath(new URL('./fixtures/no-otel-api.cjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const SCRIPT = `
import { loadTracing } from '@shardline/common';
import { Producer } from '@shardline/producer';
import { resolveCoordinatorOptions } from '@shardline/coordinator';
let apiResolvable = true;
try { (await import('node:module')).createRequire(import.meta.url)('@opentelemetry/api'); } catch { apiResolvable = false; }
const producer = new Producer({
  streamName: 's',
  kinesis: { endpoint: 'http://127.0.0.1:9', region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } },
  tracing: { enabled: true, propagate: true },
});
await producer.close();
const coordinator = resolveCoordinatorOptions({ streamName: 's', group: 'g', tracing: { enabled: true } });
console.log(JSON.stringify({ apiResolvable, tracing: loadTracing() === undefined ? 'none' : 'loaded', coordinatorTracing: coordinator.tracing }));
`;

describe('tracing without @opentelemetry/api installed', () => {
  it('loads nothing and throws nothing: no tracing, producers and coordinator options still work', async function () {
    this.timeout(20_000);
    const { stdout } = await run(
      process.execPath,
      ['--require', PRELOAD, '--input-type=module', '--eval', SCRIPT],
      { cwd: ROOT, env: { ...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' } },
    );
    expect(JSON.parse(stdout.trim())).to.deep.equal({
      apiResolvable: false,
      tracing: 'none',
      coordinatorTracing: { enabled: true, links: true },
    });
  });
});
