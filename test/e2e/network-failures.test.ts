import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { IniDocument } from '../../src/config/ini.ts';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import {
  type ServerSectionOptions,
  sectionsForEveryProtocol,
  serverSection,
} from '../testbed/config-sections.ts';
import { launchDovecot, readMasterPid, stopMaster } from '../testbed/dovecot-daemon.ts';
import { type MailbridgeProcess, startAuthorisingMailbridge } from '../testbed/mailbridge.ts';
import { findFreePorts, waitForPort } from '../testbed/ports.ts';
import { isAlive, waitForExit } from '../testbed/processes.ts';
import { RawClient } from '../testbed/raw-client.ts';

/**
 * A network error is never an authentication failure. The real program, Dovecot and the OAuth server, with
 * the network failing in every place it can: the mail server unreachable (each protocol's "try later"
 * reply), the token endpoint refusing connections, answering 5xx or answering slowly, and Dovecot stopped
 * and started again under live sessions. Through all of it the cached tokens stay as they were, nobody is
 * asked to authorise again, and everything works once the network is back.
 */
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';

let bed: Testbed;
let mailbridge: MailbridgeProcess;
let configPath: string;
let ports: { imap: number; pop: number; smtp: number; deadImap: number; deadPop: number; deadSmtp: number };
let closedPort: number;
let tokenProxy: TokenProxy;

/** A TCP relay in front of the OAuth server's token endpoint, which the test can take down and bring back. */
class TokenProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    readonly port: number,
    private readonly target: number,
  ) {}

  async up(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect({ host: '127.0.0.1', port: this.target });
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }

  down(): void {
    this.server?.close();
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
  }
}

/** `root` and every process below it, from /proc: the whole Dovecot instance this test started. */
function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // Gone meanwhile.
    }
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i += 1) tree.push(...(children.get(tree[i] as number) ?? []));
  return tree;
}

/** A crash: SIGKILL to the master and all its processes at once, so every connection drops. */
async function killDovecot(): Promise<void> {
  const master = await readMasterPid(bed.dovecot.dir);
  assert.ok(master, 'the Dovecot master is running');
  const tree = processTree(master);
  for (const pid of tree) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  for (const pid of tree)
    assert.ok(await waitForExit(pid, 10_000), `dovecot process ${pid} survived SIGKILL`);
  // Where PID 1 does not reap, the dead master stays a zombie that kill(pid, 0) still finds, and Dovecot
  // would refuse to start "already running": its pid file goes, as a crash-aware init script would do.
  await rm(join(bed.dovecot.dir, 'run', 'master.pid'), { force: true });
}

function cachedTokens(text: string): Record<string, string | undefined> {
  const doc = IniDocument.parse(text, 'config');
  const keys = ['token_salt', 'access_token', 'access_token_expiry', 'refresh_token'];
  return Object.fromEntries(keys.map((key) => [key, doc.get(ALICE, key)]));
}

async function tokensOnDisk(): Promise<Record<string, string | undefined>> {
  return cachedTokens(await readFile(configPath, 'utf8'));
}

function grants() {
  return { ...bed.oauth.counts.grants };
}

async function imapLogin(port = ports.imap): Promise<string> {
  const client = await RawClient.connect(port);
  try {
    await client.waitFor(/^\* OK [^\r\n]*\r\n/);
    const text = await client.command('a1', `a1 LOGIN ${ALICE} "${PASSWORD}"\r\n`, 60_000);
    return text.trim().split('\r\n').pop() ?? '';
  } finally {
    client.close();
  }
}

/** The next complete line received after `mark` characters. */
async function lineAfter(client: RawClient, mark: number): Promise<string> {
  const text = await client.waitFor(new RegExp(`^[\\s\\S]{${mark}}[^\\r\\n]*\\r\\n`), 60_000);
  return text.slice(mark).split('\r\n')[0] ?? '';
}

async function popLogin(): Promise<string> {
  const client = await RawClient.connect(ports.pop);
  try {
    await client.waitFor(/^\+OK[^\r\n]*\r\n/);
    let mark = client.text().length;
    client.send(`USER ${ALICE}\r\n`);
    await lineAfter(client, mark);
    mark = client.text().length;
    client.send(`PASS ${PASSWORD}\r\n`);
    return await lineAfter(client, mark);
  } finally {
    client.close();
  }
}

async function smtpLogin(): Promise<string> {
  const client = await RawClient.connect(ports.smtp);
  try {
    await client.waitFor(/^220 [^\r\n]*\r\n/);
    client.send('EHLO client.example.test\r\n');
    await client.waitFor(/250 [^\r\n]*\r\n$/);
    const mark = client.text().length;
    client.send(`AUTH PLAIN ${Buffer.from(`\0${ALICE}\0${PASSWORD}`).toString('base64')}\r\n`);
    return await lineAfter(client, mark);
  } finally {
    client.close();
  }
}

