import { readFile } from 'node:fs/promises';
import { describeError, ErrorCode, isMailbridgeError, MailbridgeError } from '../errors.ts';
import { defaultDatabasePath } from './database-path.ts';
import { parseDuration } from './duration.ts';
import { formatThreadLine, parseThreadFile } from './import-format.ts';
import { ThreadLimits } from './limits.ts';
import { insertField, type MessageHeader, parseHeader } from './message.ts';
import { formatId, normaliseId, threadIds } from './message-id.ts';
import type { ThreadStore } from './store.ts';

/**
 * The `mailbridge thread …` operations, from standard input to standard output and an exit code. stdout
 * carries only the message (match) or the listing asked for; every diagnostic goes to stderr, which procmail
 * writes to its LOGFILE and mutt shows after a pipe.
 *
 * The store (and with it the native SQLite module) is imported only once the input has been read, so that a
 * broken installation still lets `match` hand the message back.
 */

export interface ThreadIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  homedir: string;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

/** 0 done; 1 failed; 2 unusable arguments; 75 (EX_TEMPFAIL) the input could not be read, so nothing was written. */
export const ThreadExit = { OK: 0, FAILED: 1, USAGE: 2, TEMPFAIL: 75 } as const;

export interface DatabaseFlags {
  db?: string;
}

export interface MatchFlags extends DatabaseFlags {
  list: string;
  header: string;
}

export interface IdsFlags extends DatabaseFlags {
  list: string;
}

export interface ListFlags extends DatabaseFlags {
  list?: string;
}

export interface PruneFlags extends DatabaseFlags {
  list?: string;
  olderThan: string;
}

/**
 * Reads one message, and writes it back with `flags.header` added when one of its IDs is in a thread of the
 * list; the message's own ID then joins that thread. Exits 0 whatever happened once the message is read: a
 * bad flag or a database error is reported on stderr and the message passes through unchanged.
 */
export async function match(flags: MatchFlags, io: ThreadIo): Promise<number> {
  let message: Buffer;
  try {
    message = await readAll(io.stdin);
  } catch (error: unknown) {
    report(io, 'match', `could not read the message: ${describeError(error)}`);
    return ThreadExit.TEMPFAIL;
  }
  let output = message;
  try {
    const field = checkHeaderField(flags.header);
    checkListName(flags.list);
    const header = parseHeader(message);
    const { own, related } = threadIds(header);
    if (own.length + related.length > 0) {
      const store = await openStore(flags, io);
      try {
        if (store.match(flags.list, [...own, ...related], own) && !hasField(header, field)) {
          output = insertField(message, header, field);
        }
      } finally {
        store.close();
      }
    }
  } catch (error: unknown) {
    report(io, 'match', `${describeError(error)}; the message passes through unchanged`);
  }
  try {
    await write(io.stdout, output);
  } catch (error: unknown) {
    report(io, 'match', `could not write the message: ${describeError(error)}`);
    return ThreadExit.TEMPFAIL;
  }
  return ThreadExit.OK;
}

/** Records the thread of the message on stdin (or of the IDs given) in the list. */
export async function add(flags: IdsFlags, ids: string[], io: ThreadIo): Promise<number> {
  return run('add', io, async () => {
    checkListName(flags.list);
    const { own, all } = await idsFromArgumentsOrMessage(ids, io);
    const store = await openStore(flags, io);
    try {
      const result = store.add(flags.list, all);
      const what = own[0] ? `the thread of ${formatId(own[0])}` : 'the thread';
      const how = result.created
        ? 'new thread'
        : result.merged > 0
          ? `joined ${result.merged + 1} threads`
          : 'known thread';
      report(io, 'add', `${flags.list}: ${what} (${how}, ${result.added} new of ${all.length} IDs)`);
    } finally {
      store.close();
    }
  });
}

