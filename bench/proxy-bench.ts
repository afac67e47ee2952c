/**
 * mailbridge against a direct connection, side by side in one run, on the project's own test bed (the OAuth
 * server, an OAuth-only Dovecot, the SMTP sink). Not a test: nothing here asserts a timing. It prints a table
 * and writes bench/results/latest.json and latest.md.
 *
 *   npm run bench                          (builds first; mailbridge runs from dist/, what users run)
 *   npm run bench -- --quick               small sizes, for development
 *   npm run bench -- --only throughput,login
 *   npm run bench -- --cpu-prof /tmp/prof  mailbridge writes V8 CPU profiles (one per process) there
 *   npm run bench -- --out /tmp/results    results elsewhere (the committed ones stay as they are)
 *   npm run bench -- --quick --idle 2000   one size changed (here: idle sessions)
 *
 * Phases: throughput (FETCH of 200 × 256 KiB), login latency, 1,000 simultaneous sessions, idle sessions held
 * by one mailbridge (against a tiny upstream of ours: Dovecot's own limits would bite first), SMTP (20 MB),
 * start-up. Direct = our client with AUTHENTICATE XOAUTH2 / AUTH XOAUTH2 on Dovecot's implicit-TLS ports;
 * through = the same client with LOGIN / AUTH PLAIN in clear to mailbridge, which uses those same ports.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { startTestbed, type Testbed } from '../test/testbed/bed.ts';
import { type MailbridgeProcess, startMailbridge } from '../test/testbed/mailbridge.ts';
import { findFreePorts } from '../test/testbed/ports.ts';
import type { SmtpSink } from '../test/testbed/smtp-sink.ts';
import { tuneDovecot } from './proxy/dovecot-tuning.ts';
import { ImapClient, type ImapConnectOptions, quoted, xoauth2 } from './proxy/imap-client.ts';
import {
  cpuMs,
  elapsedMs,
  fileLimits,
  loadAverage,
  type Machine,
  machine,
  median,
  openFiles,
  ownCpuMs,
  pool,
  round,
  rssBytes,
  type Stats,
  stats,
} from './proxy/measure.ts';
import { plainResponse, SmtpClient } from './proxy/smtp-client.ts';

const PHASES = ['throughput', 'login', 'concurrency', 'idle', 'smtp', 'startup'] as const;
type Phase = (typeof PHASES)[number];

interface Scale {
  messages: number;
  messageBytes: number;
  throughputRounds: number;
  logins: number;
  concurrent: number;
  idle: number;
  smtpBytes: number;
  smtpRounds: number;
  startups: number;
}

const FULL: Scale = {
  messages: 200,
  messageBytes: 256 * 1024,
  throughputRounds: 9,
  logins: 100,
  concurrent: 1000,
  idle: 10_000,
  smtpBytes: 20 * 1000 * 1000,
  smtpRounds: 5,
  startups: 10,
};

const QUICK: Scale = {
  messages: 200,
  messageBytes: 256 * 1024,
  throughputRounds: 4,
  logins: 10,
  concurrent: 100,
  idle: 500,
  smtpBytes: 2 * 1000 * 1000,
  smtpRounds: 1,
  startups: 3,
};

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    'cpu-prof': { type: 'string' },
    out: { type: 'string' },
    idle: { type: 'string' },
  },
});
const scale = { ...(flags.quick ? QUICK : FULL), ...(flags.idle ? { idle: Number(flags.idle) } : {}) };
const only = new Set((flags.only ?? PHASES.join(',')).split(',').map((name) => name.trim()));
for (const name of only) {
  if (!(PHASES as readonly string[]).includes(name))
    throw new Error(`unknown phase '${name}': ${PHASES.join(', ')}`);
}
const runs = (phase: Phase) => only.has(phase);
const outDir = flags.out ?? join(import.meta.dirname, 'results');

/** The whole run is bounded: past this, everything we started is stopped and the run fails. */
const RUN_DEADLINE_MS = 50 * 60 * 1000;
const HOST = '127.0.0.1';
const PASSWORD = 'bench password';
/** Sessions are spread over these accounts: Dovecot allows 200 per user and IP (mail_max_userip_connections). */
const ACCOUNTS = Array.from({ length: 10 }, (_, i) => `user${i}@bench.test`);
const BULK = 'bulk@bench.test';
/** Client source addresses for the idle sessions, so that no one address runs out of ephemeral ports. */
const SOURCE_ADDRESSES = Array.from({ length: 8 }, (_, i) => `127.0.0.${i + 2}`);
const SMALL = message(2000, 0);
/** Descriptors left free in mailbridge when the idle sessions are sized to its limit. */
const IDLE_FILE_MARGIN = 16;

function log(text: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
}

