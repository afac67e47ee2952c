import { createHash, randomBytes, verify } from 'node:crypto';
import { parseBasicCredentials } from './oauth-http.ts';

// The authorisation server's state and rules, without HTTP: clients, codes, tokens and every grant the proxy
// may use (RFC 6749, RFC 7636 PKCE, RFC 8628 device flow), RFC 7662 introspection for Dovecot, and the
// controls tests use to make it behave like a real provider on a bad day.
//
// Device flow: a device code answers `authorization_pending` to its first `devicePendingPolls` polls (1 by
// default) and tokens afterwards, as if the user approved while the client waited. `approveDevice(userCode)`
// approves at once; `setDevicePendingPolls(Infinity)` makes approval manual only; `denyDevice(userCode)` makes
// the next poll answer `access_denied`.

export const GrantType = {
  authorizationCode: 'authorization_code',
  refreshToken: 'refresh_token',
  clientCredentials: 'client_credentials',
  password: 'password',
  deviceCode: 'urn:ietf:params:oauth:grant-type:device_code',
  jwtBearer: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
} as const;
export type GrantType = (typeof GrantType)[keyof typeof GrantType];

export type OAuthClientRegistration = {
  readonly clientId: string;
  /** Absent for a public client, which proves itself with PKCE only. */
  readonly clientSecret?: string;
  /** When given, only these redirect URIs are accepted; otherwise any. */
  readonly redirectUris?: readonly string[];
  /** A client that proves itself with a signed assertion (RFC 7523 §2.2, private_key_jwt) instead of a secret. */
  readonly jwtPublicKeyPem?: string;
};

export const DEFAULT_CLIENT = { clientId: 'test-client', clientSecret: 'test-secret' } as const;

export type GrantOptions = {
  /** Added to the default client `test-client` / `test-secret`. */
  readonly clients?: readonly OAuthClientRegistration[];
  /** Seconds; 3600 by default. */
  readonly accessTokenLifetime?: number;
  /**
   * The user of tokens whose request names none (/authorize and /devicecode without login_hint,
   * client_credentials); `alice@example.test` by default.
   */
  readonly defaultUsername?: string;
  readonly devicePendingPolls?: number;
  /** Seconds between device polls, as told to the client; 1 by default to keep tests quick. */
  readonly deviceInterval?: number;
  /** Milliseconds since the epoch; injectable so expiry tests need no sleeps. */
  readonly clock?: () => number;
};

export type IssueOptions = {
  readonly scope?: string;
  readonly clientId?: string;
  /** Seconds. */
  readonly lifetime?: number;
};

/** An RFC 6749 §5.2 error; `status` is 401 for a failed client authentication. */
export class OAuthError extends Error {
  constructor(
    readonly code: string,
    description: string,
    readonly status = 400,
  ) {
    super(description);
    this.name = 'OAuthError';
  }
}

const CODE_LIFETIME_MS = 10 * 60_000;
const DEVICE_CODE_LIFETIME_S = 600;
// Consonants only, so a random user code never spells a word, and nothing confusable like 0/O or 1/I.
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

type AccessToken = { username: string; scope: string; clientId: string; expiresAt: number };
type RefreshToken = { username: string; scope: string; clientId: string };
type AuthorizationCode = {
  clientId: string;
  redirectUri: string;
  scope: string;
  username: string;
  challenge: string | undefined;
  challengeMethod: string;
  expiresAt: number;
};
type DeviceCode = {
  clientId: string;
  scope: string;
  username: string;
  userCode: string;
  expiresAt: number;
  pendingPollsLeft: number;
  decision: 'pending' | 'approved' | 'denied';
};
type Grant = { username: string; scope: string; clientId: string };

function newToken(prefix: string): string {
  return `${prefix}_${randomBytes(24).toString('base64url')}`;
}

function newUserCode(): string {
  const letters = [...randomBytes(8)].map((byte) => USER_CODE_ALPHABET[byte % USER_CODE_ALPHABET.length]);
  return `${letters.slice(0, 4).join('')}-${letters.slice(4).join('')}`;
}

function required(form: URLSearchParams, name: string): string {
  const value = form.get(name);
  if (value === null || value === '') throw new OAuthError('invalid_request', `missing parameter '${name}'`);
  return value;
}

