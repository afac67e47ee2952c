import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { Authorisations, type FrontEnd, type PendingAuthorisation } from '../../src/authorise/pending.ts';
import { ConfigStore } from '../../src/config/store.ts';
import { ErrorCode, isMailbridgeError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { TokenClient } from '../../src/oauth/token-client.ts';
import { KeyDeriver } from '../../src/tokens/key-derivation.ts';
import { TokenService } from '../../src/tokens/token-service.ts';
import { type OAuthTestServer, startOAuthServer } from '../testbed/oauth-server.ts';

/**
 * Every grant mailbridge speaks, against the test bed's OAuth server: device code, client credentials (with
 * the login password as the secret), password, Google service accounts, certificate credentials, catch-all
 * accounts, encrypt_client_secret_on_first_use, and a request that outlives the client waiting for it.
 */
const run = promisify(execFile);

/** Polls `condition` every 50 ms for up to 10 s. */
async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i += 1) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('condition not met within 10 s');
}

class Watcher implements FrontEnd {
  readonly completesCodeRequests = true;
  readonly offered: PendingAuthorisation[] = [];
  onOffer: (pending: PendingAuthorisation) => void = () => undefined;
  offer(pending: PendingAuthorisation): void {
    this.offered.push(pending);
    this.onOffer(pending);
  }
  withdraw(): void {}
}