/** A message of exactly `bytes` bytes: headers, then 78-byte CRLF lines of text (no line starts with a dot). */
function message(bytes: number, n: number): Buffer {
  const header = Buffer.from(
    `From: Bench <bench@bench.test>\r\nTo: Someone <someone@bench.test>\r\nSubject: benchmark message ${n}\r\n` +
      `Message-ID: <${n}.${bytes}@bench.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\r\n`,
  );
  const line = 'The quick brown fox jumps over the lazy dog 0123456789 abcdefghijklmnopqrstuv\r\n';
  const out = Buffer.alloc(bytes, line);
  header.copy(out, 0);
  out.fill(line, header.length, bytes);
  if (out[bytes - 3] === 0x0d) out[bytes - 3] = 0x78;
  out[bytes - 2] = 0x0d;
  out[bytes - 1] = 0x0a;
  return out;
}

// ---- the world -------------------------------------------------------------------------------------------------

interface World {
  bed: Testbed & { sink: SmtpSink };
  ca: Buffer;
  configPath: string;
  ports: { imap: number; smtp: number; idle: number };
  fake: FakeUpstream;
  tokens: Map<string, string>;
  mailbridge?: MailbridgeProcess;
  dovecotTuning: string[];
}

interface FakeUpstream {
  child: ChildProcess;
  port: number;
  count(): Promise<{ authenticated: number; open: number }>;
}

