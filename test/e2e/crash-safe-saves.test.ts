import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { IniDocument } from '../../src/config/ini.ts';

/**
 * Token persistence under the worst a machine does: `kill -9` at any moment of a save, again and again, and
 * two processes saving to one file at once. The saving is the real ConfigStore of the built program, in
 * child processes (cache/saver.mjs). After every kill the file must parse, keep everything that is not a
 * token, and hold one whole generation of tokens: the last one the process reported saved, or the one it was
 * saving. A lock file left by a killed process must not stop the next one.
 */
const SAVER = join(import.meta.dirname, 'cache', 'saver.mjs');
const ROUNDS = Number(process.env.KILL_ROUNDS ?? 120);
/**
 * Each kill comes after a random number (0-3) of saves reported, then a random delay within about one
 * save's time, so kills land in every phase of a save: taking the lock, reading, writing the temporary file,
 * fsync, rename, releasing.
 */
const MAX_SAVES_BEFORE_KILL = 3;
const KILL_DELAY_MS = 15;
const ACCOUNT = 'alice@example.test';
const OTHER = 'bob@example.test';

const CONFIG = [
  '# crash-safe saves: this comment, the server section and the other account must survive every kill',
  '[IMAP-1993]',
  'server_address = outlook.office365.com',
  'server_port = 993',
  '',
  `[${ACCOUNT}]`,
  'permission_url = https://login.example.test/authorize',
  'token_url = https://login.example.test/token',
  '',
  `[${OTHER}]`,
  'token_url = https://login.example.test/token',
  'refresh_token = untouched',
  '',
].join('\n');

let dir: string;

interface Saver {
  child: ChildProcess;
  lines: string[];
  ready: Promise<void>;
}

function startSaver(env: Record<string, string>): Saver {
  const child = spawn(process.execPath, [SAVER], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
  });
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      lines.push(line);
      if (line === 'ready') resolve();
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`saver exited (${code ?? signal}) before ready: ${stderr}`)),
    );
  });
  return { child, lines, ready };
}

/** The generation of each token field of the account, or a description of what is wrong. */
function generations(text: string, path: string): number[] {
  const doc = IniDocument.parse(text, path);
  const field = (key: string, pattern: RegExp) => {
    const value = doc.get(ACCOUNT, key);
    const match = value === undefined ? null : pattern.exec(value);
    assert.ok(match, `${key} = ${value?.slice(0, 40)}`);
    return Number(match[1]);
  };
  assert.equal(doc.get(OTHER, 'refresh_token'), 'untouched');
  assert.equal(doc.get('IMAP-1993', 'server_port'), '993');
  assert.equal(doc.get(ACCOUNT, 'token_url'), 'https://login.example.test/token');
  return [
    field('token_salt', /^salt-(\d+)$/),
    field('access_token', /^access-(\d+)-x{300}$/),
    field('access_token_expiry', /^(\d+)$/),
    field('refresh_token', /^refresh-(\d+)-x{300}$/),
    field('last_activity', /^(\d+)$/),
  ];
}

