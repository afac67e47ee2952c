import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IniDocument } from '../../src/config/ini.ts';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl, python } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import {
  type MailbridgeProcess,
  startAuthorisingMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';

/**
 * The path a real user walks: a plain-password IMAP client, mailbridge, Dovecot accepting only OAuth 2.0
 * bearer tokens, and the OAuth server those tokens come from. The person at the terminal is played by the
 * harness, which opens the printed URL and pastes the redirect back.
 */
const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const CAROL = 'carol@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let mailbridge: MailbridgeProcess;
let port: number;
let tlsPort: number;
let startTlsPort: number;
let configPath: string;
let smallMessage: Buffer;
let largeMessage: Buffer;

function cachedFields(text: string, account: string): Record<string, string | undefined> {
  const doc = IniDocument.parse(text, 'config');
  const keys = ['token_salt', 'token_iterations', 'access_token', 'access_token_expiry', 'refresh_token'];
  return Object.fromEntries(
    keys.map((key) => [key, doc.hasSection(account) ? doc.get(account, key) : undefined]),
  );
}

function imapUrl(path = ''): string {
  return `imap://127.0.0.1:${port}/${path}`;
}

function grants() {
  return { ...bed.oauth.counts.grants };
}

describe('IMAP through mailbridge to an OAuth-only Dovecot', () => {
  before(async () => {
    bed = await startTestbed();
    smallMessage = Buffer.from(
      'From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: hello\r\n' +
        'Message-ID: <1@example.test>\r\n\r\nHello Alice,\r\n8-bit: caf\xe9\r\n',
      'latin1',
    );
    // 5 MiB of CRLF-terminated lines with every byte value but CR and LF, to catch any re-framing in the relay.
    // No NUL either: IMAP cannot carry it outside BINARY, and Dovecot replaces it.
    const body = randomBytes(5 * 1024 * 1024).map((byte) =>
      byte === 0x0d || byte === 0x0a || byte === 0 ? 0x20 : byte,
    );
    for (let i = 76; i < body.length; i += 78) {
      body[i] = 0x0d;
      body[i + 1] = 0x0a;
    }
    largeMessage = Buffer.concat([Buffer.from('Subject: large\r\n\r\n'), body, Buffer.from('\r\n')]);
    for (const user of [ALICE, BOB, CAROL]) {
      bed.dovecot.seedMessage(user, '1.small', smallMessage);
      bed.dovecot.seedMessage(user, '2.large', largeMessage);
    }
    [port, tlsPort, startTlsPort] = (await findFreePorts(3)) as [number, number, number];
    configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        '# mailbridge end-to-end test configuration; this comment must survive token saves',
        serverSection({
          protocol: 'IMAP',
          localPort: port,
          serverPort: bed.dovecot.ports.imaps,
          localAddress: '127.0.0.1',
        }),
        serverSection({
          protocol: 'IMAP',
          localPort: tlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.imaps,
          localCertificate: bed.certs,
        }),
        serverSection({
          protocol: 'IMAP',
          localPort: startTlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.imap,
          serverStarttls: true,
        }),
        bed.accountSection(ALICE, { use_pkce: 'True' }),
        bed.accountSection(BOB),
        bed.accountSection(CAROL),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('authorises on first login in the terminal, then relays a FETCH byte-identical to the server file', async () => {
    const before = grants();
    // curl logs in with AUTHENTICATE PLAIN and an initial response (SASL-IR), as mailbridge advertises.
    const result = await curl(['--user', `${ALICE}:${PASSWORD}`, imapUrl('INBOX/;UID=1')]);
    assert.equal(result.code, 0, `curl failed: ${result.stderr}\nmailbridge log:\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, smallMessage);
    assert.equal(mailbridge.prompts.length, 1, 'exactly one authorisation prompt');
    assert.match(mailbridge.prompts[0] ?? '', /login_hint=alice%40example\.test/);
    assert.match(mailbridge.prompts[0] ?? '', /code_challenge_method=S256/);
    assert.equal(grants().authorization_code, before.authorization_code + 1);
  });

  it('stores the tokens encrypted, keeps the rest of the file, and writes it owner-only', async () => {
    const text = await readFile(configPath, 'utf8');
    const fields = cachedFields(text, ALICE);
    assert.match(fields.access_token ?? '', /^gAAAAA[A-Za-z0-9_-]+=*$/);
    assert.match(fields.refresh_token ?? '', /^gAAAAA/);
    assert.equal(fields.token_iterations, '1200000');
    assert.ok(Number(fields.access_token_expiry) > Date.now() / 1000 + 600);
    assert.match(
      text,
      /^# mailbridge end-to-end test configuration; this comment must survive token saves$/m,
    );
    assert.equal((await stat(configPath)).mode & 0o777, 0o600);
  });

  it('logs in again from the cache: no prompt, no call to the token endpoint', async () => {
    const before = grants();
    const result = await curl(['--user', `${ALICE}:${PASSWORD}`, imapUrl('INBOX/;UID=1')]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, smallMessage);
    assert.deepEqual(grants(), before);
    assert.equal(mailbridge.prompts.length, 1);
  });

  it('relays a 5 MiB message byte-identical, read by Python imaplib with AUTHENTICATE PLAIN (no SASL-IR)', async () => {
    const script = `
import imaplib, os, sys, hashlib
m = imaplib.IMAP4('127.0.0.1', int(os.environ['PORT']))
user, password = os.environ['USER_NAME'], os.environ['PASSWORD']
typ, _ = m.authenticate('PLAIN', lambda _: ('\\0' + user + '\\0' + password).encode())
assert typ == 'OK', typ
m.select('INBOX', readonly=True)
typ, data = m.uid('FETCH', '2', '(BODY.PEEK[])')
assert typ == 'OK', (typ, data)
sys.stdout.write(hashlib.sha256(data[0][1]).hexdigest())
m.logout()
`;
    const result = await python(script, { PORT: String(port), USER_NAME: ALICE, PASSWORD });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.toString(), createHash('sha256').update(largeMessage).digest('hex'));
  });

  it('accepts LOGIN with quoted strings from imaplib', async () => {
    const script = `
import imaplib, os
m = imaplib.IMAP4('127.0.0.1', int(os.environ['PORT']))
typ, data = m.login(os.environ['USER_NAME'], os.environ['PASSWORD'])
print(typ, data[0].decode())
typ, data = m.select('INBOX')
print(typ, data[0].decode())
m.logout()
`;
    const result = await python(script, { PORT: String(port), USER_NAME: ALICE, PASSWORD });
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout.toString(), /^OK .*\nOK 2\n$/);
  });

  it('accepts LOGIN with synchronising and non-synchronising literals', async () => {
    const client = await RawClient.connect(port);
    try {
      await client.waitFor(/^\* OK .*\r\n/);
      const user = Buffer.from(ALICE);
      const password = Buffer.from(PASSWORD);
      client.send(`a1 LOGIN {${user.length}}\r\n`);
      await client.waitFor(/\+ [^\r\n]*\r\n$/);
      client.send(
        Buffer.concat([user, Buffer.from(` {${password.length}+}\r\n`), password, Buffer.from('\r\n')]),
      );
      const reply = await client.command('a1', '');
      assert.match(reply, /a1 OK /);
      assert.match(await client.command('a2', 'a2 SELECT INBOX\r\n'), /\* 2 EXISTS/);
    } finally {
      client.close();
    }
  });

  it('loses nothing the client pipelined behind LOGIN', async () => {
    const client = await RawClient.connect(port);
    try {
      await client.waitFor(/^\* OK .*\r\n/);
      client.send(
        `a1 LOGIN ${ALICE} "${PASSWORD}"\r\na2 SELECT INBOX\r\na3 UID FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\na4 NO`,
      );
      // Dovecot answers a3 only once the next command line is complete, so wait for its data, not its OK.
      await client.waitFor(/Subject: hello\r\n\r\n\)\r\n/);
      client.send('OP\r\n');
      const text = await client.waitFor(/a4 OK[^\r\n]*\r\n/);
      assert.match(text, /a3 OK[^\r\n]*\r\n/);
      assert.match(text, /a1 OK [^\r\n]*\r\n/);
      assert.match(text, /\* 2 EXISTS\r\n[\s\S]*a2 OK/);
      assert.match(text, /Subject: hello\r\n[\s\S]*a3 OK/);
    } finally {
      client.close();
    }
  });

  it("keeps a client's pipelined command apart from mailbridge's own login, whatever its tag", async () => {
    const client = await RawClient.connect(port);
    try {
      await client.waitFor(/^\* OK .*\r\n/);
      client.send(`mb1 NOOP\r\na]1 LOGIN ${ALICE} "${PASSWORD}"\r\n`);
      const text = await client.waitFor(/a\]1 (OK|NO|BAD)[^\r\n]*\r\n/);
      assert.match(text, /^mb1 OK NOOP completed/m);
      assert.match(text, /^a\]1 OK \[CAPABILITY IMAP4rev1 [^\r\n]*\] Logged in\r\n/m);
    } finally {
      client.close();
    }
  });

  it('answers other AUTHENTICATE mechanisms itself, so no secret goes upstream in a form it cannot read', async () => {
    const client = await RawClient.connect(port);
    try {
      await client.waitFor(/^\* OK .*\r\n/);
      assert.match(await client.command('a1', 'a1 AUTHENTICATE LOGIN\r\n'), /^a1 NO \[CANNOT\]/m);
    } finally {
      client.close();
    }
  });

  it('refuses a wrong password with a clear NO and keeps the cached tokens', async () => {
    const before = cachedFields(await readFile(configPath, 'utf8'), ALICE);
    const client = await RawClient.connect(port);
    try {
      await client.waitFor(/^\* OK .*\r\n/);
      const reply = await client.command('a1', `a1 LOGIN ${ALICE} wrong-password\r\n`);
      assert.match(
        reply,
        /a1 NO \[AUTHENTICATIONFAILED\] [^\r\n]*password for account 'alice@example\.test' is incorrect/,
      );
      // The connection stays usable: the right password works on the same connection.
      assert.match(await client.command('a2', `a2 LOGIN ${ALICE} "${PASSWORD}"\r\n`), /a2 OK/);
    } finally {
      client.close();
    }
    assert.deepEqual(cachedFields(await readFile(configPath, 'utf8'), ALICE), before);
    assert.equal(mailbridge.prompts.length, 1);
  });

  it('refreshes when the server rejects the cached token, transparently', async () => {
    await assertLogin(BOB);
    const before = grants();
    bed.oauth.expireAccessTokens();
    await assertLogin(BOB);
    assert.equal(grants().refresh_token, before.refresh_token + 1);
    assert.equal(grants().authorization_code, before.authorization_code);
  });

  it('refreshes an access token within 10 minutes of expiry before using it', async () => {
    bed.oauth.setAccessTokenLifetime(300);
    try {
      const promptsBefore = mailbridge.prompts.length;
      await assertLogin(CAROL);
      assert.equal(mailbridge.prompts.length, promptsBefore + 1);
      const before = grants();
      await assertLogin(CAROL);
      assert.equal(grants().refresh_token, before.refresh_token + 1);
      const expiry = Number(cachedFields(await readFile(configPath, 'utf8'), CAROL).access_token_expiry);
      assert.ok(expiry <= Date.now() / 1000 + 300);
    } finally {
      bed.oauth.setAccessTokenLifetime(3600);
    }
  });

  it('asks the user again when the refresh token is refused (invalid_grant)', async () => {
    const promptsBefore = mailbridge.prompts.length;
    bed.oauth.revokeRefreshTokens();
    bed.oauth.expireAccessTokens();
    await assertLogin(BOB);
    assert.equal(mailbridge.prompts.length, promptsBefore + 1);
    await mailbridge.waitForLog(/refresh token of account 'bob@example\.test' was refused/);
  });

  it('serves clients over local TLS when a certificate is configured', async () => {
    const result = await curl([
      '--cacert',
      bed.certs.caCertPath,
      '--user',
      `${ALICE}:${PASSWORD}`,
      `imaps://localhost:${tlsPort}/INBOX/;UID=1`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, smallMessage);
  });

  it('upgrades the upstream connection with STARTTLS and shows the client the post-TLS capabilities', async () => {
    const client = await RawClient.connect(startTlsPort);
    try {
      const greeting = await client.waitFor(/^\* OK [^\r\n]*\r\n/);
      assert.match(greeting, /^\* OK \[CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR /);
      assert.doesNotMatch(greeting, /STARTTLS|LOGINDISABLED|AUTH=XOAUTH2/);
    } finally {
      client.close();
    }
    const result = await curl([
      '--user',
      `${ALICE}:${PASSWORD}`,
      `imap://127.0.0.1:${startTlsPort}/INBOX/;UID=1`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, smallMessage);
  });

  it('refreshes once for a burst of logins whose token the server refuses', async () => {
    await assertLogin(ALICE);
    const before = grants();
    bed.oauth.expireAccessTokens();
    await Promise.all(Array.from({ length: 10 }, () => assertLogin(ALICE)));
    assert.equal(grants().refresh_token, before.refresh_token + 1);
  });

  it('survives garbage, oversized lines and dropped connections, and keeps serving', async () => {
    const garbage = await RawClient.connect(port);
    await garbage.waitFor(/^\* OK .*\r\n/);
    garbage.send(Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 131) % 256)));
    garbage.send('\r\n');

    const huge = await RawClient.connect(port);
    await huge.waitFor(/^\* OK .*\r\n/);
    huge.send(Buffer.alloc(1024 * 1024, 0x61));
    await huge.waitFor(/\* BYE \[TOOBIG\][^\r\n]*\r\n/);
    await huge.waitClosed();

    const hugeLiteral = await RawClient.connect(port);
    await hugeLiteral.waitFor(/^\* OK .*\r\n/);
    assert.match(await hugeLiteral.command('a1', 'a1 LOGIN {1048576}\r\n'), /a1 BAD \[TOOBIG\]/);

    // Half-open: connected and silent, or gone in the middle of a LOGIN literal.
    const silent = await Promise.all(Array.from({ length: 20 }, () => RawClient.connect(port)));
    const dropped = await RawClient.connect(port);
    await dropped.waitFor(/^\* OK .*\r\n/);
    dropped.send('a1 LOGIN {20}\r\n');
    await dropped.waitFor(/\+ /);
    dropped.send('alice');
    dropped.socket.resetAndDestroy();

    await assertLogin(ALICE);
    for (const client of [garbage, hugeLiteral, ...silent]) client.close();
    assert.equal(mailbridge.child.exitCode, null, 'mailbridge is still running');
  });
});

async function assertLogin(user: string): Promise<void> {
  const result = await curl(['--user', `${user}:${PASSWORD}`, imapUrl('INBOX/;UID=1')]);
  assert.equal(
    result.code,
    0,
    `curl as ${user}: ${result.stderr}\nmailbridge log:\n${mailbridge.stderr().slice(-4000)}`,
  );
  assert.deepEqual(result.stdout, smallMessage);
}
