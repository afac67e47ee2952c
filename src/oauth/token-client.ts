import * as oauth from 'oauth4webapi';
import type { AccountConfig } from '../config/accounts.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { explainProviderError } from './provider-errors.ts';

/**
 * Calls to the token endpoint (RFC 6749 §4.1.3, §6) through oauth4webapi, with errors sorted into what the
 * caller must do: OAUTH_GRANT_INVALID (ask the user again), OAUTH_PROVIDER (the configuration or the provider
 * refuses; tell the operator), OAUTH_NETWORK (unreachable, timed out or 5xx; keep every token, retry later).
 */
export interface TokenSet {
  accessToken: string;
  /** Seconds, as the provider said; undefined when it did not say. */
  expiresIn: number | undefined;
  refreshToken: string | undefined;
}

/** How the client proves itself to the token endpoint. */
export type ClientCredential =
  | { kind: 'none' }
  | { kind: 'secret'; secret: string }
  /** RFC 7523 §2.2 (`private_key_jwt`): a fresh signed assertion per request. */
  | { kind: 'assertion'; assertion: () => string };

export interface DeviceAuthorisation {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | undefined;
  /** Seconds the device code is valid for. */
  expiresIn: number;
  /** Seconds to wait between polls (RFC 8628 §3.5). */
  interval: number;
}

/** One poll of the device flow: tokens, or what RFC 8628 §3.5 says to do next. */
export type DevicePoll = { tokens: TokenSet } | { pending: 'authorization_pending' | 'slow_down' };

export interface TokenClientOptions {
  fetch?: typeof fetch;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

export class TokenClient {
  constructor(private readonly options: TokenClientOptions = {}) {}

  async exchangeCode(
    account: AccountConfig,
    credential: ClientCredential,
    callback: URLSearchParams,
    state: string,
    codeVerifier: string | undefined,
  ): Promise<TokenSet> {
    const { as, client, auth, request } = this.setup(account, credential, issuerOf(account, callback));
    return this.call(account, 'exchanging the authorisation code', async () => {
      const parameters = oauth.validateAuthResponse(as, client, callback, state);
      const response = await oauth.authorizationCodeGrantRequest(
        as,
        client,
        auth,
        parameters,
        account.redirectUri ?? '',
        codeVerifier ?? oauth.nopkce,
        request,
      );
      return oauth.processAuthorizationCodeResponse(as, client, response);
    });
  }

  async refresh(
    account: AccountConfig,
    credential: ClientCredential,
    refreshToken: string,
  ): Promise<TokenSet> {
    const { as, client, auth, request } = this.setup(account, credential);
    return this.call(account, 'refreshing the access token', async () => {
      const response = await oauth.refreshTokenGrantRequest(as, client, auth, refreshToken, request);
      return oauth.processRefreshTokenResponse(as, client, response);
    });
  }

  /** RFC 6749 §4.4; Microsoft's client credentials for a mailbox. */
  async clientCredentials(account: AccountConfig, credential: ClientCredential): Promise<TokenSet> {
    return this.generic(account, credential, 'client_credentials', this.scopeParameters(account));
  }

  /** RFC 6749 §4.3 (ROPC); `oauth2_resource` for the Azure China (21Vianet) variant. */
  async passwordGrant(
    account: AccountConfig,
    credential: ClientCredential,
    username: string,
    password: string,
  ): Promise<TokenSet> {
    return this.generic(account, credential, 'password', {
      ...this.scopeParameters(account),
      username,
      password,
    });
  }

  /** RFC 7523 §2.1, as Google service accounts use it. */
  async jwtBearer(account: AccountConfig, assertion: string): Promise<TokenSet> {
    return this.generic(account, { kind: 'none' }, JWT_BEARER, { assertion });
  }

  /** RFC 8628 §3.1: permission_url is the device authorisation endpoint. */
  async startDevice(account: AccountConfig, credential: ClientCredential): Promise<DeviceAuthorisation> {
    const { as, client, auth, request } = this.setup(account, credential);
    try {
      const response = await oauth.deviceAuthorizationRequest(
        as,
        client,
        auth,
        { scope: account.scope, login_hint: account.username },
        request,
      );
      const result = await oauth.processDeviceAuthorizationResponse(as, client, response);
      return {
        deviceCode: result.device_code,
        userCode: result.user_code,
        verificationUri: result.verification_uri,
        verificationUriComplete: result.verification_uri_complete,
        expiresIn: result.expires_in,
        interval: result.interval ?? 5,
      };
    } catch (error: unknown) {
      throw classify(account, 'starting the device authorisation', await withErrorBody(error));
    }
  }

