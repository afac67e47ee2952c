import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { fetchmail, mbsync, TlsConversation } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import {
  type MailbridgeProcess,
  startAuthorisingMailbridge,
  stopMailbridgeAndBed,
} from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';

/**
 * The seed user's own clients through mailbridge: fetchmail over POP3 and over IMAP delivering every message to
 * a file through an mda, and mbsync pulling the INBOX into a Maildir; each logs in with a plain password, in clear
 * on loopback or after STARTTLS/STLS to mailbridge. Also STARTTLS injection for IMAP.
 */
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let mailbridge: MailbridgeProcess;
/** Local plain, upstream pop3s. */
let popPort: number;
/** Local plain, upstream imaps. */
let imapPort: number;
/** mailbridge offers STLS (local_starttls); upstream STLS on Dovecot's pop3 port (server_starttls). */
let popStlsPort: number;
/** mailbridge offers STARTTLS (local_starttls); upstream imaps. */
let imapStartTlsPort: number;
let seeded: Buffer[];

/**
 * What mbsync (isync 1.4.4) writes into a Maildir for a server message: LF line ends, and an `X-TUID` field
 * appended to the header (its transaction id, kept in the file) — nothing else changes.
 */
function asMbsyncStores(server: Buffer): Buffer {
  return Buffer.from(server.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
}

function withoutTuid(stored: Buffer): { tuid: string | undefined; rest: Buffer } {
  const text = stored.toString('latin1');
  const headerEnd = text.indexOf('\n\n');
  const header = text.slice(0, headerEnd + 1);
  const match = /^X-TUID: [^\n]*\n/m.exec(header);
  if (!match) return { tuid: undefined, rest: stored };
  const rest =
    header.slice(0, match.index) + header.slice(match.index + match[0].length) + text.slice(headerEnd + 1);
  return { tuid: match[0], rest: Buffer.from(rest, 'latin1') };
}

describe('fetchmail and mbsync through mailbridge', () => {
  before(async () => {
    bed = await startTestbed();
    seeded = [
      Buffer.from(
        'From: Bob <bob@example.test>\r\nTo: Alice <alice@example.test>\r\nSubject: for fetchmail\r\n' +
          'Message-ID: <fm-1@example.test>\r\nStatus: RO\r\n\r\nHello Alice,\r\n.a line with a leading dot\r\n' +
          '.\r\n..\r\nFrom the start of a line\r\n8-bit: caf\xe9\r\n',
        'latin1',
      ),
      Buffer.from('Subject: no body\r\n\r\n'),
      Buffer.from(`Subject: long lines\r\n\r\n${'z'.repeat(5000)}\r\n${'line\r\n'.repeat(50_000)}`),
    ];
    seeded.forEach((data, index) => {
      bed.dovecot.seedMessage(ALICE, `${index + 1}.msg`, data);
    });
    [popPort, imapPort, popStlsPort, imapStartTlsPort] = (await findFreePorts(4)) as [
      number,
      number,
      number,
      number,
    ];
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({ protocol: 'POP', localPort: popPort, serverPort: bed.dovecot.ports.pop3s }),
        serverSection({ protocol: 'IMAP', localPort: imapPort, serverPort: bed.dovecot.ports.imaps }),
        serverSection({
          protocol: 'POP',
          localPort: popStlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.pop3,
          serverStarttls: true,
          localStarttls: true,
          localCertificate: bed.certs,
        }),
        serverSection({
          protocol: 'IMAP',
          localPort: imapStartTlsPort,
          serverAddress: 'localhost',
          serverPort: bed.dovecot.ports.imaps,
          localStarttls: true,
          localCertificate: bed.certs,
        }),
        bed.accountSection(ALICE),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
  });

  after(async () => {
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('fetchmail over POP3 (USER/PASS) delivers every message to its mda equal to the server file', async () => {
    const result = await fetchmail({ protocol: 'POP3', port: popPort, user: ALICE, password: PASSWORD });
    assert.equal(
      result.code,
      0,
      `fetchmail exited ${result.code}\n${result.log}\n${result.rc}\nmailbridge log:\n${mailbridge.stderr()}`,
    );
    assert.equal(mailbridge.prompts.length, 1, 'exactly one authorisation prompt');
    assert.equal(result.messages.length, seeded.length, result.log);
    result.messages.forEach((data, index) => {
      assert.ok(
        data.equals(seeded[index] as Buffer),
        `message ${index + 1} differs:\n${data.subarray(0, 300)}`,
      );
    });
    assert.match(result.log, /POP3> USER alice@example\.test/);
  });

  it('fetchmail over IMAP (LOGIN) delivers every message to its mda equal to the server file', async () => {
    const result = await fetchmail({ protocol: 'IMAP', port: imapPort, user: ALICE, password: PASSWORD });
    assert.equal(result.code, 0, `fetchmail exited ${result.code}\n${result.log}\n${result.rc}`);
    assert.equal(result.messages.length, seeded.length, result.log);
    result.messages.forEach((data, index) => {
      assert.ok(
        data.equals(seeded[index] as Buffer),
        `message ${index + 1} differs:\n${data.subarray(0, 300)}`,
      );
    });
    assert.match(result.log, /IMAP> A\d+ LOGIN /);
  });

  it('fetchmail over POP3 with STLS to mailbridge, certificate checked, upstream STLS too', async () => {
    const result = await fetchmail({
      protocol: 'POP3',
      port: popStlsPort,
      host: 'localhost',
      user: ALICE,
      password: PASSWORD,
      tls: 'starttls',
      caCertPath: bed.certs.caCertPath,
    });
    assert.equal(result.code, 0, `fetchmail exited ${result.code}\n${result.log}\n${result.rc}`);
    assert.match(
      result.log,
      /POP3> STLS\n[\s\S]*upgrade to TLS succeeded[\s\S]*POP3> USER alice@example\.test/,
    );
    assert.deepEqual(result.messages, seeded);
  });

  it('fetchmail reports a wrong password as an authentication failure (exit 3) with the reason', async () => {
    const result = await fetchmail({
      protocol: 'POP3',
      port: popPort,
      user: ALICE,
      password: 'wrong-password',
    });
    assert.equal(result.code, 3, `fetchmail exited ${result.code}\n${result.log}`);
    assert.match(result.log, /password for account 'alice@example\.test' is incorrect/);
    assert.equal(result.messages.length, 0);
  });

  it('mbsync over IMAP (LOGIN) pulls the INBOX into a Maildir: the server files, LF-terminated, plus X-TUID', async () => {
    const result = await mbsync({ port: imapPort, user: ALICE, password: PASSWORD });
    assert.equal(result.code, 0, `mbsync exited ${result.code}\n${result.stderr}\n${result.stdout}`);
    assert.deepEqual(
      result.messages.map((stored) => stored.uid),
      [1, 2, 3],
    );
    result.messages.forEach((stored, index) => {
      const { tuid, rest } = withoutTuid(stored.data);
      assert.match(tuid ?? '', /^X-TUID: \S+\n$/);
      assert.ok(
        rest.equals(asMbsyncStores(seeded[index] as Buffer)),
        `message ${index + 1} differs: ${stored.name}`,
      );
    });
  });

  it('mbsync with STARTTLS to mailbridge (SSLType STARTTLS, certificate checked)', async () => {
    const result = await mbsync({
      port: imapStartTlsPort,
      host: 'localhost',
      user: ALICE,
      password: PASSWORD,
      tls: 'starttls',
      caCertPath: bed.certs.caCertPath,
    });
    assert.equal(result.code, 0, `mbsync exited ${result.code}\n${result.stderr}\n${result.stdout}`);
    assert.equal(result.messages.length, seeded.length);
    assert.match(result.stdout.toString(), /Connection is now encrypted\n[\s\S]*Logging in/);
    assert.doesNotMatch(result.stderr, /Password is being sent in the clear/);
  });

  it('IMAP: discards a command pipelined in clear after STARTTLS (STARTTLS injection)', async () => {
    const client = await RawClient.connect(imapStartTlsPort);
    let secure: TlsConversation | undefined;
    try {
      const greeting = await client.waitFor(/^\* OK [^\r\n]*\r\n/);
      assert.match(greeting, /STARTTLS/);
      // One packet: STARTTLS and a command that must not be executed once TLS is up.
      client.send('a1 STARTTLS\r\na2 LOGIN injected@example.test x\r\n');
      await client.waitFor(/\r\na1 OK[^\r\n]*\r\n/);
      secure = await TlsConversation.upgrade(client.socket, bed.certs.caCertPath);
      secure.send('a3 CAPABILITY\r\n');
      const capability = await secure.waitFor(/^a3 OK[^\r\n]*\r\n/m);
      assert.doesNotMatch(capability, /^a2 /m, 'the injected command was executed');
      assert.match(capability, /^\* CAPABILITY [^\r\n]*AUTH=PLAIN/m);
      assert.doesNotMatch(capability, /STARTTLS|LOGINDISABLED/);
      secure.send(`a4 LOGIN ${ALICE} "${PASSWORD}"\r\n`);
      const loggedIn = await secure.waitFor(/^a4 (OK|NO|BAD)[^\r\n]*\r\n/m);
      assert.match(loggedIn, /^a4 OK/m);
      assert.doesNotMatch(loggedIn, /^a2 /m);
    } finally {
      secure?.close();
      client.close();
    }
  });
});
