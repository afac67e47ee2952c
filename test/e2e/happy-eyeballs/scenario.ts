import { execFileSync } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { appendFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { startTestbed, type Testbed } from '../../testbed/bed.ts';
import { python } from '../../testbed/clients.ts';
import { serverSection } from '../../testbed/config-sections.ts';
import { type MailbridgeProcess, startAuthorisingMailbridge } from '../../testbed/mailbridge.ts';

/**
 * Broken IPv6 in front of a working IPv4 address, run by happy-eyeballs.test.ts as root inside `unshare -m -n`
 * (private mount and network namespaces). Prints one JSON report on stdout; the test makes the assertions.
 *
 * The namespace has loopback and one veth pair whose far end answers nothing: 2001:db8::1/64 (a documentation
 * prefix) sits on the near end, so a connection to 2001:db8::2 waits for a neighbour that never answers,
 * exactly like a router advertising IPv6 that goes nowhere. Traffic cannot leave the namespace.
 * - mail.test resolves (private /etc/hosts) to 2001:db8::2 first, then 127.0.0.1, where the test bed's
 *   Dovecot listens: mailbridge must log in through the second address.
 * - dead.test resolves to 2001:db8::2 and 2001:db8::3 only: the client must get a clear goodbye naming both.
 * - refused.test resolves to 127.0.0.2 and 127.0.0.3, where nothing listens: the goodbye says to check the
 *   port and the server rather than the network.
 * - silent.test resolves to 2001:db8::5, whose link-layer address is pinned to a host that is not there: no
 *   neighbour discovery fails, the packets just vanish, and only mailbridge's own bound on connecting
 *   (30 s) ends the wait. That client starts first and runs alongside the others.
 * The controls show the scenario bites: the system lists the dead address first, and a connection that tries
 * only that address fails.
 */
const [workDir = ''] = process.argv.slice(2);
const ALICE = 'alice@example.test';
const PASSWORD = 'correct horse';
const MESSAGE = 'From: Bob <bob@example.test>\r\nSubject: hello\r\n\r\nHello Alice\r\n';
const DEAD = ['2001:db8::2', '2001:db8::3'];
const REACHABLE_PORT = 1993;
const UNREACHABLE_PORT = 1994;
const REFUSED_PORT = 1995;
const SILENT_PORT = 1996;
/** Longer than mailbridge's 30 s bound on connecting upstream, so that the bound is what ends the wait. */
const SILENT_CLIENT_TIMEOUT_MS = 60_000;
const CLIENT_TIMEOUT_MS = 30_000;

function setUpNetwork(): void {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  execFileSync('ip', ['link', 'add', 'mb-near', 'type', 'veth', 'peer', 'name', 'mb-far']);
  execFileSync('ip', ['link', 'set', 'mb-near', 'up']);
  execFileSync('ip', ['link', 'set', 'mb-far', 'up']);
  execFileSync('ip', ['-6', 'addr', 'add', '2001:db8::1/64', 'dev', 'mb-near', 'nodad']);
  // The far end drops frames for a MAC address that is not its own.
  execFileSync('ip', [
    '-6',
    'neigh',
    'add',
    '2001:db8::5',
    'lladdr',
    '02:00:00:00:00:05',
    'dev',
    'mb-near',
    'nud',
    'permanent',
  ]);
  // A private /etc, so the names below exist only inside this namespace.
  const etc = join(workDir, 'etc');
  execFileSync('cp', ['-a', '/etc', etc]);
  execFileSync('mount', ['--bind', etc, '/etc']);
  appendFileSync(
    '/etc/hosts',
    `\n${DEAD[0]} mail.test\n127.0.0.1 mail.test\n${DEAD[0]} dead.test\n${DEAD[1]} dead.test\n` +
      '127.0.0.2 refused.test\n127.0.0.3 refused.test\n2001:db8::5 silent.test\n',
  );
}

/** A connection to one address only, as a client without Happy Eyeballs makes it. */
function connectOnly(host: string, port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, autoSelectFamily: false });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('no answer');
    }, CLIENT_TIMEOUT_MS);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(error.code ?? error.message);
    });
  });
}

/** Everything mailbridge says to a client before it closes the connection. */
function readUntilClosed(port: number, timeoutMs = CLIENT_TIMEOUT_MS): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(`${text}[still open after ${timeoutMs} ms]`);
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (data: string) => {
      text += data;
    });
    socket.on('error', (error) => {
      text += `[${error.message}]`;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

const LOGIN_SCRIPT = `
import imaplib, os, sys
m = imaplib.IMAP4('127.0.0.1', int(os.environ['PORT']))
typ, _ = m.login(os.environ['USER_NAME'], os.environ['PASSWORD'])
assert typ == 'OK', typ
m.select('INBOX', readonly=True)
typ, data = m.fetch('1', '(BODY.PEEK[])')
assert typ == 'OK', (typ, data)
sys.stdout.write(data[0][1].decode())
m.logout()
`;

let bed: Testbed | undefined;
let mailbridge: MailbridgeProcess | undefined;

async function stopAll(): Promise<void> {
  await mailbridge?.stop();
  await bed?.stop();
}

// The test's time limit ends the scenario with SIGTERM: Dovecot and mailbridge must not outlive it.
process.once('SIGTERM', () => {
  stopAll().finally(() => process.exit(2));
});

async function main(): Promise<Record<string, unknown>> {
  setUpNetwork();
  try {
    bed = await startTestbed();
    bed.dovecot.seedMessage(ALICE, '1.hello', MESSAGE);
    const configPath = join(workDir, 'emailproxy.config');
    const serverPort = bed.dovecot.ports.imaps;
    writeFileSync(
      configPath,
      [
        ...(
          [
            [REACHABLE_PORT, 'mail.test'],
            [UNREACHABLE_PORT, 'dead.test'],
            [REFUSED_PORT, 'refused.test'],
            [SILENT_PORT, 'silent.test'],
          ] as const
        ).map(([localPort, serverAddress]) =>
          serverSection({
            protocol: 'IMAP',
            localPort,
            serverAddress,
            serverPort,
            localAddress: '127.0.0.1',
          }),
        ),
        bed.accountSection(ALICE),
      ].join('\n'),
    );
    const addresses = (await lookup('mail.test', { all: true })).map((entry) => entry.address);
    const firstAddressOnly = await connectOnly(addresses[0] ?? '', bed.dovecot.ports.imaps);

    mailbridge = await startAuthorisingMailbridge(bed, configPath);
    const silent = readUntilClosed(SILENT_PORT, SILENT_CLIENT_TIMEOUT_MS);
    const login = await python(
      LOGIN_SCRIPT,
      { PORT: String(REACHABLE_PORT), USER_NAME: ALICE, PASSWORD },
      CLIENT_TIMEOUT_MS,
    );
    const unreachable = await readUntilClosed(UNREACHABLE_PORT);
    const refused = await readUntilClosed(REFUSED_PORT);
    const silentGoodbye = await silent;
    return {
      addresses,
      firstAddressOnly,
      login: { code: login.code, stdout: login.stdout.toString(), stderr: login.stderr },
      unreachable,
      refused,
      silent: silentGoodbye,
      log: mailbridge.stderr(),
    };
  } finally {
    await stopAll();
  }
}

main().then(
  (report) => process.stdout.write(`${JSON.stringify(report)}\n`),
  (error: unknown) => {
    process.stdout.write(
      `${JSON.stringify({ error: error instanceof Error ? error.stack : String(error) })}\n`,
    );
    process.exitCode = 1;
  },
);
