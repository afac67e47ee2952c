import * as oauth from 'oauth4webapi';
import type { AccountConfig } from '../config/accounts.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';

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

export interface TokenClientOptions {
  fetch?: typeof fetch;
  timeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class TokenClient {
  constructor(private readonly options: TokenClientOptions = {}) {}

  async exchangeCode(
    account: AccountConfig,
    clientSecret: string | undefined,
    callback: URLSearchParams,
    state: string,
    codeVerifier: string | undefined,
  ): Promise<TokenSet> {
    const { as, client, auth, request } = this.setup(account, clientSecret);
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
    clientSecret: string | undefined,
    refreshToken: string,
  ): Promise<TokenSet> {
    const { as, client, auth, request } = this.setup(account, clientSecret);
    return this.call(account, 'refreshing the access token', async () => {
      const response = await oauth.refreshTokenGrantRequest(as, client, auth, refreshToken, request);
      return oauth.processRefreshTokenResponse(as, client, response);
    });
  }

  private setup(account: AccountConfig, clientSecret: string | undefined) {
    const tokenUrl = new URL(account.tokenUrl);
    // Plain http is allowed only on loopback; findAccount has refused it anywhere else.
    const insecure = tokenUrl.protocol === 'http:';
    const as: oauth.AuthorizationServer = {
      issuer: tokenUrl.origin,
      token_endpoint: account.tokenUrl,
      authorization_endpoint: account.permissionUrl,
    };
    const client: oauth.Client = { client_id: account.clientId };
    const auth = clientSecret ? oauth.ClientSecretPost(clientSecret) : oauth.None();
    const timeoutMs = this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const request: oauth.TokenEndpointRequestOptions = {
      signal: () => AbortSignal.timeout(timeoutMs),
      [oauth.allowInsecureRequests]: insecure,
      [oauth.customFetch]: withoutIdToken(this.options.fetch ?? fetch),
    };
    return { as, client, auth, request };
  }

  private async call(
    account: AccountConfig,
    doing: string,
    run: () => Promise<oauth.TokenEndpointResponse>,
  ): Promise<TokenSet> {
    let response: oauth.TokenEndpointResponse;
    try {
      response = await run();
    } catch (error: unknown) {
      throw classify(account, doing, await withErrorBody(error));
    }
    return {
      accessToken: response.access_token,
      expiresIn: typeof response.expires_in === 'number' ? response.expires_in : undefined,
      refreshToken: response.refresh_token,
    };
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
    const detail = `${error.error}${error.error_description ? `: ${error.error_description}` : ''}`;
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
