import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as fsPromises from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { Limits } from '../net/limits.ts';

/**
 * An exclusive lock on a file shared by several processes (two mailbridge daemons, or a daemon and a
 * `mailbridge` command, saving to one token cache), so that each read-modify-write of the file sees the
 * previous one's result and no process's tokens are lost.
 *
 * The lock is a file next to the locked one, `<file>.lock`, holding who owns it: host, boot, pid and the
 * process's start time. It is written under a unique temporary name first and then hard-linked to the lock's
 * name, which fails if the lock exists: the lock appears atomically with its content, so a process killed
 * at any moment never leaves an empty lock that nobody can judge (with O_EXCL and then a write, one did).
 * link(2) is atomic on local file systems and NFS; where it is not supported, O_EXCL is the fallback. Node
 * has no flock(2), and a lock file also shows an operator who holds the lock. It is held only for the milliseconds
 * of one save, never while the daemon runs, so email-oauth2-proxy (which does not know it) is not kept out.
 *
 * A process killed while holding it (kill -9, power cut) leaves the file behind. It is taken over when its
 * owner is provably gone: same host and a different boot, no such pid, or that pid now belongs to a process
 * started at another time (pid reuse). A lock from another host, or one whose content cannot be read, is
 * taken over once it is older than Limits.cacheLockStaleMs. A live owner on this host is never overridden:
 * waiting ends with an error after Limits.cacheLockWaitMs, and the caller keeps its data in memory.
 *
 * Taking over happens under a second, short-lived lock, `<file>.lock.breaking`, created the same way: its
 * holder reads the lock again and removes it only if it is still the stale one it judged. Only a breaker
 * holder removes a stale lock, and a fresh lock can appear only where none is, so a fresh lock is never
 * removed by mistake; putting one back after a rename, as an earlier version did, left a moment when a third
 * process could lock too. A breaker whose holder died mid-takeover is removed once older than the stale limit.
 */
export type LockFs = Pick<
  typeof fsPromises,
  'open' | 'readFile' | 'writeFile' | 'unlink' | 'link' | 'stat' | 'readdir'
>;

export interface FileLockOptions {
  fs?: LockFs;
  waitMs?: number;
  retryMs?: number;
  staleMs?: number;
  /** Milliseconds since the epoch; injected for tests of staleness. */
  now?: () => number;
}

interface Owner {
  host: string;
  boot: string;
  pid: number;
  /** The process's start time in clock ticks since boot (/proc/<pid>/stat field 22); '' where unknown. */
  started: string;
  /** Unique per acquisition, so release never removes a lock that is no longer ours. */
  nonce: string;
  /** When the lock was taken, ISO 8601, for the operator. */
  since: string;
}

/** Runs `task` while holding the lock of `path`; the lock is released whatever `task` does. */
export async function withFileLock<T>(
  path: string,
  task: () => Promise<T>,
  options: FileLockOptions = {},
): Promise<T> {
  const lock = await acquireFileLock(path, options);
  try {
    return await task();
  } finally {
    await lock.release();
  }
}

export interface HeldLock {
  readonly lockPath: string;
  release(): Promise<void>;
}

export async function acquireFileLock(path: string, options: FileLockOptions = {}): Promise<HeldLock> {
  const fs = options.fs ?? fsPromises;
  const now = options.now ?? Date.now;
  const waitMs = options.waitMs ?? Limits.cacheLockWaitMs;
  const retryMs = options.retryMs ?? Limits.cacheLockRetryMs;
  const staleMs = options.staleMs ?? Limits.cacheLockStaleMs;
  const lockPath = `${path}.lock`;
  const self = currentProcess();
  const deadline = now() + waitMs;
  let lastHolder: string | undefined;
  for (;;) {
    const owner: Owner = { ...self, nonce: randomBytes(9).toString('base64url'), since: iso(now()) };
    if (await tryCreate(fs, lockPath, owner)) {
      await sweepLeftovers(fs, lockPath, now(), staleMs);
      return { lockPath, release: () => release(fs, lockPath, owner.nonce) };
    }
    const found = await inspect(fs, lockPath, now);
    if (found === undefined) continue;
    lastHolder = describeHolder(found.owner);
    if (isStale(found, self, now(), staleMs)) {
      await takeOver(fs, lockPath, found.text, self, now, staleMs);
      continue;
    }
    if (now() >= deadline) {
      throw new MailbridgeError(
        ErrorCode.CONFIG_WRITE,
        `cannot lock '${path}': ${lastHolder} has held ${lockPath} for more than ${waitMs / 1000} s; if no other mailbridge is running, delete ${lockPath}`,
      );
    }
    // Jitter keeps two waiting processes from retrying in lockstep.
    await sleep(retryMs / 2 + Math.random() * retryMs);
  }
}

async function tryCreate(fs: LockFs, lockPath: string, owner: Owner): Promise<boolean> {
  const content = `${JSON.stringify(owner)}\n`;
  const temporary = `${lockPath}.${owner.nonce}.tmp`;
  try {
    await fs.writeFile(temporary, content, { mode: 0o600, flag: 'wx' });
  } catch (error: unknown) {
    throw lockError(lockPath, error);
  }
  try {
    await fs.link(temporary, lockPath);
    return true;
  } catch (error: unknown) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') {
      throw lockError(lockPath, error);
    }
    return createExclusive(fs, lockPath, content);
  } finally {
    await fs.unlink(temporary).catch(() => undefined);
  }
}

