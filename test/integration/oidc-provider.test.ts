import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { Authorisations, type FrontEnd, type PendingAuthorisation } from '../../src/authorise/pending.ts';
import type { AccountConfig } from '../../src/config/accounts.ts';
import { type CachedTokens, ConfigStore } from '../../src/config/store.ts';
import { ErrorCode, isMailbridgeError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { TokenClient } from '../../src/oauth/token-client.ts';
import { Cryptographer } from '../../src/tokens/cryptographer.ts';
import { KeyDeriver } from '../../src/tokens/key-derivation.ts';
import { TokenService } from '../../src/tokens/token-service.ts';
import {
  ACCESS_TOKEN_TTL_S,
  CONFIDENTIAL_CLIENT,
  DEVICE_CLIENT,
  type OidcProviderBed,
  startOidcProvider,
} from '../testbed/oidc-provider.ts';

/**
 * mailbridge's OAuth client against oidc-provider, a certified and strict authorization server (PKCE required for
 * every client, refresh tokens rotated, client authentication as registered), with mailbridge's real code: the
 * token service for the authorisation code with PKCE, refresh, client credentials and the device flow, and the
 * token client alone where the provider's answers are the point. The person is played by `Person`, who follows
 * the authorisation URL through the provider's login and consent and hands the redirect back, or enters the
 * device code on the provider's own pages.
 */
const PASSWORD = 'mail client password';
const AUTHORIZATION_CODE = 'authorization_code';
const REFRESH_TOKEN = 'refresh_token';
const CLIENT_CREDENTIALS = 'client_credentials';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';
/** Every test's longest wait for a person; the device flow polls every 5 s (RFC 8628's default interval). */
const AUTHORISATION_WAIT_S = 20;
const TEST_TIMEOUT_MS = 60_000;

class Person implements FrontEnd {
  readonly completesCodeRequests = true;
  readonly offered: PendingAuthorisation[] = [];
  readonly failures: unknown[] = [];
  constructor(private readonly bed: OidcProviderBed) {}

  offer(pending: PendingAuthorisation): void {
    this.offered.push(pending);
    const failed = (error: unknown) => {
      this.failures.push(error);
      pending.fail(error);
    };
    if (pending.details.kind === 'code') {
      this.bed.authorize(pending.url).then((redirect) => {
        try {
          pending.complete(redirect);
        } catch (error: unknown) {
          // As the redirect listener does: a refusal carried by the redirect answers the request.
          failed(error);
        }
      }, failed);
    } else {
      this.bed.approveDevice(pending.url).then((outcome) => {
        if (outcome !== 'approved') failed(new Error(`the device page ended in ${outcome}`));
      }, failed);
    }
  }

  withdraw(): void {}
}

function section(name: string, values: Record<string, string>): string {
  return `[${name}]\n${Object.entries(values)
    .map(([key, value]) => `${key} = ${value}`)
    .join('\n')}\n\n`;
}

describe('mailbridge OAuth client against oidc-provider (certified, strict)', () => {
  let bed: OidcProviderBed;
  let dir: string;
  let clock: number;
  const deriver = new KeyDeriver();

  /** A token service over a new config file holding `text`; `fetch` is the one its token client uses. */
  async function service(text: string, options: { provider?: OidcProviderBed; fetch?: typeof fetch } = {}) {
    const configPath = join(dir, `config-${Math.random().toString(36).slice(2)}.ini`);
    await writeFile(
      configPath,
      `${text}${section('emailproxy', { authorisation_wait: String(AUTHORISATION_WAIT_S) })}`,
    );
    const person = new Person(options.provider ?? bed);
    const tokens = new TokenService({
      store: await ConfigStore.load({ configPath, logger: silentLogger() }),
      deriver,
      tokenClient: new TokenClient({ timeoutMs: 5000, ...(options.fetch ? { fetch: options.fetch } : {}) }),
      authorisations: new Authorisations([person]),
      logger: silentLogger(),
      now: () => clock,
    });
    return { tokens, person, configPath };
  }

  /** An account of the confidential client for the authorisation-code grant. */
  function codeAccount(username: string, provider = bed, extra: Record<string, string> = {}): string {
    return section(username, {
      permission_url: provider.authorizationEndpoint,
      token_url: provider.tokenEndpoint,
      oauth2_scope: 'imap offline_access',
      redirect_uri: CONFIDENTIAL_CLIENT.redirectUri,
      client_id: CONFIDENTIAL_CLIENT.clientId,
      client_secret: CONFIDENTIAL_CLIENT.secret,
      use_pkce: 'True',
      ...extra,
    });
  }

  function deviceAccount(username: string): string {
    return section(username, {
      permission_url: bed.deviceAuthorizationEndpoint,
      token_url: bed.tokenEndpoint,
      oauth2_scope: 'imap offline_access',
      oauth2_flow: 'device',
      client_id: DEVICE_CLIENT.clientId,
    });
  }

  async function storedTokens(configPath: string, username: string): Promise<CachedTokens> {
    const store = await ConfigStore.load({ configPath, logger: silentLogger() });
    return store.cachedTokens(username);
  }

  async function accountOf(configPath: string, username: string): Promise<AccountConfig> {
    const account = (await ConfigStore.load({ configPath, logger: silentLogger() })).account(username);
    assert.ok(account, `no account ${username} in ${configPath}`);
    return account;
  }

  /** The stored values, decrypted with the client's password as mailbridge does. */
  async function decrypted(stored: CachedTokens): Promise<{ access: string; refresh: string | undefined }> {
    const crypto = await Cryptographer.create({
      deriver,
      password: PASSWORD,
      salt: stored.token_salt,
      iterations: Number(stored.token_iterations),
    });
    assert.ok(stored.access_token, 'an access token is stored');
    return {
      access: crypto.decrypt(stored.access_token),
      refresh: stored.refresh_token === undefined ? undefined : crypto.decrypt(stored.refresh_token),
    };
  }

  /** Tokens are Fernet tokens in the file; neither the access nor the refresh token appears in the clear. */
  async function assertStoredEncrypted(configPath: string, username: string, plain: string[]): Promise<void> {
    const text = await readFile(configPath, 'utf8');
    const stored = await storedTokens(configPath, username);
    assert.match(stored.access_token ?? '', /^gAAAAA/);
    if (stored.refresh_token !== undefined) assert.match(stored.refresh_token, /^gAAAAA/);
    for (const value of plain) assert.equal(text.includes(value), false, 'a token is stored in the clear');
  }

  before(async () => {
    bed = await startOidcProvider();
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-oidc-provider-'));
  });

  after(async () => {
    await bed?.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(() => {
    clock = Math.floor(Date.now() / 1000);
    bed.events.length = 0;
    bed.interactions.length = 0;
  });

  afterEach(() => {
    assert.deepEqual(
      bed.events.filter((event) => event.event === 'server_error'),
      [],
      'the provider failed internally',
    );
    assert.deepEqual(bed.interactionFailures, [], 'the interaction route failed');
  });

  it('authorisation code with PKCE: sign-in as the login_hint user, one code redeemed, tokens stored encrypted', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const user = 'code@example.test';
    const { tokens, person, configPath } = await service(codeAccount(user));
    const grant = await tokens.accessToken(user, PASSWORD);
    assert.deepEqual(person.failures, []);
    assert.equal(person.offered.length, 1);

    // What the provider was asked: mailbridge's request as it arrived at the login and consent.
    assert.deepEqual(
      bed.interactions.map((interaction) => interaction.prompt),
      ['login', 'consent'],
    );
    const params = bed.interactions[0]?.params ?? {};
    assert.equal(params.client_id, CONFIDENTIAL_CLIENT.clientId);
    assert.equal(params.redirect_uri, CONFIDENTIAL_CLIENT.redirectUri);
    assert.equal(params.login_hint, user);
    assert.equal(params.access_type, 'offline');
    assert.equal(params.code_challenge_method, 'S256');
    assert.match(String(params.code_challenge), /^[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(bed.grantTypes(), [AUTHORIZATION_CODE]);
    assert.equal(
      bed.events.find((event) => event.event === 'grant.success')?.clientId,
      CONFIDENTIAL_CLIENT.clientId,
    );

    // The token is the provider's own, for this user, client and scope.
    const accessToken = await bed.provider.AccessToken.find(grant.accessToken);
    assert.ok(accessToken, 'the provider knows the access token mailbridge holds');
    assert.equal(accessToken.accountId, user);
    assert.equal(accessToken.clientId, CONFIDENTIAL_CLIENT.clientId);
    assert.ok(accessToken.scopes.has('imap'));

    const stored = await storedTokens(configPath, user);
    const { access, refresh } = await decrypted(stored);
    assert.equal(access, grant.accessToken);
    assert.ok(refresh, 'a refresh token is stored');
    const refreshToken = await bed.provider.RefreshToken.find(refresh);
    assert.equal(refreshToken?.accountId, user);
    // The expiry mailbridge keeps is the provider's expires_in.
    assert.equal(Number(stored.access_token_expiry), clock + ACCESS_TOKEN_TTL_S);
    await assertStoredEncrypted(configPath, user, [grant.accessToken, refresh]);

    // The next login uses the stored token: no second authorisation, no token request.
    const again = await tokens.accessToken(user, PASSWORD);
    assert.equal(again.fromCache, true);
    assert.equal(again.accessToken, grant.accessToken);
    assert.deepEqual(bed.grantTypes(), [AUTHORIZATION_CODE]);
  });

  it("with openid in the scope, the provider's ID token is set aside unvalidated and the tokens are used", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const user = 'openid@example.test';
    const bodies: string[] = [];
    const recording: typeof fetch = async (input, init) => {
      const response = await fetch(input, init);
      bodies.push(await response.clone().text());
      return response;
    };
    const { tokens, person, configPath } = await service(
      codeAccount(user, bed, { oauth2_scope: 'openid imap offline_access' }),
      { fetch: recording },
    );
    const grant = await tokens.accessToken(user, PASSWORD);
    assert.deepEqual(person.failures, []);
    const response = JSON.parse(bodies[0] ?? '{}') as Record<string, unknown>;
    assert.equal(typeof response.id_token, 'string', 'the provider sent an ID token');
    assert.equal(response.access_token, grant.accessToken);
    assert.ok((await bed.provider.AccessToken.find(grant.accessToken))?.scopes.has('openid'));
    assert.ok((await storedTokens(configPath, user)).refresh_token);
  });

  it('refresh with rotation: each new refresh token is stored, the rotated-out one is refused, and a revoked grant means asking again', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const user = 'refresh@example.test';
    const { tokens, person, configPath } = await service(codeAccount(user));
    const first = await tokens.accessToken(user, PASSWORD);
    const original = await decrypted(await storedTokens(configPath, user));

    // A token the server refused: one refresh, and the rotated refresh token replaces the stored one.
    const renewed = await tokens.accessToken(user, PASSWORD, { rejectedAccessToken: first.accessToken });
    assert.equal(renewed.fromCache, false);
    assert.notEqual(renewed.accessToken, first.accessToken);
    assert.deepEqual(bed.grantTypes(), [AUTHORIZATION_CODE, REFRESH_TOKEN]);
    const rotated = await decrypted(await storedTokens(configPath, user));
    assert.equal(rotated.access, renewed.accessToken);
    assert.ok(rotated.refresh && rotated.refresh !== original.refresh, 'the refresh token was rotated');
    assert.ok(
      (await bed.provider.RefreshToken.find(original.refresh ?? ''))?.consumed,
      'the old one is used up',
    );

    // Background refresh before expiry: the same, with the stored (rotated) refresh token.
    clock += 3600 - 600 - 60;
    await tokens.refreshUnlocked();
    assert.deepEqual(bed.grantTypes(), [AUTHORIZATION_CODE, REFRESH_TOKEN, REFRESH_TOKEN]);
    const background = await decrypted(await storedTokens(configPath, user));
    assert.notEqual(background.refresh, rotated.refresh);
    await assertStoredEncrypted(configPath, user, [background.access, background.refresh ?? '']);

    // Replaying a rotated-out refresh token is refused as invalid_grant; the provider revokes the whole grant.
    const account = await accountOf(configPath, user);
    const credential = { kind: 'secret', secret: CONFIDENTIAL_CLIENT.secret } as const;
    await assert.rejects(
      new TokenClient({ timeoutMs: 5000 }).refresh(account, credential, original.refresh ?? ''),
      (error: unknown) => isMailbridgeError(error, ErrorCode.OAUTH_GRANT_INVALID),
    );
    assert.ok(bed.events.some((event) => event.event === 'grant.revoked'));
    assert.equal(await bed.provider.AccessToken.find(background.access), undefined);

    // mailbridge's next refresh meets the revoked grant and asks the person again, once.
    const reauthorised = await tokens.accessToken(user, PASSWORD, {
      rejectedAccessToken: background.access,
    });
    assert.equal(person.offered.length, 2);
    assert.deepEqual(person.failures, []);
    assert.ok(await bed.provider.AccessToken.find(reauthorised.accessToken));
    assert.deepEqual(bed.grantTypes().slice(-1), [AUTHORIZATION_CODE]);
  });

  it('client credentials: client_secret_post, nobody asked, the token stored encrypted; a wrong secret is invalid_client', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const app = 'app@example.test';
    const values = {
      token_url: bed.tokenEndpoint,
      oauth2_scope: 'smtp',
      oauth2_flow: 'client_credentials',
      client_id: CONFIDENTIAL_CLIENT.clientId,
      client_secret: CONFIDENTIAL_CLIENT.secret,
    };
    const { tokens, person, configPath } = await service(section(app, values));
    const grant = await tokens.accessToken(app, PASSWORD);
    assert.equal(person.offered.length, 0, 'nobody is asked');
    assert.deepEqual(bed.grantTypes(), [CLIENT_CREDENTIALS]);
    const token = await bed.provider.ClientCredentials.find(grant.accessToken);
    assert.equal(token?.clientId, CONFIDENTIAL_CLIENT.clientId);
    assert.equal(token?.scope, 'smtp');

    const stored = await storedTokens(configPath, app);
    assert.equal((await decrypted(stored)).access, grant.accessToken);
    assert.equal(stored.refresh_token, undefined, 'client credentials come without a refresh token');
    await assertStoredEncrypted(configPath, app, [grant.accessToken]);

    const wrong = await service(section(app, { ...values, client_secret: 'not the secret' }));
    await assert.rejects(
      wrong.tokens.accessToken(app, PASSWORD),
      (error: unknown) =>
        isMailbridgeError(error, ErrorCode.OAUTH_PROVIDER) && /invalid_client/.test(error.message),
    );
    assert.deepEqual(bed.grantTypes(), [CLIENT_CREDENTIALS]);
  });

  it('device flow (RFC 8628): a public client shows the code, the person approves it on the provider, tokens stored encrypted', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const user = 'device@example.test';
    const { tokens, person, configPath } = await service(deviceAccount(user));
    const grant = await tokens.accessToken(user, PASSWORD);
    assert.deepEqual(person.failures, []);
    const [pending] = person.offered;
    assert.equal(pending?.details.kind, 'device');
    if (pending?.details.kind !== 'device') return;
    assert.match(pending.details.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.equal(pending.details.verificationUri, `${bed.origin}/device`);
    assert.equal(pending.url, `${bed.origin}/device?user_code=${pending.details.userCode}`);

    // The login_hint mailbridge sent with the device request reached the provider's login.
    assert.equal(bed.interactions[0]?.prompt, 'login');
    assert.equal(bed.interactions[0]?.params.login_hint, user);
    assert.deepEqual(bed.grantTypes(), [DEVICE_CODE]);
    const accessToken = await bed.provider.AccessToken.find(grant.accessToken);
    assert.equal(accessToken?.accountId, user);
    assert.equal(accessToken?.clientId, DEVICE_CLIENT.clientId);

    const stored = await decrypted(await storedTokens(configPath, user));
    assert.equal(stored.access, grant.accessToken);
    assert.ok(stored.refresh, 'offline_access in a device request brings a refresh token');
    await assertStoredEncrypted(configPath, user, [stored.access, stored.refresh]);

    // The public client refreshes without a secret; the rotated refresh token is stored.
    const renewed = await tokens.accessToken(user, PASSWORD, { rejectedAccessToken: grant.accessToken });
    assert.notEqual(renewed.accessToken, grant.accessToken);
    assert.deepEqual(bed.grantTypes(), [DEVICE_CODE, REFRESH_TOKEN]);
    const rotated = await decrypted(await storedTokens(configPath, user));
    assert.equal(rotated.access, renewed.accessToken);
    assert.notEqual(rotated.refresh, stored.refresh);
  });

  it('device polls: authorization_pending until approved, tokens once, then invalid_grant; an aborted code is access_denied', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const user = 'poll@example.test';
    const { configPath } = await service(deviceAccount(user));
    const account = await accountOf(configPath, user);
    const client = new TokenClient({ timeoutMs: 5000 });
    const none = { kind: 'none' } as const;

    const device = await client.startDevice(account, none);
    assert.equal(device.interval, 5, 'no interval given: RFC 8628 §3.2 says 5 seconds');
    assert.ok(device.expiresIn > 0);
    assert.deepEqual(await client.pollDevice(account, none, device.deviceCode), {
      pending: 'authorization_pending',
    });
    assert.equal(await bed.approveDevice(device.verificationUriComplete ?? ''), 'approved');
    const poll = await client.pollDevice(account, none, device.deviceCode);
    assert.ok('tokens' in poll && poll.tokens.accessToken && poll.tokens.refreshToken);
    await assert.rejects(client.pollDevice(account, none, device.deviceCode), (error: unknown) =>
      isMailbridgeError(error, ErrorCode.OAUTH_GRANT_INVALID),
    );

    const refused = await client.startDevice(account, none);
    assert.equal(
      await bed.approveDevice(refused.verificationUriComplete ?? '', { abort: true }),
      'AbortedError',
    );
    await assert.rejects(
      client.pollDevice(account, none, refused.deviceCode),
      (error: unknown) =>
        isMailbridgeError(error, ErrorCode.OAUTH_PROVIDER) && /access_denied/.test(error.message),
    );
    assert.deepEqual(bed.grantTypes(), [DEVICE_CODE]);
  });

  it("the provider's refusal in the redirect (PKCE required, none sent) reaches the waiting login", {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const user = 'nopkce@example.test';
    const { tokens, person } = await service(codeAccount(user, bed, { use_pkce: 'False' }));
    await assert.rejects(
      tokens.accessToken(user, PASSWORD),
      (error: unknown) => isMailbridgeError(error, ErrorCode.OAUTH_PROVIDER) && /PKCE/.test(error.message),
    );
    assert.equal(person.offered.length, 1);
    assert.deepEqual(bed.grantTypes(), [], 'no code was issued or redeemed');
  });

  it('redeems the code of a provider whose issuer has a path (RFC 9207 iss in the redirect)', {
    timeout: TEST_TIMEOUT_MS,
  }, async () => {
    const realm = await startOidcProvider({ mountPath: '/realms/mail' });
    try {
      assert.equal(realm.issuer, `${realm.origin}/realms/mail`);
      const user = 'realm@example.test';
      const { tokens, person } = await service(codeAccount(user, realm), { provider: realm });
      const grant = await tokens.accessToken(user, PASSWORD);
      assert.deepEqual(person.failures, []);
      assert.ok(await realm.provider.AccessToken.find(grant.accessToken));
    } finally {
      await realm.close();
    }
  });
});
