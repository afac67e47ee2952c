import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Debian's mutt, unattended, driven by `push`: runMutt runs it with any muttrc and keys (the README's macros),
 * and muttReadFirstMessage opens an IMAP INBOX logging in with OAuth itself (imap_authenticators xoauth2 or
 * oauthbearer, the token from imap_oauth_refresh_command), pipes the first message to a file and quits.
 *
 * mutt needs a terminal (with standard input not a tty it turns into a batch mail sender), so it runs under
 * `script`, which gives it a pseudo-terminal. Time is bounded twice: `timeout -s KILL` around mutt, and the
 * execFile timeout around `script`; a certificate prompt or a hung login therefore ends as a failure.
 */
export interface MuttOptions {
  host?: string;
  port: number;
  user: string;
  authenticator: 'xoauth2' | 'oauthbearer';
  /** The shell command mutt runs for a token; it must not contain a single quote. */
  refreshCommand: string;
  caCertPath: string;
  /** Added to mutt's environment, which the refresh command inherits. */
  env?: Record<string, string>;
  timeoutMs?: number;
}

export interface MuttResult {
  code: number;
  /** The first INBOX message as mutt piped it, or undefined when mutt never got that far. */
  message: Buffer | undefined;
  /** What mutt drew on its terminal, escape sequences removed: the place to look when it failed. */
  screen: string;
}

/** Terminal control sequences (CSI, charset selection, keypad modes) in mutt's screen output. */
const ESCAPE_SEQUENCES = new RegExp(`${String.fromCharCode(27)}(\\[[0-9;?]*[A-Za-z]|[()][A-Z0-9]|[=>])`, 'g');

/** A single-quoted word for /bin/sh. */
function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

/** Settings that keep mutt from needing a person: no caches, no prompts, no waiting for a key after a pipe. */
const UNATTENDED = [
  'set header_cache = ""',
  'set message_cachedir = ""',
  'set wait_key = no',
  'set pipe_decode = no',
  'set mail_check_stats = no',
  'set quit = yes',
  'set timeout = 5',
];

export interface MuttRun {
  /** Working directory and $HOME for mutt; the muttrc is written there. */
  dir: string;
  /** Lines of the muttrc, after the unattended settings (so they can override them). */
  muttrc: string[];
  /** Keys for mutt's `push`, in its syntax (`<quit>`, `<enter>`); they may trigger macros. */
  keys: string;
  env?: Record<string, string>;
  timeoutMs?: number;
}

/** Runs mutt once on a pseudo-terminal with `keys` pushed; returns its exit code and what it drew. */
export async function runMutt(options: MuttRun): Promise<{ code: number; screen: string }> {
  if (options.keys.includes('"')) throw new Error('mutt: pushed keys cannot hold a double quote');
  const rc = join(options.dir, 'muttrc');
  await writeFile(rc, [...UNATTENDED, ...options.muttrc, ''].join('\n'), { mode: 0o600 });
  const timeoutS = Math.ceil((options.timeoutMs ?? 30_000) / 1000);
  // --foreground keeps mutt in the terminal's foreground process group; otherwise its first terminal
  // setting stops it with SIGTTOU whenever the shell `script` starts does not ignore that signal (dash).
  const command = [
    'timeout',
    '--foreground',
    '-s',
    'KILL',
    String(timeoutS),
    'mutt',
    '-n',
    '-F',
    rc,
    '-e',
    `push "${options.keys}"`,
  ]
    .map(shellQuote)
    .join(' ');
  try {
    const result = await run('script', ['-qec', command, '/dev/null'], {
      cwd: options.dir,
      env: { ...process.env, HOME: options.dir, TERM: 'xterm', ...options.env },
      timeout: (timeoutS + 10) * 1000,
      killSignal: 'SIGKILL',
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, screen: result.stdout.replace(ESCAPE_SEQUENCES, '') };
  } catch (error: unknown) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    const screen = `${failed.stdout ?? ''}${failed.stderr ?? String(error)}`;
    return {
      code: typeof failed.code === 'number' ? failed.code : -1,
      screen: screen.replace(ESCAPE_SEQUENCES, ''),
    };
  }
}

export async function muttReadFirstMessage(options: MuttOptions): Promise<MuttResult> {
  if (options.refreshCommand.includes("'"))
    throw new Error('mutt: the refresh command cannot hold a single quote');
  const dir = await mkdtemp(join(tmpdir(), 'mailbridge-mutt-'));
  try {
    const out = join(dir, 'message.eml');
    const { code, screen } = await runMutt({
      dir,
      muttrc: [
        `set imap_user = "${options.user}"`,
        `set imap_authenticators = "${options.authenticator}"`,
        `set imap_oauth_refresh_command = '${options.refreshCommand}'`,
        `set folder = "imaps://${options.host ?? '127.0.0.1'}:${options.port}/"`,
        'set spoolfile = "+INBOX"',
        `set ssl_ca_certificates_file = "${options.caCertPath}"`,
      ],
      keys: `<pipe-message>cat > ${out}<enter><quit>`,
      env: options.env,
      timeoutMs: options.timeoutMs,
    });
    const message = await readFile(out).catch(() => undefined);
    return { code, message, screen };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
