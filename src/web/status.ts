import type { Authorisations, PendingAuthorisation } from '../authorise/pending.ts';
import { isAccountSection } from '../config/accounts.ts';
import type { ConfigStore } from '../config/store.ts';
import { describeError } from '../errors.ts';
import type { AccountActivity } from './activity.ts';
import { consoleScheme, isLoopbackHost, type WebConsoleSettings } from './settings.ts';

/**
 * The facts the console shows, as plain data: the page renders them and `/api/status` returns them as JSON.
 * Built from the configuration, the cached token fields that are stored in clear (expiry, presence, last
 * activity) and the registry of pending requests. Never a token, a secret, a password or an authorisation
 * code: nothing here is read from an encrypted field but whether it is there.
 */
export interface ServerStatus {
  section: string;
  protocol: string;
  listen: string;
  upstream: string;
}

export type TokenState = 'valid' | 'refresh-due' | 'expired' | 'none';

export interface AccountStatus {
  account: string;
  flow: string | undefined;
  /** Why mailbridge cannot use the account as configured; null when it can. */
  problem: string | null;
  /** Server sections this account logged in through since mailbridge started (any section may serve it). */
  servers: string[];
  token: {
    state: TokenState;
    /** ISO 8601 expiry of the cached access token. */
    validUntil: string | null;
    refreshTokenPresent: boolean;
  };
  /** When tokens were last obtained or refreshed: `last_activity`, which mailbridge writes with each save. */
  lastRefresh: string | null;
  /** The last login seen by this daemon since it started. */
  lastActivity: string | null;
  lastError: { at: string; code: string; message: string; remedy: string } | null;
  /** The id of the account's pending authorisation, if one waits. */
  pending: string | null;
  /** Whether a person can authorise it from the console (the code or device grant). */
  canAuthorise: boolean;
}

export interface PendingStatus {
  id: string;
  account: string;
  kind: 'code' | 'device';
  /** The page to open: the authorisation URL, or the device verification page. */
  url: string;
  redirectUri: string | null;
  /** Whether the provider's redirect comes back to this console, which then completes the request itself. */
  completesHere: boolean;
  userCode: string | null;
  waitingSince: string;
  expiresAt: string;
}

export interface ConsoleStatus {
  generatedAt: string;
  configFile: string;
  servers: ServerStatus[];
  accounts: AccountStatus[];
  pending: PendingStatus[];
  reloadAvailable: boolean;
}

export interface StatusSources {
  store: ConfigStore;
  authorisations: Authorisations;
  activity: AccountActivity;
  /** The console's own address and scheme, to tell which redirect_uris point at it. */
  console: WebConsoleSettings;
  reloadAvailable: boolean;
  now: number;
}

/** As the token service: an access token this close to expiry is refreshed at its next use. */
const REFRESH_MARGIN_S = 600;

export function collectStatus(sources: StatusSources): ConsoleStatus {
  const { store, authorisations, activity, now } = sources;
  const pending = authorisations.pending();
  const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
  let servers: ServerStatus[] = [];
  try {
    servers = store.servers().map((server) => {
      const host = server.localAddress ?? '127.0.0.1';
      return {
        section: server.section,
        protocol: server.protocol,
        listen: `${host.includes(':') ? `[${host}]` : host}:${server.localPort}`,
        upstream: `${server.serverAddress}:${server.serverPort}`,
      };
    });
  } catch {
    // A configuration that no longer reads is reported by reload; the running servers are unchanged.
  }
  const accounts: AccountStatus[] = [];
  for (const section of [...store.document.sections(), ...store.cacheOnlyAccounts()]) {
    // Catch-all sections ([@example.com], [@]) are templates, not accounts: each user gets its own section.
    if (!isAccountSection(section) || section.startsWith('@')) continue;
    let flow: string | undefined;
    let problem: string | null = null;
    try {
      flow = store.account(section)?.flow;
    } catch (error: unknown) {
      problem = describeError(error);
    }
    const cached = store.cachedTokens(section);
    const expiry = seconds(cached.access_token_expiry);
    const nowS = Math.floor(now / 1000);
    let state: TokenState = 'none';
    if (cached.access_token) {
      if (expiry === undefined || expiry <= nowS) state = 'expired';
      else state = expiry - nowS < REFRESH_MARGIN_S ? 'refresh-due' : 'valid';
    }
    const lastActivity = seconds(cached.last_activity);
    const facts = activity.get(section);
    // An error from before the tokens were last saved has been dealt with since.
    const lastError =
      facts.lastError && (lastActivity === undefined || facts.lastError.at > lastActivity * 1000)
        ? facts.lastError
        : undefined;
    accounts.push({
      account: section,
      flow,
      problem,
      servers: facts.servers,
      token: {
        state,
        validUntil: cached.access_token && expiry !== undefined ? iso(expiry * 1000) : null,
        refreshTokenPresent: cached.refresh_token !== undefined,
      },
      lastRefresh: iso(lastActivity === undefined ? undefined : lastActivity * 1000),
      lastActivity: iso(facts.lastLogin),
      lastError: lastError ? { ...lastError, at: new Date(lastError.at).toISOString() } : null,
      pending: pending.find((item) => item.account.username === section)?.id ?? null,
      canAuthorise: problem === null && (flow === 'authorization_code' || flow === 'device'),
    });
  }
  return {
    generatedAt: new Date(now).toISOString(),
    configFile: store.configPath,
    servers,
    accounts,
    pending: pending.map((item) => describePending(item, sources)),
    reloadAvailable: sources.reloadAvailable,
  };
}

function describePending(pending: PendingAuthorisation, sources: StatusSources): PendingStatus {
  const { details } = pending;
  return {
    id: pending.id,
    account: pending.account.username,
    kind: details.kind,
    url: pending.url,
    redirectUri: details.kind === 'code' ? (pending.account.redirectUri ?? null) : null,
    completesHere: completesHere(pending, sources.console),
    userCode: details.kind === 'device' ? details.userCode : null,
    waitingSince: new Date(pending.createdAt).toISOString(),
    expiresAt: new Date(pending.expiresAt).toISOString(),
  };
}

/**
 * A code request whose redirect_uri is a URL of this console's scheme and port, on loopback or its own host.
 */
export function completesHere(pending: PendingAuthorisation, console: WebConsoleSettings): boolean {
  const { host, port } = console;
  if (pending.details.kind !== 'code' || !pending.account.redirectUri) return false;
  let url: URL;
  try {
    url = new URL(pending.account.redirectUri);
  } catch {
    return false;
  }
  const scheme = consoleScheme(console);
  const defaultPort = scheme === 'https' ? 443 : 80;
  if (url.protocol !== `${scheme}:` || Number(url.port || defaultPort) !== port) return false;
  const hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return hostname === host || (isLoopbackHost(hostname) && isLoopbackHost(host));
}

function seconds(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  return Number.isFinite(value) ? Math.floor(value) : undefined;
}
