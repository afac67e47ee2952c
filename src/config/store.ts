import { readFileSync, statSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Limits } from '../net/limits.ts';
import {
  type AccountConfig,
  CACHED_KEYS,
  type CachedKey,
  findAccount,
  type GlobalOptions,
  isAccountSection,
  readGlobals,
} from './accounts.ts';
import { removeStaleTemporaries, writeFileAtomic } from './atomic-write.ts';
import { withFileLock } from './file-lock.ts';
import { IniDocument } from './ini.ts';
import { readServers, type ServerConfig } from './servers.ts';

/**
 * The configuration file and the token cache (the same file unless `--cache-store` names another).
 *
 * Saving re-reads the file from disk and changes only the cached token keys of one account section, so a
 * user's edits made while mailbridge runs, and every comment, survive (the original rewrote the whole file
 * from memory at every save and exit). Saves are serialised and atomic, and each read-modify-write holds
 * `<file>.lock` (see file-lock.ts), so processes sharing one cache never lose each other's tokens; tokens
 * another process wrote are picked up at the next login. Other settings change only at reload() (SIGHUP).
 */
export type CachedTokens = Partial<Record<CachedKey, string>>;

/**
 * Cached keys to set (a string) or remove (undefined); `client_secret` too, which
 * encrypt_client_secret_on_first_use removes from the account's own section once it is stored encrypted.
 */
export type TokenChanges = Partial<Record<CachedKey | 'client_secret', string | undefined>>;

export interface ConfigStoreOptions {
  configPath: string;
  cachePath?: string;
  logger: Logger;
}

export class ConfigStore {
  readonly configPath: string;
  readonly cachePath: string;
  private config: IniDocument;
  private cache: IniDocument | undefined;
  private saving: Promise<void> = Promise.resolve();
  /** Changes per section that are in memory but not yet on disk (a save failed or is still queued). */
  private readonly unsaved = new Map<string, TokenChanges>();
  /** dev:ino:size:mtime of the token file as last read or written, to notice another process's writes. */
  private diskIdentity: string | undefined;

  private constructor(options: ConfigStoreOptions, config: IniDocument, cache: IniDocument | undefined) {
    this.configPath = resolve(options.configPath);
    this.cachePath = resolve(options.cachePath ?? options.configPath);
    this.config = config;
    this.cache = cache;
  }

  static async load(options: ConfigStoreOptions): Promise<ConfigStore> {
    const config = await readIni(options.configPath, { required: true });
    const separateCache =
      options.cachePath !== undefined && resolve(options.cachePath) !== resolve(options.configPath);
    const cache = separateCache ? await readIni(options.cachePath as string, { required: false }) : undefined;
    const store = new ConfigStore(options, config, cache);
    store.servers();
    return store;
  }

  get document(): IniDocument {
    return this.config;
  }

  servers(): ServerConfig[] {
    return readServers(this.config, this.configPath);
  }

  globals(): GlobalOptions {
    return readGlobals(this.config);
  }

  account(username: string): AccountConfig | undefined {
    return findAccount(this.config, username, this.globals().allowCatchAllAccounts);
  }

  /**
   * Users of catch-all sections known only to a separate token cache: with `--cache-store`, the section added
   * for each user an `[@domain]` or `[@]` section serves lives there, not in the configuration.
   */
  cacheOnlyAccounts(): string[] {
    if (!this.cache) return [];
    this.syncTokensFromDisk();
    return this.cache.sections().filter((section) => {
      if (!isAccountSection(section) || section.startsWith('@') || this.config.hasSection(section))
        return false;
      try {
        return this.account(section) !== undefined;
      } catch {
        // A catch-all section serves it but is incomplete: listed, so that the caller shows the problem.
        return true;
      }
    });
  }

  /** The cached fields of an account: from the cache file when there is one, else from its own section. */
  cachedTokens(section: string): CachedTokens {
    this.syncTokensFromDisk();
    const source = this.cache ?? this.config;
    const tokens: CachedTokens = {};
    if (!source.hasSection(section)) return tokens;
    for (const key of CACHED_KEYS) {
      const value = source.get(section, key);
      if (value !== undefined && value !== '') tokens[key] = value;
    }
    return tokens;
  }

  /**
   * Sets (string) or removes (undefined) cached fields of one account and writes the file atomically.
   * The change is applied in memory at once, so a failing disk never loses a token in the running daemon;
   * changes a failed save could not write are written with the next save of that account, or by flush().
   */
  async saveTokens(section: string, changes: TokenChanges): Promise<void> {
    applyChanges(this.cache ?? this.config, section, changes);
    this.unsaved.set(section, { ...this.unsaved.get(section), ...changes });
    const save = this.saving.then(() => this.writeUnsaved(section));
    this.saving = save.catch(() => undefined);
    return save;
  }

