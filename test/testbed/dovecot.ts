import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DOVECOT_MECHANISMS,
  type DovecotMechanism,
  type DovecotPorts,
  renderDovecotConfig,
  renderOAuth2PassdbConfig,
} from './dovecot-config.ts';
import {
  INSTANCE_DIR_PREFIX,
  LAYOUT,
  LOG_TAIL_LINES,
  launchDovecot,
  readMasterPid,
  stopMaster,
  stopOrphanedInstances,
  tail,
} from './dovecot-daemon.ts';
import { findFreePorts, waitForPort } from './ports.ts';
import { onProcessDeath, signal } from './processes.ts';

export type { DovecotMechanism, DovecotPorts } from './dovecot-config.ts';

export type DovecotOptions = {
  /** The test OAuth server's RFC 7662 endpoint, e.g. `oauth.introspectionEndpoint`. */
  readonly introspectionUrl: string;
  /** Both by default; `['xoauth2']` alone mimics Outlook / Office 365. */
  readonly mechanisms?: readonly DovecotMechanism[];
  readonly certs: { readonly certPath: string; readonly keyPath: string };
  /**
   * Where submission relays accepted mail (an SMTP sink of the test's own). Without it a submission login
   * fails with `451 4.3.5 Internal error` (Dovecot logs "submission_relay_host is unset").
   */
  readonly relay?: { readonly host: string; readonly port: number };
  /** auth_debug and mail_debug: Dovecot logs each introspection request and reply. */
  readonly debug?: boolean;
  /** Keep the temp dir after stop() for a post-mortem; MAILBRIDGE_KEEP_TESTBED=1 does the same. */
  readonly keepFiles?: boolean;
  readonly startTimeoutMs?: number;
};

export type DovecotInstance = {
  readonly host: '127.0.0.1';
  readonly ports: DovecotPorts;
  /** The temp dir holding config, runtime state, log and mail homes. */
  readonly dir: string;
  readonly logPath: string;
  /** `<home>/Maildir` of `user` (lower-cased, as Dovecot does). */
  maildir(user: string): string;
  /**
   * Writes a message into `user`'s Maildir/cur and returns its path. `fileName` is the unique part of the
   * maildir name (`,S=<size>:2,` is appended unless it already has an info part). Dovecot gives new files
   * UIDs in the numeric order of the leading number of their names (`1.a`, `2.a`, `10.a` → UID 1, 2, 3).
   * Use CRLF line ends for byte-exact FETCH comparisons. The path holds until a client changes the flags:
   * Dovecot then renames the file (a non-PEEK FETCH adds `S` for \Seen).
   */
  seedMessage(user: string, fileName: string, content: Buffer | string): string;
  logTail(lines?: number): string;
  /** Stops the master (and so every Dovecot process) and removes the temp dir; safe to call twice. */
  stop(): Promise<void>;
};

const HOST = '127.0.0.1';
const DEFAULT_START_TIMEOUT_MS = 10_000;
// A freed port can be taken by another process before Dovecot binds it; a few fresh tries make that harmless.
const MAX_START_ATTEMPTS = 3;
const DEBIAN_DH_PATH = '/usr/share/dovecot/dh.pem';

type MailUser = { uid: number; gid: number };

