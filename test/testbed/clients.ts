import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Real clients from Debian, run as child processes with a bounded time. */
export interface ClientResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

export async function curl(args: string[], timeoutMs = 30_000): Promise<ClientResult> {
  try {
    const { stdout, stderr } = await run('curl', ['--silent', '--show-error', ...args], {
      encoding: 'buffer',
      timeout: timeoutMs,
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr: stderr.toString() };
  } catch (error: unknown) {
    const failed = error as { code?: number; stdout?: Buffer; stderr?: Buffer };
    return {
      code: typeof failed.code === 'number' ? failed.code : -1,
      stdout: failed.stdout ?? Buffer.alloc(0),
      stderr: `${failed.stderr?.toString() ?? String(error)} (curl ${args.join(' ')})`,
    };
  }
}

/** Runs a Python 3 script; values go in through the environment so nothing needs quoting. */
export async function python(
  script: string,
  env: Record<string, string>,
  timeoutMs = 60_000,
): Promise<ClientResult> {
  try {
    const { stdout, stderr } = await run('python3', ['-c', script], {
      encoding: 'buffer',
      env: { ...process.env, ...env },
      timeout: timeoutMs,
      maxBuffer: 256 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr: stderr.toString() };
  } catch (error: unknown) {
    const failed = error as { code?: number; stdout?: Buffer; stderr?: Buffer };
    return {
      code: typeof failed.code === 'number' ? failed.code : -1,
      stdout: failed.stdout ?? Buffer.alloc(0),
      stderr: failed.stderr?.toString() ?? String(error),
    };
  }
}
