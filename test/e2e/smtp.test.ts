import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createServer, type Server, type TLSSocket } from 'node:tls';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl, python, swaks, TlsConversation } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startAuthorisingMailbridge } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';
import { type SinkMessage, type SmtpSink, splitReceivedHeader } from '../testbed/smtp-sink.ts';

/**
 * SMTP clients that know only passwords (AUTH PLAIN, AUTH LOGIN), mailbridge, Dovecot's submission service
 * accepting only OAuth 2.0 bearer tokens, and our SMTP sink behind it. What a client sends must arrive in the
 * sink byte for byte, after the one Received field Dovecot prepends (see splitReceivedHeader).
 */
const ALICE = 'alice@example.test';
const BOB = 'bob@example.test';
const CAROL = 'carol@example.test';
const PASSWORD = 'correct horse';
const O365_DISABLED =
  '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. ' +
  'Visit https://aka.ms/smtp_auth_disabled for more information. [AM0PR02CA0001.eurprd02.prod.outlook.com]';

let bed: Testbed & { sink: SmtpSink };
let mailbridge: MailbridgeProcess;
/** Local plain, upstream implicit TLS (submissions). */
let port: number;
/** Local plain, upstream STARTTLS on Dovecot's submission port (server_starttls). */
let upstreamStartTlsPort: number;
/** mailbridge offers STARTTLS (local_starttls), upstream submissions. */
let localStartTlsPort: number;
/** Local implicit TLS (a certificate without local_starttls), upstream submissions. */
let tlsPort: number;
/** Upstream: a fake Office 365 that lists AUTH twice (modern and legacy AUTH=) and has SMTP AUTH disabled. */
let o365Port: number;
let o365: FakeO365;
let message: Buffer;
let messagePath: string;
let largeMessage: Buffer;
let largeMessagePath: string;

function plain(user: string, password: string): string {
  return Buffer.from(`\0${user}\0${password}`).toString('base64');
}

function base64(text: string): string {
  return Buffer.from(text).toString('base64');
}

