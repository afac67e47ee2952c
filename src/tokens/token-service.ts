import { setTimeout as sleep } from 'node:timers/promises';
import { type Authorisations, PendingAuthorisation } from '../authorise/pending.ts';
import { type AccountConfig, isDirectFlow } from '../config/accounts.ts';
import type { CachedTokens, ConfigStore, TokenChanges } from '../config/store.ts';
import { describeError, ErrorCode, isMailbridgeError, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { buildAuthorisationRequest } from '../oauth/authorisation-url.ts';
import { clientCredential, serviceAccountJwt } from '../oauth/client-credential.ts';
import type { ClientCredential, DeviceAuthorisation, TokenClient, TokenSet } from '../oauth/token-client.ts';
import { NO_OBSERVER, type Observer } from '../observer.ts';
import { Cryptographer, CURRENT_ITERATIONS } from './cryptographer.ts';
import type { KeyDeriver } from './key-derivation.ts';
import { KeyedLock } from './keyed-lock.ts';

/**
 * From a client's login name and password to a usable access token (email-oauth2-proxy §3.4), with these
 * differences: a wrong password keeps the tokens unless the operator asked otherwise; a network failure is
 * never taken for a dead token; a refused refresh token is replaced only when new tokens arrive; and an
 * account has one authorisation open at a time, however many clients wait for it.
 */
export interface TokenServiceOptions {
  store: ConfigStore;
  deriver: KeyDeriver;
  tokenClient: TokenClient;
  authorisations: Authorisations;
  logger: Logger;
  observer?: Observer;
  /** Unix seconds; injected so tests need no sleeps. */
  now?: () => number;
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
/** Background refresh renews an access token this long before the login-time margin would. */
const BACKGROUND_LEAD_S = 300;
/** An authorisation-code request stays open this long for the person, whether or not a client still waits. */
const CODE_REQUEST_LIFETIME_MS = 60 * 60 * 1000;

/** What background refresh needs of an account whose password a client has proven since start. */
interface UnlockedAccount {
  account: AccountConfig;
  crypto: Cryptographer;
  credential: ClientCredential;
  secret: string | undefined;
  /** Unix seconds of the last refresh-token use seen by this process. */
  lastRefresh: number;
}

export class TokenService {
  private readonly lock = new KeyedLock();
  private readonly unlocked = new Map<string, UnlockedAccount>();
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
    const keys: Partial<UnlockedAccount> = {};
    const grant = await this.lock.run(account.section, () => this.obtain(account, password, options, keys));
    // The password proved itself: the account's keys may serve background refreshes (memory only).
    if (keys.crypto && keys.credential) {
      const previous = this.unlocked.get(account.section);
      this.unlocked.set(account.section, {
        account,
        crypto: keys.crypto,
        credential: keys.credential,
        secret: keys.secret,
        lastRefresh: previous?.lastRefresh ?? this.now(),
      });
    }
    return grant;
  }

  /**
   * Background refresh for the accounts unlocked since start (their keys exist only in memory, derived from a
   * client's password): each access token is renewed shortly before it expires, and each refresh token is
   * used at least every refresh_interval_hours so that it does not die of inactivity (Microsoft: 90 days).
   * Failures are logged and tried again at the next round; nothing is ever deleted here.
   */
  async refreshUnlocked(): Promise<void> {
    const intervalS = this.options.store.globals().refreshIntervalHours * 3600;
    for (const unlocked of this.unlocked.values()) {
      await this.lock.run(unlocked.account.section, async () => {
        const cached = this.options.store.cachedTokens(unlocked.account.section);
        if (!cached.refresh_token) return;
        const now = this.now();
        const expiry = Number(cached.access_token_expiry ?? 0);
        const expiring = expiry - now < EXPIRY_MARGIN_S + BACKGROUND_LEAD_S;
        if (!expiring && now - unlocked.lastRefresh < intervalS) return;
        const logger = this.options.logger.child({ account: unlocked.account.username });
        try {
          const refreshToken = unlocked.crypto.decrypt(cached.refresh_token);
          const tokens = await this.refresh(unlocked.account, unlocked.credential, refreshToken);
          await this.save(unlocked.account, unlocked.crypto, tokens, unlocked.secret);
          unlocked.lastRefresh = now;
          logger.info(`refreshed the tokens of '${unlocked.account.username}' in the background`);
        } catch (error: unknown) {
          logger.warn(
            { error: describeError(error) },
            `background refresh of '${unlocked.account.username}' failed; trying again later`,
          );
        }
      });
    }
  }

  /**
   * An access token for an account a client has unlocked since start, refreshed when due, without any
   * password (the keys are in memory): what `mailbridge token` asks the running daemon for. Undefined when the
   * account is not unlocked here.
   */
  async unlockedAccessToken(username: string): Promise<string | undefined> {
    const account = this.options.store.account(username);
    const unlocked = account ? this.unlocked.get(account.section) : undefined;
    if (!account || !unlocked) return undefined;
    return this.lock.run(account.section, async () => {
      const cached = this.options.store.cachedTokens(account.section);
      const expiry = Number(cached.access_token_expiry ?? 0);
      if (cached.access_token && expiry - this.now() >= EXPIRY_MARGIN_S) {
        return unlocked.crypto.decrypt(cached.access_token);
      }
      if (!cached.refresh_token) return undefined;
      const refreshToken = unlocked.crypto.decrypt(cached.refresh_token);
      const tokens = await this.refresh(account, unlocked.credential, refreshToken);
      unlocked.lastRefresh = this.now();
      return this.save(account, unlocked.crypto, tokens, unlocked.secret);
    });
  }

  /** Runs refreshUnlocked every minute until stop() is called; the timer never keeps the process alive. */
  startBackgroundRefresh(everyMs = 60_000): () => void {
    const timer = setInterval(() => void this.refreshUnlocked(), everyMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  private async obtain(
    account: AccountConfig,
    password: string,
    options: TokenRequestOptions,
    keys: Partial<UnlockedAccount>,
  ): Promise<AccessGrant> {
    const logger = this.options.logger.child({ account: account.username });
    const cached = this.options.store.cachedTokens(account.section);
    let crypto = await this.cryptographer(password, cached);
    const decrypt = (value: string) => crypto.decrypt(value);
    let secret: string | undefined;
    try {
      await this.rotateIfNeeded(account, crypto, cached);
      secret =
        account.clientSecret ??
        (account.clientSecretEncrypted ? decrypt(account.clientSecretEncrypted) : undefined);
    } catch (error: unknown) {
      throw this.wrongPassword(account, error);
    }
    if (
      !secret &&
      account.flow === 'client_credentials' &&
      this.options.store.globals().useLoginPasswordAsClientCredentialsSecret
    ) {
      secret = password;
    }
    const credential =
      account.flow === 'service_account'
        ? ({ kind: 'none' } as const)
        : await clientCredential(account, secret, this.now);
    Object.assign(keys, { crypto, credential, secret });

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
          const tokens = await this.refresh(account, credential, refreshToken);
          logger.info(`refreshed the access token of account '${account.username}'`);
          return { account, accessToken: await this.save(account, crypto, tokens, secret), fromCache: false };
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
            { error: describeError(error) },
            `the refresh token of account '${account.username}' was refused: it must be authorised again`,
          );
        }
      } else if (cached.access_token) {
        // Without a refresh token, a stale access token still proves the password before we go further.
        decrypt(cached.access_token);
      }
    } catch (error: unknown) {
      if (!isMailbridgeError(error, ErrorCode.TOKEN_WRONG_PASSWORD)) throw error;
      // As the original: never for grants that need no person, where the password may be the client secret.
      const mayDelete =
        this.options.store.globals().deleteAccountTokenOnPasswordError && !isDirectFlow(account.flow);
      if (!mayDelete) throw this.wrongPassword(account, error);
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
      keys.crypto = crypto;
    }
    if (isDirectFlow(account.flow)) {
      const tokens = await this.directGrant(account, credential, password);
      return { account, accessToken: await this.save(account, crypto, tokens, secret), fromCache: false };
    }
    return {
      account,
      accessToken: await this.authorise(account, crypto, credential, secret),
      fromCache: false,
    };
  }

  /** One refresh-token grant, reported to the observer whatever its outcome. */
  private async refresh(
    account: AccountConfig,
    credential: ClientCredential,
    refreshToken: string,
  ): Promise<TokenSet> {
    const observer = this.options.observer ?? NO_OBSERVER;
    try {
      const tokens = await this.options.tokenClient.refresh(account, credential, refreshToken);
      observer.tokenRefreshed(true);
      return tokens;
    } catch (error: unknown) {
      observer.tokenRefreshed(false);
      throw error;
    }
  }

  /** Grants that need nobody at a browser. */
  private async directGrant(
    account: AccountConfig,
    credential: ClientCredential,
    password: string,
  ): Promise<TokenSet> {
    const client = this.options.tokenClient;
    switch (account.flow) {
      case 'client_credentials':
        return client.clientCredentials(account, credential);
      case 'password':
        return client.passwordGrant(account, credential, account.username, password);
      default:
        return client.jwtBearer(account, await serviceAccountJwt(account, account.username, this.now()));
    }
  }

  /**
   * Asks a person, through every front end at once; a client waits at most authorisation_wait seconds, while
   * the request stays open for the person and completes for whoever logs in next.
   */
  private async authorise(
    account: AccountConfig,
    crypto: Cryptographer,
    credential: ClientCredential,
    secret: string | undefined,
  ): Promise<string> {
    const { authorisations } = this.options;
    if (account.flow === 'authorization_code' && !authorisations.canCompleteCodeRequests) {
      throw new MailbridgeError(
        ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE,
        `account '${account.username}' needs authorising; run mailbridge with --external-auth (paste the redirect URL in the terminal) or --local-server-auth`,
      );
    }
    if (account.flow !== 'authorization_code' && account.flow !== 'device') {
      throw new MailbridgeError(
        ErrorCode.ACCOUNT_INCOMPLETE,
        `account '${account.username}': oauth2_flow '${account.flow}' is not one mailbridge knows (authorization_code, device, client_credentials, password, service_account)`,
      );
    }
    (this.options.observer ?? NO_OBSERVER).authorisationWaited();
    const job = authorisations.join(account.section, (publish) =>
      account.flow === 'device'
        ? this.deviceFlow(account, crypto, credential, secret, publish)
        : this.codeFlow(account, crypto, credential, secret, publish),
    );
    const waitMs = this.options.store.globals().authorisationWaitSeconds * 1000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new MailbridgeError(
              ErrorCode.OAUTH_AUTHORISATION_TIMEOUT,
              `account '${account.username}' is not authorised yet (waited ${waitMs / 1000} s); the request stays open - authorise, then log in again`,
            ),
          ),
        waitMs,
      );
      // A client's wait never keeps a stopping daemon alive.
      timer.unref();
    });
    try {
      return await Promise.race([job, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async codeFlow(
    account: AccountConfig,
    crypto: Cryptographer,
    credential: ClientCredential,
    secret: string | undefined,
    publish: (pending: PendingAuthorisation) => void,
  ): Promise<string> {
    const request = buildAuthorisationRequest(account);
    const pending = new PendingAuthorisation(
      account,
      { kind: 'code', request },
      Date.now() + CODE_REQUEST_LIFETIME_MS,
    );
    publish(pending);
    const expiry = setTimeout(
      () =>
        pending.fail(
          new MailbridgeError(
            ErrorCode.OAUTH_AUTHORISATION_TIMEOUT,
            `the authorisation request for '${account.username}' expired unanswered`,
          ),
        ),
      CODE_REQUEST_LIFETIME_MS,
    );
    expiry.unref();
    try {
      const callback = await pending.result;
      const tokens = await this.options.tokenClient.exchangeCode(
        account,
        credential,
        callback,
        request.state,
        request.codeVerifier,
      );
      this.warnIfNoRefreshToken(account, tokens);
      this.options.logger.info({ account: account.username }, `account '${account.username}' authorised`);
      return await this.save(account, crypto, tokens, secret);
    } finally {
      clearTimeout(expiry);
    }
  }

  /** RFC 8628: show the code, poll at the given interval, five seconds slower after each slow_down. */
  private async deviceFlow(
    account: AccountConfig,
    crypto: Cryptographer,
    credential: ClientCredential,
    secret: string | undefined,
    publish: (pending: PendingAuthorisation) => void,
  ): Promise<string> {
    const client = this.options.tokenClient;
    const device: DeviceAuthorisation = await client.startDevice(account, credential);
    const deadline = Date.now() + device.expiresIn * 1000;
    const pending = new PendingAuthorisation(
      account,
      {
        kind: 'device',
        userCode: device.userCode,
        verificationUri: device.verificationUri,
        verificationUriComplete: device.verificationUriComplete,
      },
      deadline,
    );
    publish(pending);
    let interval = device.interval;
    while (Date.now() < deadline && !pending.settled) {
      await sleep(interval * 1000, undefined, { ref: false });
      let poll: Awaited<ReturnType<TokenClient['pollDevice']>>;
      try {
        poll = await client.pollDevice(account, credential, device.deviceCode);
      } catch (error: unknown) {
        if (!isMailbridgeError(error, ErrorCode.OAUTH_NETWORK)) throw error;
        // The code stays valid across a network blip: keep polling, a little slower.
        this.options.logger.warn(
          { error: describeError(error) },
          'device authorisation poll failed; retrying',
        );
        interval += 5;
        continue;
      }
      if ('tokens' in poll) {
        pending.finish();
        this.warnIfNoRefreshToken(account, poll.tokens);
        this.options.logger.info({ account: account.username }, `account '${account.username}' authorised`);
        return this.save(account, crypto, poll.tokens, secret);
      }
      if (poll.pending === 'slow_down') interval += 5;
    }
    throw new MailbridgeError(
      ErrorCode.OAUTH_AUTHORISATION_TIMEOUT,
      `the device code for '${account.username}' expired before anyone entered it`,
    );
  }

  private warnIfNoRefreshToken(account: AccountConfig, tokens: TokenSet): void {
    if (tokens.refreshToken) return;
    this.options.logger.warn(
      { account: account.username },
      `no refresh token returned for account '${account.username}': it must be authorised again when the access token expires. Microsoft sends one only with offline_access in oauth2_scope; Google only at the consent screen, so add ?prompt=consent to permission_url; then authorise again`,
    );
  }

  private async save(
    account: AccountConfig,
    crypto: Cryptographer,
    tokens: TokenSet,
    secret: string | undefined,
  ): Promise<string> {
    const now = this.now();
    if (tokens.expiresIn === undefined) {
      this.options.logger.warn(
        { account: account.username },
        `no token expiry time returned for '${account.username}': assuming ${DEFAULT_LIFETIME_S} seconds`,
      );
    }
    const changes: TokenChanges = {
      token_salt: crypto.saltBase64,
      token_iterations: String(CURRENT_ITERATIONS),
      access_token: crypto.encrypt(tokens.accessToken),
      access_token_expiry: String(now + (tokens.expiresIn ?? DEFAULT_LIFETIME_S)),
      last_activity: String(now),
    };
    if (tokens.refreshToken) changes.refresh_token = crypto.encrypt(tokens.refreshToken);
    if (
      this.options.store.globals().encryptClientSecretOnFirstUse &&
      account.clientSecret &&
      secret === account.clientSecret
    ) {
      // Only the account's own section loses its plaintext; a catch-all's stays, as in the original.
      changes.client_secret_encrypted = crypto.encrypt(account.clientSecret);
      changes.client_secret = undefined;
    }
    await this.persist(account, changes);
    return tokens.accessToken;
  }

  /** Writes changes; a failing disk is logged, never a failed login: the tokens live on in memory. */
  private async persist(account: AccountConfig, changes: TokenChanges): Promise<void> {
    try {
      await this.options.store.saveTokens(account.section, changes);
    } catch (error: unknown) {
      this.options.logger.error(
        { account: account.username, error: describeError(error) },
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
