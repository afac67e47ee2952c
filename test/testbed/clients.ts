import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Real clients from Debian, run as child processes with a bounded time. */
export interface ClientResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export async function curl(args: string[], timeoutMs = 30_000): Promise<ClientResult> {
  const result = await runClient('curl', ['--silent', '--show-error', ...args], {
    timeoutMs,
    maxBufferBytes: 256 * 1024 * 1024,
  });
  // Which of a test's many curl calls failed is not in curl's own message.
  return result.code === 0 ? result : { ...result, stderr: `${result.stderr} (curl ${args.join(' ')})` };
}

/** Runs a Python 3 script; values go in through the environment so nothing needs quoting. */
export async function python(
  script: string,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ClientResult> {
  return runClient('python3', ['-c', script], { env, timeoutMs, maxBufferBytes: 256 * 1024 * 1024 });
}

/** How a client reaches its server: in clear, upgraded with STARTTLS/STLS, or TLS from the first byte. */
export type ClientTls = 'none' | 'starttls' | 'implicit';

async function runClient(
  command: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; timeoutMs: number; maxBufferBytes?: number },
): Promise<ClientResult> {
  try {
    const { stdout, stderr } = await run(command, args, {
      encoding: 'buffer',
      env: { ...process.env, ...options.env },
      cwd: options.cwd,
      timeout: options.timeoutMs,
      killSignal: 'SIGKILL',
      maxBuffer: options.maxBufferBytes ?? 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr: stderr.toString() };
  } catch (error: unknown) {
    const failed = error as { code?: number | string; stdout?: Buffer; stderr?: Buffer; killed?: boolean };
    const timedOut = failed.killed ? ` (killed after ${options.timeoutMs} ms)` : '';
    return {
      code: typeof failed.code === 'number' ? failed.code : -1,
      stdout: failed.stdout ?? Buffer.alloc(0),
      stderr: `${failed.stderr?.toString() ?? String(error)}${timedOut}`,
    };
  }
}

/** A double-quoted string for fetchmailrc and isync config files (both take backslash escapes). */
function quoted(value: string): string {
  if (/[\r\n]/.test(value)) throw new Error(`a client config value cannot hold a line break: ${value}`);
  return `"${value.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

async function filesInOrder(dir: string): Promise<{ name: string; data: Buffer }[]> {
  const names = (await readdir(dir)).sort();
  return Promise.all(names.map(async (name) => ({ name, data: await readFile(join(dir, name)) })));
}

export interface FetchmailOptions {
  protocol: 'POP3' | 'IMAP';
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  user: string;
  password: string;
  /** Default 'none': `sslproto ''` and `no sslcertck`, plain text on loopback. TLS checks against caCertPath. */
  tls?: ClientTls;
  caCertPath?: string;
  /** IMAP folder; default INBOX. */
  folder?: string;
  /** Default 60 s; fetchmail is killed after it. */
  timeoutMs?: number;
}

export interface FetchmailResult extends ClientResult {
  /** Each message exactly as fetchmail handed it to the mda, in delivery order. */
  messages: Buffer[];
  /** The fetchmailrc used (password hidden), for failure messages. */
  rc: string;
  /** The protocol transcript (`--verbose`, on stdout; passwords shown as `*`) followed by stderr. */
  log: string;
}

/**
 * fetchmail once in the foreground (`--nodetach`, no daemon), logging in with a plain password (`auth password`:
 * USER/PASS for POP3, LOGIN for IMAP), keeping every message on the server (`keep`, `fetchall`) and delivering
 * each to a file through an `mda`. So that the files can be compared with the server's byte for byte, it adds no
 * Received header (`set invisible`) and keeps carriage returns (`no stripcr`; with an mda it strips them by
 * default), rewrites no addresses and decodes no MIME. HOME and FETCHMAILHOME are a temp dir, removed after.
 * Exit codes: 0 mail delivered, 1 no mail, 3 authentication failed, others see fetchmail(1).
 */
export async function fetchmail(options: FetchmailOptions): Promise<FetchmailResult> {
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-fetchmail-'));
  try {
    const mailDir = join(dir, 'mail');
    await mkdir(mailDir);
    const deliver = join(dir, 'deliver.sh');
    // fetchmail runs the mda once per message, one after another: numbering by count keeps the order.
    await writeFile(
      deliver,
      `#!/bin/sh\nset -e\nn=$(ls '${mailDir}' | wc -l)\ncat > '${mailDir}'/$(printf '%06d' $((n + 1))).eml\n`,
      { mode: 0o700 },
    );
    const tls = options.tls ?? 'none';
    const tlsLines =
      tls === 'none'
        ? ["sslproto ''", 'no sslcertck']
        : [
            ...(tls === 'implicit' ? ['ssl'] : ["sslproto 'TLS1.2+'"]),
            'sslcertck',
            ...(options.caCertPath ? [`sslcertfile ${quoted(options.caCertPath)}`] : []),
          ];
    const rc = [
      'set no syslog',
      'set invisible',
      `poll ${quoted(options.host ?? '127.0.0.1')}`,
      `  protocol ${options.protocol}`,
      `  service ${options.port}`,
      '  auth password',
      '  timeout 20',
      `  user ${quoted(options.user)}`,
      `  password ${quoted(options.password)}`,
      ...(options.protocol === 'IMAP' ? [`  folder ${quoted(options.folder ?? 'INBOX')}`] : []),
      ...tlsLines.map((line) => `  ${line}`),
      '  keep',
      '  fetchall',
      '  no rewrite',
      '  no stripcr',
      '  no mimedecode',
      `  mda ${quoted(`/bin/sh ${deliver}`)}`,
      '',
    ].join('\n');
    const rcPath = join(dir, 'fetchmailrc');
    // fetchmail refuses a run control file that others can read (it holds the password).
    await writeFile(rcPath, rc, { mode: 0o600 });
    await chmod(rcPath, 0o600);
    const result = await runClient(
      'fetchmail',
      [
        '--nodetach',
        '--nosyslog',
        '--verbose',
        '--fetchmailrc',
        rcPath,
        '--pidfile',
        join(dir, 'fetchmail.pid'),
        '--idfile',
        join(dir, 'fetchids'),
      ],
      { env: { HOME: dir, FETCHMAILHOME: dir }, cwd: dir, timeoutMs: options.timeoutMs ?? 60_000 },
    );
    const messages = (await filesInOrder(mailDir)).map((file) => file.data);
    const log = `${result.stdout.toString('latin1')}${result.stderr}`;
    return { ...result, messages, log, rc: rc.replace(quoted(options.password), '"<password>"') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface MbsyncOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  user: string;
  password: string;
  /** Default 'none' (SSLType None). TLS checks against caCertPath. */
  tls?: ClientTls;
  caCertPath?: string;
  /** Default 60 s; mbsync is killed after it. */
  timeoutMs?: number;
}

export interface MbsyncMessage {
  /** The server's UID, from the `,U=<uid>` mbsync puts in the file name. */
  uid: number;
  name: string;
  data: Buffer;
}

export interface MbsyncResult extends ClientResult {
  /** The messages of the near-side Maildir INBOX (new and cur), in UID order. */
  messages: MbsyncMessage[];
  config: string;
}

/**
 * mbsync (isync) pulls the INBOX from an IMAP server into a fresh Maildir, logging in with IMAP LOGIN
 * (`AuthMechs LOGIN`: Debian's isync has no SASL PLAIN without a Cyrus plugin), then the Maildir is read back and
 * removed. Sync Pull only: nothing is ever written to the server but flags mbsync itself sets (none on a pull).
 */
export async function mbsync(options: MbsyncOptions): Promise<MbsyncResult> {
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-mbsync-'));
  try {
    const tls = options.tls ?? 'none';
    const sslType = { none: 'None', starttls: 'STARTTLS', implicit: 'IMAPS' }[tls];
    const near = join(dir, 'mail');
    const config = [
      'IMAPAccount remote',
      `Host ${options.host ?? '127.0.0.1'}`,
      `Port ${options.port}`,
      `User ${quoted(options.user)}`,
      `Pass ${quoted(options.password)}`,
      'AuthMechs LOGIN',
      `SSLType ${sslType}`,
      ...(tls !== 'none' && options.caCertPath
        ? ['SystemCertificates no', `CertificateFile ${quoted(options.caCertPath)}`]
        : []),
      'Timeout 20',
      '',
      'IMAPStore remote',
      'Account remote',
      '',
      'MaildirStore local',
      `Path ${quoted(`${near}/`)}`,
      `Inbox ${quoted(join(near, 'INBOX'))}`,
      '',
      'Channel inbox',
      'Far :remote:',
      'Near :local:',
      'Patterns INBOX',
      'Create Near',
      'Sync Pull',
      'Expunge None',
      `SyncState ${quoted(`${join(dir, 'state')}/`)}`,
      '',
    ].join('\n');
    await mkdir(join(dir, 'state'));
    // mbsync creates the INBOX Maildir (Create Near) but not the store's root.
    await mkdir(near);
    const configPath = join(dir, 'mbsyncrc');
    await writeFile(configPath, config, { mode: 0o600 });
    const result = await runClient('mbsync', ['--verbose', '--config', configPath, 'inbox'], {
      env: { HOME: dir },
      cwd: dir,
      timeoutMs: options.timeoutMs ?? 60_000,
    });
    const messages: MbsyncMessage[] = [];
    for (const sub of ['new', 'cur']) {
      const files = await filesInOrder(join(near, 'INBOX', sub)).catch(() => []);
      for (const file of files) {
        const uid = Number(/,U=(\d+)/.exec(file.name)?.[1] ?? Number.NaN);
        messages.push({ uid, name: file.name, data: file.data });
      }
    }
    messages.sort((a, b) => a.uid - b.uid);
    return { ...result, messages, config: config.replace(quoted(options.password), '"<password>"') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface SwaksOptions {
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  from: string;
  to: string[];
  /** Omit for no AUTH at all. */
  auth?: 'PLAIN' | 'LOGIN';
  user?: string;
  password?: string;
  /** Default 'none'; 'starttls' requires STARTTLS (`--tls`), 'implicit' is `--tls-on-connect`. */
  tls?: ClientTls;
  /** Verify the server's certificate against this CA (`--tls-verify --tls-ca-path`). */
  caCertPath?: string;
  /** The message exactly as it must arrive: CRLF line ends, ending with CRLF. */
  dataFile: string;
  ehlo?: string;
  /** Default 60 s; swaks is killed after it. */
  timeoutMs?: number;
}

/**
 * swaks sends one message. Left to itself swaks rewrites the DATA (tokens such as `%DATE%`, a literal `\n`
 * becomes a line break, headers are re-joined, a blank line is added before the final dot), so the message goes
 * with `--no-data-fixup`, which sends the file verbatim: the wrapper dot-stuffs a copy of `dataFile` and ends it
 * with the `.` line itself. The transcript is on stdout, with the DATA summarised (`--suppress-data`).
 */
export async function swaks(options: SwaksOptions): Promise<ClientResult> {
  const message = await readFile(options.dataFile);
  if (message.length > 0 && !message.subarray(-2).equals(Buffer.from('\r\n'))) {
    throw new Error(`swaks: ${options.dataFile} must end with CRLF to arrive byte-identical`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-swaks-'));
  try {
    // RFC 5321 §4.5.2: a line that starts with a dot gets one more; swaks adds the CRLF after the final dot.
    const stuffed = Buffer.from(message.toString('latin1').replace(/(^|\r\n)\./g, '$1..'), 'latin1');
    const wire = join(dir, 'data');
    await writeFile(wire, Buffer.concat([stuffed, Buffer.from('.')]));
    const tls = options.tls ?? 'none';
    const args = [
      '--server',
      options.host ?? '127.0.0.1',
      '--port',
      String(options.port),
      '--from',
      options.from,
      '--to',
      options.to.join(','),
      '--ehlo',
      options.ehlo ?? 'swaks.client.test',
      '--data',
      `@${wire}`,
      '--no-data-fixup',
      '--suppress-data',
      '--timeout',
      '30s',
      ...(options.auth
        ? [
            '--auth',
            options.auth,
            '--auth-user',
            options.user ?? '',
            '--auth-password',
            options.password ?? '',
          ]
        : []),
      ...(tls === 'starttls' ? ['--tls'] : tls === 'implicit' ? ['--tls-on-connect'] : []),
      ...(tls !== 'none' && options.caCertPath ? ['--tls-verify', '--tls-ca-path', options.caCertPath] : []),
    ];
    return await runClient('swaks', args, { cwd: dir, timeoutMs: options.timeoutMs ?? 60_000 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The client side of TLS for scripted sessions: after a raw client's STARTTLS/STLS (`upgrade`, on the
 * RawClient's socket) or to an implicit-TLS port (`connect`). The certificate is verified against `caCertPath`
 * for `servername`. Every wait is bounded.
 */
export class TlsConversation {
  private received = Buffer.alloc(0);
  private ended = false;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: TLSSocket) {
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
  }

  static upgrade(plain: Socket, caCertPath: string, servername = 'localhost'): Promise<TlsConversation> {
    return TlsConversation.handshake({ socket: plain, ca: readFileSync(caCertPath), servername });
  }

  static connect(
    port: number,
    caCertPath: string,
    host = '127.0.0.1',
    servername = 'localhost',
  ): Promise<TlsConversation> {
    return TlsConversation.handshake({ host, port, ca: readFileSync(caCertPath), servername });
  }

  private static handshake(options: ConnectionOptions, timeoutMs = 10_000): Promise<TlsConversation> {
    return new Promise((resolve, reject) => {
      const socket = tlsConnect(options);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`TLS handshake did not finish within ${timeoutMs} ms`));
      }, timeoutMs);
      // Data may arrive in the same turn as the handshake ends: listen before resolving.
      const conversation = new TlsConversation(socket);
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        resolve(conversation);
      });
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Everything received over TLS so far, as latin1 text. */
  text(): string {
    return this.received.toString('latin1');
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Waits until the received text matches, and returns all of it. */
  waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    if (pattern.test(this.text())) return Promise.resolve(this.text());
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!pattern.test(this.text())) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(this.text());
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}; received:\n${this.text()}`),
        );
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
