// Proves the test bed is real: a Dovecot that takes only bearer tokens, checked by introspection against our
// OAuth server, reached by real clients (curl, Python's imaplib, Node's tls) over TLS with our throwaway CA.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls';
import { promisify } from 'node:util';
import { createTestCertificates, type TestCertificates } from '../testbed/certs.ts';
import { type DovecotInstance, startDovecot } from '../testbed/dovecot.ts';
import { DEFAULT_CLIENT, GrantType } from '../testbed/oauth-grants.ts';
import { type OAuthTestServer, startOAuthServer } from '../testbed/oauth-server.ts';

const run = promisify(execFile);
const CLIENT_TIMEOUT_MS = 20_000;
const USER = 'alice@example.test';
const MESSAGE = [
  'From: Bob <bob@example.test>',
  `To: Alice <${USER}>`,
  'Subject: test bed smoke',
  'Message-ID: <testbed-smoke-1@example.test>',
  'Date: Sun, 29 Nov 2026 10:00:00 +0000',
  '',
  'Hello Alice,',
  'this message must come back byte for byte.',
  '',
].join('\r\n');

function peerCertificate(port: number, servername: string | undefined, ca: Buffer): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca,
      ...(servername === undefined ? {} : { servername }),
    });
    socket.setTimeout(CLIENT_TIMEOUT_MS, () => socket.destroy(new Error('tls handshake timed out')));
    socket.once('secureConnect', () => {
      resolve(socket.getPeerCertificate());
      socket.destroy();
    });
    socket.once('error', reject);
  });
}

// The curl exit status and stderr, whatever the outcome, so that failures can be asserted on.
async function curl(args: readonly string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  try {
    const { stdout, stderr } = await run('curl', ['--silent', '--show-error', ...args], {
      encoding: 'buffer',
      timeout: CLIENT_TIMEOUT_MS,
    });
    return { code: 0, stdout, stderr: stderr.toString() };
  } catch (error: unknown) {
    const failed = error as { code?: unknown; stdout?: Buffer; stderr?: Buffer };
    if (typeof failed.code !== 'number') throw error;
    return {
      code: failed.code,
      stdout: failed.stdout ?? Buffer.alloc(0),
      stderr: String(failed.stderr ?? ''),
    };
  }
}