async function startFakeUpstream(certPath: string, keyPath: string): Promise<FakeUpstream> {
  const script = join(import.meta.dirname, 'proxy', 'fake-imap-server.ts');
  const child = spawn(process.execPath, ['--import', 'tsx', script, certPath, keyPath], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const waiting: ((line: string) => void)[] = [];
  lines.on('line', (line) => waiting.shift()?.(line));
  const nextLine = (timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the fake upstream did not answer')), timeoutMs);
      waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  const first = await nextLine(20_000);
  const port = Number(/^listening (\d+)$/.exec(first)?.[1]);
  if (!port) throw new Error(`fake upstream: unexpected '${first}'`);
  return {
    child,
    port,
    async count() {
      const answer = nextLine(10_000);
      child.stdin?.write('count\n');
      const [, authenticated, open] = /^count (\d+) (\d+)$/.exec(await answer) ?? [];
      return { authenticated: Number(authenticated), open: Number(open) };
    },
  };
}

interface ProxyOptions {
  /** A V8 CPU profile of this mailbridge process goes here (bench/proxy/preload.mjs). */
  profileDir?: string;
  /** SIGUSR2 makes this mailbridge process write its memory use (after a full GC) here. */
  probeDir?: string;
}

/** Starts mailbridge and resolves with the milliseconds from spawn to its "ready" line (all listeners bound). */
async function startProxy(world: World, options: ProxyOptions = {}): Promise<number> {
  const env: Record<string, string> = {};
  if (options.profileDir) env.MAILBRIDGE_BENCH_PROFILE_DIR = options.profileDir;
  if (options.probeDir) env.MAILBRIDGE_BENCH_PROBE_DIR = options.probeDir;
  if (options.profileDir || options.probeDir) {
    env.NODE_OPTIONS = `--import=${pathToFileURL(join(import.meta.dirname, 'proxy', 'preload.mjs')).href}`;
  }
  const started = performance.now();
  const mailbridge = await startMailbridge({
    args: ['--no-gui', '--external-auth', '--config-file', world.configPath],
    caCertPath: world.bed.certs.caCertPath,
    authorise: (url) => world.bed.oauth.authorize(url),
    env,
  });
  world.mailbridge = mailbridge;
  await mailbridge.waitForLog('mailbridge ready', 30_000);
  return elapsedMs(started);
}

/** Asks the mailbridge started with `probeDir` for its memory use after a full GC. */
async function probeMemory(pid: number, probeDir: string): Promise<NodeJS.MemoryUsage> {
  const file = join(probeDir, `memory-${pid}.json`);
  await rm(file, { force: true });
  process.kill(pid, 'SIGUSR2');
  for (let attempt = 0; attempt < 100; attempt += 1) {
    await sleep(100);
    const text = await readFile(file, 'utf8').catch(() => undefined);
    if (text) return JSON.parse(text) as NodeJS.MemoryUsage;
  }
  throw new Error('mailbridge did not report its memory use within 10 s');
}

async function stopProxy(world: World): Promise<void> {
  const mailbridge = world.mailbridge;
  world.mailbridge = undefined;
  if (!mailbridge) return;
  const code = await mailbridge.stop();
  if (code !== 0) log(`mailbridge exited with ${code}; log tail:\n${mailbridge.stderr().slice(-3000)}`);
}

function proxyPid(world: World): number {
  const pid = world.mailbridge?.child.pid;
  if (pid === undefined) throw new Error('mailbridge is not running');
  return pid;
}

// ---- sessions --------------------------------------------------------------------------------------------------

async function direct(world: World, user: string, timeoutMs?: number): Promise<ImapClient> {
  const { client } = await ImapClient.connect({
    host: HOST,
    port: world.bed.dovecot.ports.imaps,
    tls: { ca: world.ca },
    timeoutMs,
  });
  try {
    await client.ok(`AUTHENTICATE XOAUTH2 ${xoauth2(user, token(world, user))}`);
  } catch (error: unknown) {
    client.close();
    throw error;
  }
  return client;
}

async function through(
  world: World,
  user: string,
  port = world.ports.imap,
  extra: Partial<ImapConnectOptions> = {},
): Promise<ImapClient> {
  const { client } = await ImapClient.connect({ host: HOST, port, ...extra });
  try {
    await client.ok(`LOGIN ${quoted(user)} ${quoted(PASSWORD)}`);
  } catch (error: unknown) {
    client.close();
    throw error;
  }
  return client;
}

function token(world: World, user: string): string {
  let value = world.tokens.get(user);
  if (value === undefined) {
    value = world.bed.oauth.issueAccessToken(user, { lifetime: 4 * 3600 });
    world.tokens.set(user, value);
  }
  return value;
}

// ---- phases ----------------------------------------------------------------------------------------------------

interface Side<T> {
  direct: T;
  through: T;
}

async function throughput(world: World) {
  const expected = scale.messages * scale.messageBytes;
  const pid = proxyPid(world);
  const mib = expected / 2 ** 20;
  // CPU per MiB, besides the rate: it does not depend on what else the machine runs.
  const cpu: Side<{ client: number[]; mailbridge: number[] }> = {
    direct: { client: [], mailbridge: [] },
    through: { client: [], mailbridge: [] },
  };
  const reads: Side<number[]> = { direct: [], through: [] };
  const fetchAll = async (client: ImapClient, side?: keyof Side<unknown>) => {
    const started = performance.now();
    const ownBefore = ownCpuMs();
    const proxyBefore = cpuMs(pid);
    const readsBefore = client.reads;
    const result = await client.ok(`FETCH 1:${scale.messages} BODY.PEEK[]`, 300_000);
    const ms = elapsedMs(started);
    if (side) {
      cpu[side].client.push((ownCpuMs() - ownBefore) / mib);
      cpu[side].mailbridge.push((cpuMs(pid) - proxyBefore) / mib);
      reads[side].push((client.reads - readsBefore) / mib);
    }
    if (result.literalBytes !== expected) {
      throw new Error(`FETCH returned ${result.literalBytes} bytes of messages, not ${expected}`);
    }
    return (mib / ms) * 1000;
  };
  const sessions: Side<ImapClient> = {
    direct: await direct(world, BULK),
    through: await through(world, BULK),
  };
  const samples: Side<number[]> = { direct: [], through: [] };
  try {
    for (const client of [sessions.direct, sessions.through]) {
      await client.ok('EXAMINE INBOX');
      await fetchAll(client); // warms Dovecot's index and the page cache
    }
    for (let round = 0; round < scale.throughputRounds; round += 1) {
      // Alternating which goes first cancels a slow drift of the machine's load.
      const order: (keyof Side<number>)[] = round % 2 === 0 ? ['direct', 'through'] : ['through', 'direct'];
      for (const side of order) samples[side].push(await fetchAll(sessions[side], side));
      log(
        `throughput round ${round + 1}: direct ${round1(samples.direct.at(-1))} MiB/s, through ${round1(samples.through.at(-1))} MiB/s; ` +
          `CPU ms/MiB: client direct ${round1(cpu.direct.client.at(-1))}, through ${round1(cpu.through.client.at(-1))}, mailbridge ${round1(cpu.through.mailbridge.at(-1))}; ` +
          `reads/MiB: direct ${round1(reads.direct.at(-1))}, through ${round1(reads.through.at(-1))}`,
      );
    }
  } finally {
    await Promise.allSettled([sessions.direct.logout(), sessions.through.logout()]);
  }
  const direct_ = median(samples.direct);
  const through_ = median(samples.through);
  return {
    messages: scale.messages,
    messageBytes: scale.messageBytes,
    rounds: scale.throughputRounds,
    directMiBps: round(direct_),
    throughMiBps: round(through_),
    ratio: round(through_ / direct_, 3),
    cpuMsPerMiB: {
      direct: { client: round(median(cpu.direct.client), 2) },
      through: {
        client: round(median(cpu.through.client), 2),
        mailbridge: round(median(cpu.through.mailbridge), 2),
      },
    },
    samples: { direct: samples.direct.map((v) => round(v)), through: samples.through.map((v) => round(v)) },
  };
}

function round1(value: number | undefined): string {
  return value === undefined ? '?' : value.toFixed(1);
}

async function loginLatency(world: World) {
  const user = ACCOUNTS[0] as string;
  const once_ = async (side: keyof Side<unknown>) => {
    const started = performance.now();
    const connectOptions: ImapConnectOptions =
      side === 'direct'
        ? { host: HOST, port: world.bed.dovecot.ports.imaps, tls: { ca: world.ca } }
        : { host: HOST, port: world.ports.imap };
    const { client } = await ImapClient.connect(connectOptions);
    const greeted = performance.now();
    try {
      await client.ok(
        side === 'direct'
          ? `AUTHENTICATE XOAUTH2 ${xoauth2(user, token(world, user))}`
          : `LOGIN ${quoted(user)} ${quoted(PASSWORD)}`,
      );
      await client.logout();
    } finally {
      client.close();
    }
    const done = performance.now();
    return { loginToLogout: done - greeted, connectToLogout: done - started };
  };
  for (let i = 0; i < 3; i += 1) {
    await once_('direct');
    await once_('through');
  }
  const samples: Side<{ loginToLogout: number[]; connectToLogout: number[] }> = {
    direct: { loginToLogout: [], connectToLogout: [] },
    through: { loginToLogout: [], connectToLogout: [] },
  };
  for (let i = 0; i < scale.logins; i += 1) {
    const order: (keyof Side<unknown>)[] = i % 2 === 0 ? ['direct', 'through'] : ['through', 'direct'];
    for (const side of order) {
      const sample = await once_(side);
      samples[side].loginToLogout.push(sample.loginToLogout);
      samples[side].connectToLogout.push(sample.connectToLogout);
    }
  }
  const summary = (values: number[]) => roundStats(stats(values));
  const result = {
    samples: scale.logins,
    direct: {
      loginToLogout: summary(samples.direct.loginToLogout),
      connectToLogout: summary(samples.direct.connectToLogout),
    },
    through: {
      loginToLogout: summary(samples.through.loginToLogout),
      connectToLogout: summary(samples.through.connectToLogout),
    },
    medianDifferenceMs: 0,
  };
  result.medianDifferenceMs = round(result.through.loginToLogout.median - result.direct.loginToLogout.median);
  return result;
}

function roundStats(value: Stats): Stats {
  return {
    count: value.count,
    median: round(value.median),
    p90: round(value.p90),
    min: round(value.min),
    max: round(value.max),
  };
}

/**
 * `count` sessions at once: all connect and log in, wait until every one has (so that all are open together),
 * then SELECT, FETCH a small message and LOGOUT. Every failure is counted with its reason.
 */
async function simultaneous(count: number, open: (index: number) => Promise<ImapClient>) {
  const failures: string[] = [];
  const loginMs: number[] = [];
  let arrived = 0;
  let releaseAll: () => void = () => undefined;
  const allArrived = new Promise<void>((resolve) => {
    releaseAll = resolve;
  });
  const arrive = () => {
    arrived += 1;
    if (arrived === count) releaseAll();
  };
  let peak = 0;
  let loggedIn = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: count }, async (_, index) => {
      let client: ImapClient | undefined;
      try {
        const begin = performance.now();
        client = await open(index);
        loginMs.push(elapsedMs(begin));
        loggedIn += 1;
        peak = Math.max(peak, loggedIn);
      } catch (error: unknown) {
        failures.push(`login: ${(error as Error).message}`);
      }
      arrive();
      await allArrived;
      if (!client) return;
      try {
        await client.ok('SELECT INBOX');
        const fetched = await client.ok('FETCH 1 BODY.PEEK[]');
        if (fetched.literalBytes !== SMALL.length)
          throw new Error(`FETCH gave ${fetched.literalBytes} bytes`);
        await client.logout();
      } catch (error: unknown) {
        failures.push(`session: ${(error as Error).message}`);
      } finally {
        client.close();
      }
    }),
  );
  const wallMs = elapsedMs(started);
  const reasons: Record<string, number> = {};
  for (const failure of failures) reasons[failure] = (reasons[failure] ?? 0) + 1;
  return {
    sessions: count,
    openAtOnce: peak,
    failures: failures.length,
    reasons,
    wallS: round(wallMs / 1000, 2),
    login: roundStats(stats(loginMs)),
  };
}

