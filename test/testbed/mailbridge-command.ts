import { spawn } from 'node:child_process';
import { MAILBRIDGE_BIN } from './mailbridge.ts';

/**
 * One run of a short-lived mailbridge command (token, status, doctor…) from the built program, with a bounded
 * time. With `authorise`, a "person" answers the terminal prompt, which `token --external-auth` writes to
 * standard error: the harness opens the URL and pastes the redirect back on standard input.
 */
export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CommandOptions {
  /** Added to the environment; MAILBRIDGE_PASSWORD is removed from the inherited one unless given here. */
  env?: Record<string, string>;
  /** CA of the test Dovecot: mailbridge verifies server certificates. */
  caCertPath?: string;
  authorise?: (url: string) => Promise<string>;
  cwd?: string;
  timeoutMs?: number;
}

export function runMailbridge(args: string[], options: CommandOptions = {}): Promise<CommandResult> {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.MAILBRIDGE_PASSWORD;
  delete env.NODE_EXTRA_CA_CERTS;
  Object.assign(env, options.caCertPath ? { NODE_EXTRA_CA_CERTS: options.caCertPath } : {}, options.env);
  const child = spawn(process.execPath, [MAILBRIDGE_BIN, ...args], {
    cwd: options.cwd,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (!options.authorise) child.stdin.end();
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    stdout += text;
  });
  child.stderr.setEncoding('utf8').on('data', (text: string) => {
    stderr += text;
    const url = /^(https?:\/\/\S+\?\S*client_id=\S*)$/m.exec(text)?.[1];
    if (!url || !options.authorise) return;
    options.authorise(url).then(
      (redirect) => child.stdin.write(`${redirect}\n`),
      (error: unknown) => {
        stderr += `\n[test harness] authorising ${url} failed: ${String(error)}\n`;
      },
    );
  });
  const timeoutMs = options.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(`mailbridge ${args.join(' ')} did not finish within ${timeoutMs} ms; stderr:\n${stderr}`),
      );
    }, timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
