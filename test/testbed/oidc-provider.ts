import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider, {
  type Adapter,
  type AdapterPayload,
  type Configuration,
  type Grant,
  type InteractionResults,
  type JWK,
  type KoaContextWithOIDC,
} from 'oidc-provider';

/**
 * oidc-provider (a certified OpenID Connect / OAuth 2.0 authorization server) in this process, on 127.0.0.1 and
 * a free port, as the strict counterpart to the test bed's own OAuth server. It knows two clients: a confidential
 * one (client_secret_post: authorisation code, refresh, client credentials) and a public one (device flow). Its
 * login and consent are an interaction route of ours that approves at once: the user is the login_hint, and
 * every requested scope is granted. The bed records what the provider did (its events) and what the
 * interactions were asked, and plays the browser: `authorize` follows an authorisation URL to the redirect,
 * `approveDevice` enters a user code on the provider's own device pages.
 */
export const CONFIDENTIAL_CLIENT = {
  clientId: 'mailbridge-confidential',
  secret: 'confidential secret for the oidc-provider test',
  redirectUri: 'http://localhost:28081',
};
export const DEVICE_CLIENT = { clientId: 'mailbridge-device' };
/** Scopes the provider knows besides openid and offline_access: those of a mail provider. */
export const MAIL_SCOPES = ['imap', 'smtp'];
/** The access token lifetime the provider gives (expires_in). */
export const ACCESS_TOKEN_TTL_S = 3600;

export interface OidcProviderOptions {
  /** Serve the provider under this path: the issuer is then origin + path, as Keycloak's realms are. */
  mountPath?: string;
}

/** Something the provider reported: a grant at the token endpoint, an authorisation, or a failure. */
export interface ProviderEvent {
  event: string;
  grantType?: string | undefined;
  clientId?: string | undefined;
  error?: string | undefined;
}

/** What an interaction (login or consent) was asked, as the provider handed it to the interaction route. */
export interface InteractionRecord {
  prompt: string;
  params: Record<string, unknown>;
}

const SUCCESS_MARKER = 'oidc-provider-test: device approved';
const ERROR_MARKER = 'oidc-provider-test: error';
const MAX_BROWSER_STEPS = 12;
const BROWSER_TIMEOUT_MS = 5000;
const DAY_S = 24 * 3600;

export class OidcProviderBed {
  readonly events: ProviderEvent[] = [];
  readonly interactions: InteractionRecord[] = [];
  /** Failures of the interaction route itself; a test expects none. */
  readonly interactionFailures: unknown[] = [];

  private metadata: Record<string, unknown> = {};

  constructor(
    readonly provider: Provider,
    readonly origin: string,
    private readonly server: Server,
  ) {}

  /** Reads the provider's own metadata, where the tests take its endpoints from. */
  async discover(): Promise<void> {
    const response = await fetch(`${this.issuer}/.well-known/openid-configuration`, {
      signal: AbortSignal.timeout(BROWSER_TIMEOUT_MS),
    });
    if (!response.ok) throw new Error(`oidc-provider discovery failed: HTTP ${response.status}`);
    this.metadata = (await response.json()) as Record<string, unknown>;
  }

  get issuer(): string {
    return this.provider.issuer;
  }

  get authorizationEndpoint(): string {
    return this.endpoint('authorization_endpoint');
  }

  get tokenEndpoint(): string {
    return this.endpoint('token_endpoint');
  }

  get deviceAuthorizationEndpoint(): string {
    return this.endpoint('device_authorization_endpoint');
  }

  /** The grant_type of every successful token request, in order. */
  grantTypes(): string[] {
    return this.events
      .filter((event) => event.event === 'grant.success')
      .map((event) => event.grantType ?? '');
  }

  /** How many successful token requests had this grant_type. */
  grantCount(grantType: string): number {
    return this.grantTypes().filter((type) => type === grantType).length;
  }

