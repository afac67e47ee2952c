import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import {
  type AccountConfig,
  CACHED_KEYS,
  type CachedKey,
  findAccount,
  type GlobalOptions,
  readGlobals,
} from './accounts.ts';
import { writeFileAtomic } from './atomic-write.ts';
import { IniDocument } from './ini.ts';
import { readServers, type ServerConfig } from './servers.ts';

/**
 * The configuration file and the token cache (the same file unless `--cache-store` names another).
 *
 * Saving re-reads the file from disk and changes only the cached token keys of one account section, so a
 * user's edits made while mailbridge runs, and every comment, survive (the original rewrote the whole file
 * from memory at every save and exit). Saves are serialised and atomic.
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

  /** The cached fields of an account: from the cache file when there is one, else from its own section. */
  cachedTokens(section: string): CachedTokens {
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
   * The change is applied in memory at once, so a failing disk never loses a token in the running daemon.
   */
  async saveTokens(section: string, changes: TokenChanges): Promise<void> {
    applyChanges(this.cache ?? this.config, section, changes);
    const path = this.cachePath;
    const save = this.saving.then(async () => {
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
      if (this.cache) this.cache = onDisk;
      else this.config = onDisk;
    });
    this.saving = save.catch(() => undefined);
    return save;
  }
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
