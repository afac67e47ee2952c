import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAILBRIDGE_BIN } from '../testbed/mailbridge.ts';
import { runMutt } from '../testbed/mutt.ts';

/**
 * The procmail and maildrop recipes of README.md, run as they are by the real procmail and maildrop (Debian
 * packages), with `mailbridge` on their PATH and messages delivered into real maildirs. Only $HOME is replaced
 * (both programs take it from the password database, so a test cannot set it), and a PATH line is put first.
 * The README's mutt macros run in the real mutt, on a pseudo-terminal, as the keys a person presses.
 */

const README = join(import.meta.dirname, '..', '..', 'README.md');

/** The first ```language block of README.md that mentions `thread` (other blocks are client recipes). */
async function recipe(language: string): Promise<string> {
  const text = await readFile(README, 'utf8');
  const blocks = text.matchAll(new RegExp(`\`\`\`${language}\\n([\\s\\S]*?)\`\`\``, 'g'));
  const block = [...blocks]
    .map((found) => found[1] as string)
    .find((body) => body.includes('mailbridge thread'));
  assert.ok(block, `README.md has a \`\`\`${language} block with mailbridge thread`);
  return block;
}

/** The files of a maildir folder's new/ or cur/, by name. */
async function folder(path: string): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>();
  for (const name of await readdir(path).catch(() => [])) files.set(name, await readFile(join(path, name)));
  return files;
}

async function contents(path: string): Promise<string[]> {
  return [...(await folder(path)).values()].map((content) => content.toString('latin1')).sort();
}

function deliver(command: string, args: string[], message: string | Buffer): void {
  const result = spawnSync(command, args, { input: message, encoding: 'latin1', timeout: 60_000 });
  assert.equal(result.status, 0, `${command} failed: ${result.stderr}`);
}

function withField(message: string, field: string): string {
  return message.replace('\n\n', `\n${field}\n\n`);
}

