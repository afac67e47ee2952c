import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/**
 * The real mailbridge program (the built `dist/cli/main.js`, exactly what `npx mailbridge` runs) as a child
 * process, with its output captured and, optionally, a "person" who answers the terminal authorisation
 * prompt by visiting the URL and pasting the redirect back.
 */
export interface MailbridgeProcessOptions {
  args: string[];
  /** CA for the test Dovecot's certificate: the proxy verifies upstream certificates. */
  caCertPath?: string;
  cwd?: string;
  /** Visits an authorisation URL and returns the URL the browser was redirected to. */
  authorise?: (url: string) => Promise<string>;
  env?: Record<string, string>;
}

export interface MailbridgeProcess {
  child: ChildProcess;
  /** Everything written to stdout and stderr so far. */
  stdout(): string;
  stderr(): string;
  /** The authorisation URLs the proxy has printed so far. */
  prompts: string[];
  /** Resolves when stderr (the log) contains `text`, or rejects after `timeoutMs`. */
  waitForLog(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** SIGTERM, then the exit code (SIGKILL after 10 s: a hung stop is itself a failure the caller sees). */
  stop(): Promise<number | null>;
}

export const MAILBRIDGE_BIN = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');

export async function startMailbridge(options: MailbridgeProcessOptions): Promise<MailbridgeProcess> {
  const child = spawn(process.execPath, [MAILBRIDGE_BIN, ...options.args], {
    cwd: options.cwd,
    env: {
      ...process.env,
      ...(options.caCertPath ? { NODE_EXTRA_CA_CERTS: options.caCertPath } : {}),
      ...options.env,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const prompts: string[] = [];
  const waiters = new Set<() => void>();
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    for (const waiter of waiters) waiter();
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  lines.on('line', (line) => {
    stdout += `${line}\n`;
    if (!/^https?:\/\/\S+\?\S*client_id=/.test(line)) return;
    prompts.push(line);
    if (!options.authorise) return;
    options.authorise(line).then(
      (redirect) => child.stdin?.write(`${redirect}\n`),
      (error: unknown) => {
        stderr += `\n[test harness] authorising ${line} failed: ${String(error)}\n`;
      },
    );
  });

  const waitForLog = (text: string | RegExp, timeoutMs = 10_000) =>
    new Promise<void>((resolve, reject) => {
      const matches = () => (typeof text === 'string' ? stderr.includes(text) : text.test(stderr));
      if (matches()) return resolve();
      const check = () => {
        if (!matches()) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`mailbridge did not log ${String(text)} within ${timeoutMs} ms; log:\n${stderr}`));
      }, timeoutMs);
      const onExit = () => {
        cleanup();
        reject(
          new Error(`mailbridge exited (${child.exitCode}) before logging ${String(text)}; log:\n${stderr}`),
        );
      };
      const cleanup = () => {
        clearTimeout(timer);
        waiters.delete(check);
        child.off('exit', onExit);
      };
      waiters.add(check);
      child.once('exit', onExit);
    });

  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(timer);
    return code;
  };

  const process_: MailbridgeProcess = {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    prompts,
    waitForLog,
    stop,
  };
  return process_;
}

/** What startAuthorisingMailbridge needs of a test bed: its CA and its OAuth server's "browser". */
interface Bed {
  certs: { caCertPath: string };
  oauth: { authorize(url: string): Promise<string> };
  stop(): Promise<void>;
}

/**
 * mailbridge with `--external-auth` whose terminal prompts are answered by the test bed's OAuth server, as a
 * person would: open the URL, sign in, paste the redirect. Resolves once it is ready.
 */
export async function startAuthorisingMailbridge(
  bed: Bed,
  configPath: string,
  extraArgs: string[] = [],
): Promise<MailbridgeProcess> {
  const mailbridge = await startMailbridge({
    args: ['--no-gui', '--external-auth', '--config-file', configPath, ...extraArgs],
    caCertPath: bed.certs.caCertPath,
    authorise: (url) => bed.oauth.authorize(url),
  });
  await mailbridge.waitForLog('mailbridge ready');
  return mailbridge;
}

/** The end of a test file: mailbridge stops (and must exit 0, or the file fails with its log), then the bed. */
export async function stopMailbridgeAndBed(mailbridge?: MailbridgeProcess, bed?: { stop(): Promise<void> }) {
  const code = await mailbridge?.stop();
  await bed?.stop();
  assert.equal(code ?? 0, 0, `mailbridge exited with ${code}; log:\n${mailbridge?.stderr().slice(-4000)}`);
}
