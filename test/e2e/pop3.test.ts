import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl, python, TlsConversation } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import {
  type MailbridgeProcess,
  startAuthorisingMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';

/**
 * POP3 clients that know only passwords (USER/PASS, AUTH PLAIN), mailbridge, and a Dovecot whose POP3 accepts
 * only OAuth 2.0 bearer tokens. Retrieved messages must equal the server's files byte for byte.
 */
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let mailbridge: MailbridgeProcess;
/** Local plain, upstream implicit TLS (pop3s). */
let port: number;
/** Local plain, upstream STLS on Dovecot's pop3 port (server_starttls). */
let upstreamStlsPort: number;
/** mailbridge offers STLS (local_starttls), upstream pop3s. */
let localStlsPort: number;
/** Local implicit TLS (a certificate without local_starttls), upstream pop3s. */
let tlsPort: number;
let smallMessage: Buffer;
let largeMessage: Buffer;

function plain(user: string, password: string): string {
  return Buffer.from(`\0${user}\0${password}`).toString('base64');
}

/** The status lines (+OK, -ERR) and the multi-line bodies of `text`, split into lines without CRLF. */
function lines(text: string): string[] {
  return text.split('\r\n').slice(0, -1);
}

/** Reads a multi-line POP3 response sent after `mark` characters of the client's text, dot-unstuffed. */
async function multiLine(client: RawClient, mark: number): Promise<{ status: string; body: Buffer }> {
  const text = await client.waitFor(
    new RegExp(`^[\\s\\S]{${mark}}(?:-ERR[^\\r\\n]*\\r\\n|\\+OK[\\s\\S]*?\\r\\n\\.\\r\\n)`),
  );
  const response = text.slice(mark);
  const firstEnd = response.indexOf('\r\n');
  const status = response.slice(0, firstEnd);
  if (!status.startsWith('+OK')) return { status, body: Buffer.alloc(0) };
  const end = response.indexOf('\r\n.\r\n', firstEnd);
  // The body starts after the status line; stuffed lines lose their first dot (RFC 1939 §3).
  const stuffed = response.slice(firstEnd + 2, end + 2);
  return { status, body: Buffer.from(stuffed.replace(/(^|\r\n)\./g, '$1'), 'latin1') };
}

async function greeted(targetPort: number): Promise<RawClient> {
  const client = await RawClient.connect(targetPort);
  await client.waitFor(/^\+OK[^\r\n]*\r\n/);
  return client;
}

/** Sends one line and waits for a single-line reply sent after everything received so far. */
async function status(client: RawClient, line: string): Promise<string> {
  const mark = client.text().length;
  client.send(`${line}\r\n`);
  const text = await client.waitFor(new RegExp(`^[\\s\\S]{${mark}}[^\\r\\n]*\\r\\n`));
  return text.slice(mark, text.indexOf('\r\n', mark));
}

async function capa(client: RawClient): Promise<string[]> {
  const mark = client.text().length;
  client.send('CAPA\r\n');
  const { status: reply, body } = await multiLine(client, mark);
  assert.match(reply, /^\+OK/);
  return lines(body.toString('latin1'));
}

describe('POP3 through mailbridge to an OAuth-only Dovecot', () => {
  before(async () => {
    bed = await startTestbed();
    smallMessage = Buffer.from(
      'From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: hello pop\r\n' +
        'Message-ID: <pop-1@example.test>\r\n\r\nHello Alice,\r\n.a line with a leading dot\r\n.\r\n' +
        '..\r\nFrom the start of a line\r\n8-bit: caf\xe9\r\n',
      'latin1',
    );
    // 5 MiB of CRLF lines with every byte value but CR, LF and NUL, to catch any re-framing in the relay.
    const body = randomBytes(5 * 1024 * 1024).map((byte) =>
      byte === 0x0d || byte === 0x0a || byte === 0 ? 0x2e : byte,
    );
    for (let i = 76; i < body.length; i += 78) {
      body[i] = 0x0d;
      body[i + 1] = 0x0a;
    }
    largeMessage = Buffer.concat([Buffer.from('Subject: large pop\r\n\r\n'), body, Buffer.from('\r\n')]);
    bed.dovecot.seedMessage(ALICE, '1.small', smallMessage);
    bed.dovecot.seedMessage(ALICE, '2.large', largeMessage);
    bed.dovecot.seedMessage('utf8@example.test', '1.small', smallMessage);
    [port, upstreamStlsPort, localStlsPort, tlsPort] = (await findFreePorts(4)) as [
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
          protocol: 'POP',
          localPort: port,
          serverPort: bed.dovecot.ports.pop3s,
          localAddress: '127.0.0.1',
        }),
        serverSection({
          protocol: 'POP',
          localPort: upstreamStlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.pop3,
          serverStarttls: true,
        }),
        serverSection({
          protocol: 'POP',
          localPort: localStlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.pop3s,
          localStarttls: true,
          localCertificate: bed.certs,
        }),
        serverSection({
          protocol: 'POP',
          localPort: tlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.pop3s,
          localCertificate: bed.certs,
        }),
        bed.accountSection(ALICE),
        bed.accountSection('utf8@example.test'),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('authorises on first login, then curl pop3:// (AUTH PLAIN, two-step) RETRs the server file byte for byte', async () => {
    const result = await curl(['--verbose', '--user', `${ALICE}:${PASSWORD}`, `pop3://127.0.0.1:${port}/1`]);
    assert.equal(result.code, 0, `curl failed: ${result.stderr}\nmailbridge log:\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, smallMessage);
    assert.match(result.stderr, /^> AUTH PLAIN\r?$/m);
    assert.equal(mailbridge.prompts.length, 1, 'exactly one authorisation prompt');
    await mailbridge.waitForLog(/authenticated 'alice@example\.test' upstream/);
  });

  it('logs in with USER/PASS from Python poplib and RETRs a 5 MiB message equal to the server file', async () => {
    const script = `
import poplib, os, sys, hashlib
p = poplib.POP3('127.0.0.1', int(os.environ['PORT']), timeout=30)
p.user(os.environ['USER_NAME'])
p.pass_(os.environ['PASSWORD'])
count, size = p.stat()
resp, lines, octets = p.retr(2)
sys.stdout.write('%d %d %s' % (count, size, hashlib.sha256(b'\\r\\n'.join(lines) + b'\\r\\n').hexdigest()))
p.quit()
`;
    const result = await python(script, { PORT: String(port), USER_NAME: ALICE, PASSWORD });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout.toString(),
      `2 ${smallMessage.length + largeMessage.length} ${createHash('sha256').update(largeMessage).digest('hex')}`,
    );
  });

  it('accepts AUTH PLAIN with an initial response on the command line', async () => {
    const client = await greeted(port);
    try {
      assert.match(await status(client, `AUTH PLAIN ${plain(ALICE, PASSWORD)}`), /^\+OK/);
      assert.equal(await status(client, 'STAT'), `+OK 2 ${smallMessage.length + largeMessage.length}`);
      const mark = client.text().length;
      client.send('RETR 1\r\n');
      const { status: reply, body } = await multiLine(client, mark);
      assert.match(reply, /^\+OK/);
      assert.deepEqual(body, smallMessage);
      assert.match(await status(client, 'QUIT'), /^\+OK/);
    } finally {
      client.close();
    }
  });

  it('reads a UTF-8 password in USER/PASS as the same password as in AUTH PLAIN', async () => {
    const password = 'pässwörd ✓';
    const first = await greeted(port);
    try {
      assert.match(await status(first, 'USER utf8@example.test'), /^\+OK/);
      assert.match(await status(first, `PASS ${password}`), /^\+OK/);
    } finally {
      first.close();
    }
    // The tokens are now encrypted with the password as USER/PASS read it: AUTH PLAIN must find them.
    const second = await greeted(port);
    try {
      assert.match(await status(second, `AUTH PLAIN ${plain('utf8@example.test', password)}`), /^\+OK/);
    } finally {
      second.close();
    }
  });

  it('accepts AUTH PLAIN in two steps: an empty "+ " challenge, then the response', async () => {
    const client = await greeted(port);
    try {
      assert.match(await status(client, 'AUTH PLAIN'), /^\+ ?$/);
      assert.match(await status(client, plain(ALICE, PASSWORD)), /^\+OK/);
      assert.match(await status(client, 'STAT'), /^\+OK 2 /);
    } finally {
      client.close();
    }
  });

  it('cancels AUTH PLAIN on "*" with -ERR and keeps the connection usable', async () => {
    const client = await greeted(port);
    try {
      assert.match(await status(client, 'AUTH PLAIN'), /^\+ ?$/);
      assert.match(await status(client, '*'), /^-ERR/);
      assert.match(await status(client, `USER ${ALICE}`), /^\+OK/);
      assert.match(await status(client, `PASS ${PASSWORD}`), /^\+OK/);
      assert.match(await status(client, 'STAT'), /^\+OK 2 /);
    } finally {
      client.close();
    }
  });

  it('answers a bare AUTH with the list of mechanisms: PLAIN only', async () => {
    const client = await greeted(port);
    try {
      const mark = client.text().length;
      client.send('AUTH\r\n');
      const { status: reply, body } = await multiLine(client, mark);
      assert.match(reply, /^\+OK/);
      assert.deepEqual(lines(body.toString('latin1')), ['PLAIN']);
    } finally {
      client.close();
    }
  });

  it('rewrites CAPA: USER and SASL PLAIN, no OAuth mechanism, STLS only where mailbridge offers it', async () => {
    for (const [target, offersStls] of [
      [port, false],
      [upstreamStlsPort, false],
      [localStlsPort, true],
    ] as const) {
      const client = await greeted(target);
      try {
        const capabilities = await capa(client);
        const where = `CAPA on port ${target}: ${capabilities.join(' | ')}`;
        assert.ok(capabilities.includes('USER'), where);
        assert.ok(capabilities.includes('SASL PLAIN'), where);
        assert.equal(capabilities.filter((line) => /^SASL\b/i.test(line)).length, 1, where);
        assert.ok(!capabilities.some((line) => /XOAUTH2|OAUTHBEARER/i.test(line)), where);
        assert.equal(capabilities.includes('STLS'), offersStls, where);
        // The server's other capabilities are kept: clients such as fetchmail rely on UIDL and TOP.
        assert.ok(capabilities.includes('UIDL') && capabilities.includes('TOP'), where);
      } finally {
        client.close();
      }
    }
  });

  it('refuses a wrong password with -ERR and the reason, and keeps the connection usable', async () => {
    const prompts = mailbridge.prompts.length;
    const client = await greeted(port);
    try {
      assert.match(await status(client, `USER ${ALICE}`), /^\+OK/);
      assert.match(
        await status(client, 'PASS wrong-password'),
        /^-ERR .*password for account 'alice@example\.test' is incorrect/,
      );
      assert.match(
        await status(client, `AUTH PLAIN ${plain(ALICE, 'wrong-password')}`),
        /^-ERR .*password for account 'alice@example\.test' is incorrect/,
      );
      assert.match(await status(client, `USER ${ALICE}`), /^\+OK/);
      assert.match(await status(client, `PASS ${PASSWORD}`), /^\+OK/);
      assert.match(await status(client, 'STAT'), /^\+OK 2 /);
    } finally {
      client.close();
    }
    assert.equal(mailbridge.prompts.length, prompts, 'a wrong password asks nobody');
  });

  it('upgrades the upstream connection with STLS when server_starttls is set', async () => {
    const result = await curl(['--user', `${ALICE}:${PASSWORD}`, `pop3://127.0.0.1:${upstreamStlsPort}/1`]);
    assert.equal(result.code, 0, `${result.stderr}\nmailbridge log:\n${mailbridge.stderr().slice(-4000)}`);
    assert.deepEqual(result.stdout, smallMessage);
  });

  it('serves clients over local implicit TLS when a certificate is configured', async () => {
    const result = await curl([
      '--cacert',
      bed.certs.caCertPath,
      '--user',
      `${ALICE}:${PASSWORD}`,
      `pop3s://localhost:${tlsPort}/1`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, smallMessage);
  });

  it('offers STLS with local_starttls, and curl --ssl-reqd upgrades and retrieves', async () => {
    const result = await curl([
      '--verbose',
      '--ssl-reqd',
      '--cacert',
      bed.certs.caCertPath,
      '--user',
      `${ALICE}:${PASSWORD}`,
      `pop3://localhost:${localStlsPort}/1`,
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout, smallMessage);
    assert.match(result.stderr, /^> STLS\r?$/m);
  });

  it('discards a command pipelined in clear after STLS (STARTTLS injection)', async () => {
    const client = await greeted(localStlsPort);
    let secure: TlsConversation | undefined;
    try {
      // One packet: STLS and a command that must not be executed once TLS is up.
      client.send(`STLS\r\nUSER injected@example.test\r\n`);
      await client.waitFor(/^\+OK[^\r\n]*\r\n\+OK[^\r\n]*\r\n/);
      secure = await TlsConversation.upgrade(client.socket, bed.certs.caCertPath);
      secure.send('CAPA\r\n');
      await secure.waitFor(/\r\n\.\r\n$/);
      secure.send(`PASS ${PASSWORD}\r\n`);
      await secure.waitFor(/\r\n\.\r\n(?:\+OK|-ERR)[^\r\n]*\r\n$/);
      secure.send('QUIT\r\n');
      await secure.waitFor(/\r\n\.\r\n[^\r\n]*\r\n\+OK[^\r\n]*\r\n$/);
      const replies = lines(secure.text());
      // First the CAPA reply: an answer to the injected USER would come before it.
      assert.match(replies[0] ?? '', /^\+OK/, secure.text());
      const capabilities = replies.slice(1, replies.indexOf('.'));
      assert.ok(!capabilities.includes('STLS'), `no STLS after STLS: ${capabilities.join(' | ')}`);
      assert.ok(capabilities.includes('SASL PLAIN'));
      // PASS without a USER in this (TLS) session: the injected USER was forgotten.
      assert.match(replies[replies.indexOf('.') + 1] ?? '', /^-ERR/, secure.text());
      assert.equal(replies.filter((line) => /^(\+OK|-ERR)/.test(line)).length, 3, secure.text());
    } finally {
      secure?.close();
      client.close();
    }
  });
});
