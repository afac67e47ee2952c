import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { IniDocument } from '../../src/config/ini.ts';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { MAILBRIDGE_BIN } from '../testbed/mailbridge.ts';
import { runMailbridge } from '../testbed/mailbridge-command.ts';
import { muttReadFirstMessage } from '../testbed/mutt.ts';

/**
 * `mailbridge token` as the OAuth helper of clients that speak XOAUTH2/OAUTHBEARER themselves: mutt and curl
 * log in to the OAuth-only Dovecot directly (no proxy), with the token the helper prints. Also `status`, which
 * reads the same files and must never print a secret.
 */
const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const CAROL = 'carol@example.test';
const PASSWORD = 'correct horse';
const MESSAGE =
  'From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: hello\r\n\r\nHello Alice\r\n';

const run = promisify(execFile);

let bed: Testbed;
let configPath: string;
let cachePath: string;
let lastToken = '';

function grants() {
  return { ...bed.oauth.counts.grants };
}

function token(
  account: string,
  extra: string[] = [],
  env: Record<string, string> = { MAILBRIDGE_PASSWORD: PASSWORD },
) {
  return runMailbridge(['token', account, '--config-file', configPath, ...extra], { env });
}

/** Sets alice's cached expiry (stored in clear) so the next use must refresh. */
async function setCachedExpiry(account: string, unixSeconds: number): Promise<void> {
  const doc = IniDocument.parse(await readFile(configPath, 'utf8'), configPath);
  doc.set(account, 'access_token_expiry', String(unixSeconds));
  await writeFile(configPath, doc.toString());
}

async function cachedField(account: string, key: string, path = configPath): Promise<string | undefined> {
  const doc = IniDocument.parse(await readFile(path, 'utf8'), path);
  return doc.hasSection(account) ? doc.get(account, key) : undefined;
}