// Dovecot refuses to run mail processes as root, so mail belongs to the system `mail` user.
function lookupMailUser(): MailUser {
  const entry = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':'))
    .find((fields) => fields[0] === 'mail');
  const uid = Number(entry?.[2]);
  const gid = Number(entry?.[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error("no 'mail' user in /etc/passwd");
  return { uid, gid };
}

function mkdirOwned(path: string, owner: MailUser): void {
  mkdirSync(path, { recursive: true, mode: 0o700 });
  chownSync(path, owner.uid, owner.gid);
}

class DovecotInstanceImpl implements DovecotInstance {
  readonly host = HOST;
  readonly logPath: string;
  readonly #homeRoot: string;
  readonly #mailUser: MailUser;
  readonly #keepFiles: boolean;
  #masterPid: number | undefined;
  #stopped = false;
  #unregisterCleanup: (() => void) | undefined;

  constructor(
    readonly dir: string,
    readonly ports: DovecotPorts,
    mailUser: MailUser,
    keepFiles: boolean,
  ) {
    this.logPath = join(dir, LAYOUT.log);
    this.#homeRoot = join(dir, LAYOUT.homeRoot);
    this.#mailUser = mailUser;
    this.#keepFiles = keepFiles;
  }

  async start(timeoutMs: number): Promise<void> {
    // Last resort when a test process ends without stop(): the daemon would outlive it, holding its ports.
    this.#unregisterCleanup = onProcessDeath(() => {
      if (this.#masterPid !== undefined) signal(this.#masterPid, 'SIGTERM');
    });
    try {
      await launchDovecot(this.dir);
    } finally {
      // Read even after a failure: the master may have daemonized before something else went wrong.
      this.#masterPid = await readMasterPid(this.dir);
    }
    const results = await Promise.all(
      Object.entries(this.ports).map(async ([name, port]) => ({
        name,
        port,
        up: await waitForPort(HOST, port, timeoutMs),
      })),
    );
    const down = results.filter((result) => !result.up);
    if (down.length > 0) {
      const which = down.map((result) => `${result.name} on ${HOST}:${result.port}`).join(', ');
      throw new Error(
        `dovecot did not start listening (${which}) within ${timeoutMs / 1000} s; log tail:\n${this.logTail()}`,
      );
    }
  }

  maildir(user: string): string {
    return join(this.#homeRoot, user.toLowerCase(), 'Maildir');
  }

  seedMessage(user: string, fileName: string, content: Buffer | string): string {
    if (fileName.includes('/') || fileName === '') {
      throw new Error(`seedMessage: bad file name '${fileName}'`);
    }
    const data = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    const home = join(this.#homeRoot, user.toLowerCase());
    const maildir = this.maildir(user);
    // Dovecot runs as the mail user and must own everything it will write next to the messages (uidlist, index).
    for (const path of [home, maildir, ...['cur', 'new', 'tmp'].map((sub) => join(maildir, sub))]) {
      mkdirOwned(path, this.#mailUser);
    }
    // Maildir name: <unique>[,S=<size>]:2,<flags>; S= lets Dovecot skip a stat, and must then be exact.
    const name = fileName.includes(':') ? fileName : `${fileName},S=${data.length}:2,`;
    const path = join(maildir, 'cur', name);
    writeFileSync(path, data, { mode: 0o600 });
    chownSync(path, this.#mailUser.uid, this.#mailUser.gid);
    return path;
  }

  logTail(lines = LOG_TAIL_LINES): string {
    return tail(this.logPath, lines);
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#unregisterCleanup?.();
    const pid = this.#masterPid ?? (await readMasterPid(this.dir));
    if (pid !== undefined) await stopMaster(pid, this.dir);
    this.#masterPid = undefined;
    if (this.#keepFiles) await writeFile(join(this.dir, LAYOUT.keptMarker), '');
    else await rm(this.dir, { recursive: true, force: true, maxRetries: 3 });
  }
}

function validateMechanisms(mechanisms: readonly DovecotMechanism[]): void {
  const unknown = mechanisms.filter((mechanism) => !DOVECOT_MECHANISMS.includes(mechanism));
  if (mechanisms.length === 0 || unknown.length > 0) {
    throw new Error(
      `startDovecot: mechanisms must be a non-empty subset of ${DOVECOT_MECHANISMS.join(', ')}`,
    );
  }
}

async function prepareInstance(
  options: DovecotOptions,
  mechanisms: readonly DovecotMechanism[],
  mailUser: MailUser,
  keepFiles: boolean,
): Promise<DovecotInstanceImpl> {
  const dir = await mkdtemp(join(tmpdir(), INSTANCE_DIR_PREFIX));
  await writeFile(join(dir, LAYOUT.owner), `${process.pid}\n`);
  // mkdtemp makes the dir 0700; the mail user must be able to walk through it to its home.
  await chmod(dir, 0o755);
  const [imap, imaps, pop3, pop3s, submission, submissions] = await findFreePorts(6, HOST);
  const ports = { imap, imaps, pop3, pop3s, submission, submissions } as DovecotPorts;
  const path = (name: keyof typeof LAYOUT): string => join(dir, LAYOUT[name]);
  await mkdir(path('baseDir'));
  await mkdir(path('stateDir'));
  await mkdir(path('homeRoot'), { mode: 0o755 });
  await writeFile(path('oauth2Config'), renderOAuth2PassdbConfig(options.introspectionUrl));
  const config = renderDovecotConfig({
    instanceName: `mailbridge-test-${randomBytes(4).toString('hex')}`,
    baseDir: path('baseDir'),
    stateDir: path('stateDir'),
    logPath: path('log'),
    homeRoot: path('homeRoot'),
    oauth2ConfigPath: path('oauth2Config'),
    mechanisms,
    certPath: options.certs.certPath,
    keyPath: options.certs.keyPath,
    dhPath: existsSync(DEBIAN_DH_PATH) ? DEBIAN_DH_PATH : undefined,
    mailUid: mailUser.uid,
    mailGid: mailUser.gid,
    ports,
    relay: options.relay,
    debug: options.debug ?? false,
  });
  await writeFile(path('config'), config);
  return new DovecotInstanceImpl(dir, ports, mailUser, keepFiles);
}

/** Starts a private Dovecot that accepts only bearer tokens, introspected at `options.introspectionUrl`. */
export async function startDovecot(options: DovecotOptions): Promise<DovecotInstance> {
  if (process.getuid?.() !== 0) {
    // Privilege separation needs root: login processes chroot and run as dovenull, mail runs as `mail`.
    throw new Error('startDovecot needs root (run the Dovecot tests as root, as in the CI container)');
  }
  const mechanisms = options.mechanisms ?? DOVECOT_MECHANISMS;
  validateMechanisms(mechanisms);
  const mailUser = lookupMailUser();
  const keepFiles = options.keepFiles ?? process.env.MAILBRIDGE_KEEP_TESTBED === '1';
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  await stopOrphanedInstances(tmpdir(), keepFiles);

  let lastError: unknown;
  for (let attempt = 1; attempt <= MAX_START_ATTEMPTS; attempt += 1) {
    const instance = await prepareInstance(options, mechanisms, mailUser, keepFiles);
    try {
      await instance.start(timeoutMs);
      return instance;
    } catch (error: unknown) {
      lastError = error;
      await instance.stop().catch(() => undefined);
      if (!String(error).includes('Address already in use')) break;
    }
  }
  throw lastError;
}
