import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { add, importFile, list, match, prune, remove, type ThreadIo } from '../../../src/thread/commands.ts';

let root: string;
let counter = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'mailbridge-thread-commands-'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

interface Captured {
  io: ThreadIo;
  stdout(): Buffer;
  stderr(): string;
}

function capture(input: string | Buffer = '', now = () => Date.UTC(2026, 0, 1)): Captured {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const sink = (chunks: Buffer[]) =>
    new Writable({
      write(chunk: Buffer, _encoding, done) {
        chunks.push(Buffer.from(chunk));
        done();
      },
    });
  return {
    io: {
      stdin: Readable.from([Buffer.from(input)]),
      stdout: sink(out),
      stderr: sink(err),
      env: {},
      homedir: join(root, 'home'),
      now,
    },
    stdout: () => Buffer.concat(out),
    stderr: () => Buffer.concat(err).toString('utf8'),
  };
}

const freshDb = () => join(root, `c${counter++}.sqlite`);
const MUTED = 'Message-ID: <2@x>\nIn-Reply-To: <1@x>\nSubject: re\n\nbody\n';

describe('thread commands', () => {
  it('add, then match adds the header only to mail of that thread', async () => {
    const db = freshDb();
    const adding = capture('Message-ID: <1@x>\nSubject: first\n\nbody\n');
    assert.equal(await add({ db, list: 'muted' }, [], adding.io), 0);
    assert.equal(adding.stdout().length, 0);
    assert.match(adding.stderr(), /muted: the thread of <1@x> \(new thread, 1 new of 1 IDs\)/);

    const hit = capture(MUTED);
    assert.equal(await match({ db, list: 'muted', header: 'X-Muted: true' }, hit.io), 0);
    assert.equal(
      hit.stdout().toString(),
      'Message-ID: <2@x>\nIn-Reply-To: <1@x>\nSubject: re\nX-Muted: true\n\nbody\n',
    );
    assert.equal(hit.stderr(), '');

    const miss = capture('Message-ID: <9@x>\n\nbody\n');
    assert.equal(await match({ db, list: 'muted', header: 'X-Muted: true' }, miss.io), 0);
    assert.equal(miss.stdout().toString(), 'Message-ID: <9@x>\n\nbody\n');
  });

  it('does not add the header twice when the message already carries it', async () => {
    const db = freshDb();
    await add({ db, list: 'muted' }, ['1@x'], capture().io);
    const again = capture('Message-ID: <2@x>\nIn-Reply-To: <1@x>\nX-Muted:  true\n\n');
    await match({ db, list: 'muted', header: 'X-Muted: true' }, again.io);
    assert.equal(again.stdout().toString(), 'Message-ID: <2@x>\nIn-Reply-To: <1@x>\nX-Muted:  true\n\n');
  });

  it('passes the message through, exit 0, with a bad --header or list name, reporting on stderr', async () => {
    const db = freshDb();
    for (const flags of [
      { db, list: 'muted', header: 'no colon' },
      { db, list: 'muted', header: 'X-A: 1\nX-B: 2' },
      { db, list: '', header: 'X-Muted: true' },
    ]) {
      const run = capture(MUTED);
      assert.equal(await match(flags, run.io), 0);
      assert.equal(run.stdout().toString(), MUTED);
      assert.match(
        run.stderr(),
        /^mailbridge thread match: invalid .*; the message passes through unchanged\n$/,
      );
    }
  });

  it('does not open the database for a message without IDs', async () => {
    const run = capture('Subject: nothing to look up\n\nbody');
    const db = join(root, 'file-not-dir');
    await writeFile(db, 'x');
    assert.equal(await match({ db: join(db, 'threads.sqlite'), list: 'muted', header: 'X-M: 1' }, run.io), 0);
    assert.equal(run.stdout().toString(), 'Subject: nothing to look up\n\nbody');
    assert.equal(run.stderr(), '');
  });

  it('refuses to add a message without IDs, saying why', async () => {
    const noIds = capture('Subject: x\n\nbody\n');
    assert.equal(await add({ db: freshDb(), list: 'muted' }, [], noIds.io), 1);
    assert.match(noIds.stderr(), /no Message-ID, In-Reply-To or References field\n$/);
    const decoded = capture('just a body, as mutt pipes with pipe_decode set\n');
    assert.equal(await add({ db: freshDb(), list: 'muted' }, [], decoded.io), 1);
    assert.match(decoded.stderr(), /unset pipe_decode/);
  });

  it('adds and removes by IDs given as arguments, refusing what is not an ID', async () => {
    const db = freshDb();
    assert.equal(await add({ db, list: 'muted' }, ['<1@x>', '2@x'], capture().io), 0);
    const bad = capture();
    assert.equal(await add({ db, list: 'muted' }, ['a b'], bad.io), 2);
    assert.match(bad.stderr(), /'a b' is not a Message-ID/);
    const removing = capture();
    assert.equal(await remove({ db, list: 'muted' }, ['<2@x>'], removing.io), 0);
    assert.match(removing.stderr(), /muted: removed 1 thread\n/);
    const none = capture(MUTED);
    assert.equal(await remove({ db, list: 'muted' }, [], none.io), 0);
    assert.match(none.stderr(), /the thread was not in this list/);
  });

  it('lists a list in the import format, summarises all lists, and names the lists when asked for a missing one', async () => {
    const db = freshDb();
    await add({ db, list: 'muted' }, ['1@x', '2@x'], capture().io);
    await add({ db, list: 'muted' }, ['3@x'], capture().io);
    await add({ db, list: 'watched' }, ['w@x'], capture().io);
    const one = capture();
    assert.equal(await list({ db, list: 'muted' }, one.io), 0);
    assert.equal(one.stdout().toString(), '<1@x> <2@x>\n<3@x>\n');
    const all = capture();
    assert.equal(await list({ db }, all.io), 0);
    assert.equal(
      all.stdout().toString(),
      'muted: 2 threads, 3 IDs, last seen 2026-01-01T00:00:00.000Z\n' +
        'watched: 1 thread, 1 ID, last seen 2026-01-01T00:00:00.000Z\n',
    );
    const missing = capture();
    assert.equal(await list({ db, list: 'mutted' }, missing.io), 2);
    assert.match(missing.stderr(), /there is no list 'mutted' in .* \(lists: 'muted', 'watched'\)/);
  });

  it('prunes by age, refusing an ambiguous or malformed duration', async () => {
    const db = freshDb();
    await add({ db, list: 'muted' }, ['1@x'], capture().io);
    const later = () => Date.UTC(2026, 0, 1) + 181 * 24 * 3600 * 1000;
    const pruning = capture('', later);
    assert.equal(await prune({ db, olderThan: '180d' }, pruning.io), 0);
    assert.match(pruning.stderr(), /all lists: pruned 1 thread not seen for 180d/);
    for (const olderThan of ['6m', '180', 'd', '-1d', '1.5d']) {
      const bad = capture();
      assert.equal(await prune({ db, olderThan }, bad.io), 2, olderThan);
      assert.match(bad.stderr(), /invalid duration/);
    }
  });

  it('imports a file, and stdin with -, reporting lines it could not read', async () => {
    const db = freshDb();
    const file = join(root, `import${counter++}.txt`);
    await writeFile(file, '<1@x> <2@x>\n\n3@x\n<4@x> not an id <5@x>\n');
    const importing = capture();
    assert.equal(await importFile({ db, list: 'muted' }, file, importing.io), 0);
    assert.match(importing.stderr(), /skipped what is not a Message-ID on 1 line: 4\n/);
    assert.match(importing.stderr(), /muted: imported 3 threads \(5 new IDs\)/);
    const piped = capture('<6@x> <1@x>\n');
    assert.equal(await importFile({ db, list: 'muted' }, '-', piped.io), 0);
    const listed = capture();
    await list({ db, list: 'muted' }, listed.io);
    assert.equal(listed.stdout().toString(), '<1@x> <2@x> <6@x>\n<3@x>\n<4@x> <5@x>\n');
    const missing = capture();
    assert.equal(await importFile({ db, list: 'muted' }, join(root, 'nope.txt'), missing.io), 2);
    assert.match(missing.stderr(), /cannot read '.*nope\.txt': ENOENT/);
  });

  it('uses the database in the data directory by default', async () => {
    const home = capture('Message-ID: <1@x>\n\n');
    home.io.env = { XDG_DATA_HOME: join(root, 'xdg') };
    assert.equal(await add({ list: 'muted' }, [], home.io), 0);
    const listed = capture();
    assert.equal(
      await list({ db: join(root, 'xdg', 'mailbridge', 'threads.sqlite'), list: 'muted' }, listed.io),
      0,
    );
    assert.equal(listed.stdout().toString(), '<1@x>\n');
  });
});
