import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import type { AccountConfig } from '../../../src/config/accounts.ts';
import { ErrorCode, isMailbridgeError } from '../../../src/errors.ts';
import { buildAuthorisationRequest, parseRedirect } from '../../../src/oauth/authorisation-url.ts';

const account: AccountConfig = {
  section: 'alice@example.com',
  username: 'alice@example.com',
  permissionUrl: 'https://login.example.com/authorize',
  tokenUrl: 'https://login.example.com/token',
  scope: 'https://outlook.office.com/IMAP.AccessAsUser.All offline_access',
  flow: 'authorization_code',
  redirectUri: 'http://localhost:8080',
  redirectListenAddress: undefined,
  clientId: 'client id',
  clientSecret: 'secret',
  clientSecretEncrypted: undefined,
  usePkce: false,
  resource: undefined,
  jwtCertificatePath: undefined,
  jwtKeyPath: undefined,
};

describe('authorisation request', () => {
  it('orders and escapes parameters as email-oauth2-proxy does', () => {
    const request = buildAuthorisationRequest(account);
    assert.equal(
      request.url,
      'https://login.example.com/authorize?client_id=client%20id&redirect_uri=http%3A%2F%2Flocalhost%3A8080' +
        '&scope=https%3A%2F%2Foutlook.office.com%2FIMAP.AccessAsUser.All%20offline_access&response_type=code' +
        `&access_type=offline&login_hint=alice%40example.com&state=${request.state}`,
    );
    assert.equal(request.codeVerifier, undefined);
  });

  it('adds an S256 PKCE challenge when use_pkce is on', () => {
    const request = buildAuthorisationRequest({ ...account, usePkce: true });
    const challenge = new URL(request.url).searchParams.get('code_challenge');
    assert.equal(request.codeVerifier?.length, 86);
    assert.equal(
      challenge,
      createHash('sha256')
        .update(request.codeVerifier ?? '')
        .digest('base64url'),
    );
    assert.equal(new URL(request.url).searchParams.get('code_challenge_method'), 'S256');
  });

  it('keeps a query already in permission_url', () => {
    const request = buildAuthorisationRequest({
      ...account,
      permissionUrl: 'https://x.test/a?prompt=consent',
    });
    assert.match(request.url, /^https:\/\/x\.test\/a\?prompt=consent&client_id=/);
  });
});

describe('pasted redirect', () => {
  const state = 'abc';
  const mismatch = (error: unknown) => isMailbridgeError(error, ErrorCode.OAUTH_REDIRECT_MISMATCH);

  it('accepts the redirect_uri with code and state, http or https, trailing slash or not', () => {
    assert.equal(
      parseRedirect(account, 'http://localhost:8080/?code=xyz&state=abc', state).get('code'),
      'xyz',
    );
    assert.equal(
      parseRedirect(account, ' https://localhost:8080?code=q&state=abc \n', state).get('code'),
      'q',
    );
  });

  it('refuses another host, port or path, a wrong state and a missing code', () => {
    assert.throws(() => parseRedirect(account, 'http://localhost:9999/?code=x&state=abc', state), mismatch);
    assert.throws(() => parseRedirect(account, 'http://evil.test:8080/?code=x&state=abc', state), mismatch);
    assert.throws(() => parseRedirect(account, 'http://localhost:8080/cb?code=x&state=abc', state), mismatch);
    assert.throws(() => parseRedirect(account, 'http://localhost:8080/?code=x&state=zzz', state), mismatch);
    assert.throws(() => parseRedirect(account, 'http://localhost:8080/?state=abc', state), mismatch);
    assert.throws(() => parseRedirect(account, 'not a url', state), mismatch);
  });

  it('reports the provider error carried by the redirect', () => {
    assert.throws(
      () =>
        parseRedirect(
          account,
          'http://localhost:8080/?error=access_denied&error_description=no&state=abc',
          state,
        ),
      (error: unknown) =>
        isMailbridgeError(error, ErrorCode.OAUTH_PROVIDER) && /access_denied; no/.test(error.message),
    );
  });
});