describe('the README recipes with the real procmail and maildrop', () => {
  let root: string;
  let bin: string;

  const mailbridge = (args: string[], input: string) => {
    const result = spawnSync(join(bin, 'mailbridge'), args, { input, encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
  };

  // The messages the person muted and watched from mutt, and what arrives afterwards.
  const mutedRoot = (tag: string) =>
    `From: a@example.com\nMessage-ID: <m0.${tag}@example.com>\nSubject: noisy\n\nroot\n`;
  const watchedRoot = (tag: string) =>
    `From: a@example.com\nMessage-ID: <w0.${tag}@example.com>\nSubject: watch\n\nroot\n`;
  const mutedReply = (tag: string) =>
    `From: b@example.com\nMessage-ID: <m1.${tag}@example.com>\nIn-Reply-To: <m0.${tag}@example.com>\nSubject: Re: noisy\n\nreply\n`;
  const mutedReplyToReply = (tag: string) =>
    `From: c@example.com\nMessage-ID: <m2.${tag}@example.com>\nIn-Reply-To: <m1.${tag}@example.com>\nSubject: Re: Re: noisy\n\nmore\n`;
  const watchedOnList = (tag: string) =>
    `From: b@example.com\nMessage-ID: <w1.${tag}@example.com>\nReferences: <w0.${tag}@example.com>\nList-Id: Dev <dev.example.org>\nSubject: Re: watch\n\nreply\n`;
  const watchedDirect = (tag: string) =>
    `From: b@example.com\nMessage-ID: <w2.${tag}@example.com>\nReferences: <w0.${tag}@example.com>\nSubject: Re: watch\n\ndirect\n`;
  const spoofed = (tag: string) =>
    `From: spammer@example.net\nMessage-ID: <s.${tag}@example.net>\nX-Muted: true\nSubject: read me\n\nbuy\n`;
  const ordinary = (tag: string) =>
    `From: d@example.com\nMessage-ID: <o.${tag}@example.com>\nSubject: caf\u00e9\n\n8-bit body \u00e9\u00ff\n`;

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'mailbridge-filters-'));
    bin = join(root, 'bin');
    await mkdir(bin);
    await writeFile(
      join(bin, 'mailbridge'),
      `#!/bin/sh\nXDG_DATA_HOME='${join(root, 'data')}' exec '${process.execPath}' '${MAILBRIDGE_BIN}' "$@"\n`,
      { mode: 0o755 },
    );
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('procmail: muted mail lands read in its folder, watched mail also in the inbox, the rest untouched', async () => {
    const home = join(root, 'procmail-home');
    const mail = join(home, 'Mail');
    await mkdir(mail, { recursive: true });
    const rc = join(root, 'procmailrc');
    await writeFile(rc, `PATH=${bin}:$PATH\n${(await recipe('procmail')).replaceAll('$HOME', home)}`);
    mailbridge(['thread', 'add', '--list', 'muted'], mutedRoot('p'));
    mailbridge(['thread', 'add', '--list', 'watched'], watchedRoot('p'));

    for (const message of [
      mutedReply('p'),
      mutedReplyToReply('p'),
      watchedOnList('p'),
      watchedDirect('p'),
      spoofed('p'),
      ordinary('p'),
    ]) {
      deliver('procmail', ['-m', rc], message);
    }

    const muted = await folder(join(mail, '.Muted', 'cur'));
    assert.equal(muted.size, 2);
    for (const name of muted.keys()) assert.match(name, /:2,S$/, 'delivered read');
    assert.deepEqual(await contents(join(mail, '.Muted', 'cur')), [
      withField(mutedReply('p'), 'X-Muted: true'),
      withField(mutedReplyToReply('p'), 'X-Muted: true'),
    ]);
    assert.deepEqual(await contents(join(mail, '.Muted', 'new')), []);
    assert.deepEqual(await contents(join(mail, '.Lists.dev', 'new')), [
      withField(watchedOnList('p'), 'X-Watched: true'),
    ]);
    assert.deepEqual(
      await contents(join(mail, 'INBOX', 'new')),
      [
        withField(watchedOnList('p'), 'X-Watched: true'),
        withField(watchedDirect('p'), 'X-Watched: true'),
        spoofed('p').replace('X-Muted: true\n', ''),
        ordinary('p'),
      ].sort(),
    );
  });

  it('maildrop: the same, with FLAGS for read and cc for the inbox copy', async () => {
    const home = join(root, 'maildrop-home');
    for (const folderName of ['Maildir', 'Maildir/.Muted', 'Maildir/.Lists.dev']) {
      for (const sub of ['cur', 'new', 'tmp']) await mkdir(join(home, folderName, sub), { recursive: true });
    }
    const filter = join(root, 'mailfilter');
    await writeFile(filter, `PATH="${bin}:$PATH"\n${(await recipe('maildrop')).replaceAll('$HOME', home)}`);
    await chmod(filter, 0o600); // maildrop refuses a filter file others can write
    mailbridge(['thread', 'add', '--list', 'muted'], mutedRoot('d'));
    mailbridge(['thread', 'add', '--list', 'watched'], watchedRoot('d'));

    for (const message of [
      mutedReply('d'),
      mutedReplyToReply('d'),
      watchedOnList('d'),
      watchedDirect('d'),
      spoofed('d'),
      ordinary('d'),
    ]) {
      deliver('maildrop', [filter], message);
    }

    const maildir = join(home, 'Maildir');
    const muted = await folder(join(maildir, '.Muted', 'cur'));
    assert.equal(muted.size, 2);
    for (const name of muted.keys()) assert.match(name, /:2,S$/, 'delivered read');
    assert.deepEqual(await contents(join(maildir, '.Muted', 'cur')), [
      withField(mutedReply('d'), 'X-Muted: true'),
      withField(mutedReplyToReply('d'), 'X-Muted: true'),
    ]);
    assert.deepEqual(await contents(join(maildir, '.Lists.dev', 'new')), [
      withField(watchedOnList('d'), 'X-Watched: true'),
    ]);
    assert.deepEqual(
      await contents(join(maildir, 'new')),
      [
        withField(watchedOnList('d'), 'X-Watched: true'),
        withField(watchedDirect('d'), 'X-Watched: true'),
        spoofed('d').replace('X-Muted: true\n', ''),
        ordinary('d'),
      ].sort(),
    );
  });

  it('mutt: the macros M, W and U mute, watch and unmute the thread of the message under the cursor', async () => {
    const home = join(root, 'mutt-home');
    await mkdir(home, { recursive: true });
    const inbox = join(home, 'inbox');
    await writeFile(
      inbox,
      'From b@example.com Sat Nov 28 10:00:00 2026\n' +
        'From: b@example.com\nMessage-ID: <t1.u@example.com>\nIn-Reply-To: <t0.u@example.com>\n' +
        'References: <t0.u@example.com>\nSubject: Re: a thread\n\nreply\n\n',
    );
    const muttrc = [
      'set mbox_type = mbox',
      `set folder = "${home}"`,
      `set spoolfile = "${inbox}"`,
      await recipe('muttrc'),
    ];
    // The database is shared with the tests above: find this thread among theirs.
    const thread = (list: string) =>
      spawnSync(join(bin, 'mailbridge'), ['thread', 'list', '--list', list], { encoding: 'utf8' })
        .stdout.split('\n')
        .find((line) => line.includes('<t0.u@example.com>'))
        ?.split(' ')
        .sort();
    const both = ['<t0.u@example.com>', '<t1.u@example.com>'];
    const press = async (key: string) => {
      const result = await runMutt({
        dir: home,
        muttrc,
        keys: `${key}<quit>`,
        env: { PATH: `${bin}:${process.env.PATH}`, SHELL: '/bin/sh' },
      });
      assert.equal(result.code, 0, `mutt after ${key}:\n${result.screen}`);
    };

    await press('M');
    assert.deepEqual(thread('muted'), both);
    assert.equal(thread('watched'), undefined);
    await press('W');
    assert.deepEqual(thread('watched'), both);
    await press('U');
    assert.equal(thread('muted'), undefined);
    assert.deepEqual(thread('watched'), both, 'unmute leaves watched alone');
  });
});
