import { describeError, ErrorCode, isMailbridgeError } from '../errors.ts';

/**
 * What the daemon has seen of each account since it started, for the console: the server sections it logged
 * in through, when it last logged in, and the last error with what to do about it. None of it is on disk.
 *
 * The console records what passes through itself (authorisations it starts, requests that fail); the daemon
 * may record logins and errors from the sessions with `login()` and `failure()`.
 */
export interface AccountError {
  /** Unix milliseconds. */
  at: number;
  code: string;
  message: string;
  remedy: string;
}

export interface AccountFacts {
  /** Server sections (e.g. IMAP-1993) this account logged in through, in the order first seen. */
  servers: string[];
  /** Unix milliseconds of the last successful login, if any since start. */
  lastLogin: number | undefined;
  lastError: AccountError | undefined;
}

export class AccountActivity {
  private readonly accounts = new Map<string, AccountFacts>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly now: () => number = Date.now) {}

  /** A client logged in as `account` through server section `server`; clears the account's last error. */
  login(account: string, server: string): void {
    const facts = this.facts(account);
    if (!facts.servers.includes(server)) facts.servers.push(server);
    facts.lastLogin = this.now();
    facts.lastError = undefined;
    this.changed();
  }

  failure(account: string, error: unknown): void {
    this.facts(account).lastError = {
      at: this.now(),
      code: isMailbridgeError(error) ? error.code : 'ERROR',
      message: describeError(error),
      remedy: remedyFor(error),
    };
    this.changed();
  }

  /** The account was authorised (or its tokens forgotten on purpose): its last error no longer applies. */
  resolved(account: string): void {
    const facts = this.accounts.get(account);
    if (!facts?.lastError) return;
    facts.lastError = undefined;
    this.changed();
  }

  get(account: string): AccountFacts {
    const facts = this.accounts.get(account);
    return facts
      ? { ...facts, servers: [...facts.servers] }
      : { servers: [], lastLogin: undefined, lastError: undefined };
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private facts(account: string): AccountFacts {
    let facts = this.accounts.get(account);
    if (!facts) {
      facts = { servers: [], lastLogin: undefined, lastError: undefined };
      this.accounts.set(account, facts);
    }
    return facts;
  }

  private changed(): void {
    for (const listener of this.listeners) listener();
  }
}

/** What the person at the console can do about an error, by its code. */
export function remedyFor(error: unknown): string {
  const code = isMailbridgeError(error) ? error.code : undefined;
  switch (code) {
    case ErrorCode.TOKEN_WRONG_PASSWORD:
      return 'Log in with the password used when the account was first authorised, or forget its tokens here and authorise it again with the new password.';
    case ErrorCode.TOKEN_INVALID:
      return 'The cached tokens cannot be read: forget them here and authorise the account again.';
    case ErrorCode.OAUTH_GRANT_INVALID:
      return 'The provider no longer accepts the refresh token (expired, revoked or password changed): authorise the account again.';
    case ErrorCode.OAUTH_AUTHORISATION_TIMEOUT:
      return 'Nobody completed the authorisation in time: press Authorise (or log in from your mail client) and complete it.';
    case ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE:
      return 'Complete the authorisation from this console, or run mailbridge with --external-auth.';
    case ErrorCode.OAUTH_REDIRECT_MISMATCH:
      return "Paste the whole address the browser shows after signing in, from the newest request's link.";
    case ErrorCode.OAUTH_PROVIDER:
      return "The provider refused: check the account's client_id, client_secret, oauth2_scope and redirect_uri against the provider's app registration, then authorise again.";
    case ErrorCode.OAUTH_NETWORK:
      return 'The provider could not be reached: check the network or proxy settings; nothing is lost, the next login tries again.';
    case ErrorCode.ACCOUNT_UNKNOWN:
    case ErrorCode.ACCOUNT_INCOMPLETE:
    case ErrorCode.CONFIG_INVALID:
    case ErrorCode.CONFIG_SYNTAX:
      return "Fix the account's section in the configuration file, then reload the configuration.";
    case ErrorCode.CONFIG_WRITE:
      return 'mailbridge cannot write the token file: check its permissions and free space; tokens are kept in memory meanwhile.';
    case ErrorCode.UPSTREAM_CONNECT:
      return 'The mail server could not be reached: check server_address and server_port, and the network.';
    default:
      return "See mailbridge's log for details.";
  }
}
