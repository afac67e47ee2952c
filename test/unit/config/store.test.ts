import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IniDocument } from '../../../src/config/ini.ts';
import { ConfigStore } from '../../../src/config/store.ts';
import { collectStatus } from '../../../src/doctor/status.ts';
import { isMailbridgeError } from '../../../src/errors.ts';
import { silentLogger } from '../../../src/log.ts';

/**
 * The configuration store's persistence: saves that never lose another process's tokens, token changes kept
 * until they reach the disk, and reload that changes nothing unless the whole file is good.
 */
let dir: string;
let counter = 0;

const CONFIG = [
  '# a comment that every save keeps',
  '[IMAP-1993]',
  'server_address = outlook.office365.com',
  'server_port = 993',
  '',
  '[alice@example.test]',
  'token_url = https://login.example.test/token',
  '',
  '[bob@example.test]',
  'token_url = https://login.example.test/token',
  '',
].join('\n');

async function freshConfig(text = CONFIG): Promise<string> {
  counter += 1;
  const path = join(dir, `config-${counter}.ini`);
  await writeFile(path, text, { mode: 0o600 });
  return path;
}

function load(configPath: string, cachePath?: string): Promise<ConfigStore> {
  return ConfigStore.load({ configPath, cachePath, logger: silentLogger() });
}

function tokens(generation: number, who: string) {
  return {
    access_token: `${who}-access-${generation}`,
    refresh_token: `${who}-refresh-${generation}`,
    access_token_expiry: String(generation),
  };
}

async function onDisk(path: string, section: string, key: string): Promise<string | undefined> {
  const doc = IniDocument.parse(await readFile(path, 'utf8'), path);
  return doc.hasSection(section) ? doc.get(section, key) : undefined;
}

