import assert from 'node:assert/strict';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IniDocument } from '../../src/config/ini.ts';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl, python } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startMailbridge, stopMailbridgeAndBed } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';

/**
 * Switching from email-oauth2-proxy: its configuration and its token cache, written by Python's configparser
 * and cryptography (test/fixtures/emailproxy/generate.py), must log in through mailbridge without anyone
 * authorising again, and the cache mailbridge writes back must still open in Python.
 *
 * mailbridge runs without --external-auth here, so any need to authorise would fail the login at once.
 */
const DAVE = 'dave@example.test';
const PASSWORD = 'python password';
const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'emailproxy', 'cache.ini');

const readBack = `
import base64, configparser, os, sys
from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
config = configparser.ConfigParser(interpolation=None)
config.read(os.environ['CACHE'])
section = config[os.environ['ACCOUNT']]
salt = base64.b64decode(section['token_salt'])
kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=int(section['token_iterations']))
keys = MultiFernet([Fernet(base64.urlsafe_b64encode(kdf.derive(os.environ['PASSWORD'].encode())))])
print(keys.decrypt(section['refresh_token'].encode()).decode())
print(len(keys.decrypt(section['access_token'].encode())))
`;

describe('migrating from email-oauth2-proxy', () => {
  let bed: Testbed;
  let mailbridge: MailbridgeProcess;
  let port: number;
  let configPath: string;
  let configText: string;
  let cachePath: string;
  const message = Buffer.from('Subject: migrated\r\n\r\nstill here\r\n');

  before(async () => {
    bed = await startTestbed();
    bed.dovecot.seedMessage(DAVE, '1.msg', message);
    bed.oauth.acceptRefreshToken('python-made-refresh-token', DAVE);
    [port] = (await findFreePorts(1)) as [number];
    configPath = join(bed.dir, 'emailproxy.config');
    cachePath = join(bed.dir, 'cache.ini');
    await copyFile(FIXTURE, cachePath);
    configText = [
      serverSection({
        protocol: 'IMAP',
        localPort: port,
        serverAddress: 'localhost',
        serverPort: bed.dovecot.ports.imaps,
        localAddress: '127.0.0.1',
      }),
      bed.accountSection(DAVE),
    ].join('\n');
    await writeFile(configPath, configText);
    mailbridge = await startMailbridge({
      args: ['--no-gui', '--config-file', configPath, '--cache-store', cachePath],
      caCertPath: bed.certs.caCertPath,
    });
    await mailbridge.waitForLog('mailbridge ready');
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('refuses a wrong password and leaves the Python-made cache as it was', async () => {
    const before = await readFile(cachePath, 'utf8');
    const result = await curl([
      '--user',
      `${DAVE}:not the password`,
      `imap://127.0.0.1:${port}/INBOX/;UID=1`,
    ]);
    assert.equal(result.code, 67, 'curl: login denied');
    assert.equal(await readFile(cachePath, 'utf8'), before);
  });

  it('logs in with the cached tokens: decrypts, refreshes the expired access token, asks nobody', async () => {
    const before = { ...bed.oauth.counts.grants };
    const result = await curl(['--user', `${DAVE}:${PASSWORD}`, `imap://127.0.0.1:${port}/INBOX/;UID=1`]);
    assert.equal(result.code, 0, `${result.stderr}\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, message);
    assert.equal(bed.oauth.counts.grants.refresh_token, before.refresh_token + 1);
    assert.equal(bed.oauth.counts.grants.authorization_code, before.authorization_code);
    assert.equal(mailbridge.prompts.length, 0);
  });

  it('rotates the 870,000-round cache to 1,200,000 rounds, in the cache file only', async () => {
    const cache = IniDocument.parse(await readFile(cachePath, 'utf8'), cachePath);
    assert.equal(cache.get(DAVE, 'token_iterations'), '1200000');
    assert.equal(await readFile(configPath, 'utf8'), configText, 'the configuration file is not written');
    await mailbridge.waitForLog(/rotating stored secrets for account 'dave@example\.test'/);
  });

  it('writes a cache that Python (as email-oauth2-proxy) decrypts', async () => {
    const result = await python(readBack, { CACHE: cachePath, ACCOUNT: DAVE, PASSWORD });
    assert.equal(result.code, 0, result.stderr);
    const [refreshToken, accessTokenLength] = result.stdout.toString().trim().split('\n');
    assert.equal(refreshToken, 'python-made-refresh-token');
    assert.ok(Number(accessTokenLength) > 10);
  });
});
