import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { describeError, ErrorCode, MailbridgeError } from '../errors.ts';
import { ThreadLimits } from './limits.ts';

/**
 * Threads in named lists (muted, watched, any name), in one SQLite database shared by every procmail process
 * that runs at the same time. A thread is a set of Message-IDs; within a list an ID belongs to one thread, and
 * a message whose IDs reach into two threads joins them.
 *
 * Concurrency: WAL lets readers run while one process writes; every write is one short IMMEDIATE transaction
 * (it takes the write lock at BEGIN, so it waits on the busy timeout instead of failing the way a read
 * transaction that later upgrades to a write does in WAL mode).
 */

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE lists (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE threads (
  id INTEGER PRIMARY KEY,
  list_id INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  -- The last time a message of the thread was added or matched (ms since the epoch): prune looks at this.
  last_seen_at INTEGER NOT NULL
) STRICT;
CREATE INDEX threads_by_list ON threads (list_id, last_seen_at);

CREATE TABLE ids (
  message_id TEXT NOT NULL,
  -- The thread's list, repeated here so that one ID is in at most one thread per list.
  list_id INTEGER NOT NULL,
  thread_id INTEGER NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
  UNIQUE (message_id, list_id)
) STRICT;
CREATE INDEX ids_by_thread ON ids (thread_id);
`;

export interface ThreadStoreOptions {
  /** Created, with its directory, when it does not exist. */
  path: string;
  /** Milliseconds since the epoch; injected so tests control last-seen times. */
  now?: () => number;
  busyTimeoutMs?: number;
}

export interface ListSummary {
  name: string;
  threads: number;
  ids: number;
  /** Milliseconds since the epoch; undefined for a list with no threads. */
  lastSeen: number | undefined;
}

export interface AddResult {
  /** IDs that were not in the list before. */
  added: number;
  /** Threads that became one because the message belonged to several. */
  merged: number;
  created: boolean;
}

export interface ImportResult {
  threads: number;
  added: number;
}

interface Attached {
  /** Threads the IDs were found in before they were joined. */
  found: number;
  added: number;
}

interface ThreadRow {
  id: number;
  created_at: number;
}

export class ThreadStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #now: () => number;
  readonly #statements;

  private constructor(path: string, db: Database.Database, now: () => number) {
    this.path = path;
    this.#db = db;
    this.#now = now;
    this.#statements = {
      listId: db.prepare<[string], { id: number }>('SELECT id FROM lists WHERE name = ?'),
      createList: db.prepare<[string]>('INSERT INTO lists (name) VALUES (?) ON CONFLICT (name) DO NOTHING'),
      // json_each turns one bound JSON array into rows, so any number of IDs is one statement and one
      // index probe per ID on ids (message_id, list_id).
      lookup: db.prepare<[number, string], ThreadRow>(
        `SELECT DISTINCT threads.id, threads.created_at FROM ids JOIN threads ON threads.id = ids.thread_id
         WHERE ids.list_id = ? AND ids.message_id IN (SELECT value FROM json_each(?))
         ORDER BY threads.id`,
      ),
      createThread: db.prepare<[number, number, number]>(
        'INSERT INTO threads (list_id, created_at, last_seen_at) VALUES (?, ?, ?)',
      ),
      touchThread: db.prepare<[number, number, number]>(
        'UPDATE threads SET created_at = min(created_at, ?), last_seen_at = max(last_seen_at, ?) WHERE id = ?',
      ),
      moveIds: db.prepare<[number, number]>('UPDATE ids SET thread_id = ? WHERE thread_id = ?'),
      deleteThread: db.prepare<[number]>('DELETE FROM threads WHERE id = ?'),
      insertId: db.prepare<[string, number, number]>(
        'INSERT INTO ids (message_id, list_id, thread_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING',
      ),
      threadIds: db.prepare<[number], { thread_id: number; message_id: string }>(
        `SELECT ids.thread_id, ids.message_id FROM threads JOIN ids ON ids.thread_id = threads.id
         WHERE threads.list_id = ? ORDER BY threads.id, ids.rowid`,
      ),
      lists: db.prepare<[], { name: string; threads: number; ids: number; last_seen: number | null }>(
        `SELECT name,
           (SELECT count(*) FROM threads WHERE list_id = lists.id) AS threads,
           (SELECT count(*) FROM threads JOIN ids ON ids.thread_id = threads.id
             WHERE threads.list_id = lists.id) AS ids,
           (SELECT max(last_seen_at) FROM threads WHERE list_id = lists.id) AS last_seen
         FROM lists ORDER BY name`,
      ),
      prune: db.prepare<[number]>('DELETE FROM threads WHERE last_seen_at < ?'),
      pruneList: db.prepare<[number, number]>('DELETE FROM threads WHERE last_seen_at < ? AND list_id = ?'),
    };
  }

  /** Opens or creates the database; throws THREAD_DATABASE saying what went wrong and what to do. */
  static open(options: ThreadStoreOptions): ThreadStore {
    const { path } = options;
    let db: Database.Database | undefined;
    try {
      // 0700: the IDs say who the user corresponds with.
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      db = new Database(path, { timeout: options.busyTimeoutMs ?? ThreadLimits.busyTimeoutMs });
      configure(db);
      migrate(db, path);
      return new ThreadStore(path, db, options.now ?? Date.now);
    } catch (error: unknown) {
      db?.close();
      throw databaseError(path, 'opening', error);
    }
  }

  close(): void {
    this.#db.close();
  }

  /** Records a thread: the one any of `ids` is in (several are joined), or a new one. */
  add(list: string, ids: readonly string[]): AddResult {
    return this.#write('adding to', () => {
      const { found, added } = this.#attach(this.#ensureList(list), ids, ids, true) as Attached;
      return { added, merged: Math.max(0, found - 1), created: found === 0 };
    });
  }

  /**
   * Whether any of `ids` is in a thread of `list`. On a match, `learn` (the message's own ID) joins that
   * thread, so a later reply that cites only this message still matches, and the thread counts as seen now.
   */
  match(list: string, ids: readonly string[], learn: readonly string[]): boolean {
    if (ids.length === 0) return false;
    // Most mail matches nothing: answer that from a read, without taking the write lock.
    const found = this.#read('reading', () => {
      const listId = this.#statements.listId.get(list)?.id;
      return listId !== undefined && this.#statements.lookup.all(listId, JSON.stringify(ids)).length > 0;
    });
    if (!found) return false;
    return this.#write('updating', () => {
      const listId = this.#statements.listId.get(list)?.id;
      // Looked up again under the write lock: the thread may have been removed or pruned in between.
      return listId !== undefined && this.#attach(listId, ids, learn, false) !== undefined;
    });
  }

  /** Removes every thread of `list` that any of `ids` is in; returns how many. */
  remove(list: string, ids: readonly string[]): number {
    return this.#write('removing from', () => {
      const listId = this.#statements.listId.get(list)?.id;
      if (listId === undefined) return 0;
      const threads = this.#statements.lookup.all(listId, JSON.stringify(ids));
      for (const thread of threads) this.#statements.deleteThread.run(thread.id);
      return threads.length;
    });
  }

  /** The threads of `list`, oldest first, each as its IDs in the order they were learnt. */
  *threads(list: string): Generator<string[]> {
    const listId = this.#read('reading', () => this.#statements.listId.get(list)?.id);
    if (listId === undefined) return;
    let current: number | undefined;
    let ids: string[] = [];
    try {
      for (const row of this.#statements.threadIds.iterate(listId)) {
        if (row.thread_id !== current) {
          if (ids.length > 0) yield ids;
          current = row.thread_id;
          ids = [];
        }
        ids.push(row.message_id);
      }
    } catch (error: unknown) {
      throw databaseError(this.path, 'reading', error);
    }
    if (ids.length > 0) yield ids;
  }

  lists(): ListSummary[] {
    return this.#read('reading', () =>
      this.#statements.lists.all().map((row) => ({
        name: row.name,
        threads: row.threads,
        ids: row.ids,
        lastSeen: row.last_seen ?? undefined,
      })),
    );
  }

  /** Deletes threads not added to or matched for `olderThanMs`, in one list or all; returns how many. */
  prune(olderThanMs: number, list?: string): number {
    const cutoff = this.#now() - olderThanMs;
    return this.#write('pruning', () => {
      if (list === undefined) return this.#statements.prune.run(cutoff).changes;
      const listId = this.#statements.listId.get(list)?.id;
      return listId === undefined ? 0 : this.#statements.pruneList.run(cutoff, listId).changes;
    });
  }

  /** Adds many threads in one transaction (an import file); threads that share IDs are joined. */
  import(list: string, threads: Iterable<readonly string[]>): ImportResult {
    return this.#write('importing into', () => {
      const listId = this.#ensureList(list);
      let count = 0;
      let added = 0;
      for (const ids of threads) {
        if (ids.length === 0) continue;
        added += (this.#attach(listId, ids, ids, true) as Attached).added;
        count += 1;
      }
      return { threads: count, added };
    });
  }

  #ensureList(name: string): number {
    this.#statements.createList.run(name);
    return (this.#statements.listId.get(name) as { id: number }).id;
  }

  /**
   * Inside a write transaction: finds the threads `lookup` reaches, joins them into the oldest, adds `learn`
   * to it and marks it seen. Creates the thread when none is found and `create` is set; otherwise returns
   * undefined then.
   */
  #attach(
    listId: number,
    lookup: readonly string[],
    learn: readonly string[],
    create: boolean,
  ): Attached | undefined {
    const now = this.#now();
    const [first, ...others] = this.#statements.lookup.all(listId, JSON.stringify(lookup));
    let threadId: number;
    if (first === undefined) {
      if (!create) return undefined;
      threadId = Number(this.#statements.createThread.run(listId, now, now).lastInsertRowid);
    } else {
      threadId = first.id;
      for (const other of others) {
        this.#statements.moveIds.run(threadId, other.id);
        this.#statements.deleteThread.run(other.id);
      }
      const created = Math.min(first.created_at, ...others.map((other) => other.created_at));
      this.#statements.touchThread.run(created, now, threadId);
    }
    let added = 0;
    for (const id of learn) added += this.#statements.insertId.run(id, listId, threadId).changes;
    return { found: first === undefined ? 0 : others.length + 1, added };
  }

  #read<T>(action: string, run: () => T): T {
    try {
      return run();
    } catch (error: unknown) {
      throw databaseError(this.path, action, error);
    }
  }

  #write<T>(action: string, run: () => T): T {
    try {
      return this.#db.transaction(run).immediate();
    } catch (error: unknown) {
      throw databaseError(this.path, action, error);
    }
  }
}

function configure(db: Database.Database): void {
  // WAL is a property of the file: set once, by whichever process creates the database.
  if (db.pragma('journal_mode', { simple: true }) !== 'wal') db.pragma('journal_mode = WAL');
  // In WAL mode NORMAL never corrupts the database; a power cut can lose the last transactions only.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
}

function migrate(db: Database.Database, path: string): void {
  if (db.pragma('user_version', { simple: true }) === SCHEMA_VERSION) return;
  db.transaction(() => {
    // Read again under the write lock: another process may have created the schema meanwhile.
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version === SCHEMA_VERSION) return;
    if (version > SCHEMA_VERSION) {
      throw new MailbridgeError(
        ErrorCode.THREAD_DATABASE,
        `thread database '${path}' was written by a newer mailbridge (schema ${version}); upgrade mailbridge`,
      );
    }
    const objects = db.prepare('SELECT count(*) AS n FROM sqlite_schema').get() as { n: number };
    if (objects.n > 0) {
      throw new MailbridgeError(
        ErrorCode.THREAD_DATABASE,
        `'${path}' is a SQLite database but not mailbridge's thread database; give another --db path`,
      );
    }
    db.exec(SCHEMA);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  }).immediate();
}

const HINTS: Record<string, string> = {
  SQLITE_BUSY: 'another process held the write lock for the whole busy timeout; try again',
  SQLITE_CANTOPEN: 'check that the file and its directory exist and are writable by this user',
  SQLITE_READONLY: 'the file or its directory is not writable by this user',
  SQLITE_READONLY_DIRECTORY: 'the directory is not writable by this user (SQLite needs it for the WAL file)',
  SQLITE_NOTADB: 'the file is not a SQLite database; give another --db path',
  SQLITE_CORRUPT: 'the database is damaged; move it aside and import the threads again',
  SQLITE_FULL: 'the disk is full',
  EACCES: 'the directory cannot be created or entered by this user',
};

function databaseError(path: string, action: string, error: unknown): MailbridgeError {
  if (error instanceof MailbridgeError) return error;
  const code = (error as { code?: unknown }).code;
  const hint = typeof code === 'string' ? HINTS[code] : undefined;
  return new MailbridgeError(
    ErrorCode.THREAD_DATABASE,
    `${action} thread database '${path}' failed: ${describeError(error)}${hint ? `; ${hint}` : ''}`,
    { cause: error },
  );
}
