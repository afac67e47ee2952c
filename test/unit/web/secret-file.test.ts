import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConsoleSecret } from '../../../src/web/secret-file.ts';

describe('web_console_secret_file', () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-secret-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates an owner-only file with a new secret, then keeps reading the same secret', async () => {
    const path = join(dir, 'new', 'console-secret');
    const secret = await loadConsoleSecret(path);
    assert.match(secret, /^[\w-]{43}$/);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(await readFile(path, 'utf8'), `${secret}\n`);
    assert.equal(await loadConsoleSecret(path), secret);
  });

  it('takes a secret written by hand, from the first line', async () => {
    const path = join(dir, 'by-hand');
    await writeFile(path, 'a-long-enough-secret-value\r\nnotes\n', { mode: 0o600 });
    assert.equal(await loadConsoleSecret(path), 'a-long-enough-secret-value');
  });

  it('refuses a file every user can read, and a short or empty secret, saying what to do', async () => {
    const open = join(dir, 'open');
    await writeFile(open, 'a-long-enough-secret-value\n', { mode: 0o600 });
    await chmod(open, 0o640);
    assert.equal(await loadConsoleSecret(open), 'a-long-enough-secret-value', 'a group may share it');
    await chmod(open, 0o644);
    await assert.rejects(loadConsoleSecret(open), {
      code: 'CONFIG_INVALID',
      message: `web_console_secret_file '${open}' is open to every user: run chmod 600 '${open}', or 640 to share it with a group (the secret lets its holder act on accounts)`,
    });
    for (const [name, text] of [
      ['short', 'short\n'],
      ['empty', ''],
      ['spaced', 'two words in a long enough line\n'],
    ]) {
      const path = join(dir, name as string);
      await writeFile(path, text as string, { mode: 0o600 });
      await assert.rejects(loadConsoleSecret(path), /must hold one secret of at least 16 characters/);
    }
  });
});
