import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { MAILBRIDGE_BIN } from '../testbed/mailbridge.ts';

/**
 * The shipped systemd units: systemd's own checker accepts them, and every flag their ExecStart passes is one
 * `mailbridge serve` knows, so a renamed flag cannot silently break installed services.
 */
const run = promisify(execFile);
const UNITS = join(import.meta.dirname, '..', '..', 'packaging', 'systemd');
const hasSystemdAnalyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].some((path) =>
  existsSync(path),
);

let dir: string;

function execStart(unit: string): string[] {
  const line = unit.split('\n').find((text) => text.startsWith('ExecStart='));
  assert.ok(line, 'the unit has an ExecStart line');
  return line.slice('ExecStart='.length).split(/\s+/);
}

describe('systemd units', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-units-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const kind of ['system', 'user'] as const) {
    it(`${kind} unit: passes systemd-analyze verify`, {
      skip: !hasSystemdAnalyze && 'no systemd-analyze',
    }, async () => {
      const unit = await readFile(join(UNITS, kind, 'mailbridge.service'), 'utf8');
      // verify checks that the program exists; the install path is the operator's, so stand in for it. The
      // user unit is checked in system mode too: --user needs a user manager's runtime directory.
      const [program = ''] = execStart(unit);
      const copy = join(dir, kind, 'mailbridge.service');
      await run('mkdir', ['-p', join(dir, kind)]);
      await writeFile(copy, unit.replace(program, '/bin/true'));
      const { stdout, stderr } = await run('systemd-analyze', ['verify', copy], {
        timeout: 30_000,
        env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' },
      });
      assert.equal(`${stdout}${stderr}`.trim(), '');
    });

    it(`${kind} unit: starts "mailbridge serve" with flags it knows`, async () => {
      const unit = await readFile(join(UNITS, kind, 'mailbridge.service'), 'utf8');
      const [, command, ...args] = execStart(unit);
      assert.equal(command, 'serve');
      const { stdout } = await run(process.execPath, [MAILBRIDGE_BIN, 'serve', '--help'], {
        timeout: 30_000,
      });
      for (const flag of args.filter((arg) => arg.startsWith('--'))) {
        assert.match(stdout, new RegExp(`${flag}\\b`), `mailbridge serve has no ${flag}`);
      }
      assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
      assert.match(unit, /^RestartPreventExitStatus=2$/m);
    });
  }
});
