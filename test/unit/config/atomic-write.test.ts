import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fsPromises from 'node:fs/promises';
import { chmod, lstat, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AtomicWriteFs, writeFileAtomic } from '../../../src/config/atomic-write.ts';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';

let root: string;
let counter = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'mailbridge-atomic-'));
  // Traversable by the unprivileged user the read-only-directory test runs as when the suite runs as root.
  await chmod(root, 0o711);
});

after(async () => {
  await chmod(root, 0o700).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
});

async function freshDir(): Promise<string> {
  const dir = join(root, `d${counter++}`);
  await fsPromises.mkdir(dir);
  return dir;
}

function osError(code: string, syscall: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated failure, ${syscall}`), { code, syscall });
}

function failing(overrides: Partial<AtomicWriteFs>): AtomicWriteFs {
  return {
    open: fsPromises.open,
    rename: fsPromises.rename,
    unlink: fsPromises.unlink,
    realpath: fsPromises.realpath,
    ...overrides,
  };
}

function isWriteError(path: string, code: string) {
  return (error: unknown): boolean => {
    assert.ok(isMailbridgeError(error, ErrorCode.CONFIG_WRITE), String(error));
    assert.ok(error.message.includes(`'${path}'`), error.message);
    assert.ok(error.message.includes(code), error.message);
    assert.ok(error.cause !== undefined);
    return true;
  };
}

describe('writeFileAtomic', () => {
  it('creates the file with the content and mode 0600 by default, leaving nothing else behind', async () => {
    const dir = await freshDir();
    const path = join(dir, 'emailproxy.config');
    await writeFileAtomic(path, '[s]\nk = ✓\n');
    assert.equal(await readFile(path, 'utf8'), '[s]\nk = ✓\n');
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readdir(dir), ['emailproxy.config']);
  });

  it('replaces an existing file and applies the requested mode exactly, whatever the umask', async () => {
    const dir = await freshDir();
    const path = join(dir, 'cache.ini');
    await writeFile(path, 'old contents that are longer than the new ones\n', { mode: 0o644 });
    await writeFileAtomic(path, 'new\n', { mode: 0o666 });
    assert.equal(await readFile(path, 'utf8'), 'new\n');
    assert.equal((await stat(path)).mode & 0o777, 0o666);
    assert.deepEqual(await readdir(dir), ['cache.ini']);
  });

  it('writes through a symlink to the file it points to, keeping the link', async () => {
    const dir = await freshDir();
    const real = join(dir, 'real.config');
    const link = join(dir, 'link.config');
    await writeFile(real, 'old\n');
    await symlink(real, link);
    await writeFileAtomic(link, 'new\n');
    assert.equal(await readFile(real, 'utf8'), 'new\n');
    assert.ok((await lstat(link)).isSymbolicLink());
    assert.deepEqual((await readdir(dir)).sort(), ['link.config', 'real.config']);
  });

  it('keeps the target and removes the temporary file when the rename fails', async () => {
    const dir = await freshDir();
    const path = join(dir, 'emailproxy.config');
    await writeFile(path, 'original\n', { mode: 0o640 });
    const fs = failing({
      rename: async () => {
        throw osError('EXDEV', 'rename');
      },
    });
    await assert.rejects(writeFileAtomic(path, 'new\n', { fs }), isWriteError(path, 'EXDEV'));
    assert.equal(await readFile(path, 'utf8'), 'original\n');
    assert.equal((await stat(path)).mode & 0o777, 0o640);
    assert.deepEqual(await readdir(dir), ['emailproxy.config']);
  });

  it('says which step failed when the temporary file cannot be created', async () => {
    const dir = await freshDir();
    const path = join(dir, 'emailproxy.config');
    await writeFile(path, 'original\n');
    const fs = failing({
      open: async () => {
        throw osError('ENOSPC', 'open');
      },
    });
    await assert.rejects(writeFileAtomic(path, 'new\n', { fs }), (error: unknown) => {
      assert.match(
        (error as Error).message,
        /creating a temporary file failed: ENOSPC \(simulated failure\)/,
      );
      assert.match((error as Error).message, /the previous file is unchanged/);
      return true;
    });
    assert.equal(await readFile(path, 'utf8'), 'original\n');
  });

  it('fails cleanly when the directory does not exist', async () => {
    const path = join(root, 'missing-dir', 'x.config');
    await assert.rejects(writeFileAtomic(path, 'x'), isWriteError(path, 'ENOENT'));
  });

  it('lets concurrent writers race without a collision or a leftover', async () => {
    const dir = await freshDir();
    const path = join(dir, 'x.config');
    const contents = Array.from({ length: 20 }, (_, i) => `version ${i}\n`);
    await Promise.all(contents.map((data) => writeFileAtomic(path, data)));
    assert.ok(contents.includes(await readFile(path, 'utf8')));
    assert.deepEqual(await readdir(dir), ['x.config']);
  });

  it('leaves the target untouched in a read-only directory', async () => {
    const dir = await freshDir();
    const path = join(dir, 'emailproxy.config');
    await writeFile(path, 'original\n', { mode: 0o644 });
    await chmod(dir, 0o555);
    try {
      if (process.getuid?.() === 0) {
        // root ignores directory permissions: run the same write as an unprivileged user.
        const moduleUrl = new URL('../../../src/config/atomic-write.ts', import.meta.url).href;
        const script =
          `import { writeFileAtomic } from ${JSON.stringify(moduleUrl)};` +
          `try { await writeFileAtomic(${JSON.stringify(path)}, 'new'); console.log('written'); }` +
          'catch (error) { console.log(error.code, error.message); }';
        const child = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
          uid: 65534,
          gid: 65534,
          encoding: 'utf8',
          cwd: new URL('../../..', import.meta.url).pathname,
        });
        assert.equal(child.status, 0, child.stderr);
        assert.match(
          child.stdout,
          /^CONFIG_WRITE could not write .*creating a temporary file failed: EACCES/,
        );
      } else {
        await assert.rejects(writeFileAtomic(path, 'new'), isWriteError(path, 'EACCES'));
      }
      assert.equal(await readFile(path, 'utf8'), 'original\n');
      assert.deepEqual(await readdir(dir), ['emailproxy.config']);
    } finally {
      await chmod(dir, 0o755);
    }
  });
});
