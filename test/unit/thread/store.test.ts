import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';
import { ThreadStore } from '../../../src/thread/store.ts';

const DAY = 24 * 60 * 60 * 1000;

let root: string;
let counter = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'mailbridge-thread-store-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A fresh database with a clock the test moves. */
function freshStore(): { store: ThreadStore; path: string; clock: { now: number } } {
  const clock = { now: Date.UTC(2026, 0, 1) };
  const path = join(root, `s${counter++}`, 'threads.sqlite');
  return { store: ThreadStore.open({ path, now: () => clock.now }), path, clock };
}

function isDatabaseError(pattern: RegExp) {
  return (error: unknown): boolean => {
    assert.ok(isMailbridgeError(error, ErrorCode.THREAD_DATABASE), String(error));
    assert.match(error.message, pattern);
    return true;
  };
}

describe('ThreadStore', () => {
  it('creates its directory (mode 0700) and a WAL database with a busy timeout', async () => {
    const { store, path } = freshStore();
    store.close();
    assert.equal((await stat(join(path, '..'))).mode & 0o777, 0o700);
    const db = new Database(path, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(db.pragma('user_version', { simple: true }), 1);
      const plan = db
        .prepare("EXPLAIN QUERY PLAN SELECT thread_id FROM ids WHERE list_id = 1 AND message_id = 'x'")
        .all() as { detail: string }[];
      assert.match(plan.map((row) => row.detail).join('\n'), /USING INDEX/);
    } finally {
      db.close();
    }
    const again = ThreadStore.open({ path });
    again.close();
  });

  it('matches a message whose IDs are in a thread of the list, by exact ID only', () => {
    const { store } = freshStore();
    store.add('muted', ['root@x', 'a@x']);
    assert.equal(store.match('muted', ['a@x'], []), true);
    assert.equal(store.match('muted', ['other@x', 'root@x'], []), true);
    for (const near of ['A@x', 'a@x.org', 'xa@x', 'a@', 'a', '<a@x>', 'root@x ']) {
      assert.equal(store.match('muted', [near], []), false, near);
    }
    assert.equal(store.match('muted', [], []), false);
    store.close();
  });

  it('keeps lists apart, and answers no for a list that does not exist', () => {
    const { store } = freshStore();
    store.add('muted', ['m@x']);
    store.add('watched', ['w@x']);
    assert.equal(store.match('muted', ['w@x'], []), false);
    assert.equal(store.match('watched', ['w@x'], []), true);
    assert.equal(store.match('nope', ['m@x'], []), false);
    store.add('watched', ['m@x']);
    assert.equal(store.match('watched', ['m@x'], []), true);
    store.close();
  });

  it("learns a matching message's own ID, so a reply citing only that message matches", () => {
    const { store } = freshStore();
    store.add('muted', ['1@x']);
    assert.equal(store.match('muted', ['2@x', '1@x'], ['2@x']), true);
    assert.equal(store.match('muted', ['2@x'], []), true);
    assert.equal(store.match('muted', ['3@x'], ['4@x']), false);
    assert.equal(store.match('muted', ['4@x'], []), false, 'a message that did not match teaches nothing');
    assert.deepEqual([...store.threads('muted')], [['1@x', '2@x']]);
    store.close();
  });

  it('reports what add did: a new thread, a known one, or several joined into the oldest', () => {
    const { store, clock } = freshStore();
    assert.deepEqual(store.add('muted', ['a@x', 'b@x']), { added: 2, merged: 0, created: true });
    assert.deepEqual(store.add('muted', ['b@x']), { added: 0, merged: 0, created: false });
    clock.now += DAY;
    store.add('muted', ['c@x']);
    assert.deepEqual(store.add('muted', ['a@x', 'c@x', 'd@x']), { added: 1, merged: 1, created: false });
    assert.deepEqual([...store.threads('muted')], [['a@x', 'b@x', 'c@x', 'd@x']]);
    assert.deepEqual(store.lists(), [{ name: 'muted', threads: 1, ids: 4, lastSeen: clock.now }]);
    store.close();
  });

  it('removes whole threads, in that list only', () => {
    const { store } = freshStore();
    store.add('muted', ['a@x', 'b@x']);
    store.add('muted', ['c@x']);
    store.add('watched', ['a@x']);
    assert.equal(store.remove('muted', ['b@x']), 1);
    assert.equal(store.match('muted', ['a@x'], []), false);
    assert.equal(store.match('watched', ['a@x'], []), true);
    assert.equal(store.remove('muted', ['zzz@x']), 0);
    assert.equal(store.remove('nope', ['a@x']), 0);
    assert.deepEqual([...store.threads('muted')], [['c@x']]);
    store.close();
  });

  it('lists threads oldest first and summarises every list', () => {
    const { store, clock } = freshStore();
    store.add('muted', ['1@x', '2@x']);
    clock.now += 1000;
    store.add('muted', ['3@x']);
    store.add('watched', ['w@x']);
    store.add('empty', ['e@x']);
    store.remove('empty', ['e@x']);
    assert.deepEqual([...store.threads('muted')], [['1@x', '2@x'], ['3@x']]);
    assert.deepEqual([...store.threads('nope')], []);
    assert.deepEqual(store.lists(), [
      { name: 'empty', threads: 0, ids: 0, lastSeen: undefined },
      { name: 'muted', threads: 2, ids: 3, lastSeen: clock.now },
      { name: 'watched', threads: 1, ids: 1, lastSeen: clock.now },
    ]);
    store.close();
  });

  it('prunes threads not added to or matched for the given time, in one list or all', () => {
    const { store, clock } = freshStore();
    store.add('muted', ['old@x']);
    store.add('muted', ['kept@x']);
    store.add('watched', ['old-w@x']);
    clock.now += 200 * DAY;
    assert.equal(store.match('muted', ['kept@x'], ['kept-reply@x']), true);
    clock.now += 10 * DAY;
    assert.equal(store.prune(180 * DAY, 'muted'), 1);
    assert.equal(store.match('muted', ['old@x'], []), false);
    assert.equal(store.match('muted', ['kept-reply@x'], []), true);
    assert.deepEqual([...store.threads('watched')], [['old-w@x']]);
    assert.equal(store.prune(180 * DAY, 'nope'), 0);
    assert.equal(store.prune(180 * DAY), 1);
    assert.deepEqual([...store.threads('watched')], []);
    store.close();
  });

  it('imports many threads at once, joining lines that share IDs', () => {
    const { store } = freshStore();
    store.add('muted', ['known@x']);
    const result = store.import('muted', [['a@x', 'b@x'], ['c@x'], ['b@x', 'd@x'], [], ['known@x', 'e@x']]);
    assert.deepEqual(result, { threads: 4, added: 5 });
    assert.deepEqual([...store.threads('muted')], [['known@x', 'e@x'], ['a@x', 'b@x', 'd@x'], ['c@x']]);
    store.close();
  });

  it('stores IDs with 8-bit characters as they are', () => {
    const { store } = freshStore();
    store.add('muted', ['café@x']);
    assert.equal(store.match('muted', ['café@x'], []), true);
    assert.equal(store.match('muted', ['cafe@x'], []), false);
    store.close();
  });

  it('refuses, with THREAD_DATABASE and the path, what it cannot use', async () => {
    const dir = join(root, `bad${counter++}`);
    await mkdir(dir);
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    assert.throws(() => ThreadStore.open({ path: join(file, 'threads.sqlite') }), isDatabaseError(/a-file/));

    const garbage = join(dir, 'garbage.sqlite');
    await writeFile(garbage, 'this is not a database, just text long enough to have a header\n'.repeat(20));
    assert.throws(() => ThreadStore.open({ path: garbage }), isDatabaseError(/not a SQLite database/));

    const foreign = join(dir, 'foreign.sqlite');
    const db = new Database(foreign);
    db.exec('CREATE TABLE notes (text TEXT)');
    db.close();
    assert.throws(
      () => ThreadStore.open({ path: foreign }),
      isDatabaseError(/not mailbridge's thread database/),
    );

    const future = join(dir, 'future.sqlite');
    const newer = new Database(future);
    newer.pragma('user_version = 99');
    newer.close();
    assert.throws(
      () => ThreadStore.open({ path: future }),
      isDatabaseError(/newer mailbridge \(schema 99\)/),
    );
  });

  it('waits for another connection holding the write lock, then fails with a hint after the busy timeout', () => {
    const { store, path } = freshStore();
    const blocker = new Database(path);
    blocker.exec('BEGIN IMMEDIATE');
    const impatient = ThreadStore.open({ path, busyTimeoutMs: 50 });
    try {
      assert.equal(impatient.match('muted', ['a@x'], []), false, 'reads are not blocked by a writer');
      assert.throws(
        () => impatient.add('muted', ['a@x']),
        isDatabaseError(/database is locked; another process held the write lock/),
      );
    } finally {
      blocker.exec('ROLLBACK');
      blocker.close();
    }
    impatient.add('muted', ['a@x']);
    assert.equal(store.match('muted', ['a@x'], []), true);
    impatient.close();
    store.close();
  });
});
