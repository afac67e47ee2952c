import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAILBRIDGE_BIN } from '../testbed/mailbridge.ts';

/**
 * The built `mailbridge thread …` run as procmail and mutt run it: one process per message, the message on
 * stdin, the result compared byte for byte.
 */

interface Result {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function mailbridge(
  args: string[],
  input: Buffer | string = '',
  env: Record<string, string> = {},
): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAILBRIDGE_BIN, ...args], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => undefined); // a process that exits before reading all is judged by its output
    child.stdin.end(input);
  });
}

/** Runs `tasks` with at most `limit` at a time, as a mail server's delivery concurrency would. */
async function bounded<T>(limit: number, tasks: (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      results[index] = await (tasks[index] as () => Promise<T>)();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

const HEADER = 'X-Muted: true';

describe('mailbridge thread (the built command)', () => {
  let dir: string;
  let counter = 0;
  const freshDb = () => join(dir, `db${counter++}`, 'threads.sqlite');
  const match = (db: string, input: Buffer | string, list = 'muted') =>
    mailbridge(['thread', 'match', '--db', db, '--list', list, '--header', HEADER], input);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-thread-'));
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('is listed in mailbridge --help', async () => {
    const result = await mailbridge(['--help']);
    assert.match(result.stdout.toString(), /thread/);
  });

  it('mutes a thread from a piped message, then marks replies, byte for byte, and nothing else', async () => {
    const db = freshDb();
    const first = 'From: a@example.com\nMessage-ID: <root@example.com>\nSubject: noisy\n\nfirst\n';
    const added = await mailbridge(['thread', 'add', '--db', db, '--list', 'muted'], first);
    assert.equal(added.code, 0, added.stderr);
    assert.equal(added.stdout.length, 0);

    const bodies = {
      lf: (h: string) => Buffer.from(`${h.replaceAll('\r\n', '\n')}\nbody\n`),
      crlf: (h: string) => Buffer.from(`${h.replaceAll('\n', '\r\n')}\r\nbody\r\n`),
      'no final newline': (h: string) => Buffer.from(`${h}\nlast line`),
      '8-bit': (h: string) =>
        Buffer.concat([
          Buffer.from(`${h}Content-Type: text/plain; charset=latin1\n\n`),
          randomBytes(64 * 1024),
        ]),
      'header only': (h: string) => Buffer.from(h),
    };
    let reply = 0;
    for (const [name, make] of Object.entries(bodies)) {
      reply += 1;
      const header = `From: b@example.com\nMessage-ID: <r${reply}@example.com>\nReferences: <root@example.com>\n\t<r${reply - 1}@example.com>\nSubject: Re: noisy\n`;
      const input = make(header);
      const crlf = name === 'crlf';
      const end = input.indexOf(crlf ? '\r\n\r\n' : '\n\n');
      const at = end === -1 ? input.length : end + (crlf ? 2 : 1);
      const expected = Buffer.concat([
        input.subarray(0, at),
        Buffer.from(`${HEADER}${crlf ? '\r\n' : '\n'}`),
        input.subarray(at),
      ]);
      const result = await match(db, input);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
      assert.equal(result.stderr, '', name);
      assert.ok(result.stdout.equals(expected), `${name}:\n${result.stdout.toString('latin1')}`);

      const other = await match(db, input, 'watched');
      assert.ok(other.stdout.equals(input), `${name} in another list passes through`);
    }

    // The last reply was learnt: its own answer, citing only it, is in the thread too.
    const truncated = `Message-ID: <late@example.com>\nIn-Reply-To: <r${reply}@example.com>\n\nhi\n`;
    assert.equal(
      (await match(db, truncated)).stdout.toString(),
      truncated.replace('\n\n', `\n${HEADER}\n\n`),
    );
  });

  it('passes through, unchanged and exit 0, whatever does not match or cannot be parsed', async () => {
    const db = freshDb();
    await mailbridge(['thread', 'add', '--db', db, '--list', 'muted', '<root@example.com>']);
    const inputs = {
      empty: Buffer.alloc(0),
      'blank line': Buffer.from('\n'),
      'no headers': Buffer.from('Just a body.\nReferences: <root@example.com>\n'),
      garbage: randomBytes(100_000),
      'substring of a muted ID': Buffer.from('References: <oot@example.com> <root@example.co>\n\nx'),
      'missing Message-ID': Buffer.from('Subject: x\r\nIn-Reply-To: <other@example.com>\r\n\r\nbody'),
      'large (8 MiB)': Buffer.concat([Buffer.from('Message-ID: <big@x>\n\n'), randomBytes(8 * 1024 * 1024)]),
    };
    for (const [name, input] of Object.entries(inputs)) {
      const result = await match(db, input);
      assert.equal(result.code, 0, `${name}: ${result.stderr}`);
      assert.equal(result.stderr, '', name);
      assert.ok(result.stdout.equals(input), name);
    }
  });

  it('never loses the message to a database error: passes it through, exit 0, and says why on stderr', async () => {
    const notADirectory = join(dir, 'a-file');
    await writeFile(notADirectory, 'x');
    const garbage = join(dir, 'garbage.sqlite');
    await writeFile(garbage, 'not a database\n'.repeat(100));
    const input = Buffer.from('Message-ID: <1@x>\nIn-Reply-To: <0@x>\n\nbody\n');
    for (const db of [join(notADirectory, 'threads.sqlite'), garbage]) {
      const result = await match(db, input);
      assert.equal(result.code, 0);
      assert.ok(result.stdout.equals(input));
      assert.match(
        result.stderr,
        /^mailbridge thread match: opening thread database '.*' failed: .*; the message passes/,
      );
      assert.ok(result.stderr.includes(db));
    }
    const add = await mailbridge(['thread', 'add', '--db', garbage, '--list', 'muted'], input);
    assert.equal(add.code, 1);
    assert.match(add.stderr, /not a SQLite database/);
  });

  it('keeps every thread and every learnt ID when 20 processes add and match at once', async () => {
    const db = freshDb();
    const thread = (i: number) =>
      `Message-ID: <t${i}@x>\nReferences: <root${i}@x>\nSubject: ${i}\n\nbody ${i}\n`;
    const add = (i: number) => () => mailbridge(['thread', 'add', '--db', db, '--list', 'muted'], thread(i));

    // 20 processes creating the same new database at once.
    const created = await bounded(
      20,
      Array.from({ length: 20 }, (_, i) => add(i)),
    );
    for (const result of created) assert.equal(result.code, 0, result.stderr);

    const reply = (i: number) => `Message-ID: <reply${i}@x>\nIn-Reply-To: <t${i}@x>\n\nre ${i}\n`;
    const stranger = (i: number) => `Message-ID: <s${i}@x>\nReferences: <elsewhere${i}@x>\n\nhello ${i}\n`;
    const tasks = Array.from({ length: 20 }, (_, i) => [
      add(20 + i),
      () => match(db, reply(i)),
      () => match(db, stranger(i)),
    ]).flat();
    const results = await bounded(20, tasks);
    results.forEach((result, index) => {
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stderr.includes('failed'), false, result.stderr);
      const i = Math.floor(index / 3);
      if (index % 3 === 1)
        assert.equal(result.stdout.toString(), reply(i).replace('\n\n', `\n${HEADER}\n\n`));
      if (index % 3 === 2) assert.equal(result.stdout.toString(), stranger(i));
    });

    const listed = await mailbridge(['thread', 'list', '--db', db, '--list', 'muted']);
    const lines = listed.stdout.toString().trimEnd().split('\n').sort();
    const expected = Array.from({ length: 40 }, (_, i) =>
      i < 20 ? `<t${i}@x> <root${i}@x> <reply${i}@x>` : `<t${i}@x> <root${i}@x>`,
    ).sort();
    assert.deepEqual(lines, expected);
  });

  it('imports the one-line-per-thread file of the old scripts, and lists in the same format', async () => {
    const db = freshDb();
    const file = join(dir, 'muted-threads');
    await writeFile(file, '<a1@x> <a2@x> <a3@x>\nb1@x <b2@x>\n\n<c1@x>\n');
    const imported = await mailbridge(['thread', 'import', file, '--db', db, '--list', 'muted']);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stderr, /imported 3 threads \(6 new IDs\)/);
    const hit = await match(db, 'Message-ID: <a4@x>\nReferences: <a1@x>\n <a3@x>\n\n');
    assert.match(hit.stdout.toString(), /X-Muted: true/);
    const listed = await mailbridge(['thread', 'list', '--db', db, '--list', 'muted']);
    assert.equal(listed.stdout.toString(), '<a1@x> <a2@x> <a3@x> <a4@x>\n<b1@x> <b2@x>\n<c1@x>\n');

    const copy = freshDb();
    await mailbridge(['thread', 'import', '-', '--db', copy, '--list', 'muted'], listed.stdout);
    const relisted = await mailbridge(['thread', 'list', '--db', copy, '--list', 'muted']);
    assert.ok(relisted.stdout.equals(listed.stdout));
  });

  it('removes (unmutes) a thread from a piped message, and prunes old threads', async () => {
    const db = freshDb();
    const message = 'Message-ID: <m@x>\nReferences: <root@x>\n\nbody\n';
    await mailbridge(['thread', 'add', '--db', db, '--list', 'muted'], message);
    const removed = await mailbridge(
      ['thread', 'remove', '--db', db, '--list', 'muted'],
      'Message-ID: <n@x>\nReferences: <root@x>\n\n',
    );
    assert.equal(removed.code, 0);
    assert.match(removed.stderr, /removed 1 thread/);
    assert.equal((await match(db, message)).stdout.toString(), message);

    await mailbridge(['thread', 'add', '--db', db, '--list', 'muted'], message);
    const kept = await mailbridge(['thread', 'prune', '--db', db, '--older-than', '1d']);
    assert.match(kept.stderr, /pruned 0 threads/);
    const bad = await mailbridge(['thread', 'prune', '--db', db, '--older-than', '6m']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /invalid duration '6m'/);
  });

  it('refuses a missing --list before reading anything, so procmail keeps the message', async () => {
    const result = await mailbridge(['thread', 'match', '--header', HEADER], 'Message-ID: <1@x>\n\n');
    assert.notEqual(result.code, 0);
    assert.equal(result.stdout.length, 0);
    assert.match(result.stderr, /--list/);

    const unknown = await mailbridge(
      ['thread', 'match', '--list', 'muted', '--header', HEADER, '--bogus'],
      'Message-ID: <1@x>\n\n',
    );
    assert.notEqual(unknown.code, 0);
    assert.equal(unknown.stdout.length, 0);
    assert.match(unknown.stderr, /unknown option '--bogus'/);
  });

  it('explains match with --help, even next to complete options', async () => {
    const help = await mailbridge(['thread', 'match', '--list', 'muted', '--header', HEADER, '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout.toString(), /Usage: mailbridge thread match \[options\]/);
    assert.match(help.stdout.toString(), /--header <field>/);
  });
});