async function concurrency(world: World) {
  const accountOf = (index: number) => ACCOUNTS[index % ACCOUNTS.length] as string;
  log(`${scale.concurrent} simultaneous sessions through mailbridge`);
  const through_ = await simultaneous(scale.concurrent, (i) =>
    through(world, accountOf(i), world.ports.imap, { timeoutMs: 180_000 }),
  );
  log(`  ${through_.failures} failures, ${through_.wallS} s`);
  // Dovecot's imap processes of the first run exit in their own time; start the second from a quiet server.
  await sleep(3000);
  log(`${scale.concurrent} simultaneous sessions direct`);
  const direct_ = await simultaneous(scale.concurrent, (i) => direct(world, accountOf(i), 180_000));
  log(`  ${direct_.failures} failures, ${direct_.wallS} s`);
  return { accounts: ACCOUNTS.length, through: through_, direct: direct_ };
}

async function idle(world: World) {
  const probeDir = join(world.bed.dir, 'probe');
  await mkdir(probeDir, { recursive: true });
  const started = await startProxy(world, { probeDir });
  const pid = proxyPid(world);
  // Warm the code paths and the key cache with a few sessions, then measure from a settled process.
  for (const user of ACCOUNTS) await (await through(world, user, world.ports.idle)).logout();
  await sleep(2000);
  const baselineMemory = await probeMemory(pid, probeDir);
  const baselineRss = rssBytes(pid);
  const baselineFiles = openFiles(pid);
  // Node raises its soft descriptor limit to the hard one at start; only the hard limit bounds the sessions.
  const limit = fileLimits(pid).soft;
  // Two sockets per session in mailbridge, and a small margin for files it opens now and then (a DNS query,
  // the config file): at the limit an accept() fails and a client is refused.
  const target = Math.min(scale.idle, Math.floor((limit - baselineFiles - IDLE_FILE_MARGIN) / 2));
  log(`idle: opening ${target} sessions (mailbridge: ${baselineFiles} files open, limit ${limit})`);
  const clients: ImapClient[] = [];
  const failures: string[] = [];
  const checkpoints: { sessions: number; rssBytes: number }[] = [];
  const opening = performance.now();
  await pool(target, 100, async (index) => {
    try {
      clients.push(
        await through(world, ACCOUNTS[index % ACCOUNTS.length] as string, world.ports.idle, {
          localAddress: SOURCE_ADDRESSES[index % SOURCE_ADDRESSES.length] as string,
          timeoutMs: 60_000,
        }),
      );
    } catch (error: unknown) {
      failures.push((error as Error).message);
    }
    if ((index + 1) % Math.max(1, Math.floor(target / 4)) === 0) {
      checkpoints.push({ sessions: clients.length, rssBytes: rssBytes(pid) });
    }
  });
  const openingS = elapsedMs(opening) / 1000;
  await sleep(3000);
  // As the process holds it, garbage included; then after a full GC, split into JavaScript heap and the rest.
  const heldRss = rssBytes(pid);
  const heldMemory = await probeMemory(pid, probeDir);
  const heldRssAfterGc = rssBytes(pid);
  const heldFiles = openFiles(pid);
  const upstream = await world.fake.count();
  // The sessions are alive and relayed: a NOOP on a sample of them goes through to the fake server and back.
  const sample = clients.filter((_, i) => i % Math.max(1, Math.floor(clients.length / 100)) === 0);
  const noop = await Promise.allSettled(sample.map((client) => client.ok('NOOP', 30_000)));
  const noopFailures = noop.filter((result) => result.status === 'rejected').length;
  const held = Math.max(1, clients.length);
  const perSession = (heldRss - baselineRss) / held;
  const kib = (bytes: number) => round(bytes / 1024);
  const first = checkpoints[0];
  const marginal =
    first && clients.length > first.sessions
      ? (heldRss - first.rssBytes) / (clients.length - first.sessions)
      : Number.NaN;
  log(
    `idle: held ${clients.length}, RSS ${(heldRss / 2 ** 20).toFixed(1)} MiB, ${(perSession / 1024).toFixed(1)} KiB per session` +
      ` (after GC ${kib((heldRssAfterGc - baselineRss) / held)}; heap ${kib((heldMemory.heapUsed - baselineMemory.heapUsed) / held)})`,
  );
  for (const client of clients) client.close();
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && openFiles(pid) > baselineFiles + 10) await sleep(250);
  // A closed session stays referenced for 5 s by the timer that destroys sockets whose peer never answers.
  await sleep(6000);
  const afterRss = rssBytes(pid);
  // The JavaScript heap after close, against the baseline, tells a leak from memory the allocator keeps.
  const afterMemory = await probeMemory(pid, probeDir);
  const afterRssAfterGc = rssBytes(pid);
  await stopProxy(world);
  return {
    requested: scale.idle,
    held: clients.length,
    failures: failures.length,
    firstFailures: [...new Set(failures)].slice(0, 5),
    upstreamAuthenticated: upstream.authenticated,
    noopSample: sample.length,
    noopFailures,
    sourceAddresses: SOURCE_ADDRESSES.length,
    fileLimit: limit,
    mailbridgeFilesBaseline: baselineFiles,
    mailbridgeFilesHeld: heldFiles,
    openingS: round(openingS, 1),
    startupMs: round(started),
    rssBaselineMiB: round(baselineRss / 2 ** 20),
    rssHeldMiB: round(heldRss / 2 ** 20),
    rssAfterCloseMiB: round(afterRss / 2 ** 20),
    rssAfterCloseAfterGcMiB: round(afterRssAfterGc / 2 ** 20),
    heapBaselineMiB: round(baselineMemory.heapUsed / 2 ** 20),
    heapHeldMiB: round(heldMemory.heapUsed / 2 ** 20),
    heapAfterCloseMiB: round(afterMemory.heapUsed / 2 ** 20),
    rssPerSessionKiB: kib(perSession),
    rssPerSessionMarginalKiB: kib(marginal),
    rssPerSessionAfterGcKiB: kib((heldRssAfterGc - baselineRss) / held),
    perSessionAfterGcKiB: {
      heapUsed: kib((heldMemory.heapUsed - baselineMemory.heapUsed) / held),
      external: kib((heldMemory.external - baselineMemory.external) / held),
      arrayBuffers: kib((heldMemory.arrayBuffers - baselineMemory.arrayBuffers) / held),
    },
    checkpoints: checkpoints.map((c) => ({ sessions: c.sessions, rssMiB: round(c.rssBytes / 2 ** 20) })),
  };
}