/** Waits for one complete reply (RFC 5321 §4.2.1: `NNN-` lines, then `NNN `) received after `mark` characters. */
async function reply(client: RawClient | TlsConversation, mark: number, timeoutMs = 10_000): Promise<string> {
  const text = await client.waitFor(
    new RegExp(`^[\\s\\S]{${mark}}(?:\\d{3}-[^\\r\\n]*\\r\\n)*\\d{3}(?: [^\\r\\n]*)?\\r\\n`),
    timeoutMs,
  );
  const rest = text.slice(mark);
  const final = /^(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n/.exec(rest);
  return final?.[0] ?? rest;
}

/** Sends a line and returns the complete reply to it. */
async function command(client: RawClient | TlsConversation, line: string): Promise<string> {
  const mark = client.text().length;
  client.send(`${line}\r\n`);
  return reply(client, mark);
}

async function greeted(targetPort: number): Promise<RawClient> {
  const client = await RawClient.connect(targetPort);
  await client.waitFor(/^220 [^\r\n]*\r\n/);
  return client;
}

/** The AUTH lines of an EHLO reply, e.g. `AUTH PLAIN LOGIN` and the legacy `AUTH=PLAIN LOGIN`. */
function authLines(ehlo: string): string[] {
  return ehlo
    .split('\r\n')
    .map((line) => line.slice(4))
    .filter((keyword) => /^AUTH[ =]/i.test(keyword));
}

function assertOffersPlainAndLogin(ehlo: string): void {
  const auth = authLines(ehlo);
  assert.ok(auth.length > 0, `no AUTH line in ${ehlo}`);
  for (const line of auth) {
    assert.deepEqual(line.slice(5).toUpperCase().split(' ').sort(), ['LOGIN', 'PLAIN'], ehlo);
  }
  assert.doesNotMatch(ehlo, /XOAUTH2|OAUTHBEARER/i);
}

/** Waits for the next message in the sink and checks it is `expected` after Dovecot's Received field. */
async function delivered(
  count: number,
  expected: Buffer,
  envelope: { from: string; to: string[]; ehlo?: string },
): Promise<SinkMessage> {
  const messages = await bed.sink.waitForMessages(count, 30_000);
  assert.equal(messages.length, count, 'exactly one more message in the sink');
  const last = messages[count - 1];
  assert.ok(last);
  assert.equal(last.from, envelope.from);
  assert.deepEqual(last.to, envelope.to);
  const { received, rest } = splitReceivedHeader(last.data);
  assert.ok(
    rest.equals(expected),
    `relayed message differs from the one sent (${rest.length} vs ${expected.length} bytes)`,
  );
  if (envelope.ehlo)
    assert.match(received, new RegExp(`^Received: from ${envelope.ehlo.replace(/\./g, '\\.')} `));
  return last;
}

async function login(client: RawClient | TlsConversation, ehloName = 'raw.client.test'): Promise<void> {
  assert.match(await command(client, `EHLO ${ehloName}`), /^250[ -]/);
  assert.match(await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^235 /);
}

/** Sends `data` (CRLF lines, ending in CRLF, no line starting with a dot) on a logged-in client. */
async function sendMessage(client: RawClient | TlsConversation, to: string, data: Buffer): Promise<void> {
  assert.match(await command(client, `MAIL FROM:<${ALICE}>`), /^250 /);
  assert.match(await command(client, `RCPT TO:<${to}>`), /^250 /);
  assert.match(await command(client, 'DATA'), /^354 /);
  const mark = client.text().length;
  client.send(Buffer.concat([data, Buffer.from('.\r\n')]));
  assert.match(await reply(client, mark), /^250 /);
}

describe('SMTP through mailbridge to an OAuth-only Dovecot submission service', () => {
  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    o365 = await startFakeO365(bed.certs.certPath, bed.certs.keyPath);
    message = Buffer.from(
      'From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: hello smtp\r\n' +
        'Message-ID: <smtp-1@example.test>\r\n\r\nHello Bob,\r\n.a line with a leading dot\r\n.\r\n' +
        '..\r\nFrom the start of a line\r\n8-bit: caf\xe9\r\n',
      'latin1',
    );
    messagePath = join(bed.dir, 'message.eml');
    await writeFile(messagePath, message);
    // 20 MB of CRLF lines with every byte value but CR, LF and NUL; some lines start with a dot.
    const body = randomBytes(20 * 1024 * 1024).map((byte) =>
      byte === 0x0d || byte === 0x0a || byte === 0 ? 0x20 : byte,
    );
    for (let i = 76; i < body.length; i += 78) {
      body[i] = 0x0d;
      body[i + 1] = 0x0a;
    }
    for (let i = 78 * 1000; i < body.length; i += 78 * 1000) body[i] = 0x2e;
    largeMessage = Buffer.concat([Buffer.from('Subject: large smtp\r\n\r\n'), body, Buffer.from('\r\n')]);
    largeMessagePath = join(bed.dir, 'large.eml');
    await writeFile(largeMessagePath, largeMessage);

    [port, upstreamStartTlsPort, localStartTlsPort, tlsPort, o365Port] = (await findFreePorts(5)) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({
          protocol: 'SMTP',
          localPort: port,
          serverPort: bed.dovecot.ports.submissions,
          localAddress: '127.0.0.1',
        }),
        serverSection({
          protocol: 'SMTP',
          localPort: upstreamStartTlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.submission,
          serverStarttls: true,
        }),
        serverSection({
          protocol: 'SMTP',
          localPort: localStartTlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.submissions,
          localStarttls: true,
          localCertificate: bed.certs,
        }),
        serverSection({
          protocol: 'SMTP',
          localPort: tlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.submissions,
          localCertificate: bed.certs,
        }),
        serverSection({
          protocol: 'SMTP',
          localPort: o365Port,
          serverAddress: 'localhost',
          serverPort: o365.port,
        }),
        bed.accountSection(ALICE),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    const code = await mailbridge?.stop();
    await o365?.close();
    await bed?.stop();
    assert.equal(code, 0, `mailbridge exited with ${code}; log:\n${mailbridge?.stderr()}`);
  });

  it('answers EHLO offering AUTH PLAIN LOGIN and no OAuth mechanism, and HELO with a plain 250', async () => {
    for (const [target, offersStartTls] of [
      [port, false],
      [upstreamStartTlsPort, false],
      [localStartTlsPort, true],
    ] as const) {
      const client = await greeted(target);
      try {
        const ehlo = await command(client, 'EHLO client.example.test');
        assert.match(ehlo, /^250-/);
        assertOffersPlainAndLogin(ehlo);
        assert.equal(/^250[ -]STARTTLS\r$/im.test(ehlo), offersStartTls, `port ${target}: ${ehlo}`);
      } finally {
        client.close();
      }
    }
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'HELO client.example.test'), /^250 [^\r\n]*\r\n$/);
    } finally {
      client.close();
    }
  });

  it('rewrites every AUTH line, the legacy AUTH= one too', async () => {
    const client = await greeted(o365Port);
    try {
      const ehlo = await command(client, 'EHLO client.example.test');
      assertOffersPlainAndLogin(ehlo);
      assert.deepEqual(
        authLines(ehlo).map((line) => line.slice(0, 5)),
        ['AUTH ', 'AUTH='],
        `both forms stay, rewritten: ${ehlo}`,
      );
      assert.match(ehlo, /^250-SIZE 157286400\r$/m, 'other extensions are kept');
    } finally {
      client.close();
    }
  });

  it('authorises on first login and sends with Python smtplib (AUTH PLAIN), byte-identical in the sink', async () => {
    const count = bed.sink.messages.length;
    const script = `
import smtplib, os
s = smtplib.SMTP('127.0.0.1', int(os.environ['PORT']), local_hostname='smtplib.client.test', timeout=30)
s.ehlo()
assert 'PLAIN' in s.esmtp_features.get('auth', '').upper().split(), s.esmtp_features
s.login(os.environ['USER_NAME'], os.environ['PASSWORD'])
with open(os.environ['MESSAGE'], 'rb') as f:
    refused = s.sendmail(os.environ['USER_NAME'], [os.environ['RCPT']], f.read())
assert not refused, refused
s.quit()
`;
    const result = await python(script, {
      PORT: String(port),
      USER_NAME: ALICE,
      PASSWORD,
      MESSAGE: messagePath,
      RCPT: BOB,
    });
    assert.equal(result.code, 0, `${result.stderr}\nmailbridge log:\n${mailbridge.stderr()}`);
    assert.equal(mailbridge.prompts.length, 1, 'exactly one authorisation prompt');
    await delivered(count + 1, message, { from: ALICE, to: [BOB], ehlo: 'smtplib.client.test' });
  });

  it('accepts AUTH PLAIN with an initial response', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO raw.client.test'), /^250-/);
      assert.match(await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^235 /);
      const count = bed.sink.messages.length;
      await sendMessage(client, CAROL, Buffer.from('Subject: inline plain\r\n\r\nbody\r\n'));
      await delivered(count + 1, Buffer.from('Subject: inline plain\r\n\r\nbody\r\n'), {
        from: ALICE,
        to: [CAROL],
        ehlo: 'raw.client.test',
      });
      assert.match(await command(client, 'QUIT'), /^221 /);
    } finally {
      client.close();
    }
  });

  it('accepts AUTH PLAIN in two steps', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO raw.client.test'), /^250-/);
      assert.match(await command(client, 'AUTH PLAIN'), /^334 ?\r\n$/);
      assert.match(await command(client, plain(ALICE, PASSWORD)), /^235 /);
      assert.match(await command(client, 'NOOP'), /^250 /);
    } finally {
      client.close();
    }
  });

  it('accepts AUTH LOGIN with the user name on the command line', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO raw.client.test'), /^250-/);
      assert.match(await command(client, `AUTH LOGIN ${base64(ALICE)}`), /^334 UGFzc3dvcmQ6\r\n$/);
      assert.match(await command(client, base64(PASSWORD)), /^235 /);
      assert.match(await command(client, 'NOOP'), /^250 /);
    } finally {
      client.close();
    }
  });

  it('accepts AUTH LOGIN in two steps: Username:, then Password:', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO raw.client.test'), /^250-/);
      assert.match(await command(client, 'AUTH LOGIN'), /^334 VXNlcm5hbWU6\r\n$/);
      assert.match(await command(client, base64(ALICE)), /^334 UGFzc3dvcmQ6\r\n$/);
      assert.match(await command(client, base64(PASSWORD)), /^235 /);
      const count = bed.sink.messages.length;
      await sendMessage(client, BOB, Buffer.from('Subject: login\r\n\r\nbody\r\n'));
      await delivered(count + 1, Buffer.from('Subject: login\r\n\r\nbody\r\n'), { from: ALICE, to: [BOB] });
    } finally {
      client.close();
    }
  });

  it('cancels an AUTH exchange on "*" with 501 and keeps the connection usable', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO raw.client.test'), /^250-/);
      assert.match(await command(client, 'AUTH LOGIN'), /^334 /);
      assert.match(await command(client, '*'), /^501 /);
      assert.match(await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^235 /);
    } finally {
      client.close();
    }
  });

  it('refuses a wrong password with 535 and the reason, and keeps the connection usable', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO raw.client.test'), /^250-/);
      assert.match(
        await command(client, `AUTH PLAIN ${plain(ALICE, 'wrong-password')}`),
        /^535 [^\r\n]*password for account 'alice@example\.test' is incorrect/,
      );
      assert.match(await command(client, `AUTH LOGIN ${base64(ALICE)}`), /^334 /);
      assert.match(
        await command(client, base64('wrong-password')),
        /^535 [^\r\n]*password for account 'alice@example\.test' is incorrect/,
      );
      assert.match(await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^235 /);
    } finally {
      client.close();
    }
    assert.equal(mailbridge.prompts.length, 1);
  });

  it('sends with curl through an upstream STARTTLS connection, replaying the client EHLO after the upgrade', async () => {
    const count = bed.sink.messages.length;
    const result = await curl([
      '--user',
      `${ALICE}:${PASSWORD}`,
      '--mail-from',
      ALICE,
      '--mail-rcpt',
      BOB,
      '--mail-rcpt',
      CAROL,
      '--upload-file',
      messagePath,
      `smtp://127.0.0.1:${upstreamStartTlsPort}/curl.client.test`,
    ]);
    assert.equal(result.code, 0, `${result.stderr}\nmailbridge log:\n${mailbridge.stderr().slice(-4000)}`);
    await delivered(count + 1, message, { from: ALICE, to: [BOB, CAROL], ehlo: 'curl.client.test' });
  });

  it('sends with curl over STARTTLS to mailbridge and over local implicit TLS', async () => {
    for (const url of [`smtp://localhost:${localStartTlsPort}`, `smtps://localhost:${tlsPort}`]) {
      const count = bed.sink.messages.length;
      const result = await curl([
        '--ssl-reqd',
        '--cacert',
        bed.certs.caCertPath,
        '--user',
        `${ALICE}:${PASSWORD}`,
        '--mail-from',
        ALICE,
        '--mail-rcpt',
        BOB,
        '--upload-file',
        messagePath,
        url,
      ]);
      assert.equal(result.code, 0, `${url}: ${result.stderr}`);
      await delivered(count + 1, message, { from: ALICE, to: [BOB] });
    }
  });

  it('sends with swaks, AUTH PLAIN and AUTH LOGIN, after STARTTLS to mailbridge', async () => {
    for (const auth of ['PLAIN', 'LOGIN'] as const) {
      const count = bed.sink.messages.length;
      const result = await swaks({
        port: localStartTlsPort,
        host: 'localhost',
        from: ALICE,
        to: [BOB],
        auth,
        user: ALICE,
        password: PASSWORD,
        tls: 'starttls',
        caCertPath: bed.certs.caCertPath,
        dataFile: messagePath,
        ehlo: 'swaks.client.test',
      });
      const transcript = result.stdout.toString();
      assert.equal(result.code, 0, `swaks ${auth}: ${result.stderr}\n${transcript}`);
      assert.match(transcript, /-> STARTTLS/);
      assert.match(transcript, new RegExp(`~> AUTH ${auth}`));
      await delivered(count + 1, message, { from: ALICE, to: [BOB], ehlo: 'swaks.client.test' });
    }
  });

  it('sends with swaks over local implicit TLS (--tls-on-connect)', async () => {
    const count = bed.sink.messages.length;
    const result = await swaks({
      port: tlsPort,
      host: 'localhost',
      from: ALICE,
      to: [CAROL],
      auth: 'PLAIN',
      user: ALICE,
      password: PASSWORD,
      tls: 'implicit',
      caCertPath: bed.certs.caCertPath,
      dataFile: messagePath,
    });
    assert.equal(result.code, 0, `${result.stderr}\n${result.stdout.toString()}`);
    await delivered(count + 1, message, { from: ALICE, to: [CAROL] });
  });

  it('relays a 20 MB message byte-identical', async () => {
    const count = bed.sink.messages.length;
    const result = await curl(
      [
        '--user',
        `${ALICE}:${PASSWORD}`,
        '--mail-from',
        ALICE,
        '--mail-rcpt',
        BOB,
        '--upload-file',
        largeMessagePath,
        `smtp://127.0.0.1:${port}`,
      ],
      60_000,
    );
    assert.equal(result.code, 0, result.stderr);
    const stored = await delivered(count + 1, largeMessage, { from: ALICE, to: [BOB] });
    assert.ok((await readFile(stored.path)).equals(stored.data));
  });

  it('relays MAIL, RCPT and DATA pipelined in one packet after AUTH (PIPELINING)', async () => {
    const client = await greeted(port);
    try {
      assert.match(await command(client, 'EHLO pipelining.client.test'), /^250-PIPELINING\r$/m);
      assert.match(await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^235 /);
      const count = bed.sink.messages.length;
      const data = Buffer.from('Subject: pipelined\r\n\r\nbody\r\n');
      const mark = client.text().length;
      client.send(`MAIL FROM:<${ALICE}>\r\nRCPT TO:<${BOB}>\r\nRCPT TO:<${CAROL}>\r\nDATA\r\n`);
      await client.waitFor(
        new RegExp(`^[\\s\\S]{${mark}}250 [^\\r\\n]*\\r\\n250 [^\\r\\n]*\\r\\n250 [^\\r\\n]*\\r\\n354 `),
      );
      client.send(Buffer.concat([data, Buffer.from('.\r\nQUIT\r\n')]));
      await client.waitFor(/\r\n221 [^\r\n]*\r\n$/);
      await delivered(count + 1, data, { from: ALICE, to: [BOB, CAROL] });
    } finally {
      client.close();
    }
  });

  it('relays BDAT chunks byte for byte when CHUNKING is offered (no dot-stuffing, dot lines are content)', async (t) => {
    const client = await greeted(port);
    try {
      const ehlo = await command(client, 'EHLO bdat.client.test');
      if (!/^250[ -]CHUNKING\r$/m.test(ehlo)) {
        t.skip('mailbridge does not offer CHUNKING');
        return;
      }
      assert.match(await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^235 /);
      assert.match(await command(client, `MAIL FROM:<${ALICE}>`), /^250 /);
      assert.match(await command(client, `RCPT TO:<${BOB}>`), /^250 /);
      const count = bed.sink.messages.length;
      // In DATA, ".\r\n" would end the message and "QUIT" would be a command; in BDAT both are content.
      const data = Buffer.from(
        'Subject: bdat\r\n\r\nfirst\r\n.\r\nQUIT\r\n..two dots\r\ncaf\xe9\r\n',
        'latin1',
      );
      const first = data.subarray(0, 25);
      const last = data.subarray(25);
      const mark = client.text().length;
      client.send(
        Buffer.concat([
          Buffer.from(`BDAT ${first.length}\r\n`),
          first,
          Buffer.from(`BDAT ${last.length} LAST\r\n`),
          last,
        ]),
      );
      await client.waitFor(new RegExp(`^[\\s\\S]{${mark}}250 [^\\r\\n]*\\r\\n250 [^\\r\\n]*\\r\\n`));
      await delivered(count + 1, data, { from: ALICE, to: [BOB] });
    } finally {
      client.close();
    }
  });

  it('leaves no message upstream when the client disconnects in the middle of DATA', async () => {
    const marker = `half-sent-${randomBytes(8).toString('hex')}`;
    const count = bed.sink.messages.length;
    const client = await greeted(port);
    try {
      await login(client);
      assert.match(await command(client, `MAIL FROM:<${ALICE}>`), /^250 /);
      assert.match(await command(client, `RCPT TO:<${BOB}>`), /^250 /);
      assert.match(await command(client, 'DATA'), /^354 /);
      client.send(`Subject: ${marker}\r\n\r\n${'half a message\r\n'.repeat(4096)}and then`);
      await sleep(300);
    } finally {
      client.socket.resetAndDestroy();
    }

    // A complete message afterwards proves the path works and gives the half one time to show up.
    const result = await curl([
      '--user',
      `${ALICE}:${PASSWORD}`,
      '--mail-from',
      ALICE,
      '--mail-rcpt',
      CAROL,
      '--upload-file',
      messagePath,
      `smtp://127.0.0.1:${port}`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    await bed.sink.waitForMessages(count + 1);
    await sleep(500);
    assert.equal(bed.sink.messages.length, count + 1, 'only the complete message arrived');
    assert.ok(!bed.sink.messages.some((stored) => stored.data.includes(marker)));
    assert.equal(mailbridge.child.exitCode, null, 'mailbridge is still running');
  });

  it('discards a command pipelined in clear after STARTTLS (STARTTLS injection)', async () => {
    const client = await greeted(localStartTlsPort);
    let secure: TlsConversation | undefined;
    try {
      assert.match(await command(client, 'EHLO injection.test'), /^250-/);
      const mark = client.text().length;
      // One packet: STARTTLS and a command that must not be executed once TLS is up.
      client.send(`STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n`);
      assert.match(await reply(client, mark), /^220 /);
      secure = await TlsConversation.upgrade(client.socket, bed.certs.caCertPath);
      const ehlo = await command(secure, 'EHLO after.tls.test');
      // An answer to the injected MAIL would come first.
      assert.match(ehlo, /^250-/, secure.text());
      assertOffersPlainAndLogin(ehlo);
      assert.doesNotMatch(ehlo, /STARTTLS/);
      assert.match(await command(secure, 'NOOP'), /^250 /);
      await sleep(100);
      const finals = secure.text().match(/^\d{3} [^\r\n]*\r$/gm) ?? [];
      assert.equal(finals.length, 2, `only the EHLO and NOOP replies: ${secure.text()}`);

      // The session works: log in and send over TLS; the injected sender appears nowhere.
      await login(secure, 'after.tls.test');
      const count = bed.sink.messages.length;
      await sendMessage(secure, BOB, Buffer.from('Subject: after starttls\r\n\r\nbody\r\n'));
      const stored = await delivered(count + 1, Buffer.from('Subject: after starttls\r\n\r\nbody\r\n'), {
        from: ALICE,
        to: [BOB],
        ehlo: 'after.tls.test',
      });
      assert.ok(!stored.data.includes('injected@example.test'));
    } finally {
      secure?.close();
      client.close();
    }
  });

  it('explains 535 5.7.139 as a tenant setting (SMTP AUTH disabled), not a token problem', async () => {
    const prompts = mailbridge.prompts.length;
    const client = await greeted(o365Port);
    try {
      assert.match(await command(client, 'EHLO client.example.test'), /^250-/);
      const refused = await command(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`);
      assert.match(refused, /^535 /);
      assert.match(refused, /tenant/i);
      assert.match(refused, /SMTP AUTH|SmtpClientAuthentication/i);
      assert.doesNotMatch(refused, /password for account .* is incorrect/);
    } finally {
      client.close();
    }
    assert.ok(o365.authAttempts > 0, 'mailbridge tried the fake Office 365 with a token');
    assert.equal(mailbridge.prompts.length, prompts, 'no new authorisation: the token is not the problem');
  });
});

interface FakeO365 {
  port: number;
  authAttempts: number;
  close(): Promise<void>;
}

/**
 * Just enough of Office 365's SMTP over implicit TLS: an EHLO reply with both AUTH forms (`AUTH LOGIN XOAUTH2` and
 * the legacy `AUTH=LOGIN XOAUTH2`), and every AUTH refused as when the tenant has SMTP AUTH disabled.
 */
async function startFakeO365(certPath: string, keyPath: string): Promise<FakeO365> {
  const sockets = new Set<TLSSocket>();
  const fake: FakeO365 = { port: 0, authAttempts: 0, close: async () => undefined };
  const server: Server = createServer(
    { cert: await readFile(certPath), key: await readFile(keyPath) },
    (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.setTimeout(30_000, () => socket.destroy());
      let buffered = '';
      let inAuth = false;
      const send = (text: string) => socket.write(`${text}\r\n`);
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        if (buffered.length > 64 * 1024) socket.destroy();
        for (let end = buffered.indexOf('\r\n'); end !== -1; end = buffered.indexOf('\r\n')) {
          const line = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const verb = line.split(' ')[0]?.toUpperCase() ?? '';
          if (inAuth) {
            inAuth = false;
            send(O365_DISABLED);
          } else if (verb === 'EHLO') {
            send(
              '250-AM0PR02CA0001.outlook.office365.com Hello [127.0.0.1]\r\n250-SIZE 157286400\r\n250-PIPELINING\r\n' +
                '250-ENHANCEDSTATUSCODES\r\n250-AUTH LOGIN XOAUTH2\r\n250-AUTH=LOGIN XOAUTH2\r\n250-8BITMIME\r\n' +
                '250 SMTPUTF8',
            );
          } else if (verb === 'AUTH') {
            fake.authAttempts += 1;
            if (line.split(' ').length > 2) send(O365_DISABLED);
            else {
              inAuth = true;
              send('334 ');
            }
          } else if (verb === 'QUIT') {
            send('221 2.0.0 Service closing transmission channel');
            socket.end();
          } else if (verb === 'HELO' || verb === 'NOOP' || verb === 'RSET') {
            send('250 2.0.0 OK');
          } else {
            send('530 5.7.57 Client not authenticated to send mail');
          }
        }
      });
      send('220 AM0PR02CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready');
    },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('fake Office 365 has no port');
  fake.port = address.port;
  fake.close = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return fake;
}