  /**
   * Plays the browser from an authorisation URL through login and consent to the redirect the provider sends
   * back to the client, which is returned (it is never loaded). Throws if the provider stops elsewhere.
   */
  async authorize(url: string): Promise<string> {
    const browser = new Browser();
    let current = url;
    for (let step = 0; step < MAX_BROWSER_STEPS; step += 1) {
      const response = await browser.request(current);
      const body = await response.text();
      const location = response.headers.get('location');
      if (response.status < 300 || response.status >= 400 || !location) {
        throw new Error(`the provider stopped the browser at ${current}: HTTP ${response.status} ${body}`);
      }
      const next = new URL(location, current).href;
      if (!next.startsWith(`${this.origin}/`)) return next;
      current = next;
    }
    throw new Error(`no redirect to the client after ${MAX_BROWSER_STEPS} steps from ${url}`);
  }

  /**
   * Plays the person at the device verification page: opens `url` (verification_uri_complete), confirms the
   * code (or aborts), goes through login and consent, and returns 'approved', or the name of the error page the
   * provider showed (e.g. 'AbortedError').
   */
  async approveDevice(url: string, options: { abort?: boolean } = {}): Promise<string> {
    const browser = new Browser();
    let response = await browser.request(url);
    for (let step = 0; step < MAX_BROWSER_STEPS; step += 1) {
      const body = await response.text();
      const location = response.headers.get('location');
      if (response.status >= 300 && response.status < 400 && location) {
        response = await browser.request(new URL(location, response.url || url).href);
        continue;
      }
      if (body.includes(SUCCESS_MARKER)) return 'approved';
      const error = new RegExp(`${ERROR_MARKER} (\\w+)`).exec(body);
      if (error) return error[1] ?? 'error';
      const form = parseForm(body);
      if (response.status !== 200 || !form) {
        throw new Error(`the device page stopped the browser: HTTP ${response.status} ${body}`);
      }
      if (options.abort && form.fields.has('confirm')) {
        form.fields.delete('confirm');
        form.fields.set('abort', 'yes');
      }
      response = await browser.request(new URL(form.action, response.url || url).href, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.fields.toString(),
      });
    }
    throw new Error(`the device approval did not finish within ${MAX_BROWSER_STEPS} steps`);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private endpoint(name: string): string {
    const value = this.metadata[name];
    if (typeof value !== 'string') throw new Error(`the provider's metadata has no ${name}`);
    return value;
  }
}

export async function startOidcProvider(options: OidcProviderOptions = {}): Promise<OidcProviderBed> {
  const mountPath = options.mountPath ?? '';
  let handle: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503).end();
  };
  const server = createServer((req, res) => handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  const provider = new Provider(`${origin}${mountPath}`, configuration());
  const bed = new OidcProviderBed(provider, origin, server);
  const callback = provider.callback();
  handle = (req, res) => {
    const path = req.url ?? '/';
    if (path.startsWith('/interaction/')) {
      void approveInteraction(bed, req, res);
    } else if (mountPath && path.startsWith(`${mountPath}/`)) {
      // As a framework mounts it: the provider sees its own path and finds the mount in originalUrl.
      Object.assign(req, { originalUrl: path });
      req.url = path.slice(mountPath.length);
      void callback(req, res);
    } else if (!mountPath) {
      void callback(req, res);
    } else {
      res.writeHead(404).end();
    }
  };
  record(bed, provider);
  try {
    await bed.discover();
  } catch (error: unknown) {
    await bed.close();
    throw error;
  }
  return bed;
}

/**
 * `access_type=offline` counts as a request for offline access, as Google does: mailbridge sends it (as
 * email-oauth2-proxy does) but not prompt=consent, without which OpenID Connect Core §11 ignores
 * offline_access in the code flow.
 */
