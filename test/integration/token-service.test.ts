import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Authorisations, type FrontEnd, type PendingAuthorisation } from '../../src/authorise/pending.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { ErrorCode, isMailbridgeError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { TokenClient } from '../../src/oauth/token-client.ts';
import { KeyDeriver } from '../../src/tokens/key-derivation.ts';
import { TokenService } from '../../src/tokens/token-service.ts';
import { type OAuthTestServer, startOAuthServer } from '../testbed/oauth-server.ts';

/**
 * The token policy against a real OAuth server (the test bed's): what is refreshed when, what survives a
 * failing provider, and how many times a person is asked. The person is played by `Person`, who opens the
 * authorisation URL and pastes the redirect back.
 */
const USER = 'frank@example.test';
const PASSWORD = 'frank password';

/** The person at the browser: signs in at once (or after `delayMs`) and pastes the redirect back. */
class Person implements FrontEnd {
  readonly completesCodeRequests = true;
  prompts = 0;
  delayMs = 0;
  constructor(private readonly oauth: OAuthTestServer) {}
  offer(pending: PendingAuthorisation): void {
    this.prompts += 1;
    if (pending.details.kind !== 'code') return;
    setTimeout(() => {
      this.oauth.authorize(pending.url).then(
        (redirect) => pending.complete(redirect),
        (error: unknown) => pending.fail(error),
      );
    }, this.delayMs);
  }
  withdraw(): void {}
}