// Values travel through the environment, never through the script text, so no quoting can go wrong.
async function python(script: string, env: Record<string, string>): Promise<Record<string, unknown>> {
  const { stdout } = await run('python3', ['-c', script], {
    env: { ...process.env, ...env },
    timeout: CLIENT_TIMEOUT_MS,
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

const IMAPLIB_XOAUTH2 = `
import base64, imaplib, json, os, ssl
context = ssl.create_default_context(cafile=os.environ['CA'])
imap = imaplib.IMAP4_SSL('127.0.0.1', int(os.environ['PORT']), ssl_context=context, timeout=15)
auth = 'user=%s\\x01auth=Bearer %s\\x01\\x01' % (os.environ['MB_USER'], os.environ['TOKEN'])
status, _ = imap.authenticate('XOAUTH2', lambda challenge: auth.encode())
imap.select('INBOX', readonly=True)
_, data = imap.uid('FETCH', '1', '(BODY.PEEK[])')
print(json.dumps({'status': status, 'body': base64.b64encode(data[0][1]).decode()}))
imap.logout()
`;

const IMAPLIB_PLAIN_LOGIN = `
import imaplib, json, os, ssl
context = ssl.create_default_context(cafile=os.environ['CA'])
imap = imaplib.IMAP4_SSL('127.0.0.1', int(os.environ['PORT']), ssl_context=context, timeout=15)
capabilities = list(imap.capabilities)
try:
    imap.login(os.environ['MB_USER'], 'a password')
    outcome = 'accepted'
except imaplib.IMAP4.error as error:
    outcome = str(error)
print(json.dumps({'capabilities': capabilities, 'outcome': outcome}))
`;

describe('test bed: OAuth server, certificates and an OAuth-only Dovecot', () => {
  let certDir = '';
  let certs: TestCertificates;
  let oauth: OAuthTestServer | undefined;
  let dovecot: DovecotInstance | undefined;

  before(async () => {
    certDir = await mkdtemp(join(tmpdir(), 'mailbridge-certs-'));
    certs = await createTestCertificates(certDir);
    oauth = await startOAuthServer();
    dovecot = await startDovecot({ introspectionUrl: oauth.introspectionEndpoint, certs });
    dovecot.seedMessage(USER, '1.smoke', MESSAGE);
  });

  after(async () => {
    await dovecot?.stop();
    await oauth?.close();
    if (certDir !== '') await rm(certDir, { recursive: true, force: true });
  });

  const bed = (): { oauth: OAuthTestServer; dovecot: DovecotInstance } => {
    assert.ok(oauth !== undefined && dovecot !== undefined, 'the test bed did not start');
    return { oauth, dovecot };
  };

  test("node's tls accepts the certificate for 127.0.0.1, localhost and ::1, and only for them", async () => {
    const { dovecot } = bed();
    const ca = await readFile(certs.caCertPath);
    const byIp = await peerCertificate(dovecot.ports.imaps, undefined, ca);
    const byName = await peerCertificate(dovecot.ports.imaps, 'localhost', ca);
    assert.equal(checkServerIdentity('::1', byIp), undefined);
    assert.equal(byName.fingerprint256, byIp.fingerprint256);
    await assert.rejects(peerCertificate(dovecot.ports.imaps, 'example.com', ca), /altnames/i);
    await assert.rejects(peerCertificate(dovecot.ports.imaps, 'localhost', Buffer.alloc(0)), /certificate/i);
  });

  test('NODE_EXTRA_CA_CERTS makes a child node process trust the test CA (how the proxy gets it)', async () => {
    const { dovecot } = bed();
    const script = `
      const socket = require('node:tls').connect({ host: '127.0.0.1', port: Number(process.env.PORT) });
      socket.once('secureConnect', () => { console.log('verified'); socket.destroy(); });
      socket.once('error', (error) => { console.error(error.message); process.exit(1); });`;
    const { stdout } = await run(process.execPath, ['-e', script], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.caCertPath, PORT: String(dovecot.ports.imaps) },
      timeout: CLIENT_TIMEOUT_MS,
    });
    assert.equal(stdout.trim(), 'verified');
  });

  test('curl fetches the seeded message over imaps with a bearer token, byte for byte', async () => {
    const { oauth, dovecot } = bed();
    const token = oauth.issueAccessToken(USER);
    const before = oauth.counts.endpoints.introspect;
    const result = await curl([
      '--cacert',
      certs.caCertPath,
      '--user',
      USER,
      '--oauth2-bearer',
      token,
      `imaps://127.0.0.1:${dovecot.ports.imaps}/INBOX;UID=1`,
    ]);
    assert.equal(result.code, 0, `curl failed: ${result.stderr}\ndovecot log:\n${dovecot.logTail()}`);
    assert.deepEqual(result.stdout, Buffer.from(MESSAGE));
    assert.ok(oauth.counts.endpoints.introspect > before, 'dovecot did not introspect the token');
  });

  test('imap with STARTTLS and pop3s serve the same message to a bearer login', async () => {
    const { oauth, dovecot } = bed();
    const login = [
      '--cacert',
      certs.caCertPath,
      '--user',
      USER,
      '--oauth2-bearer',
      oauth.issueAccessToken(USER),
    ];
    const starttls = await curl([
      ...login,
      '--ssl-reqd',
      `imap://127.0.0.1:${dovecot.ports.imap}/INBOX;UID=1`,
    ]);
    assert.equal(starttls.code, 0, `curl imap failed: ${starttls.stderr}`);
    assert.deepEqual(starttls.stdout, Buffer.from(MESSAGE));
    const pop3 = await curl([...login, `pop3s://127.0.0.1:${dovecot.ports.pop3s}/1`]);
    assert.equal(pop3.code, 0, `curl pop3s failed: ${pop3.stderr}`);
    assert.deepEqual(pop3.stdout, Buffer.from(MESSAGE));
  });

  test('a wrong token is refused after introspection', async () => {
    const { oauth, dovecot } = bed();
    const before = oauth.counts.endpoints.introspect;
    const result = await curl([
      '--cacert',
      certs.caCertPath,
      '--user',
      USER,
      '--oauth2-bearer',
      'at_not-a-token-this-server-issued',
      `imaps://127.0.0.1:${dovecot.ports.imaps}/INBOX;UID=1`,
    ]);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /login denied/i);
    assert.equal(oauth.counts.endpoints.introspect, before + 1);
  });

  test("python's imaplib logs in with AUTHENTICATE XOAUTH2 and reads the message", async () => {
    const { oauth, dovecot } = bed();
    const result = await python(IMAPLIB_XOAUTH2, {
      CA: certs.caCertPath,
      PORT: String(dovecot.ports.imaps),
      MB_USER: USER,
      TOKEN: oauth.issueAccessToken(USER),
    });
    assert.equal(result.status, 'OK');
    assert.deepEqual(Buffer.from(String(result.body), 'base64'), Buffer.from(MESSAGE));
  });

  test('a plain LOGIN is refused: LOGINDISABLED is advertised and LOGIN fails', async () => {
    const { dovecot } = bed();
    const result = await python(IMAPLIB_PLAIN_LOGIN, {
      CA: certs.caCertPath,
      PORT: String(dovecot.ports.imaps),
      MB_USER: USER,
    });
    assert.ok((result.capabilities as string[]).includes('LOGINDISABLED'), JSON.stringify(result));
    assert.match(String(result.outcome), /unsupported authentication mechanism/i);
  });
});

