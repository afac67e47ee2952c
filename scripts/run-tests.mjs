#!/usr/bin/env node
// Runs every test file under test/ with node's own runner.
// Node 20 neither expands globs nor finds .ts files by itself (`node --test test/` runs zero tests and
// passes), so the list is built here and an empty list is a failure, never a green run.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

function findTests(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return findTests(path);
    return entry.name.endsWith('.test.ts') ? [path] : [];
  });
}

const only = process.argv.slice(2);
const files = (only.length > 0 ? only : findTests(join(root, 'test')).map((f) => relative(root, f))).sort();
if (files.length === 0) {
  console.error('run-tests: no test files found under test/ — refusing to report a green run');
  process.exit(1);
}

// Integration and end-to-end tests share one Dovecot and fixed ports, so files run one at a time.
const result = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=spec', ...files],
  { cwd: root, stdio: 'inherit' },
);
process.exit(result.status ?? 1);
