import { randomBytes } from 'node:crypto';
import { link, mkdir, open, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeError, ErrorCode, MailbridgeError } from '../errors.ts';
import { WEB_CONSOLE_SECRET_FILE_OPTION } from './settings.ts';

/**
 * The console's secret from `web_console_secret_file`, so that it survives restarts: Prometheus reads the same
 * file (`credentials_file`, which sends the whole file), and a bookmarked sign-in link keeps working. A missing
 * file is created with a new random secret, owner-only. A file every user can read is refused: the secret
 * lets its holder authorise accounts and forget tokens. Group access is the owner's choice (Prometheus
 * running as another user).
 */
const MIN_SECRET_CHARS = 16;

export async function loadConsoleSecret(path: string): Promise<string> {
  const fail = (why: string, cause?: unknown) =>
    new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `${WEB_CONSOLE_SECRET_FILE_OPTION} '${path}' ${why}`,
      cause === undefined ? undefined : { cause },
    );
  let created: string | undefined;
  try {
    created = await createSecretFile(path);
  } catch (error: unknown) {
    throw fail(`cannot be created: ${describeError(error)}`, error);
  }
  if (created) return created;

  let text: string;
  try {
    // One handle for the check and the read: the file cannot be swapped in between.
    const handle = await open(path, 'r');
    try {
      if (((await handle.stat()).mode & 0o007) !== 0) {
        throw fail(
          `is open to every user: run chmod 600 '${path}', or 640 to share it with a group (the secret lets its holder act on accounts)`,
        );
      }
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error: unknown) {
    if (error instanceof MailbridgeError) throw error;
    throw fail(`cannot be read: ${describeError(error)}`, error);
  }
  const secret = text.trim();
  if (secret.length < MIN_SECRET_CHARS || /\s/.test(secret)) {
    throw fail(
      `must hold just one secret of at least ${MIN_SECRET_CHARS} characters, without spaces or other lines (delete the file to have a new one made)`,
    );
  }
  return secret;
}

/**
 * Writes a new secret unless the file exists; returns it, or undefined when the file was already there. The
 * secret is written to a temporary file first and linked into place, so no reader (nor the next start, after
 * a crash) ever sees an empty or half-written file, and two processes starting at once keep one secret.
 */
async function createSecretFile(path: string): Promise<string | undefined> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const secret = randomBytes(32).toString('base64url');
  const temporary = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const handle = await open(temporary, 'wx', 0o600);
  try {
    await handle.writeFile(`${secret}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await link(temporary, path);
    return secret;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}
