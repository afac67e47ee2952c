import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import {
  MAILBRIDGE_BIN,
  type MailbridgeProcess,
  startMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';

/**
 * Authorising without a terminal, through the real program: --local-server-auth catches the browser's
 * redirect itself, the device flow needs only the code from the log, a notification command is told, and
 * twenty clients waiting for one account cause one authorisation and one code exchange.
 */
const PASSWORD = 'pw';
const run = promisify(execFile);
const message = Buffer.from('Subject: flows\r\n\r\nhello\r\n');

describe('authorisation flows through mailbridge', () => {
  let bed: Testbed;
  let mailbridge: MailbridgeProcess;
  let port: number;
  let redirectPort: number;
  let notifications: string;
  let configPath: string;

  /** The authorisation URL the log shows for `account`, once it appears. */
  async function loggedUrl(account: string): Promise<string> {
    const pattern = new RegExp(`account '${account.replace('.', '\\.')}' needs authorising[^\\n]*url=(\\S+)`);
    await mailbridge.waitForLog(pattern);
    return pattern.exec(mailbridge.stderr())?.[1] ?? '';
  }

  /** Waits until the redirect listener has started `count` times in all (it starts anew for each request). */
  async function listening(count: number): Promise<void> {
    const occurrences = () => mailbridge.stderr().split('listening for authorisation redirects').length - 1;
    for (let i = 0; i < 200 && occurrences() < count; i += 1) await new Promise((r) => setTimeout(r, 50));
    assert.ok(occurrences() >= count, 'the redirect listener started');
  }

  async function login(user: string): Promise<ReturnType<typeof curl>> {
    return curl(['--user', `${user}:${PASSWORD}`, `imap://127.0.0.1:${port}/INBOX/;UID=1`], 60_000);
  }

  before(async () => {
    bed = await startTestbed();
    for (const user of [
      'lsa@example.test',
      'device@example.test',
      'crowd@example.test',
      'ctl@example.test',
    ]) {
      bed.dovecot.seedMessage(user, '1.msg', message);
    }
    [port, redirectPort] = (await findFreePorts(2)) as [number, number];
    notifications = join(bed.dir, 'notifications.txt');
    configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({ protocol: 'IMAP', localPort: port, serverPort: bed.dovecot.ports.imaps }),
        bed.accountSection('lsa@example.test', { redirect_uri: `http://localhost:${redirectPort}/callback` }),
        bed.accountSection('crowd@example.test', {
          redirect_uri: `http://localhost:${redirectPort}/callback`,
        }),
        bed.accountSection('ctl@example.test', { redirect_uri: `http://localhost:${redirectPort}/callback` }),
        bed.accountSection('device@example.test', {
          permission_url: bed.oauth.deviceAuthorizationEndpoint,
          oauth2_flow: 'device',
        }),
        '[emailproxy]',
        `authorisation_notify_command = echo "$MAILBRIDGE_ACCOUNT $MAILBRIDGE_USER_CODE" >> ${notifications}`,
      ].join('\n'),
    );
    mailbridge = await startMailbridge({
      args: ['--no-gui', '--local-server-auth', '--config-file', configPath],
      caCertPath: bed.certs.caCertPath,
    });
    await mailbridge.waitForLog('mailbridge ready');
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('--local-server-auth: the redirect listener completes the login; stray requests get 404 and consume nothing', async () => {
    const loggingIn = login('lsa@example.test');
    const redirect = new URL(await bed.oauth.authorize(await loggedUrl('lsa@example.test')));
    assert.equal(redirect.port, String(redirectPort));
    await listening(1);
    const stray = await fetch(`http://127.0.0.1:${redirectPort}/favicon.ico`);
    assert.equal(stray.status, 404);
    const wrongState = await fetch(`http://127.0.0.1:${redirectPort}/callback?code=x&state=not-ours`);
    assert.equal(wrongState.status, 404);
    const answer = await fetch(`http://127.0.0.1:${redirectPort}${redirect.pathname}${redirect.search}`);
    assert.equal(answer.status, 200);
    assert.match(await answer.text(), /received the authorisation of lsa@example\.test/);
    const result = await loggingIn;
    assert.equal(result.code, 0, `${result.stderr}\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, message);
    // Once nothing is pending, nothing listens.
    await assert.rejects(fetch(`http://127.0.0.1:${redirectPort}/callback`));
  });

  it('device flow: the code is shown in the log and told to the notification command; the login completes', async () => {
    const result = await login('device@example.test');
    assert.equal(result.code, 0, `${result.stderr}\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, message);
    assert.match(
      mailbridge.stderr(),
      /account 'device@example\.test' needs authorising: visit \S+ and enter the code [A-Z-]+/,
    );
    assert.match(await readFile(notifications, 'utf8'), /^device@example\.test [A-Z-]+$/m);
  });

  it('twenty clients waiting for one account: one authorisation request, one code exchange', async () => {
    const before = { ...bed.oauth.counts.grants };
    const authorizeBefore = bed.oauth.counts.endpoints.authorize;
    const logins = Array.from({ length: 20 }, () => login('crowd@example.test'));
    const redirect = new URL(await bed.oauth.authorize(await loggedUrl('crowd@example.test')));
    await listening(2);
    const answer = await fetch(`http://127.0.0.1:${redirectPort}${redirect.pathname}${redirect.search}`);
    assert.equal(answer.status, 200);
    const results = await Promise.all(logins);
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    assert.equal(bed.oauth.counts.endpoints.authorize, authorizeBefore + 1);
    assert.equal(bed.oauth.counts.grants.authorization_code, before.authorization_code + 1);
    const requests = mailbridge.stderr().match(/account 'crowd@example\.test' needs authorising/g) ?? [];
    assert.equal(requests.length, 1);
  });

  it("'mailbridge authorise' lists the daemon's pending requests and answers one from another terminal", async () => {
    const loggingIn = login('ctl@example.test');
    const url = await loggedUrl('ctl@example.test');
    const list = await run(process.execPath, [MAILBRIDGE_BIN, 'authorise', '--config-file', configPath]);
    assert.match(list.stdout, /^ctl@example\.test: open http\S+ \(waiting since /m);
    const status = await run(process.execPath, [
      MAILBRIDGE_BIN,
      'status',
      '--json',
      '--config-file',
      configPath,
    ]);
    const report = JSON.parse(status.stdout) as {
      source: string;
      pendingAuthorisations: { account: string }[];
    };
    assert.equal(report.source, 'files and daemon');
    assert.deepEqual(
      report.pendingAuthorisations.map((item) => item.account),
      ['ctl@example.test'],
    );
    const redirect = await bed.oauth.authorize(url);
    const answer = run(process.execPath, [
      MAILBRIDGE_BIN,
      'authorise',
      'ctl@example.test',
      '--config-file',
      configPath,
    ]);
    answer.child.stdin?.end(`${redirect}\n`);
    const { stdout } = await answer;
    assert.match(stdout, /ctl@example\.test is authorised/);
    const result = await loggingIn;
    assert.equal(result.code, 0, `${result.stderr}\n${mailbridge.stderr()}`);
    const none = await run(process.execPath, [MAILBRIDGE_BIN, 'authorise', '--config-file', configPath]);
    assert.equal(none.stdout, 'no authorisation is pending\n');
  });

  it("'mailbridge token' gets a working token from the running daemon, without a password", async () => {
    const env = { ...process.env };
    delete env.MAILBRIDGE_PASSWORD;
    const { stdout } = await run(
      process.execPath,
      [MAILBRIDGE_BIN, 'token', 'lsa@example.test', '--config-file', configPath],
      {
        env,
      },
    );
    const token = stdout.trim();
    assert.match(token, /^\S+$/);
    const direct = await curl([
      '--cacert',
      bed.certs.caCertPath,
      '--user',
      'lsa@example.test:',
      '--oauth2-bearer',
      token,
      `imaps://localhost:${bed.dovecot.ports.imaps}/INBOX/;UID=1`,
    ]);
    assert.equal(direct.code, 0, direct.stderr);
    assert.deepEqual(direct.stdout, message);
  });
});