  /** One poll of the device code (RFC 8628 §3.4). */
  async pollDevice(
    account: AccountConfig,
    credential: ClientCredential,
    deviceCode: string,
  ): Promise<DevicePoll> {
    const { as, client, auth, request } = this.setup(account, credential);
    try {
      const response = await oauth.deviceCodeGrantRequest(as, client, auth, deviceCode, request);
      return { tokens: toTokenSet(await oauth.processDeviceCodeResponse(as, client, response)) };
    } catch (error: unknown) {
      const body = await withErrorBody(error);
      const code = (body as { error?: unknown }).error;
      if (code === 'authorization_pending' || code === 'slow_down') return { pending: code };
      throw classify(account, 'waiting for the device authorisation', body);
    }
  }

  private scopeParameters(account: AccountConfig): Record<string, string> {
    const parameters: Record<string, string> = {};
    if (account.scope) parameters.scope = account.scope;
    if (account.resource) parameters.resource = account.resource;
    return parameters;
  }

  private async generic(
    account: AccountConfig,
    credential: ClientCredential,
    grantType: string,
    parameters: Record<string, string>,
  ): Promise<TokenSet> {
    const { as, client, auth, request } = this.setup(account, credential);
    return this.call(account, `requesting a token (${grantType})`, async () => {
      const response = await oauth.genericTokenEndpointRequest(
        as,
        client,
        auth,
        grantType,
        parameters,
        request,
      );
      return oauth.processGenericTokenEndpointResponse(as, client, response);
    });
  }

  private setup(account: AccountConfig, credential: ClientCredential, issuer?: string) {
    const tokenUrl = new URL(account.tokenUrl);
    // Plain http is allowed only on loopback; findAccount has refused it anywhere else.
    const insecure = tokenUrl.protocol === 'http:';
    const as: oauth.AuthorizationServer = {
      issuer: issuer ?? tokenUrl.origin,
      token_endpoint: account.tokenUrl,
      authorization_endpoint: account.flow === 'device' ? undefined : account.permissionUrl,
      device_authorization_endpoint: account.flow === 'device' ? account.permissionUrl : undefined,
    };
    const client: oauth.Client = { client_id: account.clientId };
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const request: oauth.TokenEndpointRequestOptions = {
      signal: () => AbortSignal.timeout(timeoutMs),
      [oauth.allowInsecureRequests]: insecure,
      [oauth.customFetch]: withoutIdToken(this.options.fetch ?? fetch),
    };
    return { as, client, auth: clientAuth(credential), request };
  }