export class OAuthGrants {
  readonly #clients = new Map<string, OAuthClientRegistration>();
  readonly #accessTokens = new Map<string, AccessToken>();
  readonly #refreshTokens = new Map<string, RefreshToken>();
  readonly #serviceAccounts = new Map<string, string>();
  #rejectAccessTokens = false;
  readonly #codes = new Map<string, AuthorizationCode>();
  readonly #deviceCodes = new Map<string, DeviceCode>();
  readonly #clock: () => number;
  readonly #defaultUsername: string;
  readonly #deviceInterval: number;
  readonly #onGrant: (grantType: GrantType) => void;
  #accessTokenLifetime: number;
  #devicePendingPolls: number;
  #rotateRefreshTokens = false;
  #omitRefreshTokenOnRefresh = false;
  #passwordCheck: ((username: string, password: string) => boolean) | null = null;

  /** `onGrant` hears of every token request with a known grant type, before it is checked. */
  constructor(options: GrantOptions, onGrant: (grantType: GrantType) => void = () => undefined) {
    for (const client of [DEFAULT_CLIENT, ...(options.clients ?? [])]) {
      this.#clients.set(client.clientId, client);
    }
    this.#clock = options.clock ?? Date.now;
    this.#accessTokenLifetime = options.accessTokenLifetime ?? 3600;
    this.#defaultUsername = options.defaultUsername ?? 'alice@example.test';
    this.#devicePendingPolls = options.devicePendingPolls ?? 1;
    this.#deviceInterval = options.deviceInterval ?? 1;
    this.#onGrant = onGrant;
  }

  // ---- controls ----

