import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { createTestCertificates, servedCertificateFingerprint } from '../testbed/certs.ts';
import { curl, TlsConversation } from '../testbed/clients.ts';
import { type ServerSectionOptions, serverSection } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startAuthorisingMailbridge } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';
import { RawClient } from '../testbed/raw-client.ts';

/**
 * The daemon's signals against the real program, Dovecot and real sessions: SIGHUP reloads the configuration
 * file — listeners added, removed, changed in place or re-opened — while sessions keep running, an IMAP IDLE
 * among them; a broken file changes nothing; SIGUSR1 toggles debug logging; SIGTERM says goodbye in each
 * protocol and exits 0. Also checked here: TCP keepalive on both sides of relayed sessions, the backlog, and
 * the web console's certificate re-read at SIGHUP.
 */
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';
const run = promisify(execFile);

let bed: Testbed;
let mailbridge: MailbridgeProcess;
let configPath: string;
/**
 * kept: unchanged by the reload. gone: removed. pop: changed in place. tls: re-opened with local TLS. smtp:
 * added. web: the web console over HTTPS, whose certificate a reload re-reads.
 */
let ports: { kept: number; gone: number; pop: number; tls: number; smtp: number; web: number };
/** The web console's certificate and key: copies of the test bed's that a test renews. */
let consoleCertificate: { certPath: string; keyPath: string };
let message: Buffer;

function config(stage: 'before' | 'after'): string {
  const section = (options: Omit<ServerSectionOptions, 'localAddress'>) =>
    serverSection({ ...options, localAddress: '127.0.0.1' });
  const { imaps, pop3, pop3s, submissions } = bed.dovecot.ports;
  const sections = [
    '# signals test configuration',
    '[emailproxy]',
    `web_console = 127.0.0.1:${ports.web}`,
    `web_console_certificate_path = ${consoleCertificate.certPath}`,
    `web_console_key_path = ${consoleCertificate.keyPath}`,
    '',
    section({ protocol: 'IMAP', localPort: ports.kept, serverPort: imaps }),
  ];
  if (stage === 'before') {
    sections.push(
      section({ protocol: 'IMAP', localPort: ports.gone, serverPort: imaps }),
      section({ protocol: 'POP', localPort: ports.pop, serverPort: pop3s }),
      section({ protocol: 'IMAP', localPort: ports.tls, serverPort: imaps }),
    );
  } else {
    sections.push(
      section({
        protocol: 'POP',
        localPort: ports.pop,
        serverAddress: 'localhost',
        serverPort: pop3,
        serverStarttls: true,
      }),
      section({ protocol: 'IMAP', localPort: ports.tls, serverPort: imaps, localCertificate: bed.certs }),
      section({ protocol: 'SMTP', localPort: ports.smtp, serverPort: submissions }),
    );
  }
  sections.push(bed.accountSection(ALICE));
  return sections.join('\n');
}

async function greeted(port: number, greeting = /^\* OK [^\r\n]*\r\n/): Promise<RawClient> {
  const client = await RawClient.connect(port);
  await client.waitFor(greeting);
  return client;
}

async function loggedIn(port: number): Promise<RawClient> {
  const client = await greeted(port);
  assert.match(await client.command('a1', `a1 LOGIN ${ALICE} "${PASSWORD}"\r\n`), /a1 OK/);
  return client;
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });
}

/** The TCP sockets a process holds, from /proc: state, ports and the kernel's timer (2 = keepalive). */
function tcpSockets(pid: number): { state: string; localPort: number; remotePort: number; timer: string }[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const match = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (match?.[1]) inodes.add(match[1]);
    } catch {
      // The descriptor closed meanwhile.
    }
  }
  const sockets = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').trim().split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (!inodes.has(fields[9] ?? '')) continue;
      const port = (address: string | undefined) => Number.parseInt(address?.split(':')[1] ?? '', 16);
      sockets.push({
        state: fields[3] ?? '',
        localPort: port(fields[1]),
        remotePort: port(fields[2]),
        timer: (fields[5] ?? '').split(':')[0] ?? '',
      });
    }
  }
  return sockets;
}

