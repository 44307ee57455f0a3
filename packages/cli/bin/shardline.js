#!/usr/bin/env node
// The `shardline` bin. Committed, not built: npm links a workspace's bins at install time (`npm ci`),
// before `npm run build` has made dist/, and it skips a bin whose file does not exist then. This file
// exists from the clone on, so `npx shardline` works as soon as the packages are built.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const built = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(built)) {
  process.stderr.write(
    `shardline: the CLI is not built (${fileURLToPath(built)} is missing): run \`npm run build\` first\n`,
  );
  process.exit(1);
}
await import(built.href);