async function smtp(world: World) {
  const user = ACCOUNTS[0] as string;
  const sink = world.bed.sink;
  const pid = proxyPid(world);
  // CPU per MB while DATA is sent: the test bed (OAuth server, sink) runs in this process too, so "client"
  // includes the sink storing the message.
  const cpu: Side<{ client: number[]; mailbridge: number[] }> = {
    direct: { client: [], mailbridge: [] },
    through: { client: [], mailbridge: [] },
  };
  const send = async (side: keyof Side<unknown>, body: Buffer) => {
    const client = await SmtpClient.connect(
      side === 'direct'
        ? { host: HOST, port: world.bed.dovecot.ports.submissions, tls: { ca: world.ca } }
        : { host: HOST, port: world.ports.smtp },
    );
    try {
      await client.send('EHLO bench.test', 250);
      if (side === 'direct') await client.send(`AUTH XOAUTH2 ${xoauth2(user, token(world, user))}`, 235);
      else await client.send(`AUTH PLAIN ${plainResponse(user, PASSWORD)}`, 235);
      await client.send(`MAIL FROM:<${user}> SIZE=${body.length}`, 250);
      await client.send('RCPT TO:<someone@bench.test>', 250);
      const ownBefore = ownCpuMs();
      const proxyBefore = cpuMs(pid);
      const ms = await client.data(body);
      const mb = body.length / 1e6;
      cpu[side].client.push((ownCpuMs() - ownBefore) / mb);
      cpu[side].mailbridge.push((cpuMs(pid) - proxyBefore) / mb);
      await client.quit();
      const stored = sink.messages.at(-1);
      // Dovecot prepends one Received field and changes nothing else.
      if (!stored || stored.data.length < body.length || stored.data.length > body.length + 1000) {
        throw new Error(`the sink holds ${stored?.data.length ?? 'no'} bytes, expected about ${body.length}`);
      }
      sink.clear();
      return ms;
    } finally {
      client.close();
    }
  };
  const warm = message(1000 * 1000, 1);
  await send('direct', warm);
  await send('through', warm);
  for (const side of [cpu.direct, cpu.through]) {
    side.client.length = 0;
    side.mailbridge.length = 0;
  }
  const body = message(scale.smtpBytes, 2);
  const samples: Side<number[]> = { direct: [], through: [] };
  for (let round_ = 0; round_ < scale.smtpRounds; round_ += 1) {
    const order: (keyof Side<unknown>)[] = round_ % 2 === 0 ? ['direct', 'through'] : ['through', 'direct'];
    for (const side of order) samples[side].push(await send(side, body));
    log(
      `smtp round ${round_ + 1}: direct ${samples.direct.at(-1)?.toFixed(0)} ms, through ${samples.through.at(-1)?.toFixed(0)} ms; ` +
        `CPU ms/MB: this process direct ${round1(cpu.direct.client.at(-1))}, through ${round1(cpu.through.client.at(-1))}, mailbridge ${round1(cpu.through.mailbridge.at(-1))}`,
    );
  }
  const d = median(samples.direct);
  const t = median(samples.through);
  return {
    bytes: scale.smtpBytes,
    rounds: scale.smtpRounds,
    directS: round(d / 1000, 2),
    throughS: round(t / 1000, 2),
    directMBps: round(scale.smtpBytes / 1e6 / (d / 1000)),
    throughMBps: round(scale.smtpBytes / 1e6 / (t / 1000)),
    ratio: round(d / t, 3),
    cpuMsPerMB: {
      direct: { benchProcess: round(median(cpu.direct.client), 2) },
      through: {
        benchProcess: round(median(cpu.through.client), 2),
        mailbridge: round(median(cpu.through.mailbridge), 2),
      },
    },
  };
}