describe('OAuth grants through the token service', () => {
  let oauth: OAuthTestServer;
  let dir: string;
  let certificatePath: string;
  let keyPath: string;
  let serviceAccountKey: string;
  const deriver = new KeyDeriver();

  async function service(text: string, watcher = new Watcher()) {
    const configPath = join(dir, `config-${Math.random().toString(36).slice(2)}.ini`);
    await writeFile(configPath, text);
    const store = await ConfigStore.load({ configPath, logger: silentLogger() });
    const tokens = new TokenService({
      store,
      deriver,
      tokenClient: new TokenClient({ timeoutMs: 5000 }),
      authorisations: new Authorisations([watcher]),
      logger: silentLogger(),
    });
    return { tokens, watcher, configPath };
  }

  function section(name: string, values: Record<string, string>): string {
    return `[${name}]\n${Object.entries(values)
      .map(([key, value]) => `${key} = ${value}`)
      .join('\n')}\n\n`;
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-flows-'));
    keyPath = join(dir, 'client.key');
    certificatePath = join(dir, 'client.crt');
    await run(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        keyPath,
        '-out',
        certificatePath,
        '-days',
        '2',
        '-subj',
        '/CN=mailbridge test client',
      ],
      { timeout: 20_000 },
    );
    const certificate = await readFile(certificatePath, 'utf8');
    const { X509Certificate } = await import('node:crypto');
    const clientPublicKey = new X509Certificate(certificate).publicKey
      .export({ type: 'spki', format: 'pem' })
      .toString();
    oauth = await startOAuthServer({
      clients: [{ clientId: 'public-client' }, { clientId: 'cert-client', jwtPublicKeyPem: clientPublicKey }],
    });
    const serviceAccount = generateKeyPairSync('rsa', { modulusLength: 2048 });
    oauth.registerServiceAccount(
      'robot@project.iam.example.test',
      serviceAccount.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    );
    serviceAccountKey = join(dir, 'service-account.json');
    await writeFile(
      serviceAccountKey,
      JSON.stringify({
        type: 'service_account',
        client_email: 'robot@project.iam.example.test',
        private_key_id: 'k1',
        private_key: serviceAccount.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      }),
    );
  });

  after(async () => {
    await oauth?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('device code: shows the code, polls until approved, and stores the tokens', async () => {
    const { tokens, watcher } = await service(
      section('dev@example.test', {
        permission_url: oauth.deviceAuthorizationEndpoint,
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'imap offline_access',
        oauth2_flow: 'device',
        client_id: 'public-client',
      }),
    );
    const before = oauth.counts.grants['urn:ietf:params:oauth:grant-type:device_code'];
    const grant = await tokens.accessToken('dev@example.test', 'pw');
    assert.ok(grant.accessToken);
    const [pending] = watcher.offered;
    assert.equal(pending?.details.kind, 'device');
    assert.match(pending?.details.kind === 'device' ? pending.details.userCode : '', /^[A-Z]{4}-?[A-Z]{4}$/);
    // The test server answers authorization_pending once, then tokens: two polls, an interval apart.
    assert.equal(oauth.counts.grants['urn:ietf:params:oauth:grant-type:device_code'], before + 2);
    assert.equal((await tokens.accessToken('dev@example.test', 'pw')).accessToken, grant.accessToken);
  });

  it('client credentials with the login password as the secret, and no refresh token needed', async () => {
    const { tokens, watcher } = await service(
      section('app@example.test', {
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'https://outlook.office365.com/.default',
        oauth2_flow: 'client_credentials',
        client_id: 'test-client',
      }) + section('emailproxy', { use_login_password_as_client_credentials_secret: 'True' }),
    );
    const grant = await tokens.accessToken('app@example.test', 'test-secret');
    assert.ok(grant.accessToken);
    assert.equal(watcher.offered.length, 0, 'nobody is asked');
    await assert.rejects(tokens.accessToken('app@example.test', 'not-the-secret'), (error: unknown) =>
      isMailbridgeError(error, ErrorCode.TOKEN_WRONG_PASSWORD),
    );
  });

  it('password grant, sending the login password and oauth2_resource', async () => {
    oauth.setPasswordCheck(
      (username, password) => username === 'ropc@example.test' && password === 'mailbox pw',
    );
    try {
      const { tokens } = await service(
        section('ropc@example.test', {
          token_url: oauth.tokenEndpoint,
          oauth2_resource: 'https://partner.outlook.cn',
          oauth2_flow: 'password',
          client_id: 'test-client',
          client_secret: 'test-secret',
        }),
      );
      assert.ok((await tokens.accessToken('ropc@example.test', 'mailbox pw')).accessToken);
      await assert.rejects(tokens.accessToken('ropc@example.test', 'wrong'), (error: unknown) =>
        isMailbridgeError(error),
      );
    } finally {
      oauth.setPasswordCheck(null);
    }
  });

  it('Google service account: a signed JWT for the user, with the key in a file or inline', async () => {
    const base = {
      token_url: oauth.tokenEndpoint,
      oauth2_scope: 'https://mail.google.com/',
      oauth2_flow: 'service_account',
    };
    const fromFile = await service(
      section('user@example.test', { ...base, client_id: 'file', client_secret: serviceAccountKey }),
    );
    assert.ok((await fromFile.tokens.accessToken('user@example.test', 'any')).accessToken);
    const inline = (await readFile(serviceAccountKey, 'utf8')).replace(/\n/g, '\\n');
    const fromKey = await service(
      section('other@example.test', { ...base, client_id: 'key', client_secret: inline }),
    );
    assert.ok((await fromKey.tokens.accessToken('other@example.test', 'any')).accessToken);
    assert.equal(oauth.counts.grants['urn:ietf:params:oauth:grant-type:jwt-bearer'] >= 2, true);
  });

  it('certificate credentials: a private_key_jwt assertion instead of a client secret', async () => {
    const watcher = new Watcher();
    watcher.onOffer = (pending) => {
      void oauth.authorize(pending.url).then((redirect) => pending.complete(redirect));
    };
    const { tokens } = await service(
      section('cert@example.test', {
        permission_url: oauth.authorizationEndpoint,
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'imap offline_access',
        redirect_uri: 'http://localhost:28081',
        client_id: 'cert-client',
        jwt_certificate_path: certificatePath,
        jwt_key_path: keyPath,
      }),
      watcher,
    );
    assert.ok((await tokens.accessToken('cert@example.test', 'pw')).accessToken);
  });

  it('catch-all accounts: [@domain] settings, tokens in an auto-created [user@domain] section', async () => {
    const watcher = new Watcher();
    watcher.onOffer = (pending) => {
      void oauth.authorize(pending.url).then((redirect) => pending.complete(redirect));
    };
    const { tokens, configPath } = await service(
      section('@example.test', {
        permission_url: oauth.authorizationEndpoint,
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'imap offline_access',
        redirect_uri: 'http://localhost:28081',
        client_id: 'test-client',
        client_secret: 'test-secret',
      }) + section('emailproxy', { allow_catch_all_accounts: 'True' }),
      watcher,
    );
    assert.ok((await tokens.accessToken('anyone@example.test', 'pw')).accessToken);
    assert.match(watcher.offered[0]?.url ?? '', /login_hint=anyone%40example\.test/);
    const text = await readFile(configPath, 'utf8');
    assert.match(text, /^\[anyone@example\.test\]\ntoken_salt = /m);
    await assert.rejects(tokens.accessToken('someone@elsewhere.test', 'pw'), (error: unknown) =>
      isMailbridgeError(error, ErrorCode.ACCOUNT_UNKNOWN),
    );
  });

  it('encrypt_client_secret_on_first_use: the secret moves into client_secret_encrypted', async () => {
    const watcher = new Watcher();
    watcher.onOffer = (pending) => {
      void oauth.authorize(pending.url).then((redirect) => pending.complete(redirect));
    };
    const { tokens, configPath } = await service(
      section('enc@example.test', {
        permission_url: oauth.authorizationEndpoint,
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'imap offline_access',
        redirect_uri: 'http://localhost:28081',
        client_id: 'test-client',
        client_secret: 'test-secret',
      }) + section('emailproxy', { encrypt_client_secret_on_first_use: 'True' }),
      watcher,
    );
    await tokens.accessToken('enc@example.test', 'pw');
    const text = await readFile(configPath, 'utf8');
    assert.doesNotMatch(text, /test-secret/);
    assert.match(text, /^client_secret_encrypted = gAAAAA/m);
    // The encrypted secret works for the next token request (a refresh, once the token is refused).
    const first = await tokens.accessToken('enc@example.test', 'pw');
    const again = await tokens.accessToken('enc@example.test', 'pw', {
      rejectedAccessToken: first.accessToken,
    });
    assert.notEqual(again.accessToken, first.accessToken);
  });

  it('a client gives up after authorisation_wait, the request stays open, and the next login finds the token', async () => {
    const watcher = new Watcher();
    const { tokens, configPath } = await service(
      section('slow@example.test', {
        permission_url: oauth.authorizationEndpoint,
        token_url: oauth.tokenEndpoint,
        oauth2_scope: 'imap offline_access',
        redirect_uri: 'http://localhost:28081',
        client_id: 'test-client',
        client_secret: 'test-secret',
      }) + section('emailproxy', { authorisation_wait: '1' }),
      watcher,
    );
    await assert.rejects(tokens.accessToken('slow@example.test', 'pw'), (error: unknown) =>
      isMailbridgeError(error, ErrorCode.OAUTH_AUTHORISATION_TIMEOUT),
    );
    const [pending] = watcher.offered;
    assert.ok(pending && !pending.settled, 'the request is still open after the client gave up');
    pending.complete(await oauth.authorize(pending.url));
    // Nobody waits now: the request still saves the tokens, and the next login simply finds them.
    await waitFor(async () => /^access_token = /m.test(await readFile(configPath, 'utf8')));
    const next = await tokens.accessToken('slow@example.test', 'pw');
    assert.equal(next.fromCache, true);
    assert.equal(watcher.offered.length, 1, 'one request for both logins');
  });
});