/** For file systems without hard links (FAT, some FUSE): exclusive create, then the content. */
async function createExclusive(fs: LockFs, lockPath: string, content: string): Promise<boolean> {
  let handle: fsPromises.FileHandle;
  try {
    handle = await fs.open(lockPath, 'wx', 0o600);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw lockError(lockPath, error);
  }
  try {
    await handle.writeFile(content, 'utf8');
  } finally {
    await handle.close();
  }
  return true;
}

function lockError(lockPath: string, error: unknown): MailbridgeError {
  return new MailbridgeError(
    ErrorCode.CONFIG_WRITE,
    `cannot create the lock file ${lockPath}: ${(error as Error).message}`,
    { cause: error },
  );
}

/**
 * A process killed between writing its temporary lock (or breaker) and linking it leaves that file behind;
 * whoever holds the lock removes those older than the stale limit (younger ones may belong to a process at
 * work right now).
 */
async function sweepLeftovers(fs: LockFs, lockPath: string, nowMs: number, staleMs: number): Promise<void> {
  const prefix = `${basename(lockPath)}.`;
  let names: string[];
  try {
    names = await fs.readdir(dirname(lockPath));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith('.tmp')) continue;
    const path = join(dirname(lockPath), name);
    try {
      if (nowMs - (await fs.stat(path)).mtimeMs > staleMs) await fs.unlink(path);
    } catch {
      // Removed by another process meanwhile.
    }
  }
}

interface FoundLock {
  text: string;
  owner: Owner | undefined;
  ageMs: number;
}

/** The current lock file, or undefined when it vanished meanwhile (its owner released it). */
async function inspect(fs: LockFs, lockPath: string, now: () => number): Promise<FoundLock | undefined> {
  try {
    const [text, info] = await Promise.all([fs.readFile(lockPath, 'utf8'), fs.stat(lockPath)]);
    return { text, owner: parseOwner(text), ageMs: now() - info.mtimeMs };
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function isStale(found: FoundLock, self: Omit<Owner, 'nonce' | 'since'>, nowMs: number, staleMs: number) {
  const { owner } = found;
  // Never empty when written by mailbridge (it appears with its content); one that is empty or garbled
  // anyway (a full disk, the O_EXCL fallback) is judged by its age.
  if (!owner) return found.ageMs > staleMs;
  if (owner.host !== self.host) {
    const since = Date.parse(owner.since);
    return Number.isFinite(since) ? nowMs - since > staleMs : found.ageMs > staleMs;
  }
  if (owner.boot && self.boot && owner.boot !== self.boot) return true;
  if (!pidExists(owner.pid)) return true;
  if (owner.started && owner.started !== processStartTime(owner.pid)) return true;
  return false;
}

async function takeOver(
  fs: LockFs,
  lockPath: string,
  staleText: string,
  self: Omit<Owner, 'nonce' | 'since'>,
  now: () => number,
  staleMs: number,
): Promise<void> {
  const breaker = `${lockPath}.breaking`;
  const owner: Owner = { ...self, nonce: randomBytes(9).toString('base64url'), since: iso(now()) };
  if (!(await tryCreate(fs, breaker, owner))) {
    // Another process is taking over right now; one killed while doing so leaves its breaker behind.
    const found = await inspect(fs, breaker, now);
    if (found && found.ageMs > staleMs) await fs.unlink(breaker).catch(() => undefined);
    return;
  }
  try {
    const current = await fs.readFile(lockPath, 'utf8').catch(() => undefined);
    if (current === staleText) await fs.unlink(lockPath).catch(() => undefined);
  } finally {
    await release(fs, breaker, owner.nonce);
  }
}

async function release(fs: LockFs, lockPath: string, nonce: string): Promise<void> {
  try {
    const owner = parseOwner(await fs.readFile(lockPath, 'utf8'));
    if (owner?.nonce !== nonce) return;
    await fs.unlink(lockPath);
  } catch {
    // Gone already, or unreadable: either way it is not ours to remove any more.
  }
}

function parseOwner(text: string): Owner | undefined {
  try {
    const value = JSON.parse(text) as Partial<Owner>;
    if (
      typeof value.host !== 'string' ||
      typeof value.pid !== 'number' ||
      typeof value.nonce !== 'string' ||
      typeof value.since !== 'string'
    )
      return undefined;
    return {
      host: value.host,
      boot: typeof value.boot === 'string' ? value.boot : '',
      pid: value.pid,
      started: typeof value.started === 'string' ? value.started : '',
      nonce: value.nonce,
      since: value.since,
    };
  } catch {
    return undefined;
  }
}

function describeHolder(owner: Owner | undefined): string {
  if (!owner) return 'another process';
  return `process ${owner.pid} on ${owner.host} (since ${owner.since})`;
}

function currentProcess(): Omit<Owner, 'nonce' | 'since'> {
  return {
    host: hostname(),
    boot: readOptional('/proc/sys/kernel/random/boot_id').trim(),
    pid: process.pid,
    started: processStartTime(process.pid),
  };
}

function pidExists(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error: unknown) {
    // EPERM: it exists, as another user's process.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Field 22 of /proc/<pid>/stat, or '' where there is no /proc (then only the pid is checked). */
function processStartTime(pid: number): string {
  const stat = readOptional(`/proc/${pid}/stat`);
  // The command name (field 2) is parenthesised and may contain spaces and parentheses itself.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? '';
}

function readOptional(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
