import type { Authoriser } from '../authorise/authoriser.ts';
import type { AccountConfig } from '../config/accounts.ts';
import type { CachedTokens, ConfigStore } from '../config/store.ts';
import { describeError, ErrorCode, isMailbridgeError, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Limits } from '../net/limits.ts';
import { buildAuthorisationRequest } from '../oauth/authorisation-url.ts';
import type { TokenClient, TokenSet } from '../oauth/token-client.ts';
import { Cryptographer, CURRENT_ITERATIONS } from './cryptographer.ts';
import type { KeyDeriver } from './key-derivation.ts';
import { KeyedLock } from './keyed-lock.ts';

/**
 * From a client's login name and password to a usable access token (email-oauth2-proxy §3.4), with these
 * differences: a wrong password keeps the tokens unless the operator asked otherwise; a network failure is
 * never taken for a dead token; a refused refresh token is replaced only when new tokens arrive.
 */
export interface TokenServiceOptions {
  store: ConfigStore;
  deriver: KeyDeriver;
  tokenClient: TokenClient;
  authoriser: Authoriser;
  logger: Logger;
  /** Unix seconds; injected so tests need no sleeps. */
  now?: () => number;
  authorisationWaitMs?: number;
}

export interface AccessGrant {
  account: AccountConfig;
  accessToken: string;
  /** Whether the token came from the cache as it was (so a rejection upstream is worth one refresh). */
  fromCache: boolean;
}

export interface TokenRequestOptions {
  /**
   * The server refused this access token although it looked valid: replace it even before its expiry. When
   * another login has replaced it meanwhile, the newer token is used, so a burst of refused logins costs one
   * refresh, not one each.
   */
  rejectedAccessToken?: string;
}

/** Refresh this long before expiry, as the original (TOKEN_EXPIRY_MARGIN). */
const EXPIRY_MARGIN_S = 600;
/** The original's default when the provider gives no expires_in. */
const DEFAULT_LIFETIME_S = 3600;

export class TokenService {
  private readonly lock = new KeyedLock();
  private readonly now: () => number;

  constructor(private readonly options: TokenServiceOptions) {
    this.now = options.now ?? (() => Math.floor(Date.now() / 1000));
  }

  async accessToken(
    username: string,
    password: string,
    options: TokenRequestOptions = {},
  ): Promise<AccessGrant> {
    if (!password) {
      throw new MailbridgeError(
        ErrorCode.TOKEN_WRONG_PASSWORD,
        `no password given for account '${username}'`,
      );
    }
    const account = this.options.store.account(username);
    if (!account) {
      throw new MailbridgeError(
        ErrorCode.ACCOUNT_UNKNOWN,
        `no account '${username}' in ${this.options.store.configPath}: add a section [${username}] with permission_url, token_url, oauth2_scope, redirect_uri, client_id and client_secret`,
      );
    }
    return this.lock.run(account.section, () => this.obtain(account, password, options));
  }

  private async obtain(
    account: AccountConfig,
    password: string,
    options: TokenRequestOptions,
  ): Promise<AccessGrant> {
    const logger = this.options.logger.child({ account: account.username });
    const cached = this.options.store.cachedTokens(account.section);
    let crypto = await this.cryptographer(password, cached);
    const decrypt = (value: string) => crypto.decrypt(value);
    let clientSecret: string | undefined;
    try {
      await this.rotateIfNeeded(account, crypto, cached);
      clientSecret =
        account.clientSecret ??
        (account.clientSecretEncrypted ? decrypt(account.clientSecretEncrypted) : undefined);
    } catch (error: unknown) {
      throw this.wrongPassword(account, error);
    }

    const now = this.now();
    const expiry = Number(cached.access_token_expiry ?? 0);
    try {
      if (cached.access_token && expiry - now >= EXPIRY_MARGIN_S) {
        const accessToken = decrypt(cached.access_token);
        if (accessToken !== options.rejectedAccessToken) return { account, accessToken, fromCache: true };
      }
      if (cached.refresh_token) {
        const refreshToken = decrypt(cached.refresh_token);
        try {
          const tokens = await this.options.tokenClient.refresh(account, clientSecret, refreshToken);
          logger.info(`refreshed the access token of account '${account.username}'`);
          return { account, accessToken: await this.save(account, crypto, tokens), fromCache: false };
        } catch (error: unknown) {
          const grantInvalid = isMailbridgeError(error, ErrorCode.OAUTH_GRANT_INVALID);
          const stillValid = cached.access_token && expiry > now && options.rejectedAccessToken === undefined;
          // A token that still works is used to its end, whatever happened to the refresh: nobody is asked
          // to authorise while mail can still flow.
          if (stillValid && (grantInvalid || isMailbridgeError(error, ErrorCode.OAUTH_NETWORK))) {
            logger.warn(
              { error: describeError(error) },
              `refresh failed; the current access token of '${account.username}' stays in use until it expires`,
            );
            return { account, accessToken: decrypt(cached.access_token as string), fromCache: true };
          }
          if (!grantInvalid) throw error;
          logger.warn(
            { error: error.message },
            `the refresh token of account '${account.username}' was refused: it must be authorised again`,
          );
        }
      } else if (cached.access_token) {
        // Without a refresh token, a stale access token still proves the password before we ask the user.
        decrypt(cached.access_token);
      }
    } catch (error: unknown) {
      if (!isMailbridgeError(error, ErrorCode.TOKEN_WRONG_PASSWORD)) throw error;
      if (!this.options.store.globals().deleteAccountTokenOnPasswordError)
        throw this.wrongPassword(account, error);
      logger.warn(
        `wrong password for account '${account.username}': deleting its cached tokens (delete_account_token_on_password_error = True)`,
      );
      await this.persist(account, {
        access_token: undefined,
        access_token_expiry: undefined,
        refresh_token: undefined,
        token_salt: undefined,
        token_iterations: undefined,
      });
      crypto = await this.cryptographer(password, {});
    }
    return { account, accessToken: await this.authorise(account, crypto, clientSecret), fromCache: false };
  }