describe('signals: SIGHUP reload with live sessions, SIGUSR1, SIGTERM', () => {
  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    message = Buffer.from('Subject: one\r\n\r\nfirst\r\n');
    bed.dovecot.seedMessage(ALICE, '1.one', message);
    const [kept, gone, pop, tls, smtp, web] = (await findFreePorts(6)) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    ports = { kept, gone, pop, tls, smtp, web };
    consoleCertificate = { certPath: join(bed.dir, 'console.pem'), keyPath: join(bed.dir, 'console.key') };
    await copyFile(bed.certs.certPath, consoleCertificate.certPath);
    await copyFile(bed.certs.keyPath, consoleCertificate.keyPath);
    configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(configPath, config('before'));
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
    // The first login authorises the account; every later one uses the cached token.
    (await loggedIn(ports.kept)).close();
  });

  after(async () => {
    await mailbridge?.stop();
    await bed?.stop();
  });

  it('listens with a backlog of 511 (bursts of connects are queued, not refused)', async () => {
    const { stdout } = await run('ss', ['-ltnH', `sport = :${ports.kept}`]);
    // For a listening socket ss shows the backlog as Send-Q (the kernel caps it at net.core.somaxconn).
    const sendQ = stdout.trim().split(/\s+/)[2];
    assert.equal(sendQ, '511', stdout);
  });

  it('reloads on SIGHUP: adds, removes and changes listeners while every session keeps running', async () => {
    const pid = mailbridge.child.pid as number;
    // Sessions open across the reload: IDLE on the unchanged listener, one still before login there, one
    // relayed through the listener about to be removed, and a POP3 session on the one about to change.
    const idle = await loggedIn(ports.kept);
    assert.match(await idle.command('a2', 'a2 SELECT INBOX\r\n'), /\* 1 EXISTS/);
    idle.send('a3 IDLE\r\n');
    await idle.waitFor(/\+ [^\r\n]*\r\n$/);
    const preAuth = await greeted(ports.kept);
    const onRemoved = await loggedIn(ports.gone);
    const pop = await greeted(ports.pop, /^\+OK[^\r\n]*\r\n/);
    pop.send(`USER ${ALICE}\r\nPASS ${PASSWORD}\r\n`);
    await pop.waitFor(/\+OK[^\r\n]*\r\n\+OK[^\r\n]*\r\n/);

    // Keepalive on both sides of every relayed session: the client's socket and the one to Dovecot. While
    // bytes are unacknowledged the kernel shows the retransmit timer instead, so look until all are idle.
    let withoutKeepalive: ReturnType<typeof tcpSockets> = [];
    for (let look = 0; look < 50; look += 1) {
      const established = tcpSockets(pid).filter((socket) => socket.state === '01');
      assert.ok(established.length >= 8, JSON.stringify(established));
      withoutKeepalive = established.filter((socket) => Number.parseInt(socket.timer, 16) !== 2);
      if (withoutKeepalive.length === 0) break;
      await sleep(100);
    }
    assert.deepEqual(
      withoutKeepalive,
      [],
      'every established socket of mailbridge has its keepalive timer armed',
    );

    await writeFile(configPath, config('after'));
    mailbridge.child.kill('SIGHUP');
    await mailbridge.waitForLog(/configuration reloaded: [^\n]*\n/);
    const summary = /configuration reloaded: ([^\n]*)\n/.exec(mailbridge.stderr())?.[1] ?? '';
    assert.equal(
      summary,
      `1 added (SMTP-${ports.smtp}), 1 removed (IMAP-${ports.gone}), 2 changed (POP-${ports.pop}, IMAP-${ports.tls}), 1 unchanged`,
    );

    // The IDLE session sees new mail, then finishes IDLE and goes on.
    bed.dovecot.seedMessage(ALICE, '2.two', 'Subject: two\r\n\r\nsecond\r\n');
    await idle.waitFor(/\* 2 EXISTS\r\n/, 60_000);
    idle.send('DONE\r\n');
    assert.match(await idle.command('a3', ''), /a3 OK/);
    assert.match(await idle.command('a4', 'a4 NOOP\r\n'), /a4 OK/);
    // The client that was still before login logs in now.
    assert.match(await preAuth.command('b1', `b1 LOGIN ${ALICE} "${PASSWORD}"\r\n`), /b1 OK/);
    // A session relayed through a removed listener finishes its work.
    assert.match(await onRemoved.command('c2', 'c2 NOOP\r\n'), /c2 OK/);
    const popMark = pop.text().length;
    pop.send('STAT\r\n');
    await pop.waitFor(new RegExp(`^[\\s\\S]{${popMark}}\\+OK \\d+ \\d+\\r\\n`));

    assert.equal(await refused(ports.gone), true, 'the removed listener no longer accepts');
    // The changed POP3 listener now reaches Dovecot with STARTTLS on its plain port.
    await mailbridge.waitForLog(
      `[POP-${ports.pop}] changed: new connections (unsecured) proxying localhost:${bed.dovecot.ports.pop3} (STARTTLS)`,
    );
    const popAfter = await curl(['--user', `${ALICE}:${PASSWORD}`, `pop3://127.0.0.1:${ports.pop}/1`]);
    assert.equal(popAfter.code, 0, popAfter.stderr);
    assert.deepEqual(popAfter.stdout, message);
    // The re-opened listener speaks TLS now.
    const imaps = await curl([
      '--cacert',
      bed.certs.caCertPath,
      '--user',
      `${ALICE}:${PASSWORD}`,
      `imaps://localhost:${ports.tls}/INBOX/;UID=1`,
    ]);
    assert.equal(imaps.code, 0, imaps.stderr);
    assert.deepEqual(imaps.stdout, message);
    // And the added SMTP listener greets.
    (await greeted(ports.smtp, /^220 [^\r\n]*\r\n/)).close();
    for (const client of [idle, preAuth, onRemoved, pop]) client.close();
  });

  it('keeps the running configuration when the file is broken, and says why', async () => {
    await writeFile(configPath, `${config('after')}\n[IMAP-${ports.gone}]\nserver_port = not-a-port\n`);
    mailbridge.child.kill('SIGHUP');
    await mailbridge.waitForLog(/configuration not reloaded, the running one stays in force: [^\n]*server_/);
    (await loggedIn(ports.kept)).close();
    (await greeted(ports.smtp, /^220 [^\r\n]*\r\n/)).close();
    assert.equal(await refused(ports.gone), true);
    await writeFile(configPath, config('after'));
  });

  it("re-reads the web console's certificate on SIGHUP, as a renewal leaves it", async () => {
    const fingerprint = () => servedCertificateFingerprint(ports.web);
    const first = await fingerprint();
    const renewed = await createTestCertificates(join(bed.dir, 'renewed'));
    await copyFile(renewed.certPath, consoleCertificate.certPath);
    await copyFile(renewed.keyPath, consoleCertificate.keyPath);
    // Every reload re-reads the certificate and says so: wait for one more such line than earlier reloads left.
    const line = `web console: certificate reloaded from ${consoleCertificate.certPath}`;
    const reloads = () => mailbridge.stderr().split(line).length - 1;
    const earlier = reloads();
    mailbridge.child.kill('SIGHUP');
    for (let wait = 0; reloads() === earlier; wait += 1) {
      assert.ok(wait < 200, `no certificate reload logged within 10 s:\n${mailbridge.stderr().slice(-2000)}`);
      await sleep(50);
    }
    assert.notEqual(await fingerprint(), first);
  });

  it('toggles debug logging on SIGUSR1', async () => {
    mailbridge.child.kill('SIGUSR1');
    await mailbridge.waitForLog('debug logging on');
    (await loggedIn(ports.kept)).close();
    await mailbridge.waitForLog(/DEBUG [^\n]*client: a1 LOGIN \[credentials removed\]/);
    mailbridge.child.kill('SIGUSR1');
    await mailbridge.waitForLog('debug logging off');
  });

  it('on SIGTERM stops accepting, says goodbye in each protocol, ends relayed sessions and exits 0', async () => {
    const imap = await greeted(ports.kept);
    const pop = await greeted(ports.pop, /^\+OK[^\r\n]*\r\n/);
    const smtp = await greeted(ports.smtp, /^220 [^\r\n]*\r\n/);
    const tls = await TlsConversation.connect(ports.tls, bed.certs.caCertPath);
    await tls.waitFor(/^\* OK [^\r\n]*\r\n/);
    const relayed = await loggedIn(ports.kept);
    const code = await mailbridge.stop();
    assert.equal(code, 0, mailbridge.stderr());
    await Promise.all([imap, pop, smtp, relayed].map((client) => client.waitClosed()));
    assert.match(imap.text(), /\* BYE mailbridge is shutting down\r\n$/);
    assert.match(pop.text(), /-ERR \[SYS\/TEMP\] mailbridge is shutting down\r\n$/);
    assert.match(smtp.text(), /421 4\.3\.2 mailbridge is shutting down\r\n$/);
    await tls.waitFor(/\* BYE mailbridge is shutting down\r\n$/);
    assert.doesNotMatch(relayed.text(), /shutting down/);
    assert.match(mailbridge.stderr(), /received SIGTERM: stopping[\s\S]*mailbridge stopped/);
    for (const port of Object.values(ports)) assert.equal(await refused(port), true);
  });
});
