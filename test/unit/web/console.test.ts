import assert from 'node:assert/strict';
import { once } from 'node:events';
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Authorisations, type FrontEnd, PendingAuthorisation } from '../../../src/authorise/pending.ts';
import { ConfigStore } from '../../../src/config/store.ts';
import { ErrorCode, MailbridgeError } from '../../../src/errors.ts';
import { silentLogger } from '../../../src/log.ts';
import { buildAuthorisationRequest } from '../../../src/oauth/authorisation-url.ts';
import { startWebConsole, type WebConsole } from '../../../src/web/console.ts';
import { createTestCertificates, servedCertificateFingerprint } from '../../testbed/certs.ts';
import { findFreePorts } from '../../testbed/ports.ts';

/**
 * The console over real HTTP on loopback, with a real configuration store and authorisation registry, and a
 * stand-in for the token service: who may get in, what a page of another origin cannot do, and each action.
 */
const SECRET = 'test-secret-0123456789';
const ACCESS = 'gAAAAAB-encrypted-access-token-value';
const REFRESH = 'gAAAAAB-encrypted-refresh-token-value';
const CLIENT_SECRET = 'client-secret-never-shown';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

describe('web console over HTTP', () => {
  let dir: string;
  let configPath: string;
  let port: number;
  let origin: string;
  let store: ConfigStore;
  let authorisations: Authorisations;
  let web: WebConsole;
  const authorised: { account: string; password: string }[] = [];
  let reloads = 0;
  let cookie = '';

  function call(
    method: string,
    path: string,
    options: { headers?: Record<string, string>; body?: string } = {},
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port, method, path, headers: { Host: `127.0.0.1:${port}`, ...options.headers } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            body += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end(options.body);
    });
  }

  /** A signed-in page's CSRF token. */
  async function csrf(): Promise<string> {
    const page = await call('GET', '/', { headers: { Cookie: cookie } });
    const token = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1];
    assert.ok(token, 'the page carries a CSRF token');
    return token;
  }

  async function post(path: string, fields: Record<string, string>, headers: Record<string, string> = {}) {
    return call('POST', path, {
      headers: {
        Cookie: cookie,
        Origin: origin,
        'Content-Type': 'application/x-www-form-urlencoded',
        ...headers,
      },
      body: new URLSearchParams(fields).toString(),
    });
  }

  /** What a client login would start: one code request for the account, as the token service does. */
  function clientLogin(account: string): { pending: Promise<PendingAuthorisation>; done: Promise<string> } {
    let published!: (pending: PendingAuthorisation) => void;
    const pending = new Promise<PendingAuthorisation>((resolve) => {
      published = resolve;
    });
    const config = store.account(account);
    assert.ok(config);
    const done = authorisations.join(account, async (publish) => {
      const item = new PendingAuthorisation(
        config,
        { kind: 'code', request: buildAuthorisationRequest(config) },
        Date.now() + 60_000,
      );
      publish(item);
      published(item);
      const parameters = await item.result;
      return `code ${parameters.get('code')}`;
    });
    return { pending, done };
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-web-'));
    [port] = (await findFreePorts(1)) as [number];
    origin = `http://127.0.0.1:${port}`;
    configPath = join(dir, 'emailproxy.config');
    const account = (name: string, redirect: string, extra = '') =>
      `[${name}]\npermission_url = https://login.example.test/authorize\ntoken_url = https://login.example.test/token\noauth2_scope = mail\nredirect_uri = ${redirect}\nclient_id = id\nclient_secret = ${CLIENT_SECRET}\n${extra}`;
    await writeFile(
      configPath,
      [
        '[IMAP-1993]\nserver_address = imap.example.test\nserver_port = 993\n',
        account(
          'here@example.test',
          `http://localhost:${port}/callback`,
          `token_salt = c2FsdA==\ntoken_iterations = 1200000\naccess_token = ${ACCESS}\naccess_token_expiry = ${Math.floor(Date.now() / 1000) + 3600}\nrefresh_token = ${REFRESH}\nlast_activity = ${Math.floor(Date.now() / 1000)}\n`,
        ),
        account('paste@example.test', 'http://localhost:1/'),
        account('<b>odd</b>@example.test', 'http://localhost:1/'),
        '[@example.test]\ntoken_url = https://login.example.test/token\n',
      ].join('\n'),
      { mode: 0o600 },
    );
    store = await ConfigStore.load({ configPath, logger: silentLogger() });
    const frontEnds: FrontEnd[] = [];
    authorisations = new Authorisations(frontEnds);
    web = await startWebConsole({
      settings: { host: '127.0.0.1', port, loopback: true },
      store,
      authorisations,
      // As the token service: a wrong password is refused, cached tokens answer at once, else a person is asked.
      authorise: async (account, password) => {
        authorised.push({ account, password });
        if (password === 'wrong') {
          throw new MailbridgeError(
            ErrorCode.TOKEN_WRONG_PASSWORD,
            `the password for account '${account}' is incorrect`,
          );
        }
        if (store.cachedTokens(account).access_token) return;
        await clientLogin(account).done;
      },
      reload: async () => {
        reloads += 1;
        return 'Configuration reloaded: 0 added, 0 removed, 0 changed, 1 unchanged.';
      },
      logger: silentLogger(),
      secret: SECRET,
    });
    frontEnds.push(web.frontEnd);
  });

  after(async () => {
    authorisations?.cancelAll('test over');
    await web?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('without the secret: 401 everywhere, 403 for a wrong secret, and the sign-in sets a strict HttpOnly cookie', async () => {
    for (const path of ['/', '/api/status', '/metrics', '/events']) {
      assert.equal((await call('GET', path)).status, 401, path);
    }
    assert.equal((await call('POST', '/reload', { body: '' })).status, 401);
    assert.equal((await call('GET', '/login?secret=wrong')).status, 403);
    assert.equal((await call('GET', '/login')).status, 403);
    const signIn = await call('GET', `/login?secret=${SECRET}`);
    assert.equal(signIn.status, 303);
    assert.equal(signIn.headers.location, '/');
    const setCookie = String(signIn.headers['set-cookie']);
    assert.match(
      setCookie,
      new RegExp(`^mailbridge_console_${port}=[\\w-]+; Path=/; HttpOnly; SameSite=Strict$`),
    );
    assert.ok(!setCookie.includes(SECRET), 'the cookie is a session, not the secret');
    cookie = setCookie.split(';')[0] as string;
    assert.equal(
      (await call('GET', '/', { headers: { Cookie: `mailbridge_console_${port}=forged` } })).status,
      401,
    );
  });

  it('serves the page with a strict CSP, no CORS header, and never a token or a secret', async () => {
    const page = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.equal(page.status, 200);
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(page.headers['access-control-allow-origin'], undefined);
    assert.doesNotMatch(page.body, /<script>|<style>| on\w+=|style="/, 'no inline script or style');
    assert.match(page.body, /<script src="\/console\.js" defer><\/script>/);
    assert.match(page.body, /data-account="here@example\.test" data-state="valid"/);
    assert.match(page.body, /&#60;b&#62;odd&#60;\/b&#62;@example\.test/, 'account names are escaped');
    assert.doesNotMatch(page.body, /@example\.test" data-state="[^"]*"[^>]*>[^<]*<b>/);
    assert.doesNotMatch(
      page.body,
      /\[@example\.test\]|data-account="@example\.test"/,
      'a catch-all is no account',
    );
    const status = await call('GET', '/api/status', { headers: { Cookie: cookie } });
    assert.equal(status.status, 200);
    assert.equal(status.headers['access-control-allow-origin'], undefined);
    for (const body of [page.body, status.body]) {
      for (const secret of [ACCESS, REFRESH, CLIENT_SECRET, SECRET, 'c2FsdA==']) {
        assert.ok(!body.includes(secret), `never '${secret}'`);
      }
    }
    const parsed = JSON.parse(status.body) as {
      accounts: { account: string; token: { state: string; refreshTokenPresent: boolean } }[];
    };
    const here = parsed.accounts.find((account) => account.account === 'here@example.test');
    assert.equal(here?.token.state, 'valid');
    assert.equal(here?.token.refreshTokenPresent, true);
    for (const asset of ['/console.js', '/console.css']) {
      const reply = await call('GET', asset);
      assert.equal(reply.status, 200);
      assert.equal(reply.headers['x-content-type-options'], 'nosniff');
    }
  });

  it('refuses another Host name (DNS rebinding) and cross-origin reads', async () => {
    const rebound = await call('GET', '/api/status', {
      headers: { Host: `attacker.example:${port}`, Cookie: cookie },
    });
    assert.equal(rebound.status, 421);
    const crossSite = await call('GET', '/api/status', {
      headers: { Cookie: cookie, 'Sec-Fetch-Site': 'same-site' },
    });
    assert.equal(crossSite.status, 403);
    const fetchSite = (dest: string) => ({
      Cookie: cookie,
      'Sec-Fetch-Site': 'same-site',
      'Sec-Fetch-Mode': 'navigate',
      'Sec-Fetch-Dest': dest,
    });
    assert.equal((await call('GET', '/', { headers: fetchSite('iframe') })).status, 403, 'no framing');
    assert.equal(
      (await call('GET', '/', { headers: fetchSite('document') })).status,
      200,
      'a link is followed',
    );
    const localhost = await call('GET', '/api/status', {
      headers: { Host: `localhost:${port}`, Cookie: cookie },
    });
    assert.equal(localhost.status, 200);
  });

  it('takes the secret as a bearer token for /metrics and /api/status, and counts accounts and requests', async () => {
    const metrics = await call('GET', '/metrics', { headers: { Authorization: `Bearer ${SECRET}` } });
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.headers['content-type']), /^text\/plain; version=0\.0\.4/);
    assert.match(metrics.body, /\nmailbridge_accounts\{token_state="valid"\} 1\n/);
    assert.match(metrics.body, /\nmailbridge_accounts\{token_state="none"\} 2\n/);
    assert.match(metrics.body, /\nmailbridge_authorisations_pending\{kind="code"\} 0\n/);
    assert.equal((await call('GET', '/metrics', { headers: { Authorization: 'Bearer wrong' } })).status, 401);
    assert.equal((await call('GET', '/', { headers: { Authorization: `Bearer ${SECRET}` } })).status, 401);
  });

  it('refuses a POST without the CSRF token, with a foreign Origin or from another site, and acts on a good one', async () => {
    const token = await csrf();
    assert.equal((await post('/reload', {})).status, 403);
    assert.equal((await post('/reload', { csrf: 'forged' })).status, 403);
    assert.equal((await post('/reload', { csrf: token }, { Origin: 'http://127.0.0.1:1' })).status, 403);
    assert.equal((await post('/reload', { csrf: token }, { 'Sec-Fetch-Site': 'same-site' })).status, 403);
    assert.equal(reloads, 0);
    const good = await post('/reload', { csrf: token });
    assert.equal(good.status, 303);
    assert.equal(reloads, 1);
    const page = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.match(page.body, /class="flash flash-ok">Configuration reloaded: 0 added/);
    const again = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.doesNotMatch(again.body, /Configuration reloaded/, 'a message is shown once');
  });

  it("completes a code request at the console's own callback, without a session", async () => {
    const login = clientLogin('here@example.test');
    const pending = await login.pending;
    assert.equal(pending.details.kind, 'code');
    const state = pending.details.kind === 'code' ? pending.details.request.state : '';
    const status = JSON.parse((await call('GET', '/api/status', { headers: { Cookie: cookie } })).body) as {
      pending: { account: string; completesHere: boolean }[];
    };
    assert.deepEqual(
      status.pending.map((item) => [item.account, item.completesHere]),
      [['here@example.test', true]],
    );
    assert.equal(
      (await call('GET', '/callback?code=c1&state=not-ours')).status,
      401,
      'a stray state is no callback',
    );
    const answer = await call('GET', `/callback?code=c1&state=${state}`, {
      headers: { Host: `localhost:${port}` },
    });
    assert.equal(answer.status, 200);
    assert.match(answer.body, /received the authorisation of here@example\.test/);
    assert.equal(await login.done, 'code c1');
  });

  it('completes a request with a pasted redirect URL, and explains a wrong one', async () => {
    const login = clientLogin('paste@example.test');
    const pending = await login.pending;
    const state = pending.details.kind === 'code' ? pending.details.request.state : '';
    const token = await csrf();
    await post('/pending/complete', {
      csrf: token,
      id: pending.id,
      redirect: 'http://localhost:1/?code=x&state=stale',
    });
    assert.match(
      (await call('GET', '/', { headers: { Cookie: cookie } })).body,
      /flash-error">the URL given for account/,
    );
    assert.equal(pending.settled, false, 'a wrong URL costs nothing');
    const done = await post('/pending/complete', {
      csrf: token,
      id: pending.id,
      redirect: `http://localhost:1/?code=pasted&state=${state}`,
    });
    assert.equal(done.status, 303);
    assert.equal(await login.done, 'code pasted');
  });

  it('starts an authorisation from the page with the mail client password', async () => {
    const token = await csrf();
    const started = await post('/accounts/authorise', {
      csrf: token,
      account: 'paste@example.test',
      password: 'pw-0f-the-client',
    });
    assert.equal(started.status, 303);
    assert.deepEqual(authorised.at(-1), { account: 'paste@example.test', password: 'pw-0f-the-client' });
    const page = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.match(page.body, /Authorisation of paste@example\.test started/);
    assert.match(
      page.body,
      /<article id="pending-[0-9a-f]+" data-hash="[0-9a-f]+" class="pending" data-account="paste@example\.test"/,
    );
    assert.ok(!page.body.includes('pw-0f-the-client'));
    authorisations
      .pending()[0]
      ?.fail(new MailbridgeError(ErrorCode.OAUTH_PROVIDER, 'the provider refused: access_denied'));
    const failed = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.match(
      failed.body,
      /the provider refused: access_denied<\/div><div class="remedy">The provider refused: check/,
    );
  });

  it('forgets tokens only with the confirmation, and keeps the salt', async () => {
    const token = await csrf();
    await post('/accounts/forget', { csrf: token, account: 'here@example.test' });
    assert.match(await readFile(configPath, 'utf8'), /access_token = /);
    await post('/accounts/forget', { csrf: token, account: 'here@example.test', confirm: 'yes' });
    const text = await readFile(configPath, 'utf8');
    assert.doesNotMatch(text, /access_token|refresh_token/);
    assert.match(text, /token_salt = c2FsdA==/);
    const page = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.match(page.body, /data-account="here@example\.test" data-state="none"/);
  });

  it('re-authorises only once the password opened the current tokens, which are then discarded', async () => {
    await store.saveTokens('here@example.test', { access_token: ACCESS, access_token_expiry: '9999999999' });
    const token = await csrf();
    const fields = { csrf: token, account: 'here@example.test', again: 'yes' };
    await post('/accounts/authorise', { ...fields, password: 'wrong' });
    const refused = await call('GET', '/', { headers: { Cookie: cookie } });
    assert.match(
      refused.body,
      /flash-error">the password for account &#39;here@example\.test&#39; is incorrect Log in with/,
    );
    assert.match(await readFile(configPath, 'utf8'), /access_token = /, 'a wrong password discards nothing');
    await post('/accounts/authorise', { ...fields, password: 'right' });
    assert.doesNotMatch(await readFile(configPath, 'utf8'), /access_token/);
    const pending = authorisations.pending();
    assert.deepEqual(
      pending.map((item) => item.account.username),
      ['here@example.test'],
    );
    pending[0]?.fail(new MailbridgeError(ErrorCode.SHUTTING_DOWN, 'test over'));
  });

  it('sends live updates over Server-Sent Events when a request is offered', async () => {
    const events = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const req = request({
        host: '127.0.0.1',
        port,
        path: '/events',
        headers: { Host: `127.0.0.1:${port}`, Cookie: cookie },
      });
      req.on('response', resolve);
      req.on('error', reject);
      req.end();
    });
    assert.equal(events.statusCode, 200);
    assert.match(String(events.headers['content-type']), /^text\/event-stream/);
    events.setEncoding('utf8');
    let buffer = '';
    const updates: { sections: { pending: string; accounts: string }; pendingCount: number }[] = [];
    const nextUpdate = () =>
      new Promise<void>((resolve) => {
        const onData = (chunk: string) => {
          buffer += chunk;
          let end = buffer.indexOf('\n\n');
          while (end !== -1) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = /^data: (.*)$/m.exec(block)?.[1];
            if (block.startsWith('event: update') && data) {
              updates.push(JSON.parse(data));
              events.off('data', onData);
              resolve();
              return;
            }
            end = buffer.indexOf('\n\n');
          }
        };
        events.on('data', onData);
      });
    await nextUpdate();
    assert.equal(updates[0]?.pendingCount, 0);
    const login = clientLogin('paste@example.test');
    await nextUpdate();
    assert.equal(updates[1]?.pendingCount, 1);
    assert.match(updates[1]?.sections.pending ?? '', /data-account="paste@example\.test"/);
    (await login.pending).fail(new MailbridgeError(ErrorCode.SHUTTING_DOWN, 'test over'));
    await login.done.catch(() => undefined);
    events.destroy();
  });
});

