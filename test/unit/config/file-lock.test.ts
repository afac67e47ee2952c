import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as fsPromises from 'node:fs/promises';
import { mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setImmediate as yieldTurn } from 'node:timers/promises';
import { acquireFileLock, type LockFs, withFileLock } from '../../../src/config/file-lock.ts';
import { isMailbridgeError } from '../../../src/errors.ts';

/**
 * The cache lock: mutual exclusion, and taking over a lock whose owner is provably gone — never one whose
 * owner is alive on this host.
 */
let dir: string;
let counter = 0;

function freshPath(): string {
  counter += 1;
  return join(dir, `cache-${counter}.ini`);
}

function startTime(pid: number): string {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ')[19] ?? '';
}

const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
/** Above the kernel's pid_max ceiling (2^22), so no process can have it. */
const IMPOSSIBLE_PID = 4_194_304 + 17;

function ownerText(fields: Record<string, unknown>): string {
  return `${JSON.stringify({
    host: hostname(),
    boot,
    pid: process.ppid,
    started: startTime(process.ppid),
    nonce: 'someone-else',
    since: new Date().toISOString(),
    ...fields,
  })}\n`;
}

describe('file lock', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-lock-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates <file>.lock owner-only, naming this process, and removes it afterwards', async () => {
    const path = freshPath();
    await withFileLock(path, async () => {
      const text = await readFile(`${path}.lock`, 'utf8');
      const owner = JSON.parse(text) as Record<string, unknown>;
      assert.equal(owner.pid, process.pid);
      assert.equal(owner.host, hostname());
      assert.equal(owner.started, startTime(process.pid));
      assert.equal((await stat(`${path}.lock`)).mode & 0o777, 0o600);
    });
    await assert.rejects(stat(`${path}.lock`), { code: 'ENOENT' });
  });

  it('lets one holder in at a time among many concurrent callers, and releases after a failing task', async () => {
    const path = freshPath();
    let inside = 0;
    let maxInside = 0;
    let done = 0;
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        withFileLock(
          path,
          async () => {
            inside += 1;
            maxInside = Math.max(maxInside, inside);
            await yieldTurn();
            await yieldTurn();
            inside -= 1;
            done += 1;
            if (i % 5 === 0) throw new Error('task failed');
          },
          { retryMs: 2 },
        ).catch((error: unknown) => {
          if ((error as Error).message !== 'task failed') throw error;
        }),
      ),
    );
    assert.equal(done, 20);
    assert.equal(maxInside, 1);
    await assert.rejects(stat(`${path}.lock`), { code: 'ENOENT' });
  });

  it('takes over the lock of a process that no longer exists (kill -9 while saving)', async () => {
    const path = freshPath();
    await writeFile(`${path}.lock`, ownerText({ pid: IMPOSSIBLE_PID, started: '1' }));
    const ran = await withFileLock(path, async () => 'ran', { waitMs: 2000 });
    assert.equal(ran, 'ran');
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.startsWith(`cache-${counter}`)),
      [],
      'no lock or set-aside file left',
    );
  });

  it('takes over a lock whose pid now belongs to a process started at another time (pid reuse)', async () => {
    const path = freshPath();
    await writeFile(`${path}.lock`, ownerText({ started: '1' }));
    assert.equal(await withFileLock(path, async () => 'ran', { waitMs: 2000 }), 'ran');
  });

  it('takes over a lock from an earlier boot of this host', async () => {
    const path = freshPath();
    await writeFile(`${path}.lock`, ownerText({ boot: 'an-earlier-boot' }));
    assert.equal(await withFileLock(path, async () => 'ran', { waitMs: 2000 }), 'ran');
  });

  it('never overrides a live owner on this host: gives up with an error that names it and the lock file', async () => {
    const path = freshPath();
    const held = ownerText({});
    await writeFile(`${path}.lock`, held);
    await assert.rejects(
      withFileLock(path, async () => 'ran', { waitMs: 50, retryMs: 5 }),
      (error: unknown) => {
        assert.ok(isMailbridgeError(error, 'CONFIG_WRITE'));
        assert.match(error.message, new RegExp(`process ${process.ppid} on `));
        assert.ok(error.message.includes(`delete ${path}.lock`), error.message);
        return true;
      },
    );
    assert.equal(await readFile(`${path}.lock`, 'utf8'), held, 'the owner keeps its lock');
  });

  it('waits for a live owner that releases, then proceeds', async () => {
    const path = freshPath();
    const first = await acquireFileLock(path);
    let secondRan = false;
    const second = withFileLock(
      path,
      async () => {
        secondRan = true;
      },
      { retryMs: 2 },
    );
    await yieldTurn();
    assert.equal(secondRan, false);
    await first.release();
    await second;
    assert.equal(secondRan, true);
  });

  it('takes over a lock from another host only once it is older than the stale limit', async () => {
    const old = freshPath();
    await writeFile(`${old}.lock`, ownerText({ host: 'elsewhere', since: '2001-01-01T00:00:00.000Z' }));
    assert.equal(await withFileLock(old, async () => 'ran', { waitMs: 2000 }), 'ran');

    const recent = freshPath();
    await writeFile(`${recent}.lock`, ownerText({ host: 'elsewhere' }));
    await assert.rejects(
      withFileLock(recent, async () => 'ran', { waitMs: 30, retryMs: 5 }),
      /elsewhere/,
    );
  });

  it('treats an empty or garbled lock file as stale only once it is old (its writer died before writing)', async () => {
    const old = freshPath();
    await writeFile(`${old}.lock`, '');
    const past = new Date(Date.now() - 3_600_000);
    await utimes(`${old}.lock`, past, past);
    assert.equal(await withFileLock(old, async () => 'ran', { waitMs: 2000 }), 'ran');

    const fresh = freshPath();
    await writeFile(`${fresh}.lock`, '{"half');
    await assert.rejects(
      withFileLock(fresh, async () => 'ran', { waitMs: 30, retryMs: 5 }),
      /another process/,
    );
  });

  it('keeps mutual exclusion when many callers find the same stale lock at once', async () => {
    for (let round = 0; round < 20; round += 1) {
      const path = freshPath();
      await writeFile(`${path}.lock`, ownerText({ pid: IMPOSSIBLE_PID }));
      let inside = 0;
      let maxInside = 0;
      await Promise.all(
        Array.from({ length: 8 }, () =>
          withFileLock(
            path,
            async () => {
              inside += 1;
              maxInside = Math.max(maxInside, inside);
              await yieldTurn();
              inside -= 1;
            },
            { retryMs: 2 },
          ),
        ),
      );
      assert.equal(maxInside, 1, `round ${round}`);
    }
  });

  it('never leaves an empty lock: the lock appears with its content (temporary file, then link)', async () => {
    const path = freshPath();
    const seen: string[] = [];
    const watching: LockFs = {
      ...fsPromises,
      link: async (existing, target) => {
        seen.push(await readFile(existing, 'utf8'));
        return fsPromises.link(existing, target);
      },
    };
    await withFileLock(path, async () => undefined, { fs: watching });
    assert.equal(seen.length, 1);
    assert.equal((JSON.parse(seen[0] ?? '') as { pid: number }).pid, process.pid);
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.startsWith(`cache-${counter}`)),
      [],
      'the temporary file is gone too',
    );
  });

  it('falls back to O_EXCL where the file system has no hard links', async () => {
    const path = freshPath();
    const noLinks: LockFs = {
      ...fsPromises,
      link: async () => {
        throw Object.assign(new Error('operation not permitted'), { code: 'EPERM' });
      },
    };
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 5 }, () =>
        withFileLock(
          path,
          async () => {
            inside += 1;
            maxInside = Math.max(maxInside, inside);
            await yieldTurn();
            inside -= 1;
          },
          { fs: noLinks, retryMs: 2 },
        ),
      ),
    );
    assert.equal(maxInside, 1);
  });

  it('removes what killed processes left beside the lock once it is old, and nothing younger', async () => {
    const path = freshPath();
    const old = [`${path}.lock.deadbeef.tmp`, `${path}.lock.breaking.abc.tmp`];
    const young = `${path}.lock.cafe.tmp`;
    for (const file of [...old, young]) await writeFile(file, '');
    const past = new Date(Date.now() - 3_600_000);
    for (const file of old) await utimes(file, past, past);
    await withFileLock(path, async () => undefined);
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.startsWith(`cache-${counter}`)),
      [young.slice(dir.length + 1)],
    );
  });

  it('takes over past a breaker left by a process killed in the middle of a takeover', async () => {
    const path = freshPath();
    await writeFile(`${path}.lock`, ownerText({ pid: IMPOSSIBLE_PID }));
    await writeFile(`${path}.lock.breaking`, ownerText({ pid: IMPOSSIBLE_PID }));
    const past = new Date(Date.now() - 3_600_000);
    await utimes(`${path}.lock.breaking`, past, past);
    let ran = false;
    await withFileLock(
      path,
      async () => {
        ran = true;
      },
      { retryMs: 2 },
    );
    assert.equal(ran, true);
  });

  it('does not remove a lock that another process took over meanwhile', async () => {
    const path = freshPath();
    const lock = await acquireFileLock(path);
    const theirs = ownerText({ nonce: 'theirs' });
    await writeFile(`${path}.lock`, theirs);
    await lock.release();
    assert.equal(await readFile(`${path}.lock`, 'utf8'), theirs);
  });
});