describe('token service against a real OAuth server', () => {
  let oauth: OAuthTestServer;
  let dir: string;
  let configPath: string;
  let person: Person;
  let clock: number;
  const deriver = new KeyDeriver();

  /** A token service over the config file; `globals` are lines for its [emailproxy] section. */
  async function service(globals = ''): Promise<TokenService> {
    if (globals)
      await writeFile(configPath, `${await readFile(configPath, 'utf8')}\n[emailproxy]\n${globals}\n`);
    return new TokenService({
      store: await ConfigStore.load({ configPath, logger: silentLogger() }),
      deriver,
      tokenClient: new TokenClient({ timeoutMs: 5000 }),
      authorisations: new Authorisations([person]),
      logger: silentLogger(),
      now: () => clock,
    });
  }

  before(async () => {
    oauth = await startOAuthServer();
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-tokens-'));
    configPath = join(dir, 'emailproxy.config');
  });

  after(async () => {
    await oauth.close();
    await rm(dir, { recursive: true, force: true });
  });

  beforeEach(async () => {
    clock = Math.floor(Date.now() / 1000);
    person = new Person(oauth);
    oauth.setFailure(null);
    await writeFile(
      configPath,
      `[${USER}]\npermission_url = ${oauth.authorizationEndpoint}\ntoken_url = ${oauth.tokenEndpoint}\n` +
        'oauth2_scope = imap offline_access\nredirect_uri = http://localhost:28081\n' +
        'client_id = test-client\nclient_secret = test-secret\n',
    );
  });

  it('asks once and redeems one code, however many logins wait for a new account', async () => {
    const tokens = await service();
    const before = oauth.counts.grants.authorization_code;
    const grants = await Promise.all(Array.from({ length: 20 }, () => tokens.accessToken(USER, PASSWORD)));
    assert.equal(person.prompts, 1);
    assert.equal(oauth.counts.grants.authorization_code, before + 1);
    assert.equal(new Set(grants.map((grant) => grant.accessToken)).size, 1);
  });

  it('keeps using a still-valid token when the provider fails, and keeps every token on disk', async () => {
    const tokens = await service();
    const first = await tokens.accessToken(USER, PASSWORD);
    const saved = await readFile(configPath, 'utf8');
    clock += 3600 - 300; // inside the 10-minute refresh margin, not expired
    oauth.setFailure(503);
    const during = await tokens.accessToken(USER, PASSWORD);
    assert.equal(during.accessToken, first.accessToken);
    assert.equal(await readFile(configPath, 'utf8'), saved);
  });

  it('fails as a network problem once the token has expired, still keeping every token', async () => {
    const tokens = await service();
    await tokens.accessToken(USER, PASSWORD);
    const saved = await readFile(configPath, 'utf8');
    clock += 7200;
    oauth.setFailure(503);
    await assert.rejects(tokens.accessToken(USER, PASSWORD), (error: unknown) =>
      isMailbridgeError(error, ErrorCode.OAUTH_NETWORK),
    );
    assert.equal(await readFile(configPath, 'utf8'), saved);
    assert.equal(person.prompts, 1);
  });

  it('uses a still-valid token after invalid_grant rather than asking anyone, then asks once it expires', async () => {
    const tokens = await service();
    const first = await tokens.accessToken(USER, PASSWORD);
    oauth.revokeRefreshTokens();
    clock += 3600 - 300;
    assert.equal((await tokens.accessToken(USER, PASSWORD)).accessToken, first.accessToken);
    assert.equal(person.prompts, 1);
    clock += 600;
    const renewed = await tokens.accessToken(USER, PASSWORD);
    assert.notEqual(renewed.accessToken, first.accessToken);
    assert.equal(person.prompts, 2);
  });

  it('refreshes once for a token the server refused, however many logins report it', async () => {
    const tokens = await service();
    const first = await tokens.accessToken(USER, PASSWORD);
    const before = oauth.counts.grants.refresh_token;
    const again = await Promise.all(
      Array.from({ length: 5 }, () =>
        tokens.accessToken(USER, PASSWORD, { rejectedAccessToken: first.accessToken }),
      ),
    );
    assert.equal(oauth.counts.grants.refresh_token, before + 1);
    assert.equal(new Set(again.map((grant) => grant.accessToken)).size, 1);
    assert.notEqual(again[0]?.accessToken, first.accessToken);
  });

  it('refuses a wrong password and keeps the tokens', async () => {
    const tokens = await service();
    await tokens.accessToken(USER, PASSWORD);
    const saved = await readFile(configPath, 'utf8');
    await assert.rejects(tokens.accessToken(USER, 'typo'), (error: unknown) =>
      isMailbridgeError(error, ErrorCode.TOKEN_WRONG_PASSWORD),
    );
    assert.equal(await readFile(configPath, 'utf8'), saved);
    assert.equal(person.prompts, 1);
  });

  it('with delete_account_token_on_password_error, starts over with the new password', async () => {
    const tokens = await service('delete_account_token_on_password_error = True');
    await tokens.accessToken(USER, PASSWORD);
    const grant = await tokens.accessToken(USER, 'new password');
    assert.equal(person.prompts, 2);
    assert.equal((await tokens.accessToken(USER, 'new password')).accessToken, grant.accessToken);
    // Any other password now wipes them again: the reason this is off unless asked for.
    await tokens.accessToken(USER, PASSWORD);
    assert.equal(person.prompts, 3);
  });

  it('refreshes unlocked accounts in the background before their tokens expire, and no others', async () => {
    const tokens = await service();
    await tokens.accessToken(USER, PASSWORD);
    const before = oauth.counts.grants.refresh_token;
    await tokens.refreshUnlocked();
    assert.equal(oauth.counts.grants.refresh_token, before, 'nothing is due yet');
    clock += 3600 - 600 - 60; // inside the background lead, before the login-time margin
    await tokens.refreshUnlocked();
    assert.equal(oauth.counts.grants.refresh_token, before + 1);
    const expiry = Number(/^access_token_expiry = (\d+)$/m.exec(await readFile(configPath, 'utf8'))?.[1]);
    assert.equal(expiry, clock + 3600);

    const untouched = await service();
    await untouched.refreshUnlocked();
    assert.equal(oauth.counts.grants.refresh_token, before + 1, 'a new process knows no keys until a login');
  });

  it('uses each refresh token at least every refresh_interval_hours, even while the access token is fresh', async () => {
    oauth.setAccessTokenLifetime(7 * 24 * 3600);
    try {
      const tokens = await service('refresh_interval_hours = 1');
      await tokens.accessToken(USER, PASSWORD);
      const before = oauth.counts.grants.refresh_token;
      clock += 1800;
      await tokens.refreshUnlocked();
      assert.equal(oauth.counts.grants.refresh_token, before);
      clock += 1801;
      await tokens.refreshUnlocked();
      assert.equal(oauth.counts.grants.refresh_token, before + 1);
    } finally {
      oauth.setAccessTokenLifetime(3600);
    }
  });
});
