import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ConfigStore } from '../../../src/config/store.ts';
import { type Finding, formatListener, reviewConfig } from '../../../src/doctor/config-review.ts';
import { collectStatus, formatStatus, relative } from '../../../src/doctor/status.ts';
import { silentLogger } from '../../../src/log.ts';

let dir: string;
let counter = 0;

async function load(text: string, cache?: string): Promise<ConfigStore> {
  counter += 1;
  const configPath = join(dir, `${counter}.config`);
  await writeFile(configPath, text);
  let cachePath: string | undefined;
  if (cache !== undefined) {
    cachePath = join(dir, `${counter}.cache`);
    await writeFile(cachePath, cache);
  }
  return ConfigStore.load({ configPath, cachePath, logger: silentLogger() });
}

function messages(findings: Finding[], severity: Finding['severity']): string[] {
  return findings
    .filter((f) => f.severity === severity)
    .map((f) => `${f.where ? `[${f.where}] ` : ''}${f.message}`);
}

const MICROSOFT = [
  'permission_url = https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
  'token_url = https://login.microsoftonline.com/common/oauth2/v2.0/token',
  'redirect_uri = http://localhost',
  'client_id = 0000-1111',
].join('\n');

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mailbridge-review-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('configuration review', () => {
  it('describes the listeners as serve will open them', async () => {
    const store = await load(
      [
        '[IMAP-1993]\nserver_address = outlook.office365.com\nserver_port = 993\n',
        '[SMTP-1587]\nserver_address = smtp.office365.com\nserver_port = 587\nserver_starttls = True\nlocal_address = 127.0.0.2\n',
      ].join('\n'),
    );
    const review = await reviewConfig(store);
    assert.deepEqual(review.listeners.map(formatListener), [
      'IMAP  127.0.0.1:1993, [::1]:1993 (plain) -> outlook.office365.com:993 (TLS)  [IMAP-1993]',
      'SMTP  127.0.0.2:1587 (plain) -> smtp.office365.com:587 (STARTTLS)  [SMTP-1587]',
    ]);
  });

  it('warns about a TLS mode or protocol that does not fit the port', async () => {
    const store = await load(
      [
        '[IMAP-1001]\nserver_address = a.test\nserver_port = 993\nserver_starttls = True\n',
        '[IMAP-1002]\nserver_address = a.test\nserver_port = 143\n',
        '[IMAP-1003]\nserver_address = a.test\nserver_port = 587\nserver_starttls = True\n',
        '[SMTP-1004]\nserver_address = a.test\nserver_port = 25\nserver_starttls = True\n',
        '[POP-1005]\nserver_address = a.test\nserver_port = 995\nlocal_address = 0.0.0.0\n',
      ].join('\n'),
    );
    const warnings = messages((await reviewConfig(store)).findings, 'warning');
    assert.match(
      warnings[0] ?? '',
      /^\[IMAP-1001\] server_port 993 normally speaks TLS from the first byte.*remove server_starttls/,
    );
    assert.match(
      warnings[1] ?? '',
      /^\[IMAP-1002\] server_port 143 normally starts in clear text.*set server_starttls = True \(or use the TLS port 993\)/,
    );
    assert.match(
      warnings[2] ?? '',
      /^\[IMAP-1003\] server_port 587 is the usual SMTP port, but this is a IMAP section/,
    );
    assert.match(warnings[3] ?? '', /^\[SMTP-1004\] port 25 is for mail between servers/);
    assert.match(warnings[4] ?? '', /^\[POP-1005\] local_address 0\.0\.0\.0 is not loopback/);
    assert.equal(warnings.length, 6, warnings.join('\n'));
  });

  it('refuses two sections on one local port, an unknown flow, an incomplete account and a missing certificate', async () => {
    const store = await load(
      [
        '[IMAP-1993]\nserver_address = a.test\nserver_port = 993\n',
        `[POP-1993]\nserver_address = a.test\nserver_port = 995\nlocal_certificate_path = ${join(dir, 'none.pem')}\nlocal_key_path = ${join(dir, 'none.key')}\n`,
        '[a@example.com]\ntoken_url = https://login.example.com/token\n',
        '[b@example.com]\ntoken_url = https://login.example.com/token\nclient_id = x\noauth2_scope = mail\noauth2_flow = magic\n',
      ].join('\n'),
    );
    const errors = messages((await reviewConfig(store)).findings, 'error');
    assert.match(
      errors[0] ?? '',
      /^\[POP-1993\] cannot use \[POP-1993\] local_certificate_path\/local_key_path \('.*none\.pem', '.*none\.key'\): .*no such file/,
    );
    assert.match(
      errors[1] ?? '',
      /^\[POP-1993\] \[POP-1993\] and \[IMAP-1993\] both listen on 127\.0\.0\.1:1993/,
    );
    assert.ok(
      errors.some((e) => /^\[a@example\.com\] account 'a@example\.com' is incomplete/.test(e)),
      errors.join('\n'),
    );
    assert.ok(
      errors.some((e) => /^\[b@example\.com\] oauth2_flow 'magic' is not a grant mailbridge knows/.test(e)),
      errors.join('\n'),
    );
  });

  it('knows provider mistakes: no offline_access, no mail scope, the blocked out-of-band redirect, sample values', async () => {
    const store = await load(
      [
        `[ms@contoso.com]\n${MICROSOFT}\noauth2_scope = https://graph.microsoft.com/Mail.Read\n`,
        '[g@gmail.com]\npermission_url = https://accounts.google.com/o/oauth2/auth\ntoken_url = https://oauth2.googleapis.com/token\noauth2_scope = https://mail.google.com/\nredirect_uri = urn:ietf:wg:oauth:2.0:oob\nclient_id = *** your client ID ***\n',
        '[nr@example.com]\npermission_url = https://login.example.com/auth\ntoken_url = https://login.example.com/token\noauth2_scope = mail\nclient_id = x\n',
        '[@example.org]\ntoken_url = https://login.example.org/token\noauth2_scope = mail\nclient_id = x\noauth2_flow = client_credentials\n',
      ].join('\n'),
    );
    const warnings = messages((await reviewConfig(store)).findings, 'warning');
    assert.deepEqual(
      warnings.map((w) => w.replace(/:.*/s, '')),
      [
        'no [IMAP-<port>], [POP-<port>] or [SMTP-<port>] section',
        '[ms@contoso.com] oauth2_scope lacks offline_access',
        '[ms@contoso.com] oauth2_scope has no mail permission (https',
        '[g@gmail.com] client_id still holds the example value',
        '[g@gmail.com] Google blocked the out-of-band redirect (urn',
        '[nr@example.com] redirect_uri is missing',
        '[@example.org] a catch-all section is ignored unless [emailproxy] sets allow_catch_all_accounts = True',
      ],
    );
  });
});

