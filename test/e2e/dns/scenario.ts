import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { serverSection } from '../../testbed/config-sections.ts';
import { type DnsResponder, startDnsResponder } from './dns-responder.ts';

/**
 * The nameserver-change scenario of reference/dns-resilience.md, run by dns-resilience.test.ts as root inside
 * `unshare -m -n` (its own mount and network namespaces, loopback only). Prints one JSON report on stdout;
 * the test makes the assertions.
 *
 * 1. Private /etc (a bind-mounted copy), resolv.conf naming a responder on 127.0.0.53 that answers A
 *    upstream.test → 127.0.0.66 and drops AAAA; plain TCP listeners stand in for the upstream on 127.0.0.66
 *    and 127.0.0.9.
 * 2. mailbridge starts under the LD_PRELOAD shim that emulates the pre-fix glibc, and connects upstream with
 *    several lookups at once (so every libuv pool thread goes through a half-answered query). Two controls
 *    under the same shim resolve in a loop: Python's getaddrinfo and Node's plain dns.lookup.
 * 3. The responder dies, a good one starts on 127.0.0.2 (upstream.test → 127.0.0.9), and a new resolv.conf
 *    is renamed into place.
 * 4. Rounds of connections through mailbridge; each stand-in counts what reaches it. A fresh process under
 *    the shim resolves once, to show the new configuration works for anyone who reads it.
 */
const [workDir = '', shimPath = '', mailbridgeBin = ''] = process.argv.slice(2);
const UPSTREAM = 'upstream.test';
const OLD_ADDRESS = '127.0.0.66';
const NEW_ADDRESS = '127.0.0.9';
const RESOLV_OPTIONS = 'options timeout:1 attempts:1\n';
const PHASE1_CONNECTIONS = 8;
const ROUND_CONNECTIONS = 4;
const MIN_ROUNDS = 5;
const MAX_ROUNDS = 20;
const CONTROL_INTERVAL_MS = 300;

interface Round {
  reachedNew: number;
  reachedOld: number;
  failed: number;
  replies: string[];
}

const children: ChildProcess[] = [];
const killChildren = () => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
};
process.on('SIGTERM', () => {
  killChildren();
  process.exit(2);
});

function spawnUnderShim(command: string, args: string[]): ChildProcess {
  const child = spawn(command, args, {
    env: { ...process.env, LD_PRELOAD: shimPath },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return child;
}

/** Output lines of a child, each with whether it came after the nameserver change. */
function collect(
  child: ChildProcess,
  into: { line: string; afterSwitch: boolean }[],
  state: { switched: boolean },
) {
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) =>
    into.push({ line, afterSwitch: state.switched }),
  );
}

async function standIn(
  address: string,
  port: number,
): Promise<{ accepted: () => number; close: () => void }> {
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted += 1;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(port, address, resolve));
  return { accepted: () => accepted, close: () => server.close() };
}

/** One client connection through mailbridge: what it said before closing. */
function throughMailbridge(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let text = '';
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      text += data;
    });
    socket.on('error', (error) => {
      text += `[${error.message}]`;
    });
    socket.on('close', () => resolve(text.trim()));
  });
}