describe('config store persistence', () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-store-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loses no update when two stores (two processes) save to one file at the same time', async () => {
    const path = await freshConfig();
    const [a, b] = await Promise.all([load(path), load(path)]);
    for (let generation = 1; generation <= 30; generation += 1) {
      await Promise.all([
        a.saveTokens('alice@example.test', tokens(generation, 'alice')),
        b.saveTokens('bob@example.test', tokens(generation, 'bob')),
      ]);
      assert.equal(await onDisk(path, 'alice@example.test', 'access_token'), `alice-access-${generation}`);
      assert.equal(await onDisk(path, 'bob@example.test', 'access_token'), `bob-access-${generation}`);
    }
    assert.match(await readFile(path, 'utf8'), /^# a comment that every save keeps$/m);
    assert.deepEqual(
      (await readdir(dir)).filter((name) => name.includes(`config-${counter}.ini`) && !name.endsWith('.ini')),
      [],
      'no lock or temporary file left behind',
    );
  });

  it('removes temporary files that killed writers left, once they are old', async () => {
    const path = await freshConfig();
    const store = await load(path);
    const old = join(dir, `.config-${counter}.ini.killedwriter.tmp`);
    const young = join(dir, `.config-${counter}.ini.writing-now.tmp`);
    await writeFile(old, 'half a file');
    await writeFile(young, 'half a file');
    const past = new Date(Date.now() - 3_600_000);
    await utimes(old, past, past);
    await store.saveTokens('alice@example.test', tokens(1, 'alice'));
    const left = await readdir(dir);
    assert.equal(left.includes(`.config-${counter}.ini.killedwriter.tmp`), false);
    assert.equal(left.includes(`.config-${counter}.ini.writing-now.tmp`), true);
  });

  it('gives a login the tokens another process saved since (a rotated refresh token), not its own old ones', async () => {
    const path = await freshConfig();
    const [a, b] = await Promise.all([load(path), load(path)]);
    await a.saveTokens('alice@example.test', tokens(1, 'alice'));
    assert.equal(b.cachedTokens('alice@example.test').refresh_token, 'alice-refresh-1');
    await b.saveTokens('alice@example.test', tokens(2, 'alice'));
    assert.equal(a.cachedTokens('alice@example.test').refresh_token, 'alice-refresh-2');
    // With a separate cache file too.
    const cache = join(dir, `cache-${counter}.ini`);
    const [c, d] = await Promise.all([load(path, cache), load(path, cache)]);
    await c.saveTokens('alice@example.test', tokens(3, 'alice'));
    assert.equal(d.cachedTokens('alice@example.test').refresh_token, 'alice-refresh-3');
  });

  it('keeps a change whose save failed and writes it with the next save', async () => {
    const path = await freshConfig();
    const store = await load(path);
    // A user mid-edit: the file does not parse, so the save must not overwrite it.
    await writeFile(path, `${CONFIG}\n[broken`);
    await assert.rejects(
      store.saveTokens('alice@example.test', { refresh_token: 'kept-refresh', access_token: 'a1' }),
      (error: unknown) => isMailbridgeError(error, 'CONFIG_WRITE'),
    );
    assert.equal(store.cachedTokens('alice@example.test').refresh_token, 'kept-refresh');
    await writeFile(path, CONFIG);
    // A refresh whose response carries no refresh token saves only the access token…
    await store.saveTokens('alice@example.test', { access_token: 'a2' });
    // …and the refresh token from the failed save reaches the disk with it.
    assert.equal(await onDisk(path, 'alice@example.test', 'refresh_token'), 'kept-refresh');
    assert.equal(await onDisk(path, 'alice@example.test', 'access_token'), 'a2');
  });

  it('flush() writes what failed to save earlier', async () => {
    const path = await freshConfig();
    const store = await load(path);
    await writeFile(path, `${CONFIG}\n[broken`);
    await store.saveTokens('bob@example.test', tokens(7, 'bob')).catch(() => undefined);
    await writeFile(path, CONFIG);
    await store.flush();
    assert.equal(await onDisk(path, 'bob@example.test', 'refresh_token'), 'bob-refresh-7');
  });

  it('reload applies a good file, and refuses a bad one or a refused preparation without changing anything', async () => {
    const path = await freshConfig();
    const store = await load(path);
    await store.saveTokens('alice@example.test', tokens(1, 'alice'));
    const edited = (await readFile(path, 'utf8')).replace(
      'server_port = 993',
      'server_port = 993\nlocal_address = 127.0.0.2',
    );
    await writeFile(path, `${edited}\n[POP-1995]\nserver_address = pop.example.test\nserver_port = 995\n`);
    const seen = await store.reload(async (servers) => servers.map((server) => server.section));
    assert.deepEqual(seen, ['IMAP-1993', 'POP-1995']);
    assert.deepEqual(
      store.servers().map((server) => [server.section, server.localAddress]),
      [
        ['IMAP-1993', '127.0.0.2'],
        ['POP-1995', undefined],
      ],
    );
    assert.equal(store.cachedTokens('alice@example.test').refresh_token, 'alice-refresh-1');

    await writeFile(path, CONFIG.replace('server_port = 993', 'server_port = many'));
    await assert.rejects(
      store.reload(async () => undefined),
      /server_port/,
    );
    assert.equal(store.servers().length, 2, 'the running configuration stays');

    await writeFile(path, CONFIG);
    await assert.rejects(
      store.reload(async () => {
        throw new Error('certificate does not load');
      }),
      /certificate does not load/,
    );
    assert.equal(store.servers().length, 2, 'a refused preparation changes nothing');
  });

  it('reload keeps token changes that are not on disk yet', async () => {
    const path = await freshConfig();
    const store = await load(path);
    await writeFile(path, `${CONFIG}\n[broken`);
    await store.saveTokens('alice@example.test', tokens(5, 'alice')).catch(() => undefined);
    await writeFile(path, CONFIG.replace('server_port = 993', 'server_port = 994'));
    await store.reload(async () => undefined);
    assert.equal(store.servers()[0]?.serverPort, 994);
    assert.equal(store.cachedTokens('alice@example.test').refresh_token, 'alice-refresh-5');
    await store.flush();
    assert.equal(await onDisk(path, 'alice@example.test', 'refresh_token'), 'alice-refresh-5');
  });

  it('does not apply other edits of the file before a reload, only token fields', async () => {
    const path = await freshConfig();
    const store = await load(path);
    await writeFile(path, CONFIG.replace('server_port = 993', 'server_port = 1993'));
    await store.saveTokens('alice@example.test', tokens(1, 'alice'));
    assert.equal(store.servers()[0]?.serverPort, 993);
    assert.equal(await onDisk(path, 'IMAP-1993', 'server_port'), '1993', "the user's edit is kept on disk");
  });

  it('lists catch-all users that only a separate token cache knows, and nothing the configuration cannot serve', async () => {
    const configPath = await freshConfig(
      `${CONFIG}\n[emailproxy]\nallow_catch_all_accounts = True\n\n` +
        '[@example.org]\npermission_url = https://login.example.test/authorize\ntoken_url = https://login.example.test/token\n' +
        'oauth2_scope = mail\nclient_id = id\nredirect_uri = http://localhost\n\n' +
        '[@broken.test]\ntoken_url = https://login.example.test/token\n',
    );
    const cachePath = join(dir, `cache-${counter}.ini`);
    await writeFile(
      cachePath,
      '[alice@example.test]\naccess_token = a\n\n[carol@example.org]\naccess_token = c\n\n' +
        '[dave@broken.test]\naccess_token = d\n\n[gone@elsewhere.test]\naccess_token = g\n',
      { mode: 0o600 },
    );
    const store = await load(configPath, cachePath);
    // dave's catch-all section is incomplete: listed all the same, so that its problem is shown.
    assert.deepEqual(store.cacheOnlyAccounts(), ['carol@example.org', 'dave@broken.test']);
    const listed = collectStatus(store).accounts.map((account) => [
      account.section,
      account.problem !== undefined,
    ]);
    assert.deepEqual(listed.slice(-2), [
      ['carol@example.org', false],
      ['dave@broken.test', true],
    ]);
    assert.deepEqual((await load(configPath)).cacheOnlyAccounts(), [], 'tokens in the configuration itself');
  });
});
