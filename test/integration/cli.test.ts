import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { serverSection } from '../testbed/config-sections.ts';
import { MAILBRIDGE_BIN, startMailbridge } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';

const run = promisify(execFile);

async function mailbridge(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [MAILBRIDGE_BIN, ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (error: unknown) {
    const failed = error as { code: number; stdout: string; stderr: string };
    return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
  }
}

describe('the mailbridge command', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-cli-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('prints its version', async () => {
    const result = await mailbridge(['--version']);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^mailbridge \d+\.\d+\.\d+\n$/);
  });

  it('accepts every email-oauth2-proxy flag in --help', async () => {
    const result = await mailbridge(['--help']);
    for (const flag of [
      '--config-file',
      '--cache-store',
      '--no-gui',
      '--external-auth',
      '--local-server-auth',
      '--log-file',
      '--debug',
    ]) {
      assert.ok(result.stdout.includes(flag), `--help lists ${flag}`);
    }
  });

  it('refuses a malformed configuration naming the file and line, and leaves the file untouched', async () => {
    const path = join(dir, 'broken.config');
    const text = '# keep me\n[IMAP-1993]\nserver_address = imap.example.com\nserver_address = again\n';
    await writeFile(path, text);
    const result = await mailbridge(['--config-file', path]);
    assert.equal(result.code, 2);
    assert.match(result.stderr, new RegExp(`${path.replaceAll('/', '\\/')}.*line 4`));
    assert.match(result.stderr, /server_address/);
    assert.equal(await readFile(path, 'utf8'), text);
  });

  it('refuses a server section without server_port, and a missing file, with what to do', async () => {
    const path = join(dir, 'incomplete.config');
    await writeFile(path, '[IMAP-1993]\nserver_address = imap.example.com\n');
    const incomplete = await mailbridge(['--config-file', path]);
    assert.equal(incomplete.code, 2);
    assert.match(incomplete.stderr, /\[IMAP-1993\]: invalid server_port ''/);
    const missing = await mailbridge(['--config-file', join(dir, 'nope.config')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read configuration file .*nope\.config/);
  });

  it('listens on loopback only by default, answers with a clean BYE when the server is unreachable, and stops on SIGTERM', async () => {
    const [port, deadPort] = (await findFreePorts(2)) as [number, number];
    const path = join(dir, 'loopback.config');
    await writeFile(path, serverSection({ protocol: 'IMAP', localPort: port, serverPort: deadPort }));
    const process_ = await startMailbridge({ args: ['--config-file', path] });
    try {
      await process_.waitForLog('mailbridge ready');
      assert.match(process_.stderr(), new RegExp(`127\\.0\\.0\\.1:${port}`));
      const client = await RawClient.connect(port);
      const text = await client.waitFor(/\* BYE \[UNAVAILABLE\][^\r\n]*\r\n/);
      assert.match(text, /connection refused/);
      await client.waitClosed();
    } finally {
      assert.equal(await process_.stop(), 0);
    }
  });

  it('stops cleanly on a SIGTERM sent the moment it says it is ready', async () => {
    const [port] = (await findFreePorts(1)) as [number];
    const path = join(dir, 'ready.config');
    await writeFile(path, serverSection({ protocol: 'IMAP', localPort: port, serverPort: 1 }));
    const process_ = await startMailbridge({ args: ['--config-file', path] });
    await process_.waitForLog('mailbridge ready');
    assert.equal(await process_.stop(), 0, process_.stderr());
    assert.match(process_.stderr(), /mailbridge stopped/);
  });
});