async function startup(world: World) {
  const proxy: number[] = [];
  const node: number[] = [];
  for (let i = 0; i < scale.startups; i += 1) {
    proxy.push(await startProxy(world));
    // mailbridge logs "ready" a moment before it installs its SIGTERM handler; a stop in between kills it.
    await sleep(300);
    await stopProxy(world);
    const started = performance.now();
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await once(child, 'exit');
    node.push(elapsedMs(started));
  }
  return {
    samples: scale.startups,
    mailbridge: roundStats(stats(proxy)),
    nodeAlone: roundStats(stats(node)),
  };
}

// ---- the run ---------------------------------------------------------------------------------------------------

async function authoriseAccounts(world: World): Promise<void> {
  // The first login of each account asks a "person" (the harness pastes the redirect back); the second shows
  // the token comes from the cache. Two at a time: each first login derives keys at 1.2 M PBKDF2 iterations.
  await pool(ACCOUNTS.length + 1, 2, async (index) => {
    const user = index === ACCOUNTS.length ? BULK : (ACCOUNTS[index] as string);
    await (await through(world, user)).logout();
    await (await through(world, user)).logout();
  });
}

async function main(): Promise<void> {
  const host = machine();
  log(
    `${host.cpu}, ${host.cores} cores, ${host.memoryGiB} GiB, Node ${host.node}; load ${host.loadAtStart.join(' ')}`,
  );
  const deadline = setTimeout(() => {
    log(`the run took longer than ${RUN_DEADLINE_MS / 60_000} min: stopping`);
    world?.mailbridge?.child.kill('SIGKILL');
    world?.fake.child.kill('SIGKILL');
    // The test bed's exit hook stops Dovecot.
    process.exit(1);
  }, RUN_DEADLINE_MS);
  deadline.unref();
  let world: World | undefined;
  const bed = await startTestbed({ smtpSink: true });
  let fake: FakeUpstream | undefined;
  try {
    const dovecotTuning = await tuneDovecot(bed.dovecot);
    for (const user of [...ACCOUNTS]) bed.dovecot.seedMessage(user, '1.small', SMALL);
    if (runs('throughput')) {
      for (let i = 1; i <= scale.messages; i += 1) {
        bed.dovecot.seedMessage(BULK, `${i}.bulk`, message(scale.messageBytes, i));
      }
    }
    fake = await startFakeUpstream(bed.certs.certPath, bed.certs.keyPath);
    const [imap, smtp_, idlePort] = (await findFreePorts(3)) as [number, number, number];
    const configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        `[IMAP-${imap}]`,
        'server_address = 127.0.0.1',
        `server_port = ${bed.dovecot.ports.imaps}`,
        'local_address = 127.0.0.1',
        '',
        `[SMTP-${smtp_}]`,
        'server_address = 127.0.0.1',
        `server_port = ${bed.dovecot.ports.submissions}`,
        'local_address = 127.0.0.1',
        '',
        // The idle sessions' upstream: the fake server, which accepts any token and then idles.
        `[IMAP-${idlePort}]`,
        'server_address = 127.0.0.1',
        `server_port = ${fake.port}`,
        'local_address = 127.0.0.1',
        '',
        ...[...ACCOUNTS, BULK].map((user) => bed.accountSection(user)),
      ].join('\n'),
    );
    world = {
      bed,
      ca: await readFile(bed.certs.caCertPath),
      configPath,
      ports: { imap, smtp: smtp_, idle: idlePort },
      fake,
      tokens: new Map(),
      dovecotTuning,
    };
    const results: Results = {
      machine: host,
      scale: flags.quick ? 'quick' : 'full',
      dovecotTuning,
    };
    const profileDir = flags['cpu-prof'];
    if (profileDir) await mkdir(profileDir, { recursive: true });
    await startProxy(world, profileDir ? { profileDir } : {});
    log('authorising the accounts');
    await authoriseAccounts(world);
    if (runs('throughput')) {
      log('throughput');
      results.throughput = await throughput(world);
    }
    if (runs('login')) {
      log('login latency');
      results.login = await loginLatency(world);
    }
    if (runs('concurrency')) results.concurrency = await concurrency(world);
    if (runs('smtp')) {
      log('smtp');
      results.smtp = await smtp(world);
    }
    await stopProxy(world);
    if (runs('idle')) results.idle = await idle(world);
    if (runs('startup')) {
      log('start-up');
      results.startup = await startup(world);
    }
    results.machine.loadAtEnd = loadAverage();
    const table = render(results);
    process.stdout.write(`${table}\n`);
    await mkdir(outDir, { recursive: true });
    await writeFile(join(outDir, 'latest.json'), toJson(results));
    await writeFile(join(outDir, 'latest.md'), `${table}\n`);
    log(`wrote ${join(outDir, 'latest.json')} and latest.md`);
  } finally {
    if (world) await stopProxy(world).catch(() => undefined);
    if (fake) {
      fake.child.stdin?.end();
      if (fake.child.exitCode === null) fake.child.kill('SIGTERM');
    }
    await bed.stop();
    clearTimeout(deadline);
  }
}

