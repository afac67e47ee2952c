import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

const POLL_INTERVAL_MS = 50;

/**
 * Whether `pid` is a live process. A zombie counts as gone: a daemon we started is re-parented to PID 1,
 * which in some containers never reaps, so `kill(pid, 0)` alone would report it alive forever.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw error;
  }
  try {
    // The state follows the parenthesised command name, which may itself contain spaces or parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The NUL-separated argv of `pid`, or undefined when it has gone (or /proc is unavailable). */
export function commandLine(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((arg) => arg !== '');
  } catch {
    return undefined;
  }
}

/** Resolves true once `pid` is gone, false if it is still alive after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  const maxPolls = Math.ceil(timeoutMs / POLL_INTERVAL_MS) + 1;
  for (let poll = 0; poll < maxPolls && Date.now() < deadline; poll += 1) {
    if (!isAlive(pid)) return true;
    await sleep(POLL_INTERVAL_MS);
  }
  return !isAlive(pid);
}

/** Sends `signal` to `pid`, ignoring a process that has already gone. */
export function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

const FATAL_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Runs `cleanup` (synchronously) if this process exits or is told to stop by a signal before the returned
 * function unregisters it. Node skips 'exit' handlers on a fatal signal, so signals are caught too and
 * re-raised afterwards when nobody else listens, keeping their default effect of ending the process.
 */
export function onProcessDeath(cleanup: () => void): () => void {
  const onSignal = (name: NodeJS.Signals): void => {
    unregister();
    cleanup();
    if (process.listenerCount(name) === 0) process.kill(process.pid, name);
  };
  const unregister = (): void => {
    process.off('exit', cleanup);
    for (const name of FATAL_SIGNALS) process.off(name, onSignal);
  };
  process.once('exit', cleanup);
  for (const name of FATAL_SIGNALS) process.on(name, onSignal);
  return unregister;
}

/** SIGTERM, then SIGKILL if needed; resolves false only if `pid` survives both. */
export async function terminate(pid: number, termTimeoutMs: number, killTimeoutMs: number): Promise<boolean> {
  signal(pid, 'SIGTERM');
  if (await waitForExit(pid, termTimeoutMs)) return true;
  signal(pid, 'SIGKILL');
  return waitForExit(pid, killTimeoutMs);
}