  issueAccessToken(username: string, options: IssueOptions = {}): string {
    return this.#issueAccessToken(
      { username, scope: options.scope ?? '', clientId: options.clientId ?? DEFAULT_CLIENT.clientId },
      options.lifetime ?? this.#accessTokenLifetime,
    );
  }

  expireAccessTokens(): void {
    const past = this.#clock() - 1;
    for (const token of this.#accessTokens.values()) token.expiresAt = past;
  }

  revokeRefreshTokens(): void {
    this.#refreshTokens.clear();
  }

  /** Honours a refresh token made elsewhere, e.g. one inside a token cache written by email-oauth2-proxy. */
  acceptRefreshToken(refreshToken: string, username: string, scope: string, clientId: string): void {
    this.#refreshTokens.set(refreshToken, { username, scope, clientId });
  }

  setRotateRefreshTokens(rotate: boolean): void {
    this.#rotateRefreshTokens = rotate;
  }

  setOmitRefreshTokenOnRefresh(omit: boolean): void {
    this.#omitRefreshTokenOnRefresh = omit;
  }

  setAccessTokenLifetime(seconds: number): void {
    this.#accessTokenLifetime = seconds;
  }

  setPasswordCheck(check: ((username: string, password: string) => boolean) | null): void {
    this.#passwordCheck = check;
  }

  setDevicePendingPolls(polls: number): void {
    this.#devicePendingPolls = polls;
  }

  approveDevice(userCode: string): void {
    this.#deviceByUserCode(userCode).decision = 'approved';
  }

  denyDevice(userCode: string): void {
    this.#deviceByUserCode(userCode).decision = 'denied';
  }

  // ---- endpoints ----

  // RFC 6749 §4.1.2.1: errors about the client or redirect URI must not be redirected; the rest are.
  authorize(query: URLSearchParams): { location: string } | { refusal: string } {
    const clientId = query.get('client_id') ?? '';
    const client = this.#clients.get(clientId);
    if (client === undefined) return { refusal: `unknown client_id '${clientId}'` };
    const redirectUri = query.get('redirect_uri');
    if (redirectUri === null || !URL.canParse(redirectUri)) {
      return { refusal: `missing or invalid redirect_uri '${redirectUri ?? ''}'` };
    }
    if (client.redirectUris !== undefined && !client.redirectUris.includes(redirectUri)) {
      return { refusal: `redirect_uri '${redirectUri}' is not registered for '${clientId}'` };
    }

    const target = new URL(redirectUri);
    const state = query.get('state');
    if (state !== null) target.searchParams.set('state', state);
    const challenge = query.get('code_challenge') ?? undefined;
    // RFC 7636 §4.3: without a method the challenge is 'plain'.
    const challengeMethod = query.get('code_challenge_method') ?? 'plain';
    if (query.get('response_type') !== 'code') {
      target.searchParams.set('error', 'unsupported_response_type');
    } else if (challenge !== undefined && challengeMethod !== 'S256' && challengeMethod !== 'plain') {
      target.searchParams.set('error', 'invalid_request');
    } else {
      const code = newToken('code');
      this.#codes.set(code, {
        clientId,
        redirectUri,
        scope: query.get('scope') ?? '',
        username: query.get('login_hint') || this.#defaultUsername,
        challenge,
        challengeMethod,
        expiresAt: this.#clock() + CODE_LIFETIME_MS,
      });
      target.searchParams.set('code', code);
    }
    return { location: target.href };
  }

  /** Answers a token request, or throws an OAuthError; `authorization` is the request's header. */
  /** A Google-style service account whose JWTs (RFC 7523 §2.1) are honoured for any subject. */
  registerServiceAccount(clientEmail: string, publicKeyPem: string): void {
    this.#serviceAccounts.set(clientEmail, publicKeyPem);
  }

  token(authorization: string | undefined, form: URLSearchParams): Record<string, unknown> {
    if (form.get('grant_type') === GrantType.jwtBearer) {
      this.#onGrant(GrantType.jwtBearer);
      return this.#tokenResponse(this.#serviceAccountGrant(required(form, 'assertion')), false);
    }
    const client = this.#authenticateClient(authorization, form);
    const grantType = required(form, 'grant_type');
    const known = Object.values(GrantType).find((value) => value === grantType);
    if (known === undefined) throw new OAuthError('unsupported_grant_type', `grant_type '${grantType}'`);
    this.#onGrant(known);
    switch (known) {
      case GrantType.authorizationCode:
        return this.#tokenResponse(this.#redeemCode(client, form), true);
      case GrantType.refreshToken:
        return this.#refresh(client, form);
      case GrantType.clientCredentials:
        if (client.clientSecret === undefined) {
          throw new OAuthError('unauthorized_client', 'client_credentials needs a confidential client');
        }
        // RFC 6749 §4.4.3: no refresh token for client credentials.
        return this.#tokenResponse(
          { clientId: client.clientId, username: this.#defaultUsername, scope: form.get('scope') ?? '' },
          false,
        );
      case GrantType.password:
        return this.#tokenResponse(this.#checkPassword(client, form), true);
      case GrantType.deviceCode:
        return this.#tokenResponse(this.#redeemDeviceCode(client, form), true);
      case GrantType.jwtBearer:
        throw new OAuthError('invalid_request', 'unreachable: handled before client authentication');
    }
  }

  #serviceAccountGrant(assertion: string): Grant {
    const claims = verifyJwt(assertion, (payload) => {
      const key = this.#serviceAccounts.get(String(payload.iss));
      if (key === undefined)
        throw new OAuthError('invalid_grant', `unknown service account '${String(payload.iss)}'`);
      return key;
    });
    if (typeof claims.sub !== 'string')
      throw new OAuthError('invalid_grant', 'the assertion names no subject');
    return { clientId: String(claims.iss), username: claims.sub, scope: String(claims.scope ?? '') };
  }

  #authenticateClient(authorization: string | undefined, form: URLSearchParams): OAuthClientRegistration {
    const basic = parseBasicCredentials(authorization);
    if (authorization !== undefined && basic === undefined) {
      throw new OAuthError('invalid_client', 'malformed Authorization header', 401);
    }
    if (basic !== undefined && form.has('client_secret')) {
      // RFC 6749 §2.3: a client must not use more than one authentication method per request.
      throw new OAuthError(
        'invalid_request',
        'client credentials both in the Authorization header and the body',
      );
    }
    const clientId = basic?.id ?? form.get('client_id');
    const secret = basic?.secret ?? form.get('client_secret') ?? undefined;
    if (clientId === null) throw new OAuthError('invalid_client', 'no client authentication', 401);
    const client = this.#clients.get(clientId);
    if (client === undefined) throw new OAuthError('invalid_client', `unknown client '${clientId}'`, 401);
    const assertion = form.get('client_assertion');
    if (client.jwtPublicKeyPem !== undefined || assertion !== null) {
      if (assertion === null || client.jwtPublicKeyPem === undefined) {
        throw new OAuthError(
          'invalid_client',
          `client '${clientId}' must authenticate with a signed assertion`,
          401,
        );
      }
      const claims = verifyJwt(assertion, () => client.jwtPublicKeyPem as string, 401);
      if (claims.iss !== clientId || claims.sub !== clientId) {
        throw new OAuthError(
          'invalid_client',
          'the client assertion is not issued by the client itself',
          401,
        );
      }
      return client;
    }
    if (client.clientSecret !== undefined && secret !== client.clientSecret) {
      throw new OAuthError('invalid_client', `wrong or missing secret for client '${clientId}'`, 401);
    }
    return client;
  }

  #redeemCode(client: OAuthClientRegistration, form: URLSearchParams): Grant {
    const code = required(form, 'code');
    const stored = this.#codes.get(code);
    // Single use (RFC 6749 §4.1.2): the first redemption consumes the code whether or not it succeeds.
    this.#codes.delete(code);
    if (stored === undefined) {
      throw new OAuthError('invalid_grant', 'authorization code unknown or already used');
    }
    if (stored.expiresAt <= this.#clock()) {
      throw new OAuthError('invalid_grant', 'authorization code expired');
    }
    if (stored.clientId !== client.clientId) {
      throw new OAuthError('invalid_grant', `authorization code was issued to '${stored.clientId}'`);
    }
    if (form.get('redirect_uri') !== stored.redirectUri) {
      throw new OAuthError('invalid_grant', 'redirect_uri differs from the authorization request');
    }
    if (stored.challenge !== undefined) {
      const verifier = form.get('code_verifier');
      if (verifier === null) throw new OAuthError('invalid_grant', 'code_verifier missing (PKCE)');
      const computed =
        stored.challengeMethod === 'S256'
          ? createHash('sha256').update(verifier).digest('base64url')
          : verifier;
      if (computed !== stored.challenge) {
        throw new OAuthError('invalid_grant', 'code_verifier does not match');
      }
    }
    return { clientId: client.clientId, username: stored.username, scope: stored.scope };
  }

  #refresh(client: OAuthClientRegistration, form: URLSearchParams): Record<string, unknown> {
    const refreshToken = required(form, 'refresh_token');
    const stored = this.#refreshTokens.get(refreshToken);
    if (stored === undefined) {
      throw new OAuthError('invalid_grant', 'refresh token unknown, revoked or rotated');
    }
    if (stored.clientId !== client.clientId) {
      throw new OAuthError('invalid_grant', `refresh token was issued to '${stored.clientId}'`);
    }
    const requested = form.get('scope');
    if (requested !== null) {
      const granted = new Set(stored.scope.split(' '));
      const extra = requested.split(' ').filter((scope) => scope !== '' && !granted.has(scope));
      if (extra.length > 0) {
        throw new OAuthError('invalid_scope', `scope not granted originally: ${extra.join(' ')}`);
      }
    }
    const grant = { ...stored, scope: requested ?? stored.scope };
    if (this.#rotateRefreshTokens) {
      this.#refreshTokens.delete(refreshToken);
      return this.#tokenResponse(grant, true);
    }
    const response = this.#tokenResponse(grant, false);
    return this.#omitRefreshTokenOnRefresh ? response : { ...response, refresh_token: refreshToken };
  }

  #checkPassword(client: OAuthClientRegistration, form: URLSearchParams): Grant {
    const username = required(form, 'username');
    const password = form.get('password') ?? '';
    const accepted = password !== '' && (this.#passwordCheck?.(username, password) ?? true);
    if (!accepted) throw new OAuthError('invalid_grant', `wrong password for '${username}'`);
    return { clientId: client.clientId, username, scope: form.get('scope') ?? '' };
  }

  /** RFC 8628 §3.2 device authorisation response; the user would go to `verificationUri`. */
  deviceAuthorization(
    authorization: string | undefined,
    form: URLSearchParams,
    verificationUri: string,
  ): Record<string, unknown> {
    const client = this.#authenticateClient(authorization, form);
    const deviceCode = newToken('device');
    const userCode = newUserCode();
    this.#deviceCodes.set(deviceCode, {
      clientId: client.clientId,
      scope: form.get('scope') ?? '',
      username: form.get('login_hint') || this.#defaultUsername,
      userCode,
      expiresAt: this.#clock() + DEVICE_CODE_LIFETIME_S * 1000,
      pendingPollsLeft: this.#devicePendingPolls,
      decision: 'pending',
    });
    return {
      device_code: deviceCode,
      user_code: userCode,
      verification_uri: verificationUri,
      verification_uri_complete: `${verificationUri}?user_code=${userCode}`,
      expires_in: DEVICE_CODE_LIFETIME_S,
      interval: this.#deviceInterval,
      message: `To sign in, open ${verificationUri} and enter the code ${userCode}.`,
    };
  }

  #redeemDeviceCode(client: OAuthClientRegistration, form: URLSearchParams): Grant {
    const deviceCode = required(form, 'device_code');
    const stored = this.#deviceCodes.get(deviceCode);
    if (stored === undefined) throw new OAuthError('invalid_grant', 'device code unknown or already used');
    if (stored.clientId !== client.clientId) {
      throw new OAuthError('invalid_grant', `device code was issued to '${stored.clientId}'`);
    }
    if (stored.expiresAt <= this.#clock()) throw new OAuthError('expired_token', 'device code expired');
    if (stored.decision === 'denied') throw new OAuthError('access_denied', 'the user declined the request');
    if (stored.decision === 'pending' && stored.pendingPollsLeft > 0) {
      stored.pendingPollsLeft -= 1;
      throw new OAuthError('authorization_pending', 'the user has not finished signing in');
    }
    this.#deviceCodes.delete(deviceCode);
    return { clientId: client.clientId, username: stored.username, scope: stored.scope };
  }

  /** RFC 7662 §2.2: only live access tokens are active. */
  /** When on, introspection calls every token inactive, as a provider does after consent is withdrawn. */
  setRejectAccessTokens(reject: boolean): void {
    this.#rejectAccessTokens = reject;
  }

  introspect(form: URLSearchParams): Record<string, unknown> {
    if (this.#rejectAccessTokens) return { active: false };
    const stored = this.#accessTokens.get(form.get('token') ?? '');
    const now = this.#clock();
    // Refresh tokens are never introspected as active, so a login with one fails as it would at a provider.
    if (stored === undefined || stored.expiresAt <= now) return { active: false };
    return {
      active: true,
      username: stored.username,
      sub: stored.username,
      scope: stored.scope,
      client_id: stored.clientId,
      token_type: 'Bearer',
      exp: Math.floor(stored.expiresAt / 1000),
    };
  }

  #deviceByUserCode(userCode: string): DeviceCode {
    for (const device of this.#deviceCodes.values()) if (device.userCode === userCode) return device;
    throw new Error(`no pending device authorisation with user code '${userCode}'`);
  }

  #issueAccessToken(grant: Grant, lifetime: number): string {
    const token = newToken('at');
    this.#accessTokens.set(token, { ...grant, expiresAt: this.#clock() + lifetime * 1000 });
    return token;
  }

  #tokenResponse(grant: Grant, withRefreshToken: boolean): Record<string, unknown> {
    const lifetime = this.#accessTokenLifetime;
    const response: Record<string, unknown> = {
      access_token: this.#issueAccessToken(grant, lifetime),
      token_type: 'Bearer',
      expires_in: lifetime,
      scope: grant.scope,
    };
    if (withRefreshToken) {
      const refreshToken = newToken('rt');
      this.#refreshTokens.set(refreshToken, { ...grant });
      response.refresh_token = refreshToken;
    }
    return response;
  }
}

/** Checks an RS256 JWT's signature and lifetime; returns its claims. */
function verifyJwt(
  jwt: string,
  keyFor: (claims: Record<string, unknown>) => string,
  status = 400,
): Record<string, unknown> {
  const [header, payload, signature] = jwt.split('.');
  if (header === undefined || payload === undefined || signature === undefined) {
    throw new OAuthError(
      status === 401 ? 'invalid_client' : 'invalid_grant',
      'the assertion is not a JWT',
      status,
    );
  }
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>;
  const valid = verify(
    'sha256',
    Buffer.from(`${header}.${payload}`),
    keyFor(claims),
    Buffer.from(signature, 'base64url'),
  );
  if (!valid)
    throw new OAuthError(
      status === 401 ? 'invalid_client' : 'invalid_grant',
      'bad assertion signature',
      status,
    );
  if (typeof claims.exp !== 'number' || claims.exp * 1000 < Date.now()) {
    throw new OAuthError(
      status === 401 ? 'invalid_client' : 'invalid_grant',
      'the assertion has expired',
      status,
    );
  }
  return claims;
}