/** Removes the thread of the message on stdin (or of the IDs given) from the list: unmute, unwatch. */
export async function remove(flags: IdsFlags, ids: string[], io: ThreadIo): Promise<number> {
  return run('remove', io, async () => {
    checkListName(flags.list);
    const { all } = await idsFromArgumentsOrMessage(ids, io);
    const store = await openStore(flags, io);
    try {
      const removed = store.remove(flags.list, all);
      report(
        io,
        'remove',
        removed === 0
          ? `${flags.list}: the thread was not in this list`
          : `${flags.list}: removed ${plural(removed, 'thread')}`,
      );
    } finally {
      store.close();
    }
  });
}

/**
 * With `--list`, that list's threads in the import format (one line per thread); without, one summary line
 * per list.
 */
export async function list(flags: ListFlags, io: ThreadIo): Promise<number> {
  return run('list', io, async () => {
    if (flags.list !== undefined) checkListName(flags.list);
    const store = await openStore(flags, io);
    try {
      const lists = store.lists();
      if (flags.list === undefined) {
        const lines = lists.map(
          (entry) =>
            `${entry.name}: ${plural(entry.threads, 'thread')}, ${plural(entry.ids, 'ID')}` +
            (entry.lastSeen === undefined ? '' : `, last seen ${new Date(entry.lastSeen).toISOString()}`),
        );
        await writeLines(io.stdout, lines);
        return;
      }
      if (!lists.some((entry) => entry.name === flags.list)) {
        const known = lists.map((entry) => `'${entry.name}'`).join(', ') || 'none yet';
        throw new MailbridgeError(
          ErrorCode.THREAD_INVALID_ARGUMENT,
          `there is no list '${flags.list}' in '${store.path}' (lists: ${known})`,
        );
      }
      await writeLines(io.stdout, mapIterable(store.threads(flags.list), formatThreadLine));
    } finally {
      store.close();
    }
  });
}

/** Deletes threads that no message was added to or matched for the given time. */
export async function prune(flags: PruneFlags, io: ThreadIo): Promise<number> {
  return run('prune', io, async () => {
    const olderThanMs = parseDuration(flags.olderThan);
    if (flags.list !== undefined) checkListName(flags.list);
    const store = await openStore(flags, io);
    try {
      const pruned = store.prune(olderThanMs, flags.list);
      const where = flags.list === undefined ? 'all lists' : `'${flags.list}'`;
      report(io, 'prune', `${where}: pruned ${plural(pruned, 'thread')} not seen for ${flags.olderThan}`);
    } finally {
      store.close();
    }
  });
}

/** Adds the threads of a file in the one-thread-per-line format (`-` reads stdin) to the list. */
export async function importFile(flags: IdsFlags, file: string, io: ThreadIo): Promise<number> {
  return run('import', io, async () => {
    checkListName(flags.list);
    let text: string;
    try {
      text = file === '-' ? (await readAll(io.stdin)).toString('utf8') : await readFile(file, 'utf8');
    } catch (error: unknown) {
      throw new MailbridgeError(
        ErrorCode.THREAD_INVALID_ARGUMENT,
        `cannot read '${file}': ${describeError(error)}`,
        { cause: error },
      );
    }
    const parsed = parseThreadFile(text);
    if (parsed.badLines.length > 0) {
      const lines = parsed.badLines.slice(0, 10).join(', ') + (parsed.badLines.length > 10 ? ', …' : '');
      report(
        io,
        'import',
        `'${file}': skipped what is not a Message-ID on ${plural(parsed.badLines.length, 'line')}: ${lines}`,
      );
    }
    const store = await openStore(flags, io);
    try {
      const result = store.import(flags.list, parsed.threads);
      report(
        io,
        'import',
        `${flags.list}: imported ${plural(result.threads, 'thread')} (${plural(result.added, 'new ID')})`,
      );
    } finally {
      store.close();
    }
  });
}

async function run(verb: string, io: ThreadIo, body: () => Promise<void>): Promise<number> {
  try {
    await body();
    return ThreadExit.OK;
  } catch (error: unknown) {
    report(io, verb, describeError(error));
    return isMailbridgeError(error, ErrorCode.THREAD_INVALID_ARGUMENT) ? ThreadExit.USAGE : ThreadExit.FAILED;
  }
}