/** Logs in over all three protocols and returns the three final replies. */
async function loginEverywhere(): Promise<string[]> {
  return [await imapLogin(), await popLogin(), await smtpLogin()];
}

describe('network failures are never authentication failures', () => {
  before(async () => {
    bed = await startTestbed({ smtpSink: true });
    bed.dovecot.seedMessage(ALICE, '1.one', 'Subject: one\r\n\r\nhello\r\n');
    const free = await findFreePorts(8);
    const [imap, pop, smtp, deadImap, deadPop, deadSmtp, proxyPort] = free as number[];
    closedPort = free[7] as number;
    ports = {
      imap: imap as number,
      pop: pop as number,
      smtp: smtp as number,
      deadImap: deadImap as number,
      deadPop: deadPop as number,
      deadSmtp: deadSmtp as number,
    };
    tokenProxy = new TokenProxy(proxyPort as number, Number(new URL(bed.oauth.tokenEndpoint).port));
    await tokenProxy.up();
    const section = (protocol: ServerSectionOptions['protocol'], localPort: number, serverPort: number) =>
      serverSection({ protocol, localPort, serverPort, localAddress: '127.0.0.1' });
    configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        ...sectionsForEveryProtocol(ports, bed.dovecot.ports),
        // Nothing listens on closedPort: connection refused.
        section('IMAP', ports.deadImap, closedPort),
        section('POP', ports.deadPop, closedPort),
        section('SMTP', ports.deadSmtp, closedPort),
        bed.accountSection(ALICE, { token_url: `http://127.0.0.1:${tokenProxy.port}/token` }),
      ].join('\n'),
    );
    mailbridge = await startAuthorisingMailbridge(bed, configPath);
    assert.match(await imapLogin(), /^a1 OK/);
    assert.equal(mailbridge.prompts.length, 1);
  });

  after(async () => {
    tokenProxy?.down();
    const code = await mailbridge?.stop();
    // The testbed knows only the master it started; the one relaunched after the crash is stopped here.
    const relaunched = bed && (await readMasterPid(bed.dovecot.dir));
    if (relaunched) await stopMaster(relaunched, bed.dovecot.dir);
    await bed?.stop();
    assert.equal(code, 0, mailbridge?.stderr());
  });

  it("tells each protocol's client to try later when the mail server is unreachable", async () => {
    const imap = await RawClient.connect(ports.deadImap);
    const pop = await RawClient.connect(ports.deadPop);
    const smtp = await RawClient.connect(ports.deadSmtp);
    await Promise.all([imap, pop, smtp].map((client) => client.waitClosed()));
    const refused = `cannot reach 127\\.0\\.0\\.1:${closedPort}: connection refused - check server_port and that the server is up`;
    assert.match(imap.text(), new RegExp(`^\\* BYE \\[UNAVAILABLE\\] mailbridge: ${refused}\\r\\n$`));
    assert.match(pop.text(), new RegExp(`^-ERR \\[SYS/TEMP\\] mailbridge: ${refused}\\r\\n$`));
    assert.match(smtp.text(), new RegExp(`^421 4\\.4\\.2 mailbridge: ${refused}\\r\\n$`));
  });

  it('keeps every token when the token endpoint is unreachable, says it is the network, and recovers', async () => {
    const before = await tokensOnDisk();
    const grantsBefore = grants();
    bed.oauth.expireAccessTokens();
    tokenProxy.down();
    const [imap, pop, smtp] = await loginEverywhere();
    const unreachable = `the token endpoint http://127\\.0\\.0\\.1:${tokenProxy.port}/token is unreachable \\(ECONNREFUSED\\)`;
    assert.match(
      imap ?? '',
      new RegExp(`^a1 NO \\[UNAVAILABLE\\] mailbridge: LOGIN failed for ${ALICE}: ${unreachable}`),
    );
    assert.match(
      pop ?? '',
      new RegExp(`^-ERR \\[SYS/TEMP\\] mailbridge: login failed for ${ALICE}: ${unreachable}`),
    );
    assert.match(
      smtp ?? '',
      new RegExp(`^454 4\\.7\\.0 mailbridge: login failed for ${ALICE}: ${unreachable}`),
    );
    assert.match(imap ?? '', /tokens kept - is there a network connection\?/);
    assert.deepEqual(await tokensOnDisk(), before);
    assert.equal(mailbridge.prompts.length, 1, 'nobody is asked to authorise');

    await tokenProxy.up();
    assert.deepEqual(
      (await loginEverywhere()).map((reply) => reply.slice(0, 5)),
      ['a1 OK', '+OK L', '235 2'],
    );
    assert.equal(
      grants().refresh_token,
      grantsBefore.refresh_token + 1,
      'one refresh once the network is back',
    );
    assert.equal(grants().authorization_code, grantsBefore.authorization_code);
    assert.equal(mailbridge.prompts.length, 1);
  });

  it('keeps every token when the token endpoint answers 5xx, and says so', async () => {
    const before = await tokensOnDisk();
    bed.oauth.expireAccessTokens();
    bed.oauth.setFailure(503);
    try {
      const reply = await imapLogin();
      assert.match(
        reply,
        /^a1 NO \[UNAVAILABLE\] [^\r\n]*the token endpoint failed \(HTTP 503\)[^\r\n]*tokens kept/,
      );
      assert.deepEqual(await tokensOnDisk(), before);
    } finally {
      bed.oauth.setFailure(null);
    }
    assert.match(await imapLogin(), /^a1 OK/);
    assert.equal(mailbridge.prompts.length, 1);
  });

  it('waits for a slow token endpoint, with one refresh for every login waiting on it', async () => {
    const grantsBefore = grants();
    bed.oauth.expireAccessTokens();
    bed.oauth.setDelay(3000);
    try {
      const replies = await Promise.all(Array.from({ length: 5 }, () => imapLogin()));
      for (const reply of replies) assert.match(reply, /^a1 OK/);
    } finally {
      bed.oauth.setDelay(0);
    }
    assert.equal(grants().refresh_token, grantsBefore.refresh_token + 1);
  });

  it('keeps using a still-valid access token when its early refresh fails', async () => {
    bed.oauth.setAccessTokenLifetime(300);
    try {
      // A refresh now gives a token that is within the 10-minute margin, so every later login refreshes early.
      bed.oauth.expireAccessTokens();
      assert.match(await imapLogin(), /^a1 OK/);
      const before = await tokensOnDisk();
      tokenProxy.down();
      assert.match(await imapLogin(), /^a1 OK/, 'mail flows on the current token');
      await mailbridge.waitForLog(
        /refresh failed; the current access token of 'alice@example\.test' stays in use/,
      );
      assert.deepEqual(await tokensOnDisk(), before);
    } finally {
      bed.oauth.setAccessTokenLifetime(3600);
      await tokenProxy.up();
    }
  });

  it('survives Dovecot killed under live sessions and started again: sessions told, tokens kept', async () => {
    // A token with its full lifetime ahead, so no login below has a reason to refresh it.
    bed.oauth.expireAccessTokens();
    assert.match(await imapLogin(), /^a1 OK/);
    const before = await tokensOnDisk();
    const grantsBefore = grants();
    const relayed = await RawClient.connect(ports.imap);
    await relayed.waitFor(/^\* OK [^\r\n]*\r\n/);
    assert.match(await relayed.command('a1', `a1 LOGIN ${ALICE} "${PASSWORD}"\r\n`), /a1 OK/);
    assert.match(await relayed.command('a2', 'a2 SELECT INBOX\r\n'), /a2 OK/);
    const preAuthImap = await RawClient.connect(ports.imap);
    await preAuthImap.waitFor(/^\* OK [^\r\n]*\r\n/);
    const preAuthPop = await RawClient.connect(ports.pop);
    await preAuthPop.waitFor(/^\+OK[^\r\n]*\r\n/);
    const preAuthSmtp = await RawClient.connect(ports.smtp);
    await preAuthSmtp.waitFor(/^220 [^\r\n]*\r\n/);

    await killDovecot();
    try {
      await Promise.all([relayed, preAuthImap, preAuthPop, preAuthSmtp].map((client) => client.waitClosed()));
      // Dovecot may say its own goodbye first; mailbridge's follows for clients it had not logged in yet.
      assert.match(
        preAuthImap.text(),
        /\* BYE \[UNAVAILABLE\] mailbridge: connection to 127\.0\.0\.1 lost[^\r\n]*\r\n$/,
      );
      assert.match(
        preAuthPop.text(),
        /-ERR \[SYS\/TEMP\] mailbridge: connection to 127\.0\.0\.1 lost[^\r\n]*\r\n$/,
      );
      assert.match(
        preAuthSmtp.text(),
        /421 4\.4\.2 mailbridge: connection to 127\.0\.0\.1 lost[^\r\n]*\r\n$/,
      );
      // While it is down, new clients hear why at once.
      const down = await RawClient.connect(ports.imap);
      await down.waitClosed();
      assert.match(
        down.text(),
        /^\* BYE \[UNAVAILABLE\] mailbridge: cannot reach 127\.0\.0\.1:\d+: connection refused/,
      );
    } finally {
      await launchDovecot(bed.dovecot.dir);
      for (const port of Object.values(bed.dovecot.ports))
        assert.ok(await waitForPort('127.0.0.1', port, 10_000));
    }
    assert.deepEqual(
      (await loginEverywhere()).map((reply) => reply.slice(0, 5)),
      ['a1 OK', '+OK L', '235 2'],
    );
    assert.deepEqual(await tokensOnDisk(), before);
    assert.deepEqual(grants(), grantsBefore, 'the cached token still works: no refresh, no authorisation');
    assert.equal(mailbridge.prompts.length, 1);
    assert.equal(mailbridge.child.exitCode, null);
  });
});