function configuration(): Configuration {
  const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  /** Whether the grant behind a code, device code or refresh token allows offline access. */
  const offline = (ctx: KoaContextWithOIDC, scopes: Set<string>) =>
    scopes.has('offline_access') || hasOfflineAccess(ctx.oidc.entities.Grant as Grant | undefined);
  const store = new Map<string, Stored>();
  return {
    adapter: (model: string) => new MemoryAdapter(model, store),
    jwks: { keys: [{ ...(signingKey as JWK), kid: 'test-signing-key', use: 'sig', alg: 'RS256' }] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    clients: [
      {
        client_id: CONFIDENTIAL_CLIENT.clientId,
        client_secret: CONFIDENTIAL_CLIENT.secret,
        token_endpoint_auth_method: 'client_secret_post',
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
        redirect_uris: [CONFIDENTIAL_CLIENT.redirectUri],
        scope: ['openid', 'offline_access', ...MAIL_SCOPES].join(' '),
      },
      {
        client_id: DEVICE_CLIENT.clientId,
        token_endpoint_auth_method: 'none',
        grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
        response_types: [],
        redirect_uris: [],
        application_type: 'native',
        scope: ['openid', 'offline_access', ...MAIL_SCOPES].join(' '),
      },
    ],
    scopes: ['openid', 'offline_access', ...MAIL_SCOPES],
    // Captured so the interaction can see it; oidc-provider would otherwise drop it silently.
    extraParams: ['access_type'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: {
        enabled: true,
        userCodeInputSource: (ctx, form, _out, error) => {
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html><html><body>${error ? `<p>${ERROR_MARKER} ${error.name}</p>` : ''}${form}</body></html>`;
        },
        userCodeConfirmSource: (ctx, form, _client, _deviceInfo, userCode) => {
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html><html><body><p>Confirm ${userCode}</p>${form}</body></html>`;
        },
        successSource: (ctx) => {
          ctx.type = 'html';
          ctx.body = `<!DOCTYPE html><html><body><p>${SUCCESS_MARKER}</p></body></html>`;
        },
      },
    },
    // Strict: PKCE (S256) for every authorisation request, confidential clients too (OAuth 2.1).
    pkce: { required: () => true },
    ttl: {
      AccessToken: ACCESS_TOKEN_TTL_S,
      AuthorizationCode: 60,
      ClientCredentials: ACCESS_TOKEN_TTL_S,
      DeviceCode: 600,
      Grant: DAY_S,
      IdToken: ACCESS_TOKEN_TTL_S,
      Interaction: 600,
      RefreshToken: DAY_S,
      Session: DAY_S,
    },
    rotateRefreshToken: true,
    issueRefreshToken: (ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && offline(ctx, code.scopes),
    expiresWithSession: (ctx, code) => !offline(ctx, code.scopes),
    findAccount: (_ctx, sub) => ({ accountId: sub, claims: () => ({ sub, email: sub }) }),
    renderError: (ctx, out) => {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><body><p>${ERROR_MARKER} ${out.error}: ${out.error_description ?? ''}</p></body></html>`;
    },
  };
}

function hasOfflineAccess(grant: Grant | undefined): boolean {
  return grant?.getOIDCScope().split(' ').includes('offline_access') ?? false;
}

/** The login and consent of a person who approves everything at once, as the login_hint's user. */
async function approveInteraction(
  bed: OidcProviderBed,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const { provider } = bed;
  try {
    const details = await provider.interactionDetails(req, res);
    const params = details.params as Record<string, unknown>;
    bed.interactions.push({ prompt: details.prompt.name, params: { ...params } });
    let result: InteractionResults;
    if (details.prompt.name === 'login') {
      const accountId = typeof params.login_hint === 'string' ? params.login_hint : '';
      result = accountId
        ? { login: { accountId } }
        : { error: 'login_required', error_description: 'no login_hint to sign in as' };
    } else {
      const clientId = String(params.client_id);
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session?.accountId, clientId });
      if (!grant) throw new Error(`grant ${details.grantId} not found`);
      const missing = details.prompt.details.missingOIDCScope;
      if (Array.isArray(missing)) grant.addOIDCScope(missing.join(' '));
      if (params.access_type === 'offline') grant.addOIDCScope('offline_access');
      result = { consent: { grantId: await grant.save() } };
    }
    await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
  } catch (error: unknown) {
    bed.interactionFailures.push(error);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${String(error)}`);
  }
}

function record(bed: OidcProviderBed, provider: Provider): void {
  const from = (ctx: KoaContextWithOIDC) => ({
    grantType: typeof ctx.oidc.params?.grant_type === 'string' ? ctx.oidc.params.grant_type : undefined,
    clientId: ctx.oidc.client?.clientId,
  });
  provider.on('grant.success', (ctx) => bed.events.push({ event: 'grant.success', ...from(ctx) }));
  provider.on('grant.error', (ctx, error) =>
    bed.events.push({ event: 'grant.error', ...from(ctx), error: error.error }),
  );
  provider.on('grant.revoked', (ctx) => bed.events.push({ event: 'grant.revoked', ...from(ctx) }));
  provider.on('authorization.success', (ctx) =>
    bed.events.push({ event: 'authorization.success', ...from(ctx) }),
  );
  provider.on('authorization.error', (ctx, error) =>
    bed.events.push({ event: 'authorization.error', ...from(ctx), error: error.error }),
  );
  provider.on('server_error', (_ctx, error) =>
    bed.events.push({ event: 'server_error', error: error.message }),
  );
}

/** A browser's cookie jar and redirects, for one person in one flow. */
class Browser {
  private readonly cookies = new Map<string, string>();

  async request(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size > 0) {
      headers.set('cookie', [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; '));
    }
    const response = await fetch(url, {
      ...init,
      headers,
      redirect: 'manual',
      signal: AbortSignal.timeout(BROWSER_TIMEOUT_MS),
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';');
      const equals = pair.indexOf('=');
      const name = pair.slice(0, equals).trim();
      const value = pair.slice(equals + 1).trim();
      const expires = attributes
        .map((attribute) => /^\s*expires=(.*)$/i.exec(attribute)?.[1])
        .find((date) => date !== undefined);
      const gone = value === '' || (expires !== undefined && Date.parse(expires) <= Date.now());
      if (gone) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return response;
  }
}

/** The first form of a page: its action and hidden fields (the provider's device pages have no others). */
function parseForm(html: string): { action: string; fields: URLSearchParams } | undefined {
  const form = /<form\b[^>]*\baction="([^"]*)"[^>]*>([\s\S]*?)<\/form>/i.exec(html);
  if (!form) return undefined;
  const fields = new URLSearchParams();
  for (const input of (form[2] ?? '').matchAll(/<input\b[^>]*>/gi)) {
    const name = /\bname="([^"]*)"/.exec(input[0])?.[1];
    const value = /\bvalue="([^"]*)"/.exec(input[0])?.[1];
    if (name !== undefined && value !== undefined) fields.set(name, unescapeHtml(value));
  }
  return { action: unescapeHtml(form[1] ?? ''), fields };
}