describe('status from the files', () => {
  it('reports presence and expiry of tokens, never their values', async () => {
    const now = Date.parse('2026-11-29T10:00:00Z');
    const seconds = now / 1000;
    const cache = [
      `[a@example.com]\naccess_token = gAAAAAsecret\naccess_token_expiry = ${seconds + 3000}\nrefresh_token = gAAAAArefresh\nlast_activity = ${seconds - 7200}\n`,
      `[b@example.com]\naccess_token = gAAAAAother\naccess_token_expiry = ${seconds + 300}\n`,
      `[c@example.com]\naccess_token = gAAAAAold\naccess_token_expiry = ${seconds - 60}\nrefresh_token = gAAAAAr\n`,
    ].join('\n');
    const account = (name: string) =>
      `[${name}]\npermission_url = https://l.example.com/a\ntoken_url = https://l.example.com/t\noauth2_scope = mail\nclient_id = x\nclient_secret = hush\n`;
    const store = await load(
      [
        '[IMAP-1993]\nserver_address = a.test\nserver_port = 993\n',
        ...['a', 'b', 'c', 'd'].map((n) => account(`${n}@example.com`)),
      ].join('\n'),
      cache,
    );
    const report = collectStatus(store, now);
    assert.deepEqual(
      report.accounts.map((a) => [
        a.section,
        a.authorised,
        a.accessToken.state,
        a.accessToken.expiresInSeconds,
        a.refreshToken,
      ]),
      [
        ['a@example.com', true, 'valid', 3000, true],
        ['b@example.com', true, 'refresh-due', 300, false],
        ['c@example.com', true, 'expired', -60, true],
        ['d@example.com', false, 'none', undefined, false],
      ],
    );
    const text = formatStatus(report, now);
    assert.match(
      text,
      /refresh token: no \(the account must be authorised again when the access token expires\)/,
    );
    assert.match(text, /access token: expired .*\(60 s ago\); refreshed at the next use/);
    assert.match(text, /last activity: .*\(2 h ago\)/);
    assert.match(
      text,
      /d@example\.com\n {4}flow: authorization_code via l\.example\.com\n {4}not authorised yet/,
    );
    for (const output of [text, JSON.stringify(report)]) assert.doesNotMatch(output, /gAAAAA|hush/);
  });

  it('says relative times the way people do', () => {
    const now = Date.parse('2026-11-29T10:00:00Z');
    const at = (seconds: number) => new Date(now + seconds * 1000).toISOString();
    assert.equal(relative(at(45), now), 'in 45 s');
    assert.equal(relative(at(-52 * 60), now), '52 min ago');
    assert.equal(relative(at(5 * 3600), now), 'in 5 h');
    assert.equal(relative(at(-40 * 86400), now), '40 d ago');
  });
});
