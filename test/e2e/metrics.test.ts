import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startMailbridge, stopMailbridgeAndBed } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';

/**
 * The daemon's own events reach /metrics and /api/status: connections and logins by protocol and result,
 * refreshes, authorisation waits, and each account's servers and last error. The scraper reads the secret
 * from web_console_secret_file, as Prometheus's credentials_file would.
 */
const ACCOUNT = 'metrics@example.test';

describe('metrics and account activity from live sessions', () => {
  let bed: Testbed;
  let mailbridge: MailbridgeProcess;
  let port: number;
  let consolePort: number;
  let secret: string;

  async function get(path: string): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${consolePort}${path}`, {
      headers: { authorization: `Bearer ${secret}` },
    });
    assert.equal(response.status, 200, `${path}: ${response.status}`);
    return response.text();
  }

  before(async () => {
    bed = await startTestbed();
    bed.dovecot.seedMessage(ACCOUNT, '1.msg', 'Subject: m\r\n\r\nm\r\n');
    [port, consolePort] = (await findFreePorts(2)) as [number, number];
    const configPath = join(bed.dir, 'emailproxy.config');
    const secretFile = join(bed.dir, 'secrets', 'console-secret');
    await writeFile(
      configPath,
      [
        `[emailproxy]\nweb_console_secret_file = ${secretFile}\n`,
        serverSection({ protocol: 'IMAP', localPort: port, serverPort: bed.dovecot.ports.imaps }),
        bed.accountSection(ACCOUNT),
      ].join('\n'),
    );
    mailbridge = await startMailbridge({
      args: ['--external-auth', '--web-console', `127.0.0.1:${consolePort}`, '--config-file', configPath],
      caCertPath: bed.certs.caCertPath,
      authorise: (url) => bed.oauth.authorize(url),
    });
    await mailbridge.waitForLog(/sign in once with \S+secret=(\S+)/);
    secret = (await readFile(secretFile, 'utf8')).trim();
    assert.equal((await stat(secretFile)).mode & 0o777, 0o600);
    // A secret that outlives the run stays out of the log, which names the file instead.
    assert.ok(!mailbridge.stderr().includes(secret), 'the kept secret is not logged');
    assert.match(
      mailbridge.stderr(),
      /login\?secret=SECRET, SECRET being the first line of \S+console-secret/,
    );
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('counts connections, logins by result, waits and refreshes, and shows them per account', async () => {
    const url = `imap://127.0.0.1:${port}/INBOX/;UID=1`;
    assert.equal((await curl(['--user', `${ACCOUNT}:pw`, url])).code, 0);
    assert.equal((await curl(['--user', `${ACCOUNT}:wrong`, url])).code, 67);
    bed.oauth.expireAccessTokens();
    assert.equal((await curl(['--user', `${ACCOUNT}:pw`, url])).code, 0);

    const metrics = await get('/metrics');
    assert.match(metrics, /^mailbridge_connections_total\{protocol="imap"\} 3$/m);
    assert.match(metrics, /^mailbridge_logins_total\{protocol="imap",result="succeeded"\} 2$/m);
    assert.match(metrics, /^mailbridge_logins_total\{protocol="imap",result="failed"\} 1$/m);
    assert.match(metrics, /^mailbridge_token_refreshes_total\{result="succeeded"\} 1$/m);
    assert.match(metrics, /^mailbridge_authorisation_waits_total 1$/m);

    const status = JSON.parse(await get('/api/status')) as {
      accounts: { name?: string; servers?: string[] }[];
    };
    const account = status.accounts.find((entry) => JSON.stringify(entry).includes(ACCOUNT));
    assert.ok(account, JSON.stringify(status));
    assert.match(JSON.stringify(account), new RegExp(`IMAP-${port}`));
  });
});