  private async authorise(account: AccountConfig, crypto: Cryptographer, clientSecret: string | undefined) {
    if (account.flow !== 'authorization_code') {
      throw new MailbridgeError(
        ErrorCode.ACCOUNT_INCOMPLETE,
        `account '${account.username}': oauth2_flow '${account.flow}' is not supported yet; use the authorisation-code flow (permission_url and redirect_uri)`,
      );
    }
    const request = buildAuthorisationRequest(account);
    const waitMs = this.options.authorisationWaitMs ?? Limits.authorisationWaitMs;
    const signal = AbortSignal.timeout(waitMs);
    let callback: URLSearchParams;
    try {
      callback = await this.options.authoriser.authorise(account, request, signal);
    } catch (error: unknown) {
      if (signal.aborted) {
        throw new MailbridgeError(
          ErrorCode.OAUTH_AUTHORISATION_TIMEOUT,
          `account '${account.username}' was not authorised within ${waitMs / 1000} s`,
        );
      }
      throw error;
    }
    const tokens = await this.options.tokenClient.exchangeCode(
      account,
      clientSecret,
      callback,
      request.state,
      request.codeVerifier,
    );
    if (!tokens.refreshToken) {
      this.options.logger.warn(
        { account: account.username },
        `no refresh token returned for account '${account.username}': it must be authorised again when the access token expires (does oauth2_scope allow offline use, e.g. offline_access?)`,
      );
    }
    this.options.logger.info({ account: account.username }, `account '${account.username}' authorised`);
    return this.save(account, crypto, tokens);
  }

  private async save(account: AccountConfig, crypto: Cryptographer, tokens: TokenSet): Promise<string> {
    const now = this.now();
    if (tokens.expiresIn === undefined) {
      this.options.logger.warn(
        { account: account.username },
        `no token expiry time returned for '${account.username}': assuming ${DEFAULT_LIFETIME_S} seconds`,
      );
    }
    const changes: CachedTokens = {
      token_salt: crypto.saltBase64,
      token_iterations: String(CURRENT_ITERATIONS),
      access_token: crypto.encrypt(tokens.accessToken),
      access_token_expiry: String(now + (tokens.expiresIn ?? DEFAULT_LIFETIME_S)),
      last_activity: String(now),
    };
    if (tokens.refreshToken) changes.refresh_token = crypto.encrypt(tokens.refreshToken);
    await this.persist(account, changes);
    return tokens.accessToken;
  }

  /** Writes changes; a failing disk is logged, never a failed login: the tokens live on in memory. */
  private async persist(
    account: AccountConfig,
    changes: Parameters<ConfigStore['saveTokens']>[1],
  ): Promise<void> {
    try {
      await this.options.store.saveTokens(account.section, changes);
    } catch (error: unknown) {
      this.options.logger.error(
        { account: account.username, error: (error as Error).message },
        `could not save the tokens of account '${account.username}'; they are kept in memory and saved at the next change`,
      );
    }
  }

  private cryptographer(password: string, cached: CachedTokens): Promise<Cryptographer> {
    const iterations = cached.token_iterations ? Number(cached.token_iterations) : undefined;
    return Cryptographer.create({
      deriver: this.options.deriver,
      password,
      salt: cached.token_salt,
      iterations: Number.isInteger(iterations) && (iterations ?? 0) > 0 ? iterations : undefined,
    });
  }

  /** Values encrypted with an older iteration count are re-encrypted with the current one (§3.2). */
  private async rotateIfNeeded(
    account: AccountConfig,
    crypto: Cryptographer,
    cached: CachedTokens,
  ): Promise<void> {
    const keys = ['access_token', 'refresh_token', 'client_secret_encrypted'] as const;
    const present = keys.filter((key) => cached[key] !== undefined);
    const stale = present.filter((key) => crypto.needsRotation(cached[key] as string));
    if (stale.length === 0) return;
    this.options.logger.info(
      { account: account.username },
      `rotating stored secrets for account '${account.username}' to the current key strength`,
    );
    const changes: CachedTokens = {
      token_iterations: String(CURRENT_ITERATIONS),
      token_salt: crypto.saltBase64,
    };
    for (const key of present) changes[key] = crypto.reencrypt(cached[key] as string);
    Object.assign(cached, changes);
    await this.persist(account, changes);
  }

  private wrongPassword(account: AccountConfig, cause: unknown): MailbridgeError {
    return new MailbridgeError(
      ErrorCode.TOKEN_WRONG_PASSWORD,
      `the password for account '${account.username}' is incorrect: it must be the one used when the account was first authorised (cached tokens kept)`,
      { cause },
    );
  }
}