async function until(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

const NODE_CONTROL = `
const dns = require('node:dns');
// Four lookups at once, as a busy daemon makes them: each libuv pool thread has its own resolver state.
setInterval(() => {
  Promise.all([1, 2, 3, 4].map(() => dns.promises.lookup(${JSON.stringify(UPSTREAM)}).then((a) => a.address, (e) => e.code)))
    .then((results) => console.log(results.join(' ')));
}, ${CONTROL_INTERVAL_MS});
`;

const PYTHON_CONTROL = `
import socket, time
while True:
    try:
        print(socket.getaddrinfo(${JSON.stringify(UPSTREAM)}, None, socket.AF_UNSPEC, socket.SOCK_STREAM)[0][4][0], flush=True)
    except OSError as error:
        print('error', error.args[0], flush=True)
    time.sleep(${CONTROL_INTERVAL_MS / 1000})
`;

async function main(): Promise<Record<string, unknown>> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  // Renaming over the source of a single-file bind mount is invisible inside the namespace, so the whole of
  // /etc is a private copy and resolv.conf is replaced in it as a network manager would.
  const etc = join(workDir, 'etc');
  execFileSync('cp', ['-a', '/etc', etc]);
  execFileSync('mount', ['--bind', etc, '/etc']);
  writeFileSync('/etc/resolv.conf', `nameserver 127.0.0.53\n${RESOLV_OPTIONS}`);

  const upstreamPort = 1143;
  const oldUpstream = await standIn(OLD_ADDRESS, upstreamPort);
  const newUpstream = await standIn(NEW_ADDRESS, upstreamPort);
  let responder: DnsResponder = await startDnsResponder({
    address: '127.0.0.53',
    records: { [UPSTREAM]: OLD_ADDRESS },
    dropAaaa: true,
  });

  const listenPort = 1993;
  const configPath = join(workDir, 'emailproxy.config');
  mkdirSync(join(workDir, 'run'), { recursive: true });
  writeFileSync(
    configPath,
    serverSection({
      protocol: 'IMAP',
      localPort: listenPort,
      serverAddress: UPSTREAM,
      serverPort: upstreamPort,
      // Plain TCP to the stand-ins: mailbridge reads a greeting before any TLS, and gets a closed connection.
      serverStarttls: true,
      localAddress: '127.0.0.1',
    }),
  );
  const state = { switched: false };
  // --debug: after the first warning, each later fallback is logged at debug level.
  const mailbridge = spawn(
    process.execPath,
    [mailbridgeBin, '--no-gui', '--debug', '--config-file', configPath],
    {
      env: { ...process.env, LD_PRELOAD: shimPath, XDG_RUNTIME_DIR: join(workDir, 'run') },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  children.push(mailbridge);
  let log = '';
  mailbridge.stderr?.setEncoding('utf8').on('data', (text: string) => {
    log += text;
  });
  await until(() => log.includes('mailbridge ready'), 15_000, `mailbridge to start; log:\n${log}`);

  const nodeControl: { line: string; afterSwitch: boolean }[] = [];
  const pythonControl: { line: string; afterSwitch: boolean }[] = [];
  collect(spawnUnderShim(process.execPath, ['-e', NODE_CONTROL]), nodeControl, state);
  collect(spawnUnderShim('/usr/bin/python3', ['-u', '-c', PYTHON_CONTROL]), pythonControl, state);

  // Phase 1: the daemon connects while the nameserver half-answers, several lookups at once.
  const phase1 = await Promise.all(
    Array.from({ length: PHASE1_CONNECTIONS }, () => throughMailbridge(listenPort)),
  );
  const phase1ReachedOld = oldUpstream.accepted();
  await until(
    () =>
      nodeControl.some(({ line }) => line.includes(OLD_ADDRESS)) &&
      pythonControl.some(({ line }) => line === OLD_ADDRESS),
    30_000,
    'both controls to resolve through the half-answering nameserver',
  );

  // The network changes: the old nameserver is gone, a new one answers, resolv.conf is replaced.
  await responder.close();
  responder = await startDnsResponder({
    address: '127.0.0.2',
    records: { [UPSTREAM]: NEW_ADDRESS },
    dropAaaa: false,
  });
  writeFileSync('/etc/resolv.conf.new', `nameserver 127.0.0.2\n${RESOLV_OPTIONS}`);
  renameSync('/etc/resolv.conf.new', '/etc/resolv.conf');
  state.switched = true;
  const switchedAt = Date.now();
  const logBeforeSwitch = log.length;

  // Phase 2: rounds of connections until the fallback has shown itself (the daemon's own system resolver was
  // stuck) and at least MIN_ROUNDS are done.
  const rounds: Round[] = [];
  const fallbackWarnings = () =>
    (log.slice(logBeforeSwitch).match(/the system resolver failed/g) ?? []).length;
  while (rounds.length < MAX_ROUNDS && (rounds.length < MIN_ROUNDS || fallbackWarnings() === 0)) {
    const [newBefore, oldBefore] = [newUpstream.accepted(), oldUpstream.accepted()];
    const replies = await Promise.all(
      Array.from({ length: ROUND_CONNECTIONS }, () => throughMailbridge(listenPort)),
    );
    const reachedNew = newUpstream.accepted() - newBefore;
    const reachedOld = oldUpstream.accepted() - oldBefore;
    rounds.push({ reachedNew, reachedOld, failed: ROUND_CONNECTIONS - reachedNew - reachedOld, replies });
  }
  const phase2Ms = Date.now() - switchedAt;

  // Positive control: a process started now, under the same shim, reads the new resolv.conf and resolves.
  const fresh = spawnUnderShim(process.execPath, [
    '-e',
    `require('node:dns').promises.lookup(${JSON.stringify(UPSTREAM)}).then((a) => console.log(a.address), (e) => console.log(e.code))`,
  ]);
  const freshOutput: { line: string; afterSwitch: boolean }[] = [];
  collect(fresh, freshOutput, state);
  await new Promise((resolve) => fresh.once('exit', resolve));
  // The controls get at least as long after the change as the daemon had, and a few lookups each.
  const countAfter = (lines: { afterSwitch: boolean }[]) =>
    lines.filter(({ afterSwitch }) => afterSwitch).length;
  await until(
    () => countAfter(nodeControl) >= 5 && countAfter(pythonControl) >= 5,
    30_000,
    'both controls to look up a few times after the change',
  );

  const after = (lines: { line: string; afterSwitch: boolean }[]) =>
    lines.filter(({ afterSwitch }) => afterSwitch).map(({ line }) => line);
  const report = {
    phase1: { connections: PHASE1_CONNECTIONS, reachedOld: phase1ReachedOld, replies: phase1.slice(0, 2) },
    rounds,
    phase2Ms,
    fallbackWarnings: fallbackWarnings(),
    staleResolverWarnings: (log.match(/WARN [^\n]*the system resolver failed/g) ?? []).length,
    staleResolverAdvice: /updating glibc \(Debian: libc6 >= 2\.36-9\+deb12u9\) or restarting mailbridge/.test(
      log,
    ),
    nodeControlAfter: after(nodeControl),
    pythonControlAfter: after(pythonControl),
    freshProcess: freshOutput.map(({ line }) => line),
    newNameserverQueries: responder.queries.length,
    logTail: log.slice(-3000),
  };
  mailbridge.kill('SIGTERM');
  await until(
    () => mailbridge.exitCode !== null || mailbridge.signalCode !== null,
    10_000,
    'mailbridge to stop',
  );
  await responder.close();
  oldUpstream.close();
  newUpstream.close();
  return { ...report, mailbridgeExit: mailbridge.exitCode };
}

main().then(
  (report) => {
    killChildren();
    process.stdout.write(`${JSON.stringify(report)}\n`);
    process.exit(0);
  },
  (error: unknown) => {
    killChildren();
    process.stdout.write(`${JSON.stringify({ error: (error as Error).stack ?? String(error) })}\n`);
    process.exit(1);
  },
);