describe('token saves survive kill -9 and shared files', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-saves-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`leaves a whole old or new generation after kill -9 at a random moment, ${ROUNDS} times`, async (t) => {
    const path = join(dir, 'kill.config');
    await writeFile(path, CONFIG, { mode: 0o600 });
    // Generation 0 on disk to begin with, written the same way.
    const seed = startSaver({ CONFIG: path, ACCOUNT, START: '0', COUNT: '1' });
    await once(seed.child, 'exit');
    let committed = 0;
    const outcomes = { unchanged: 0, lastReported: 0, inFlight: 0, staleLocks: 0, savesReported: 0 };
    for (let round = 1; round <= ROUNDS; round += 1) {
      const staleLock = existsSync(`${path}.lock`);
      if (staleLock) outcomes.staleLocks += 1;
      const saver = startSaver({ CONFIG: path, ACCOUNT, START: String(committed + 1) });
      await saver.ready;
      const savesFirst = Math.floor(Math.random() * (MAX_SAVES_BEFORE_KILL + 1));
      while (saver.lines.length - 1 < savesFirst && saver.child.exitCode === null) await sleep(1);
      await sleep(Math.random() * KILL_DELAY_MS);
      saver.child.kill('SIGKILL');
      await once(saver.child, 'exit');
      const reported = saver.lines.filter((line) => /^\d+$/.test(line)).map(Number);
      outcomes.savesReported += reported.length;
      const lastReported = reported.at(-1) ?? committed;
      const text = await readFile(path, 'utf8');
      let found: number[];
      try {
        found = generations(text, path);
      } catch (error: unknown) {
        assert.fail(
          `round ${round}: the file is not one whole generation: ${(error as Error).message}\n${text.slice(0, 600)}`,
        );
      }
      const [generation] = found as [number];
      assert.deepEqual(
        found,
        found.map(() => generation),
        `round ${round}: fields from different saves: ${found}`,
      );
      assert.ok(
        generation === lastReported || generation === lastReported + 1,
        `round ${round}: generation ${generation} on disk, but the process reported ${lastReported} saved`,
      );
      if (generation === committed) outcomes.unchanged += 1;
      else if (generation === lastReported) outcomes.lastReported += 1;
      else outcomes.inFlight += 1;
      assert.equal((await stat(path)).mode & 0o777, 0o600);
      committed = generation;
    }
    // A last, uninterrupted process takes over whatever lock the last kill left, and leaves none.
    const last = startSaver({ CONFIG: path, ACCOUNT, START: String(committed + 1), COUNT: '3' });
    const [code] = (await once(last.child, 'exit')) as [number];
    assert.equal(code, 0);
    assert.deepEqual(generations(await readFile(path, 'utf8'), path), Array(5).fill(committed + 3));
    assert.equal(existsSync(`${path}.lock`), false);
    const leftovers = (await readdir(dir)).filter((name) => name.startsWith('.kill.config.'));
    t.diagnostic(
      `${ROUNDS} kills: ${outcomes.unchanged} before any save finished, ${outcomes.lastReported} right after a save, ` +
        `${outcomes.inFlight} with the save written but not yet reported; ${outcomes.savesReported} saves in all; ` +
        `${outcomes.staleLocks} stale locks taken over; ${leftovers.length} temporary files left by killed writers (a later save removes them once a minute old)`,
    );
    assert.ok(outcomes.savesReported >= ROUNDS, 'the processes did save between kills');
    assert.ok(outcomes.staleLocks > 0, 'some kills landed while the lock was held: takeover was exercised');
  });

  it('loses no save when two processes write one file at once (each re-reads under the lock)', async () => {
    const path = join(dir, 'shared.config');
    await writeFile(path, CONFIG.replace(`refresh_token = untouched\n`, ''), { mode: 0o600 });
    const count = 150;
    const savers = [ACCOUNT, OTHER].map((account) =>
      startSaver({ CONFIG: path, ACCOUNT: account, START: '1', COUNT: String(count), CHECK: '1' }),
    );
    const codes = await Promise.all(
      savers.map(async ({ child }) => ((await once(child, 'exit')) as [number])[0]),
    );
    assert.deepEqual(codes, [0, 0]);
    for (const saver of savers) {
      assert.deepEqual(
        saver.lines.filter((line) => line.startsWith('lost')),
        [],
        'a save was overwritten',
      );
      assert.equal(saver.lines.filter((line) => /^\d+$/.test(line)).length, count);
    }
    const doc = IniDocument.parse(await readFile(path, 'utf8'), path);
    assert.equal(doc.get(ACCOUNT, 'access_token_expiry'), String(count));
    assert.equal(doc.get(OTHER, 'access_token_expiry'), String(count));
  });
});
