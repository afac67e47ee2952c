import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
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

  it('gives two processes starting at once one secret', async () => {
    const path = join(dir, 'race', 'console-secret');
    const [first, second] = await Promise.all([loadConsoleSecret(path), loadConsoleSecret(path)]);
    assert.equal(first, second);
  });

  it('takes a secret written by hand, and leaves no temporary file behind', async () => {
    const path = join(dir, 'by-hand');
    await writeFile(path, 'a-long-enough-secret-value\r\n', { mode: 0o600 });
    assert.equal(await loadConsoleSecret(path), 'a-long-enough-secret-value');
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.endsWith('.tmp')),
      [],
    );
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
      // Prometheus sends the whole file: a second line would make its requests fail.
      ['two-lines', 'a-long-enough-secret-value\nnotes\n'],
    ]) {
      const path = join(dir, name as string);
      await writeFile(path, text as string, { mode: 0o600 });
      await assert.rejects(
        loadConsoleSecret(path),
        /must hold just one secret of at least 16 characters, without spaces or other lines/,
      );
    }
  });
});