  private async call(
    account: AccountConfig,
    doing: string,
    run: () => Promise<oauth.TokenEndpointResponse>,
  ): Promise<TokenSet> {
    try {
      return toTokenSet(await run());
    } catch (error: unknown) {
      throw classify(account, doing, await withErrorBody(error));
    }
  }
}

/**
 * The issuer the authorisation response's `iss` (RFC 9207) is checked against. The configuration names no
 * issuer, and a provider's may have a path (a Keycloak realm): an `iss` that the configured endpoints lie
 * under is taken as the issuer; any other stays checked against the token URL's origin, so a response from
 * another server (a mix-up attack) is still refused.
 */
function issuerOf(account: AccountConfig, callback: URLSearchParams): string | undefined {
  const iss = callback.get('iss');
  if (!iss) return undefined;
  const under = (url: string | undefined) =>
    url !== undefined && (url === iss || url.startsWith(iss.endsWith('/') ? iss : `${iss}/`));
  return under(account.tokenUrl) && (account.permissionUrl === undefined || under(account.permissionUrl))
    ? iss
    : undefined;
}

function toTokenSet(response: oauth.TokenEndpointResponse): TokenSet {
  return {
    accessToken: response.access_token,
    expiresIn: typeof response.expires_in === 'number' ? response.expires_in : undefined,
    refreshToken: response.refresh_token,
  };
}

function clientAuth(credential: ClientCredential): oauth.ClientAuth {
  switch (credential.kind) {
    case 'secret':
      return oauth.ClientSecretPost(credential.secret);
    case 'assertion':
      return (_as, client, body) => {
        body.set('client_id', client.client_id);
        body.set('client_assertion_type', 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
        body.set('client_assertion', credential.assertion());
      };
    default:
      return oauth.None();
  }
}

/**
 * mailbridge never uses ID tokens, and validating one would fail for Microsoft's `common` endpoint, whose
 * tokens name the user's tenant as issuer. The token response is passed on without it.
 */
function withoutIdToken(fetchImpl: typeof fetch): (url: string, init: RequestInit) => Promise<Response> {
  return async (url, init) => {
    const response = await fetchImpl(url, init);
    if (!response.headers.get('content-type')?.includes('json')) return response;
    const body = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
    if (body === undefined) return new Response('', { status: response.status, headers: response.headers });
    delete body.id_token;
    const headers = new Headers(response.headers);
    headers.delete('content-length');
    headers.delete('content-encoding');
    return new Response(JSON.stringify(body), { status: response.status, headers });
  };
}

/**
 * oauth4webapi reports any error response carrying a WWW-Authenticate header (some providers add one to a 401
 * invalid_client) before reading its body; the body's `error` code is what tells the caller what to do.
 */
async function withErrorBody(error: unknown): Promise<unknown> {
  if (!(error instanceof oauth.WWWAuthenticateChallengeError)) return error;
  const body = (await error.response
    .clone()
    .json()
    .catch(() => undefined)) as { error?: unknown; error_description?: unknown } | undefined;
  return {
    status: error.status,
    error: typeof body?.error === 'string' ? body.error : 'invalid_request',
    error_description: typeof body?.error_description === 'string' ? body.error_description : error.message,
    cause: error,
  };
}

function classify(account: AccountConfig, doing: string, error: unknown): MailbridgeError {
  const who = `account '${account.username}'`;
  if (error instanceof MailbridgeError) return error;
  if (error instanceof oauth.ResponseBodyError || isErrorBody(error)) {
    const remedy = explainProviderError(error.error, error.error_description);
    const detail = `${error.error}${error.error_description ? `: ${error.error_description}` : ''}${remedy ? ` - ${remedy}` : ''}`;
    // 429 and 5xx say "not now", not "never": tokens are kept and the next login tries again.
    if (error.status >= 500 || error.status === 429) {
      return new MailbridgeError(
        ErrorCode.OAUTH_NETWORK,
        `the token endpoint failed (HTTP ${error.status}) while ${doing} for ${who}: ${detail}; tokens kept, will retry`,
        { cause: error },
      );
    }
    const code = error.error === 'invalid_grant' ? ErrorCode.OAUTH_GRANT_INVALID : ErrorCode.OAUTH_PROVIDER;
    return new MailbridgeError(code, `the provider refused ${doing} for ${who}: ${detail}`, { cause: error });
  }
  if (error instanceof oauth.AuthorizationResponseError) {
    return new MailbridgeError(
      ErrorCode.OAUTH_PROVIDER,
      `the provider refused authorisation of ${who}: ${error.error}${error.error_description ? `; ${error.error_description}` : ''}`,
      { cause: error },
    );
  }
  const status = statusOf(error);
  if (status === undefined && error instanceof oauth.OperationProcessingError) {
    return new MailbridgeError(
      ErrorCode.OAUTH_PROVIDER,
      `the token endpoint sent a response mailbridge cannot use while ${doing} for ${who}: ${error.message}`,
      { cause: error },
    );
  }
  if (status !== undefined && status < 500 && status !== 429) {
    return new MailbridgeError(
      ErrorCode.OAUTH_PROVIDER,
      `the token endpoint answered HTTP ${status} while ${doing} for ${who}; check token_url and client_id`,
      { cause: error },
    );
  }
  const reason =
    status !== undefined
      ? `the token endpoint failed (HTTP ${status})`
      : `the token endpoint ${account.tokenUrl} is unreachable (${networkReason(error)})`;
  return new MailbridgeError(
    ErrorCode.OAUTH_NETWORK,
    `${reason} while ${doing} for ${who}; tokens kept - is there a network connection?`,
    { cause: error },
  );
}

function isErrorBody(error: unknown): error is { status: number; error: string; error_description?: string } {
  const candidate = error as { status?: unknown; error?: unknown };
  return typeof candidate?.status === 'number' && typeof candidate.error === 'string';
}

function statusOf(error: unknown): number | undefined {
  const cause = (error as { cause?: unknown }).cause;
  if (cause instanceof Response) return cause.status;
  return undefined;
}

function networkReason(error: unknown): string {
  if (error instanceof Error && error.name === 'TimeoutError') return 'timed out';
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message ?? String(error);
}