/**
 * JSON as the project's formatter (Biome) writes it, so that the committed results pass `biome ci`: arrays of
 * numbers and strings on one line when that line fits in 110 columns, everything else as JSON.stringify does.
 */
function toJson(value: unknown): string {
  const text = JSON.stringify(value, null, 2).replace(
    /^( *)(.*)\[\n((?:\s*(?:-?[\d.e+-]+|"[^"\n]*"|true|false|null),?\n)+)\s*\]/gm,
    (whole, indent: string, head: string, items: string) => {
      const inline = `${indent}${head}[${items
        .split('\n')
        .map((item) => item.trim())
        .filter((item) => item !== '')
        .join(' ')}]`;
      return inline.length <= 110 ? inline : whole;
    },
  );
  return `${text}\n`;
}

// ---- the table -------------------------------------------------------------------------------------------------

interface Results {
  machine: Machine & { loadAtEnd?: number[] };
  scale: 'quick' | 'full';
  dovecotTuning: string[];
  throughput?: Awaited<ReturnType<typeof throughput>>;
  login?: Awaited<ReturnType<typeof loginLatency>>;
  concurrency?: Awaited<ReturnType<typeof concurrency>>;
  idle?: Awaited<ReturnType<typeof idle>>;
  smtp?: Awaited<ReturnType<typeof smtp>>;
  startup?: Awaited<ReturnType<typeof startup>>;
}

function render(results: Results): string {
  const m = results.machine;
  const rows: string[][] = [];
  const yes = (ok: boolean) => (ok ? 'yes' : '**no**');
  const t = results.throughput;
  if (t) {
    rows.push([
      `IMAP FETCH ${t.messages} × ${t.messageBytes / 1024} KiB, MiB/s (median of ${t.rounds})`,
      `${t.directMiBps}`,
      `${t.throughMiBps}`,
      `ratio ${t.ratio}`,
      '≥ 0.95',
      yes(t.ratio >= 0.95),
    ]);
    rows.push([
      '… CPU per MiB fetched, ms: client / mailbridge',
      `${t.cpuMsPerMiB.direct.client} / –`,
      `${t.cpuMsPerMiB.through.client} / ${t.cpuMsPerMiB.through.mailbridge}`,
      '',
      '',
      '',
    ]);
  }
  const l = results.login;
  if (l) {
    rows.push([
      `Login LOGIN..LOGOUT, cached token, ms: median (${l.samples} each)`,
      `${l.direct.loginToLogout.median}`,
      `${l.through.loginToLogout.median}`,
      `${l.medianDifferenceMs >= 0 ? '+' : ''}${l.medianDifferenceMs} ms`,
      '≤ +5 ms',
      yes(l.medianDifferenceMs <= 5),
    ]);
    rows.push([
      'Login LOGIN..LOGOUT, ms: p90',
      `${l.direct.loginToLogout.p90}`,
      `${l.through.loginToLogout.p90}`,
      `${round(l.through.loginToLogout.p90 - l.direct.loginToLogout.p90)} ms`,
      '',
      '',
    ]);
    rows.push([
      'Connect..LOGOUT (TCP, TLS, greeting, login), ms: median',
      `${l.direct.connectToLogout.median}`,
      `${l.through.connectToLogout.median}`,
      `${round(l.through.connectToLogout.median - l.direct.connectToLogout.median)} ms`,
      '',
      '',
    ]);
  }
  const c = results.concurrency;
  if (c) {
    rows.push([
      `${c.through.sessions} simultaneous sessions (LOGIN, SELECT, FETCH, LOGOUT; ${c.accounts} accounts; ${c.through.openAtOnce} / ${c.direct.openAtOnce} open at once): failures`,
      `${c.direct.failures}`,
      `${c.through.failures}`,
      '',
      '0',
      yes(c.through.failures === 0),
    ]);
    rows.push([
      '… wall time, s / login median, ms',
      `${c.direct.wallS} / ${c.direct.login.median}`,
      `${c.through.wallS} / ${c.through.login.median}`,
      '',
      '',
      '',
    ]);
  }
  const i = results.idle;
  if (i) {
    rows.push([
      `Idle authenticated sessions held by one mailbridge (${i.sourceAddresses} client addresses)`,
      '–',
      `${i.held}`,
      i.held < i.requested ? `fd limit ${i.fileLimit}` : '',
      `${i.requested}`,
      yes(i.held >= i.requested && i.failures === 0),
    ]);
    rows.push([
      'RSS per idle session, KiB (as held / after a full GC; of which JS heap)',
      '–',
      `${i.rssPerSessionKiB} / ${i.rssPerSessionAfterGcKiB}; heap ${i.perSessionAfterGcKiB.heapUsed}`,
      `${i.rssBaselineMiB} → ${i.rssHeldMiB} MiB`,
      '≤ 64',
      yes(i.rssPerSessionKiB <= 64),
    ]);
  }
  const s = results.smtp;
  if (s) {
    rows.push([
      `SMTP ${s.bytes / 1e6} MB message, DATA..250, s (median of ${s.rounds})`,
      `${s.directS}`,
      `${s.throughS}`,
      `ratio ${s.ratio}`,
      '',
      '',
    ]);
    rows.push([
      '… CPU per MB sent, ms: bench process (client, sink) / mailbridge',
      `${s.cpuMsPerMB.direct.benchProcess} / –`,
      `${s.cpuMsPerMB.through.benchProcess} / ${s.cpuMsPerMB.through.mailbridge}`,
      '',
      '',
      '',
    ]);
  }
  const u = results.startup;
  if (u) {
    rows.push([
      `Start-up to listening, ms: median / p90 (${u.samples} starts)`,
      `node -e 0: ${u.nodeAlone.median} / ${u.nodeAlone.p90}`,
      `${u.mailbridge.median} / ${u.mailbridge.p90}`,
      '',
      '',
      '',
    ]);
  }
  const header = ['measurement', 'direct', 'through mailbridge', 'comparison', 'target', 'met'];
  const lines = [
    `mailbridge benchmark${results.scale === 'quick' ? ' (QUICK: reduced sizes)' : ''}`,
    '',
    `- machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB; ${m.kernel}`,
    `- Node ${m.node}; ${m.date}; mailbridge at commit ${m.commit}`,
    `- load average (1, 5, 15 min): ${m.loadAtStart.join(' ')} at start, ${(m.loadAtEnd ?? []).join(' ')} at the end`,
    '',
    `| ${header.join(' | ')} |`,
    '|---|---:|---:|---:|---:|---|',
    ...rows.map((row) => `| ${row.join(' | ')} |`),
  ];
  return lines.join('\n');
}

await main();
