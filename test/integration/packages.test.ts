/**
 * What each published package would ship: `npm pack --dry-run --json` for every workspace under
 * packages/ (on the built tree: run `npm run build` first). Each must pack its README, what `files`
 * and the `exports` map promise (every target and its types), its bins, the sources its source maps
 * name, and no test files, tsconfig or TypeScript build info.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'chai';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface PackageJson {
  name: string;
  version: string;
  private?: boolean;
  main?: string;
  types?: string;
  files?: string[];
  bin?: string | Record<string, string>;
  exports?: unknown;
}

interface Packed {
  name: string;
  version: string;
  files: Array<{ path: string }>;
}

/** Every file an `exports` map points to, with the condition path that leads there (e.g. `./worker types`). */
function exportTargets(exports: unknown, where = ''): Array<{ where: string; target: string }> {
  if (typeof exports === 'string') return [{ where: where.trim() || '.', target: exports }];
  if (typeof exports !== 'object' || exports === null) return [];
  return Object.entries(exports).flatMap(([key, value]) => exportTargets(value, `${where} ${key}`));
}

/** `./dist/index.js` as npm lists it: `dist/index.js`. */
const normalize = (path: string) => path.replace(/^\.\//, '');

const directories = readdirSync(join(ROOT, 'packages'), { withFileTypes: true })
  .filter((entry) => entry.isDirectory() && existsSync(join(ROOT, 'packages', entry.name, 'package.json')))
  .map((entry) => entry.name)
  .sort();

describe('published packages (npm pack --dry-run)', function () {
  this.timeout(60_000);
  const packed = new Map<string, Set<string>>();

  before(async () => {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['pack', '--dry-run', '--json', '--workspaces', '--ignore-scripts'],
      { cwd: ROOT, maxBuffer: 64 * 1024 * 1024 },
    );
    for (const pack of JSON.parse(stdout) as Packed[]) {
      packed.set(pack.name, new Set(pack.files.map((f) => f.path)));
    }
  });

  it('covers every package under packages/', () => {
    expect(directories).to.include.members([
      'cli',
      'common',
      'coordinator',
      'producer',
      'shard-worker',
      'testing',
    ]);
    const names = directories.map(
      (dir) =>
        (JSON.parse(readFileSync(join(ROOT, 'packages', dir, 'package.json'), 'utf8')) as PackageJson).name,
    );
    expect([...packed.keys()].sort()).to.deep.equal([...names].sort());
  });

  for (const dir of directories) {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'packages', dir, 'package.json'), 'utf8')) as PackageJson;

    describe(pkg.name, () => {
      const files = () => packed.get(pkg.name) ?? new Set<string>();

      it('is publishable and packs its README', () => {
        expect(pkg.private, 'private').to.not.equal(true);
        expect(
          files().has('README.md'),
          `packages/${dir}/README.md is missing: every published package needs one`,
        ).to.equal(true);
        expect(files().has('package.json')).to.equal(true);
      });

      it('`files` covers dist and every directory the exports map points into', () => {
        expect(pkg.files, 'files').to.be.an('array').that.includes('dist');
        const tops = new Set(
          exportTargets(pkg.exports).map(({ target }) => normalize(target).split('/')[0]!),
        );
        for (const top of tops) {
          if (top === 'package.json') continue;
          expect(pkg.files, `files must include '${top}' (an exports target is under it)`).to.include(top);
        }
      });

      it('packs every exports target, main and types, and a .d.ts for every JavaScript entry', () => {
        const targets = exportTargets(pkg.exports);
        expect(targets, 'an exports map').to.not.have.length(0);
        for (const { where, target } of targets) {
          const path = normalize(target);
          expect(
            files().has(path),
            `exports ${where} -> ${target} is not packed (did \`npm run build\` run?)`,
          ).to.equal(true);
          if (path.endsWith('.js') && path !== 'package.json') {
            expect(files().has(path.replace(/\.js$/, '.d.ts')), `types of ${target}`).to.equal(true);
          }
        }
        for (const field of ['main', 'types'] as const) {
          const path = pkg[field];
          expect(path, field).to.be.a('string');
          expect(files().has(normalize(path!)), `${field} ${path}`).to.equal(true);
        }
      });

      it('packs its bins, each a node script', () => {
        const bins = typeof pkg.bin === 'string' ? { [pkg.name]: pkg.bin } : (pkg.bin ?? {});
        for (const [name, target] of Object.entries(bins)) {
          expect(files().has(normalize(target)), `bin ${name} -> ${target}`).to.equal(true);
          const text = readFileSync(join(ROOT, 'packages', dir, target), 'utf8');
          expect(text.startsWith('#!/usr/bin/env node\n'), `bin ${name} starts with a node shebang`).to.equal(
            true,
          );
        }
      });

      it('packs the sources its source maps name (src/ ships for them)', () => {
        const maps = [...files()].filter((path) => path.endsWith('.js.map'));
        expect(maps, 'source maps').to.not.have.length(0);
        for (const map of maps) {
          const { sources } = JSON.parse(readFileSync(join(ROOT, 'packages', dir, map), 'utf8')) as {
            sources: string[];
          };
          for (const source of sources) {
            const path = join(map, '..', source);
            expect(files().has(path), `${source} (named by ${map})`).to.equal(true);
          }
        }
      });

      it('packs no test files, tsconfig or TypeScript build info', () => {
        const unwanted = [...files()].filter(
          (path) =>
            /(^|\/)(test|tests|__tests__|fixtures)\//.test(path) ||
            /\.(test|spec)\.[cm]?[jt]s$/.test(path) ||
            /\.tsbuildinfo$/.test(path) ||
            /(^|\/)tsconfig(\.[^/]*)?\.json$/.test(path),
        );
        expect(unwanted).to.deep.equal([]);
      });
    });
  }
});
