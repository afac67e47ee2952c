import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { commandLine, isAlive, terminate } from './processes.ts';

// The Dovecot master process of one test instance, as seen from its directory: launching it, finding its pid
// and stopping it, including instances whose test process died without stopping them.

export const INSTANCE_DIR_PREFIX = 'mailbridge-dovecot-';

/** Where everything of an instance lives, relative to its temp dir. */
export const LAYOUT = {
  config: 'dovecot.conf',
  oauth2Config: 'dovecot-oauth2.conf.ext',
  baseDir: 'run',
  stateDir: 'state',
  homeRoot: 'home',
  log: 'dovecot.log',
  launchOutput: 'dovecot.stderr',
  // The pid of the test process that owns the instance; once it is dead the instance is an orphan.
  owner: 'owner.pid',
  // Written by a stop() that keeps the files for a post-mortem, so that no sweep removes them.
  keptMarker: 'KEPT',
} as const;

const LAUNCH_TIMEOUT_MS = 15_000;
const TERM_TIMEOUT_MS = 10_000;
const KILL_TIMEOUT_MS = 3_000;
const MAX_SWEPT_DIRS = 200;
export const LOG_TAIL_LINES = 30;

export function tail(path: string, lines: number): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch (error: unknown) {
    return `(no log at ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)})`;
  }
}

// The daemonized master keeps the stderr it was started with open for good, so waiting for its output to end
// (as execFile does) would hang; its output goes to a file instead and only the launcher's exit is awaited.
export async function launchDovecot(dir: string): Promise<void> {
  const configPath = join(dir, LAYOUT.config);
  const outputPath = join(dir, LAYOUT.launchOutput);
  const output = openSync(outputPath, 'w');
  let child: ChildProcess;
  try {
    child = spawn('dovecot', ['-c', configPath], { stdio: ['ignore', output, output] });
  } finally {
    closeSync(output);
  }
  const failure = await new Promise<string | undefined>((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve(`did not return within ${LAUNCH_TIMEOUT_MS / 1000} s`);
    }, LAUNCH_TIMEOUT_MS);
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve(error.message);
    });
    child.once('exit', (code, signalName) => {
      clearTimeout(timer);
      resolve(code === 0 ? undefined : `exited with ${signalName ?? `code ${code}`}`);
    });
  });
  if (failure !== undefined) {
    const launchOutput = tail(outputPath, LOG_TAIL_LINES);
    const logTail = tail(join(dir, LAYOUT.log), LOG_TAIL_LINES);
    throw new Error(`dovecot -c ${configPath} ${failure}: ${launchOutput}\nlog tail:\n${logTail}`);
  }
}

async function readPid(path: string): Promise<number | undefined> {
  try {
    const pid = Number.parseInt((await readFile(path, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The live master of the instance in `dir`. Only a process whose command line names this instance's config
 * file counts: a stale pid file must never make us signal an unrelated process that reuses the number.
 */
export async function readMasterPid(dir: string): Promise<number | undefined> {
  const pid = await readPid(join(dir, LAYOUT.baseDir, 'master.pid'));
  if (pid === undefined || !isAlive(pid)) return undefined;
  return commandLine(pid)?.includes(join(dir, LAYOUT.config)) ? pid : undefined;
}

/** Stops the master (which stops every other Dovecot process of the instance). */
export async function stopMaster(pid: number, dir: string): Promise<void> {
  if (!(await terminate(pid, TERM_TIMEOUT_MS, KILL_TIMEOUT_MS))) {
    throw new Error(`dovecot master ${pid} did not exit after SIGTERM and SIGKILL; files kept in ${dir}`);
  }
}

/**
 * Stops instances left running by test processes that died without calling stop() (SIGKILL, a crash, a
 * timeout) and removes their directories unless `keepFiles`. Instances of live test processes, and
 * directories kept on purpose, are left alone.
 */
export async function stopOrphanedInstances(root: string, keepFiles: boolean): Promise<void> {
  const names = (await readdir(root)).filter((name) => name.startsWith(INSTANCE_DIR_PREFIX));
  for (const name of names.slice(0, MAX_SWEPT_DIRS)) {
    const dir = join(root, name);
    const owner = await readPid(join(dir, LAYOUT.owner));
    if (owner === undefined || isAlive(owner)) continue;
    const master = await readMasterPid(dir);
    if (master !== undefined) await stopMaster(master, dir);
    if (!keepFiles && !existsSync(join(dir, LAYOUT.keptMarker))) {
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    }
  }
}