describe('web console over HTTPS (web_console_certificate_path and web_console_key_path)', () => {
  let dir: string;
  let port: number;
  let ca: Buffer;
  let certificatePath: string;
  let keyPath: string;
  let store: ConfigStore;
  let authorisations: Authorisations;
  let web: WebConsole;
  let reloads = 0;

  function call(
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: string,
  ): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', port, method, path, ca, headers: { Host: `127.0.0.1:${port}`, ...headers } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            text += chunk;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mailbridge-web-tls-'));
    const certs = await createTestCertificates(join(dir, 'certs'));
    ca = await readFile(certs.caCertPath);
    // Copies the test can overwrite, as a renewal does.
    certificatePath = join(dir, 'console.pem');
    keyPath = join(dir, 'console.key');
    await copyFile(certs.certPath, certificatePath);
    await copyFile(certs.keyPath, keyPath);
    [port] = (await findFreePorts(1)) as [number];
    const configPath = join(dir, 'emailproxy.config');
    await writeFile(
      configPath,
      '[here@example.test]\npermission_url = https://login.example.test/authorize\n' +
        'token_url = https://login.example.test/token\noauth2_scope = mail\n' +
        `redirect_uri = https://127.0.0.1:${port}/callback\nclient_id = id\n`,
      { mode: 0o600 },
    );
    store = await ConfigStore.load({ configPath, logger: silentLogger() });
    const frontEnds: FrontEnd[] = [];
    authorisations = new Authorisations(frontEnds);
    web = await startWebConsole({
      settings: {
        host: '127.0.0.1',
        port,
        loopback: true,
        tls: { certificatePath, keyPath },
      },
      store,
      authorisations,
      authorise: async () => undefined,
      reload: async () => {
        reloads += 1;
        return 'reloaded';
      },
      logger: silentLogger(),
      secret: SECRET,
    });
    frontEnds.push(web.frontEnd);
  });

  let closed = false;

  after(async () => {
    authorisations?.cancelAll('test over');
    if (!closed) await web?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('prints https addresses and answers no plain HTTP request', async () => {
    assert.equal(web.url, `https://127.0.0.1:${port}/`);
    assert.equal(web.signInUrl, `https://127.0.0.1:${port}/login?secret=${SECRET}`);
    const plain = await new Promise<number | string>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: `/login?secret=${SECRET}` }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
      req.end();
    });
    assert.ok(typeof plain === 'string' || plain >= 400, `plain HTTP got ${plain}`);
  });

  it('sets a Secure cookie, and takes a POST from its https origin only', async () => {
    const signIn = await call('GET', `/login?secret=${SECRET}`);
    assert.equal(signIn.status, 303);
    const setCookie = String(signIn.headers['set-cookie']);
    assert.match(setCookie, /; HttpOnly; SameSite=Strict; Secure$/);
    const cookie = setCookie.split(';')[0] as string;
    const page = await call('GET', '/', { Cookie: cookie });
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.body)?.[1] ?? '';
    const reload = (origin: string) =>
      call(
        'POST',
        '/reload',
        { Cookie: cookie, Origin: origin, 'Content-Type': 'application/x-www-form-urlencoded' },
        new URLSearchParams({ csrf }).toString(),
      );
    assert.equal((await reload(`http://127.0.0.1:${port}`)).status, 403, 'the http origin is another origin');
    assert.equal(reloads, 0);
    assert.equal((await reload(`https://127.0.0.1:${port}`)).status, 303);
    assert.equal(reloads, 1);
  });

  it('completes a request whose redirect_uri is its own https address', async () => {
    const config = store.account('here@example.test');
    assert.ok(config);
    const done = authorisations.join('here@example.test', async (publish) => {
      const item = new PendingAuthorisation(
        config,
        { kind: 'code', request: buildAuthorisationRequest(config) },
        Date.now() + 60_000,
      );
      publish(item);
      return (await item.result).get('code') ?? '';
    });
    const [pending] = authorisations.pending();
    assert.ok(pending && pending.details.kind === 'code');
    const status = JSON.parse(
      (await call('GET', '/api/status', { Authorization: `Bearer ${SECRET}` })).body,
    ) as { pending: { completesHere: boolean }[] };
    assert.equal(status.pending[0]?.completesHere, true);
    const callback = await call('GET', `/callback?code=the-code&state=${pending.details.request.state}`);
    assert.equal(callback.status, 200);
    assert.equal(await done, 'the-code');
  });

  // After the tests that trust the first certificate's CA.
  it('serves a renewed certificate after reloadCertificate(), and keeps its own when the files are bad', async () => {
    const fingerprint = () => servedCertificateFingerprint(port);
    const first = await fingerprint();
    const renewed = await createTestCertificates(join(dir, 'renewed'));
    await copyFile(renewed.certPath, certificatePath);
    await copyFile(renewed.keyPath, keyPath);
    await web.reloadCertificate();
    const second = await fingerprint();
    assert.notEqual(second, first);
    await writeFile(certificatePath, 'not a certificate\n');
    await assert.rejects(web.reloadCertificate(), {
      code: 'CONFIG_INVALID',
      message: /^cannot use \[emailproxy\] web_console_certificate_path\/web_console_key_path/,
    });
    assert.equal(await fingerprint(), second);
  });

  // Runs last: it closes the console. The timeout is a guard, not a measurement: stopping takes milliseconds,
  // and without destroying such connections close() waits out the 10 s handshake bound.
  it('stops at once while a connection that never starts its TLS handshake is open', {
    timeout: 5000,
  }, async () => {
    const idle = net.connect({ host: '127.0.0.1', port });
    await once(idle, 'connect');
    const gone = once(idle, 'close');
    await web.close();
    closed = true;
    await gone;
  });
});