function oneLine(text: string): string {
  const lines = text.split('\n').filter((line) => line !== '');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${text}`);
  return lines[0] as string;
}

describe('mailbridge token: the OAuth helper for mutt, curl and msmtp', () => {
  before(async () => {
    bed = await startTestbed();
    bed.dovecot.seedMessage(ALICE, '1.hello', MESSAGE);
    configPath = join(bed.dir, 'emailproxy.config');
    cachePath = join(bed.dir, 'tokens.cache');
    await writeFile(
      configPath,
      [
        '# token helper test configuration',
        serverSection({ protocol: 'IMAP', localPort: 1993, serverPort: bed.dovecot.ports.imaps }),
        bed.accountSection(ALICE, { use_pkce: 'True' }),
        bed.accountSection(BOB),
        bed.accountSection(CAROL),
      ].join('\n'),
    );
  });

  after(async () => {
    await bed?.stop();
  });

  it('refuses at once an account that was never authorised, saying what to run (exit 3)', async () => {
    const authorizeCalls = bed.oauth.counts.endpoints.authorize;
    const result = await token(BOB);
    assert.equal(result.code, 3, result.stderr);
    assert.equal(result.stdout, '');
    assert.match(
      oneLine(result.stderr),
      /^mailbridge token: account 'bob@example\.test' needs authorising: run 'mailbridge token bob@example\.test --external-auth' in a terminal/,
    );
    assert.equal(bed.oauth.counts.endpoints.authorize, authorizeCalls);
  });

  it('authorises in the terminal with --external-auth, prompting on stderr so stdout holds only the token', async () => {
    const before = grants();
    const result = await runMailbridge(['token', ALICE, '--external-auth', '--config-file', configPath], {
      env: { MAILBRIDGE_PASSWORD: PASSWORD },
      authorise: (url) => bed.oauth.authorize(url),
    });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^at_[A-Za-z0-9_-]+\n$/);
    assert.match(
      result.stderr,
      /Please visit the following URL to authenticate account alice@example\.test:/,
    );
    assert.equal(grants().authorization_code, before.authorization_code + 1);
    assert.match((await cachedField(ALICE, 'access_token')) ?? '', /^gAAAAA/);
    assert.match((await cachedField(ALICE, 'refresh_token')) ?? '', /^gAAAAA/);
    assert.match(await readFile(configPath, 'utf8'), /^# token helper test configuration$/m);
    lastToken = result.stdout.trim();
  });

  it('prints the cached token again without calling the token endpoint, also as SASL initial responses', async () => {
    const before = grants();
    const raw = await token(ALICE);
    assert.equal(raw.code, 0, raw.stderr);
    assert.equal(raw.stdout, `${lastToken}\n`);
    assert.equal(raw.stderr, '');

    const xoauth2 = await token(ALICE, ['--format', 'sasl-xoauth2']);
    assert.equal(xoauth2.code, 0, xoauth2.stderr);
    assert.equal(
      Buffer.from(xoauth2.stdout.trim(), 'base64').toString(),
      `user=${ALICE}\x01auth=Bearer ${lastToken}\x01\x01`,
    );
    const bearer = await token(ALICE, ['--format', 'sasl-oauthbearer']);
    assert.equal(
      Buffer.from(bearer.stdout.trim(), 'base64').toString(),
      `n,a=${ALICE},\x01auth=Bearer ${lastToken}\x01\x01`,
    );
    assert.deepEqual(grants(), before);
  });

  it('lets curl log in to Dovecot with --oauth2-bearer "$(mailbridge token …)"', async () => {
    const script =
      'curl --silent --show-error --cacert "$CA" --user "$ACCOUNT:" ' +
      '--oauth2-bearer "$("$NODE" "$BIN" token "$ACCOUNT" --config-file "$CONFIG")" "imaps://127.0.0.1:$PORT/INBOX/;UID=1"';
    const { stdout, stderr } = await run('sh', ['-c', script], {
      timeout: 30_000,
      env: {
        ...process.env,
        CA: bed.certs.caCertPath,
        ACCOUNT: ALICE,
        NODE: process.execPath,
        BIN: MAILBRIDGE_BIN,
        CONFIG: configPath,
        PORT: String(bed.dovecot.ports.imaps),
        MAILBRIDGE_PASSWORD: PASSWORD,
      },
    });
    assert.equal(stderr, '');
    assert.equal(stdout, MESSAGE);
  });

  it('refreshes a token within 10 minutes of expiry and saves the new one', async () => {
    await setCachedExpiry(ALICE, Math.floor(Date.now() / 1000) + 60);
    const before = grants();
    const result = await token(ALICE);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, '');
    assert.equal(grants().refresh_token, before.refresh_token + 1);
    const fresh = result.stdout.trim();
    assert.notEqual(fresh, lastToken);
    assert.ok(Number(await cachedField(ALICE, 'access_token_expiry')) > Date.now() / 1000 + 600);
    lastToken = fresh;
    // The next call uses what was saved.
    assert.equal((await token(ALICE)).stdout, `${fresh}\n`);
  });

  it('refuses a wrong password with one line naming where the password came from (exit 4), keeping the tokens', async () => {
    const text = await readFile(configPath, 'utf8');
    const result = await token(ALICE, [], { MAILBRIDGE_PASSWORD: 'wrong password' });
    assert.equal(result.code, 4);
    assert.equal(result.stdout, '');
    assert.match(
      oneLine(result.stderr),
      /password for account 'alice@example\.test' is incorrect.*\(password from MAILBRIDGE_PASSWORD\)$/,
    );
    assert.equal(await readFile(configPath, 'utf8'), text);
  });

  it('takes the password from --password-command, never from the command line itself', async () => {
    const fromCommand = await token(
      ALICE,
      ['--password-command', `printf '%s\\n' '${PASSWORD}' 'ignored'`],
      {},
    );
    assert.equal(fromCommand.code, 0, fromCommand.stderr);
    assert.equal(fromCommand.stdout, `${lastToken}\n`);

    const failing = await token(ALICE, ['--password-command', 'exit 3'], {});
    assert.equal(failing.code, 2);
    assert.match(oneLine(failing.stderr), /--password-command failed \(exit status 3\)/);

    const none = await token(ALICE, [], {});
    assert.equal(none.code, 2);
    assert.match(
      oneLine(none.stderr),
      /no password for account 'alice@example\.test', and no running mailbridge has it unlocked: set MAILBRIDGE_PASSWORD or pass --password-command/,
    );

    const help = await runMailbridge(['token', '--help']);
    assert.doesNotMatch(help.stdout, /--password\b(?!-command)/);
  });

  for (const authenticator of ['xoauth2', 'oauthbearer'] as const) {
    it(`serves mutt as imap_oauth_refresh_command: mutt reads INBOX from Dovecot with ${authenticator}`, async () => {
      const result = await muttReadFirstMessage({
        port: bed.dovecot.ports.imaps,
        user: ALICE,
        authenticator,
        refreshCommand: `${process.execPath} ${MAILBRIDGE_BIN} token ${ALICE} --config-file ${configPath}`,
        caCertPath: bed.certs.caCertPath,
        env: { MAILBRIDGE_PASSWORD: PASSWORD },
      });
      assert.equal(
        result.message?.toString(),
        MESSAGE.replaceAll('\r\n', '\n'),
        `mutt (exit ${result.code}):\n${result.screen}`,
      );
    });
  }

  it('refreshes for mutt when the cached token is about to expire', async () => {
    await setCachedExpiry(ALICE, Math.floor(Date.now() / 1000) + 60);
    const before = grants();
    const result = await muttReadFirstMessage({
      port: bed.dovecot.ports.imaps,
      user: ALICE,
      authenticator: 'xoauth2',
      // This time the password comes from a command, as with `pass` or a keyring in real life.
      refreshCommand: `${process.execPath} ${MAILBRIDGE_BIN} token ${ALICE} --config-file ${configPath} --password-command "printenv MUTT_TEST_PASSWORD"`,
      caCertPath: bed.certs.caCertPath,
      env: { MUTT_TEST_PASSWORD: PASSWORD },
    });
    assert.equal(
      result.message?.toString(),
      MESSAGE.replaceAll('\r\n', '\n'),
      `mutt (exit ${result.code}):\n${result.screen}`,
    );
    assert.equal(grants().refresh_token, before.refresh_token + 1);
  });

  it('keeps tokens in --cache-store and leaves the configuration file alone', async () => {
    const text = await readFile(configPath, 'utf8');
    const result = await runMailbridge(
      ['token', CAROL, '--external-auth', '--config-file', configPath, '--cache-store', cachePath],
      { env: { MAILBRIDGE_PASSWORD: PASSWORD }, authorise: (url) => bed.oauth.authorize(url) },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match((await cachedField(CAROL, 'refresh_token', cachePath)) ?? '', /^gAAAAA/);
    assert.equal(await readFile(configPath, 'utf8'), text);
  });

  it('status shows each account from the files without printing a token or secret', async () => {
    const text = await runMailbridge(['status', '--config-file', configPath, '--cache-store', cachePath]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /IMAP\s+127\.0\.0\.1:1993, \[::1\]:1993 \(plain\) -> 127\.0\.0\.1:\d+ \(TLS\)/);
    assert.match(
      text.stdout,
      /carol@example\.test\n\s+flow: authorization_code via 127\.0\.0\.1:\d+\n\s+access token: valid until .*\(in \d+ min\)\n\s+refresh token: yes\n\s+last activity: /,
    );
    assert.match(
      text.stdout,
      /bob@example\.test\n.*\n\s+not authorised yet: run `mailbridge token bob@example\.test --external-auth`/,
    );

    const json = await runMailbridge(['status', '--json', '--config-file', configPath]);
    assert.equal(json.code, 0, json.stderr);
    const report = JSON.parse(json.stdout) as {
      source: string;
      accounts: {
        section: string;
        authorised: boolean;
        refreshToken: boolean;
        accessToken: { state: string };
      }[];
    };
    assert.equal(report.source, 'files');
    const alice = report.accounts.find((account) => account.section === ALICE);
    assert.deepEqual(
      { authorised: alice?.authorised, refreshToken: alice?.refreshToken, state: alice?.accessToken.state },
      { authorised: true, refreshToken: true, state: 'valid' },
    );
    assert.equal(report.accounts.find((account) => account.section === BOB)?.authorised, false);

    for (const output of [text.stdout, json.stdout]) {
      assert.ok(!output.includes(lastToken), 'no access token');
      assert.doesNotMatch(output, /\bat_|\brt_|gAAAAA|test-secret|correct horse/);
    }
  });

  it('says the account needs authorising again once the refresh token is refused (exit 3)', async () => {
    bed.oauth.revokeRefreshTokens();
    await setCachedExpiry(ALICE, Math.floor(Date.now() / 1000) - 10);
    const result = await token(ALICE);
    assert.equal(result.code, 3);
    assert.equal(result.stdout, '');
    assert.match(
      oneLine(result.stderr),
      /needs authorising: run 'mailbridge token alice@example\.test --external-auth'/,
    );
    assert.match((await cachedField(ALICE, 'refresh_token')) ?? '', /^gAAAAA/, 'nothing deleted');
  });
});
