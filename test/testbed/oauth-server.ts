import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DEFAULT_CLIENT,
  type GrantOptions,
  GrantType,
  type IssueOptions,
  OAuthError,
  OAuthGrants,
} from './oauth-grants.ts';
import { HttpInputError, readForm, sendJson, sendRedirect, sendText } from './oauth-http.ts';

// The OAuth 2.0 server of the test bed on node:http, with test controls as plain methods. The grants
// themselves (and the device flow's approval rules) live in oauth-grants.ts.
//
// Injected failures (`failNext`, `setFailure`) and delays (`setDelay`) apply to the token endpoint unless
// another endpoint is named, so Dovecot's introspection keeps working while the proxy's refresh fails.
// Dovecot gives up on an introspection after 10 s (see dovecot-config.ts) and answers
// `NO [UNAVAILABLE]`; a closed server gets the same answer at once.

export const ENDPOINT_PATHS = {
  authorize: '/authorize',
  token: '/token',
  devicecode: '/devicecode',
  introspect: '/introspect',
} as const;
export type Endpoint = keyof typeof ENDPOINT_PATHS;

export type OAuthServerOptions = GrantOptions & {
  /** 0 (the default) picks a free port. */
  readonly port?: number;
};

export type OAuthCounts = {
  readonly endpoints: Record<Endpoint, number>;
  readonly grants: Record<GrantType, number>;
};

export type OAuthTestServer = {
  /** Base URL, e.g. `http://127.0.0.1:41234`; endpoint URLs below are built from it. */
  readonly url: string;
  readonly authorizationEndpoint: string;
  readonly tokenEndpoint: string;
  readonly deviceAuthorizationEndpoint: string;
  readonly introspectionEndpoint: string;
  /** Live counters: requests per endpoint (injected failures included), and token requests per grant type. */
  readonly counts: OAuthCounts;
  /** Plays the user in the browser: GETs an authorisation URL and returns the redirect's `Location`. */
  authorize(url: string): Promise<string>;
  /** An access token for direct (proxy-less) baseline logins. */
  issueAccessToken(username: string, options?: IssueOptions): string;
  expireAccessTokens(): void;
  /** Every refresh token issued so far answers `invalid_grant` from now on. */
  revokeRefreshTokens(): void;
  /** When on, introspection calls every access token inactive (consent withdrawn), new ones included. */
  setRejectAccessTokens(reject: boolean): void;
  /** A Google-style service account whose signed JWTs are honoured for any subject. */
  registerServiceAccount(clientEmail: string, publicKeyPem: string): void;
  /** Honours a refresh token made elsewhere (a fixture), for `username` and the default client. */
  acceptRefreshToken(refreshToken: string, username: string, scope?: string): void;
  /** When on, each refresh returns a new refresh token and invalidates the one used (Microsoft does this). */
  setRotateRefreshTokens(rotate: boolean): void;
  /** When on, refresh responses carry no refresh_token at all (Google does this). */
  setOmitRefreshTokenOnRefresh(omit: boolean): void;
  setAccessTokenLifetime(seconds: number): void;
  /** Decides the password grant; null restores the default (any non-empty password). */
  setPasswordCheck(check: ((username: string, password: string) => boolean) | null): void;
  setDevicePendingPolls(polls: number): void;
  approveDevice(userCode: string): void;
  denyDevice(userCode: string): void;
  /** The next `count` (1) requests to `endpoint` ('token') get `status` with a non-JSON (HTML) body. */
  failNext(status: number, count?: number, endpoint?: Endpoint): void;
  /** Every request to `endpoint` ('token') gets `status` until reset with null. */
  setFailure(status: number | null, endpoint?: Endpoint): void;
  /** Holds every answer from `endpoint` ('token') for `ms` milliseconds (0 to stop). */
  setDelay(ms: number, endpoint?: Endpoint): void;
  resetCounts(): void;
  close(): Promise<void>;
};

const AUTHORIZE_TIMEOUT_MS = 10_000;
const ENDPOINTS = Object.keys(ENDPOINT_PATHS) as Endpoint[];

function countersFor<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((key) => [key, 0])) as Record<K, number>;
}

class OAuthTestServerImpl implements OAuthTestServer {
  url = '';
  readonly counts: OAuthCounts = {
    endpoints: countersFor(ENDPOINTS),
    grants: countersFor(Object.values(GrantType)),
  };

  readonly #server: Server;
  readonly #grants: OAuthGrants;
  readonly #failNext = new Map<Endpoint, { status: number; count: number }>();
  readonly #failure = new Map<Endpoint, number>();
  readonly #delay = new Map<Endpoint, number>();
  // Aborted on close so that delayed answers do not keep the process alive.
  readonly #closing = new AbortController();