type TokenReply = { status: number; type: string; body: Record<string, unknown> & { error?: string } };

async function post(url: string, form: Record<string, string>, basic?: string): Promise<TokenReply> {
  const headers: Record<string, string> = { 'Content-Type': 'application/x-www-form-urlencoded' };
  if (basic !== undefined) headers.Authorization = `Basic ${Buffer.from(basic).toString('base64')}`;
  const response = await fetch(url, { method: 'POST', headers, body: new URLSearchParams(form) });
  const type = response.headers.get('content-type') ?? '';
  const text = await response.text();
  const body = type.startsWith('application/json') ? JSON.parse(text) : { text };
  return { status: response.status, type, body };
}

describe('test bed: the OAuth server grants, introspects and fails on request', () => {
  let oauth: OAuthTestServer | undefined;
  const client = { client_id: DEFAULT_CLIENT.clientId, client_secret: DEFAULT_CLIENT.clientSecret };
  const server = (): OAuthTestServer => {
    assert.ok(oauth !== undefined, 'the OAuth server did not start');
    return oauth;
  };
  const token = (form: Record<string, string>, basic?: string): Promise<TokenReply> =>
    post(server().tokenEndpoint, basic === undefined ? { ...client, ...form } : form, basic);
  const refresh = (refreshToken: unknown): Promise<TokenReply> =>
    token({ grant_type: GrantType.refreshToken, refresh_token: String(refreshToken) });
  const introspect = async (accessToken: unknown): Promise<Record<string, unknown>> =>
    (await post(server().introspectionEndpoint, { token: String(accessToken) })).body;

  before(async () => {
    oauth = await startOAuthServer();
  });
  after(async () => {
    await oauth?.close();
  });

  test('authorization code with PKCE: redirect keeps state, the code works once, Basic auth accepted', async () => {
    const verifier = 'a-verifier-that-is-long-enough-for-rfc-7636-0123456789';
    const redirectUri = 'http://127.0.0.1:9/callback';
    const query = new URLSearchParams({
      client_id: client.client_id,
      response_type: 'code',
      redirect_uri: redirectUri,
      scope: 'mail offline_access',
      state: 'st4te',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      login_hint: USER,
    });
    const authorizeUrl = `${server().authorizationEndpoint}?${query}`;
    const location = new URL(await server().authorize(authorizeUrl));
    assert.equal(location.origin + location.pathname, redirectUri);
    assert.equal(location.searchParams.get('state'), 'st4te');
    const code = location.searchParams.get('code') ?? '';
    const form = {
      grant_type: GrantType.authorizationCode,
      code,
      redirect_uri: redirectUri,
      code_verifier: verifier,
    };
    const basic = `${client.client_id}:${client.client_secret}`;

    const first = await token(form, basic);
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.equal(first.body.token_type, 'Bearer');
    assert.equal(first.body.scope, 'mail offline_access');
    assert.equal(typeof first.body.refresh_token, 'string');
    assert.equal((await introspect(first.body.access_token)).username, USER);
    const second = await token(form, basic);
    assert.equal(second.status, 400);
    assert.equal(second.body.error, 'invalid_grant');

    const again = new URL(await server().authorize(authorizeUrl)).searchParams.get('code') ?? '';
    const wrongVerifier = await token({ ...form, code: again, code_verifier: `${verifier}x` });
    assert.equal(wrongVerifier.body.error, 'invalid_grant');
  });

  test('refresh: same token by default, rotation, omission, revocation gives invalid_grant', async () => {
    const initial = await token({
      grant_type: GrantType.password,
      username: USER,
      password: 'pw',
      scope: 'mail',
    });
    const refreshToken = initial.body.refresh_token;
    assert.equal((await refresh(refreshToken)).body.refresh_token, refreshToken);

    server().setOmitRefreshTokenOnRefresh(true);
    const omitted = await refresh(refreshToken);
    server().setOmitRefreshTokenOnRefresh(false);
    assert.equal(omitted.status, 200);
    assert.equal('refresh_token' in omitted.body, false);

    server().setRotateRefreshTokens(true);
    const rotated = await refresh(refreshToken);
    server().setRotateRefreshTokens(false);
    assert.notEqual(rotated.body.refresh_token, refreshToken);
    assert.equal((await refresh(refreshToken)).body.error, 'invalid_grant');

    server().revokeRefreshTokens();
    const revoked = await refresh(rotated.body.refresh_token);
    assert.equal(revoked.status, 400);
    assert.equal(revoked.body.error, 'invalid_grant');
  });

  test('client credentials, password and device code grants; wrong secret is invalid_client', async () => {
    const credentials = await token({ grant_type: GrantType.clientCredentials, scope: 'mail' });
    assert.equal(credentials.status, 200);
    assert.equal(credentials.body.refresh_token, undefined);
    const noPassword = await token({ grant_type: GrantType.password, username: USER, password: '' });
    assert.equal(noPassword.body.error, 'invalid_grant');

    const startDevice = async (): Promise<Record<string, unknown>> =>
      (await post(server().deviceAuthorizationEndpoint, { ...client, scope: 'mail' })).body;
    const device = await startDevice();
    const poll = { grant_type: GrantType.deviceCode, device_code: String(device.device_code) };
    assert.equal((await token(poll)).body.error, 'authorization_pending');
    const granted = await token(poll);
    assert.equal(granted.status, 200);
    assert.equal((await introspect(granted.body.access_token)).active, true);
    const denied = await startDevice();
    server().denyDevice(String(denied.user_code));
    const deniedPoll = await token({ ...poll, device_code: String(denied.device_code) });
    assert.equal(deniedPoll.body.error, 'access_denied');

    const wrongSecret = await token({ grant_type: GrantType.clientCredentials }, `${client.client_id}:nope`);
    assert.equal(wrongSecret.status, 401);
    assert.equal(wrongSecret.body.error, 'invalid_client');
  });

  test('controls: expiry ends introspection, injected 503 is HTML, delays delay, counts follow', async () => {
    const accessToken = server().issueAccessToken(USER, { scope: 'mail' });
    const live = await introspect(accessToken);
    assert.equal(live.active, true);
    assert.equal(live.client_id, client.client_id);
    server().expireAccessTokens();
    assert.deepEqual(await introspect(accessToken), { active: false });

    server().resetCounts();
    server().failNext(503);
    const failed = await token({ grant_type: GrantType.clientCredentials });
    assert.equal(failed.status, 503);
    assert.match(failed.type, /^text\/html/);
    server().setDelay(200);
    const started = Date.now();
    assert.equal((await token({ grant_type: GrantType.clientCredentials })).status, 200);
    assert.ok(Date.now() - started >= 190, 'setDelay did not hold the answer');
    server().setDelay(0);
    assert.equal(server().counts.endpoints.token, 2);
    // The injected failure answered before the body was read, so only the second request counts as a grant.
    assert.equal(server().counts.grants.client_credentials, 1);
  });
});