  /** Writes every change still only in memory, and waits for saves under way: for a clean exit. */
  async flush(): Promise<void> {
    const sections = [...this.unsaved.keys()];
    await Promise.all(sections.map((section) => this.saveTokens(section, {})));
    await this.saving;
  }

  /**
   * Reads the configuration file again (SIGHUP). `prepare` sees the new servers and may refuse them by
   * throwing (a certificate that does not load); only when it succeeds does the new configuration replace
   * the running one, so a mistake in the file changes nothing. Token changes not yet saved are kept.
   */
  async reload<T>(prepare: (servers: ServerConfig[]) => Promise<T>): Promise<T> {
    const run = this.saving.then(async () => {
      const config = await readIni(this.configPath, { required: true });
      const servers = readServers(config, this.configPath);
      readGlobals(config);
      const prepared = await prepare(servers);
      if (!this.cache) {
        for (const [section, changes] of this.unsaved) applyChanges(config, section, changes);
        this.diskIdentity = undefined;
      }
      this.config = config;
      return prepared;
    });
    this.saving = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  private async writeUnsaved(section: string): Promise<void> {
    const changes = this.unsaved.get(section);
    // An earlier queued save of this section has written these changes already.
    if (!changes) return;
    const path = this.cachePath;
    // The lock belongs to the file itself, whatever path (symlink) leads to it.
    const target = await realpath(path).catch(() => path);
    await withFileLock(target, async () => {
      const onDisk = await readIni(path, { required: this.cache === undefined }).catch((error: unknown) => {
        // The file changed on disk into something we cannot parse (a user mid-edit): keep the user's text
        // and our tokens in memory; the next save tries again.
        throw new MailbridgeError(
          ErrorCode.CONFIG_WRITE,
          `not saving tokens for '${section}' to ${path}: ${(error as Error).message}`,
          { cause: error },
        );
      });
      applyChanges(onDisk, section, changes);
      await writeFileAtomic(path, onDisk.toString(), { mode: 0o600 });
      // Still under the lock: nobody else can have written since, so this identity is our own write's.
      this.diskIdentity = identityOf(await stat(path));
      await removeStaleTemporaries(path, Limits.cacheLockStaleMs);
      if (this.unsaved.get(section) === changes) this.unsaved.delete(section);
      this.adoptTokens(onDisk);
    });
  }

  /**
   * Another process sharing the token file (a second daemon, a `mailbridge` command) may have saved newer
   * tokens, for instance a rotated refresh token: take its token fields before using ours. Only the token
   * fields: other edits of a shared config file wait for reload().
   */
  private syncTokensFromDisk(): void {
    let identity: string;
    try {
      identity = identityOf(statSync(this.cachePath));
    } catch {
      return;
    }
    if (identity === this.diskIdentity) return;
    // Recorded even when the file does not parse: a half-edited file is read again once it changes again.
    this.diskIdentity = identity;
    let onDisk: IniDocument;
    try {
      onDisk = IniDocument.parse(readFileSync(this.cachePath, 'utf8'), this.cachePath);
    } catch {
      return;
    }
    this.adoptTokens(onDisk);
  }

  /** Copies the token fields of `onDisk` into memory, except for sections with changes not yet saved. */
  private adoptTokens(onDisk: IniDocument): void {
    const memory = this.cache ?? this.config;
    for (const section of onDisk.sections()) {
      if (this.unsaved.has(section)) continue;
      // In a shared config file, a section the running configuration does not know yet waits for reload().
      if (!this.cache && !memory.hasSection(section)) continue;
      for (const key of CACHED_KEYS) {
        const value = onDisk.get(section, key);
        if (value === memory.get(section, key)) continue;
        if (!memory.hasSection(section)) memory.addSection(section);
        if (value === undefined) memory.remove(section, key);
        else memory.set(section, key, value);
      }
    }
  }
}

function identityOf(info: { dev: number; ino: number; size: number; mtimeMs: number }): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeMs}`;
}

function applyChanges(doc: IniDocument, section: string, changes: TokenChanges): void {
  if (!doc.hasSection(section)) doc.addSection(section);
  for (const [key, value] of Object.entries(changes)) {
    if (value === undefined) doc.remove(section, key);
    else doc.set(section, key, value);
  }
}

async function readIni(path: string, options: { required: boolean }): Promise<IniDocument> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error: unknown) {
    if (!options.required && (error as NodeJS.ErrnoException).code === 'ENOENT')
      return IniDocument.parse('', path);
    throw new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `cannot read configuration file ${path}: ${(error as Error).message}`,
      { cause: error },
    );
  }
  return IniDocument.parse(text, path);
}