async function idsFromArgumentsOrMessage(
  ids: string[],
  io: ThreadIo,
): Promise<{ own: string[]; all: string[] }> {
  if (ids.length > 0) {
    const normalised = ids.map((text) => {
      const id = normaliseId(text);
      if (id === undefined) {
        throw new MailbridgeError(ErrorCode.THREAD_INVALID_ARGUMENT, `'${text}' is not a Message-ID`);
      }
      return id;
    });
    return { own: [], all: [...new Set(normalised)] };
  }
  const header = parseHeader(await readAll(io.stdin));
  const { own, related } = threadIds(header);
  if (own.length + related.length === 0) {
    throw new MailbridgeError(
      ErrorCode.THREAD_NO_IDS,
      'the message on standard input has no Message-ID, In-Reply-To or References field' +
        (header.insertAt === undefined ? ' (it has no header at all: in mutt, unset pipe_decode)' : ''),
    );
  }
  return { own, all: [...own, ...related] };
}

async function openStore(flags: DatabaseFlags, io: ThreadIo): Promise<ThreadStore> {
  const path = flags.db ?? defaultDatabasePath({ env: io.env, homedir: io.homedir });
  let store: typeof import('./store.ts');
  try {
    store = await import('./store.ts');
  } catch (error: unknown) {
    throw new MailbridgeError(
      ErrorCode.THREAD_DATABASE,
      `cannot load the SQLite module (${describeError(error)}); reinstall mailbridge, or run npm rebuild better-sqlite3`,
      { cause: error },
    );
  }
  return store.ThreadStore.open({ path, now: io.now });
}

// A list name is typed into procmail recipes and mutt macros; control characters would only be mistakes.
function checkListName(name: string): void {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this rejects
  if (name.length === 0 || name.length > ThreadLimits.listNameChars || /[\x00-\x1f\x7f]/.test(name)) {
    throw new MailbridgeError(
      ErrorCode.THREAD_INVALID_ARGUMENT,
      `invalid list name '${name}': give 1 to ${ThreadLimits.listNameChars} printable characters, such as muted`,
    );
  }
}

// RFC 5322 §3.6.8: a field name is printable US-ASCII without a colon; the value must stay on one line.
function checkHeaderField(field: string): string {
  const trimmed = field.trim();
  if (!/^[!-9;-~]+:/.test(trimmed) || /[\r\n]/.test(trimmed)) {
    throw new MailbridgeError(
      ErrorCode.THREAD_INVALID_ARGUMENT,
      `invalid --header '${field}': give one header field such as 'X-Muted: true'`,
    );
  }
  return trimmed;
}

// Running a message through the same filter twice (a redelivery, two recipes) adds the field once.
function hasField(header: MessageHeader, field: string): boolean {
  const colon = field.indexOf(':');
  const name = field.slice(0, colon).toLowerCase();
  const value = field.slice(colon + 1).trim();
  return header.fields.some(
    (existing) => existing.name.toLowerCase() === name && existing.value.trim() === value,
  );
}

function report(io: ThreadIo, verb: string, text: string): void {
  io.stderr.write(`mailbridge thread ${verb}: ${text}\n`);
}

function plural(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

function* mapIterable<T, U>(items: Iterable<T>, map: (item: T) => U): Generator<U> {
  for (const item of items) yield map(item);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

function write(stream: NodeJS.WritableStream, data: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.once('error', reject);
    stream.write(data, (error?: Error | null) => {
      stream.removeListener('error', reject);
      if (error) reject(error);
      else resolve();
    });
  });
}

// Lines go out in chunks of about 64 KiB: one write per line would make a 100,000-thread list crawl, one
// write of everything would hold it all in memory.
async function writeLines(stream: NodeJS.WritableStream, lines: Iterable<string>): Promise<void> {
  let chunk = '';
  for (const line of lines) {
    chunk += `${line}\n`;
    if (chunk.length >= 64 * 1024) {
      await write(stream, chunk);
      chunk = '';
    }
  }
  if (chunk.length > 0) await write(stream, chunk);
}