  constructor(options: OAuthServerOptions) {
    this.#grants = new OAuthGrants(options, (grantType) => {
      this.counts.grants[grantType] += 1;
    });
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) sendText(res, 500, `test oauth server bug: ${String(error)}`);
        else res.destroy();
      });
    });
  }

  get authorizationEndpoint(): string {
    return this.url + ENDPOINT_PATHS.authorize;
  }
  get tokenEndpoint(): string {
    return this.url + ENDPOINT_PATHS.token;
  }
  get deviceAuthorizationEndpoint(): string {
    return this.url + ENDPOINT_PATHS.devicecode;
  }
  get introspectionEndpoint(): string {
    return this.url + ENDPOINT_PATHS.introspect;
  }

  async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    const address = this.#server.address() as AddressInfo;
    this.url = `http://127.0.0.1:${address.port}`;
  }

  async close(): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort();
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async authorize(url: string): Promise<string> {
    const response = await fetch(url, {
      redirect: 'manual',
      signal: AbortSignal.timeout(AUTHORIZE_TIMEOUT_MS),
    });
    const location = response.headers.get('location');
    if (response.status !== 302 || location === null) {
      const body = await response.text();
      throw new Error(`authorize: expected a 302 redirect from ${url}, got ${response.status}: ${body}`);
    }
    return location;
  }

  // ---- grant controls ----

  issueAccessToken(username: string, options?: IssueOptions): string {
    return this.#grants.issueAccessToken(username, options);
  }
  expireAccessTokens(): void {
    this.#grants.expireAccessTokens();
  }
  revokeRefreshTokens(): void {
    this.#grants.revokeRefreshTokens();
  }
  setRejectAccessTokens(reject: boolean): void {
    this.#grants.setRejectAccessTokens(reject);
  }
  registerServiceAccount(clientEmail: string, publicKeyPem: string): void {
    this.#grants.registerServiceAccount(clientEmail, publicKeyPem);
  }
  acceptRefreshToken(refreshToken: string, username: string, scope = 'imap offline_access'): void {
    this.#grants.acceptRefreshToken(refreshToken, username, scope, DEFAULT_CLIENT.clientId);
  }
  setRotateRefreshTokens(rotate: boolean): void {
    this.#grants.setRotateRefreshTokens(rotate);
  }
  setOmitRefreshTokenOnRefresh(omit: boolean): void {
    this.#grants.setOmitRefreshTokenOnRefresh(omit);
  }
  setAccessTokenLifetime(seconds: number): void {
    this.#grants.setAccessTokenLifetime(seconds);
  }
  setPasswordCheck(check: ((username: string, password: string) => boolean) | null): void {
    this.#grants.setPasswordCheck(check);
  }
  setDevicePendingPolls(polls: number): void {
    this.#grants.setDevicePendingPolls(polls);
  }
  approveDevice(userCode: string): void {
    this.#grants.approveDevice(userCode);
  }
  denyDevice(userCode: string): void {
    this.#grants.denyDevice(userCode);
  }

  // ---- HTTP behaviour controls ----

  failNext(status: number, count = 1, endpoint: Endpoint = 'token'): void {
    this.#failNext.set(endpoint, { status, count });
  }

  setFailure(status: number | null, endpoint: Endpoint = 'token'): void {
    if (status === null) this.#failure.delete(endpoint);
    else this.#failure.set(endpoint, status);
  }

  setDelay(ms: number, endpoint: Endpoint = 'token'): void {
    this.#delay.set(endpoint, ms);
  }

  resetCounts(): void {
    for (const key of ENDPOINTS) this.counts.endpoints[key] = 0;
    for (const key of Object.values(GrantType)) this.counts.grants[key] = 0;
  }

  // ---- HTTP ----

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const endpoint = ENDPOINTS.find((key) => ENDPOINT_PATHS[key] === url.pathname);
    if (endpoint === undefined) return sendText(res, 404, `no such endpoint: ${url.pathname}`);
    const method = endpoint === 'authorize' ? 'GET' : 'POST';
    if (req.method !== method) return sendText(res, 405, `${url.pathname} takes ${method}`);
    this.counts.endpoints[endpoint] += 1;

    const delay = this.#delay.get(endpoint) ?? 0;
    if (delay > 0) {
      try {
        await sleep(delay, undefined, { signal: this.#closing.signal });
      } catch {
        res.destroy();
        return;
      }
    }
    const failure = this.#takeFailure(endpoint);
    if (failure !== undefined) {
      // Real outages come from load balancers and proxies, which answer HTML, not RFC 6749 JSON.
      const page = `<html><body><h1>${failure}</h1>injected failure</body></html>`;
      return sendText(res, failure, page, 'text/html');
    }

    try {
      if (endpoint === 'authorize') {
        const outcome = this.#grants.authorize(url.searchParams);
        return 'refusal' in outcome
          ? sendText(res, 400, outcome.refusal)
          : sendRedirect(res, outcome.location);
      }
      const form = await readForm(req);
      const authorization = req.headers.authorization;
      if (endpoint === 'token') return sendJson(res, 200, this.#grants.token(authorization, form));
      if (endpoint === 'devicecode') {
        const verificationUri = `${this.url}/device`;
        return sendJson(res, 200, this.#grants.deviceAuthorization(authorization, form, verificationUri));
      }
      return sendJson(res, 200, this.#grants.introspect(form));
    } catch (error: unknown) {
      if (error instanceof OAuthError) {
        // RFC 6749 §5.2: a failed client authentication is a 401 with a challenge.
        const headers: Record<string, string> =
          error.status === 401 ? { 'WWW-Authenticate': 'Basic realm="mailbridge-test"' } : {};
        return sendJson(res, error.status, { error: error.code, error_description: error.message }, headers);
      }
      if (error instanceof HttpInputError) {
        return sendJson(res, error.status, { error: 'invalid_request', error_description: error.message });
      }
      throw error;
    }
  }

  #takeFailure(endpoint: Endpoint): number | undefined {
    const next = this.#failNext.get(endpoint);
    if (next !== undefined && next.count > 0) {
      next.count -= 1;
      return next.status;
    }
    return this.#failure.get(endpoint);
  }
}

/** Starts the test OAuth server on 127.0.0.1 (a free port unless `options.port`). */
export async function startOAuthServer(options: OAuthServerOptions = {}): Promise<OAuthTestServer> {
  const server = new OAuthTestServerImpl(options);
  await server.listen(options.port ?? 0);
  return server;
}
