import { randomBytes } from 'node:crypto';
import * as fsPromises from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, MailbridgeError } from '../errors.ts';

/** The few file-system calls used, so tests can make one of them fail. */
export type AtomicWriteFs = Pick<typeof fsPromises, 'open' | 'rename' | 'unlink' | 'realpath'>;

const TEMPORARY_SUFFIX = '.tmp';

export interface AtomicWriteOptions {
  /** Permission bits of the written file; 0o600 because token caches and configs hold client secrets. */
  mode?: number;
  fs?: AtomicWriteFs;
}

function describeOsError(error: unknown): string {
  const { code, message } = error as NodeJS.ErrnoException;
  if (typeof code === 'string') {
    // Node's message repeats the temporary path; the code and its meaning are what an operator needs.
    const meaning = message.startsWith(`${code}: `) ? message.slice(code.length + 2).split(',')[0] : message;
    return `${code} (${meaning})`;
  }
  return error instanceof Error ? error.message : String(error);
}

// Writing through a symlink (a dotfiles-managed config) must replace the file it points to, as Python's
// open(path, 'w') does, not the link itself.
async function resolveTarget(fs: AtomicWriteFs, path: string): Promise<string> {
  try {
    return await fs.realpath(path);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return path;
    throw error;
  }
}

// Only platforms that cannot open or fsync a directory (Windows, some network file systems) refuse this; the
// rename has already happened there, so the write itself succeeded.
const DIRECTORY_FSYNC_UNSUPPORTED = new Set(['EISDIR', 'EINVAL', 'EPERM', 'EACCES', 'ENOTSUP', 'EBADF']);

async function syncDirectory(fs: AtomicWriteFs, directory: string): Promise<void> {
  let handle: fsPromises.FileHandle | undefined;
  try {
    handle = await fs.open(directory, 'r');
    await handle.sync();
  } catch (error: unknown) {
    if (!DIRECTORY_FSYNC_UNSUPPORTED.has((error as NodeJS.ErrnoException).code ?? '')) throw error;
  } finally {
    await handle?.close();
  }
}

/**
 * Replaces `path` with `data` so that a reader (or a crash) sees either the old file or the new one, never a
 * truncated mix — email-oauth2-proxy's `open(path, 'w')` can leave an empty config behind on a full disk.
 * Temporary file in the same directory (rename is atomic only within one file system), created with O_EXCL under
 * an unpredictable name, written and fsynced, renamed over the target, then the directory is fsynced so the rename
 * itself survives a power cut.
 */
export async function writeFileAtomic(
  path: string,
  data: string,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const fs = options.fs ?? fsPromises;
  const mode = options.mode ?? 0o600;
  let step = 'resolving the path';
  let temporary: string | undefined;
  try {
    const target = await resolveTarget(fs, path);
    const directory = dirname(target);
    temporary = join(
      directory,
      `${temporaryPrefix(target)}${randomBytes(9).toString('base64url')}${TEMPORARY_SUFFIX}`,
    );
    step = 'creating a temporary file';
    const handle = await fs.open(temporary, 'wx', mode);
    try {
      step = 'setting its permissions';
      // open()'s mode is filtered by the umask; chmod makes the requested mode exact.
      await handle.chmod(mode);
      step = 'writing';
      await handle.writeFile(data, 'utf8');
      step = 'flushing to disk';
      await handle.sync();
    } finally {
      await handle.close();
    }
    step = 'replacing the file';
    await fs.rename(temporary, target);
    temporary = undefined;
    step = 'flushing the directory';
    await syncDirectory(fs, directory);
  } catch (error: unknown) {
    if (temporary !== undefined) await fs.unlink(temporary).catch(() => undefined);
    const outcome =
      step === 'flushing the directory'
        ? 'the new content is in place but may not survive a power cut'
        : 'the previous file is unchanged';
    throw new MailbridgeError(
      ErrorCode.CONFIG_WRITE,
      `could not write '${path}' (${step} failed: ${describeOsError(error)}); ${outcome}`,
      { cause: error },
    );
  }
}

function temporaryPrefix(target: string): string {
  return `.${basename(target)}.`;
}

/**
 * Removes the temporary files of writes to `path` that never reached their rename (the writer was killed or
 * the machine lost power), once older than `olderThanMs`; returns how many. Call it while holding the file's
 * lock: then no write of ours is under way, and the age spares a writer that does not take the lock.
 */
export async function removeStaleTemporaries(path: string, olderThanMs: number): Promise<number> {
  const target = await fsPromises.realpath(path).catch(() => path);
  const directory = dirname(target);
  const prefix = temporaryPrefix(target);
  let removed = 0;
  let names: string[];
  try {
    names = await fsPromises.readdir(directory);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(TEMPORARY_SUFFIX)) continue;
    const file = join(directory, name);
    try {
      if (Date.now() - (await fsPromises.stat(file)).mtimeMs <= olderThanMs) continue;
      await fsPromises.unlink(file);
      removed += 1;
    } catch {
      // Renamed or removed meanwhile.
    }
  }
  return removed;
}