function unescapeHtml(text: string): string {
  return text
    .replace(/&quot;/g, '"')
    .replace(/&#39;|&#x27;/g, "'")
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

interface Stored {
  payload: AdapterPayload;
  expiresAt: number | undefined;
}

/**
 * The provider's storage, in memory and one per provider (oidc-provider's own memory adapter is one store for
 * the whole process, and warns that it is for development only).
 */
class MemoryAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly store: Map<string, Stored>,
  ) {}

  private key(id: string): string {
    return `${this.model}:${id}`;
  }

  private live(key: string): Stored | undefined {
    const entry = this.store.get(key);
    if (entry?.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
      this.store.delete(key);
      return undefined;
    }
    return entry;
  }

  async upsert(id: string, payload: AdapterPayload, expiresIn?: number): Promise<void> {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    this.store.set(this.key(id), { payload: { ...payload }, expiresAt });
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.live(this.key(id))?.payload;
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.findBy((payload) => payload.userCode === userCode);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.findBy((payload) => payload.uid === uid);
  }

  async consume(id: string): Promise<void> {
    const entry = this.live(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id: string): Promise<void> {
    this.store.delete(this.key(id));
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    for (const [key, entry] of this.store) {
      if (entry.payload.grantId === grantId) this.store.delete(key);
    }
  }

  private findBy(match: (payload: AdapterPayload) => boolean): AdapterPayload | undefined {
    const prefix = `${this.model}:`;
    for (const key of this.store.keys()) {
      if (!key.startsWith(prefix)) continue;
      const entry = this.live(key);
      if (entry && match(entry.payload)) return entry.payload;
    }
    return undefined;
  }
}
