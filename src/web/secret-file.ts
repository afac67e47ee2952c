import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { describeError, ErrorCode, MailbridgeError } from '../errors.ts';
import { WEB_CONSOLE_SECRET_FILE_OPTION } from './settings.ts';

/**
 * The console's secret from `web_console_secret_file`, so that it survives restarts: Prometheus reads the same
 * file (`credentials_file`), and a bookmarked sign-in link keeps working. A missing file is created with a
 * new random secret, owner-only. A file every user can read is refused: the secret lets its holder authorise
 * accounts and forget tokens. Group access is the owner's choice (Prometheus running as another user).
 */
const MIN_SECRET_CHARS = 16;

export async function loadConsoleSecret(path: string): Promise<string> {
  const fail = (why: string, cause?: unknown) =>
    new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `${WEB_CONSOLE_SECRET_FILE_OPTION} '${path}' ${why}`,
      cause === undefined ? undefined : { cause },
    );
  try {
    const created = await createSecretFile(path);
    if (created) return created;
  } catch (error: unknown) {
    throw fail(`cannot be created: ${describeError(error)}`, error);
  }
  let text: string;
  try {
    if (((await stat(path)).mode & 0o007) !== 0) {
      throw fail(
        `is open to every user: run chmod 600 '${path}', or 640 to share it with a group (the secret lets its holder act on accounts)`,
      );
    }
    text = await readFile(path, 'utf8');
  } catch (error: unknown) {
    if (error instanceof MailbridgeError) throw error;
    throw fail(`cannot be read: ${describeError(error)}`, error);
  }
  const secret = text.split(/\r?\n/, 1)[0]?.trim() ?? '';
  if (secret.length < MIN_SECRET_CHARS || /\s/.test(secret)) {
    throw fail(
      `must hold one secret of at least ${MIN_SECRET_CHARS} characters without spaces on its first line (delete the file to have a new one made)`,
    );
  }
  return secret;
}

/** Writes a new secret unless the file exists; returns it, or undefined when the file was already there. */
async function createSecretFile(path: string): Promise<string | undefined> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, 'wx', 0o600);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
    throw error;
  }
  const secret = randomBytes(32).toString('base64url');
  try {
    await handle.writeFile(`${secret}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  return secret;
}
