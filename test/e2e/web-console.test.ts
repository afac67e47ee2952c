import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { IniDocument } from '../../src/config/ini.ts';
import { Cryptographer } from '../../src/tokens/cryptographer.ts';
import { KeyDeriver } from '../../src/tokens/key-derivation.ts';
import { startTestbed, type Testbed } from '../testbed/bed.ts';
import { curl } from '../testbed/clients.ts';
import { serverSection } from '../testbed/config-sections.ts';
import { type MailbridgeProcess, startMailbridge, stopMailbridgeAndBed } from '../testbed/mailbridge.ts';
import { findFreePorts } from '../testbed/ports.ts';

/**
 * The web console in a real browser (Debian's chromium driven by playwright-core) against the real program
 * and the test bed: a client's login waits while a person authorises in the page, by the console's own
 * callback, by pasting the redirect URL, or with a device code; an account is authorised from the page with
 * no client waiting; tokens are forgotten; the configuration reloads. And what must not happen: a page of
 * another origin acting or reading, a request without the secret, a token in any page or answer.
 *
 * MAILBRIDGE_SCREENSHOT=docs/web-console.png writes the README's screenshot; otherwise it goes to the bed.
 */
const PASSWORD = 'pw-of-the-mail-client';
const message = Buffer.from('Subject: console\r\n\r\nhello\r\n');
const CHROMIUM = '/usr/bin/chromium';
/** stack.md: Debian's chromium, headless, with nothing that phones home. */
const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

describe('web console in a real browser', () => {
  let bed: Testbed;
  let mailbridge: MailbridgeProcess;
  let context: BrowserContext;
  let page: Page;
  let imapPort: number;
  let consolePort: number;
  let otherPort: number;
  let configPath: string;
  let base: string;
  let signInUrl: string;
  let other: Server;
  /** Every page and answer the tests saw, checked for tokens at the end. */
  const seen: string[] = [];

  const login = (user: string) =>
    curl(['--user', `${user}:${PASSWORD}`, `imap://127.0.0.1:${imapPort}/INBOX/;UID=1`], 60_000);
  const row = (account: string) => page.locator(`#accounts tr[data-account="${account}"]`);
  const pendingItem = (account: string) => page.locator(`#pending article[data-account="${account}"]`);

  async function remember(): Promise<void> {
    seen.push(await page.content());
  }

  /** The cached tokens of an account in clear, decrypted with the client's password as mailbridge would. */
  async function cachedTokens(account: string): Promise<{ encrypted: string[]; clear: string[] }> {
    const doc = IniDocument.parse(await readFile(configPath, 'utf8'), configPath);
    const value = (key: string) => (doc.hasSection(account) ? doc.get(account, key) : undefined);
    const crypto = await Cryptographer.create({
      deriver: new KeyDeriver(),
      password: PASSWORD,
      salt: value('token_salt'),
      iterations: Number(value('token_iterations')),
    });
    const encrypted = ['access_token', 'refresh_token']
      .map(value)
      .filter((v): v is string => v !== undefined);
    return { encrypted, clear: encrypted.map((token) => crypto.decrypt(token)) };
  }

  before(async () => {
    bed = await startTestbed();
    for (const user of [
      'web@example.test',
      'paste@example.test',
      'device@example.test',
      'fresh@example.test',
    ]) {
      bed.dovecot.seedMessage(user, '1.msg', message);
    }
    [imapPort, consolePort, otherPort] = (await findFreePorts(3)) as [number, number, number];
    base = `http://127.0.0.1:${consolePort}`;
    const callback = `${base}/callback`;
    configPath = join(bed.dir, 'emailproxy.config');
    await writeFile(
      configPath,
      [
        serverSection({ protocol: 'IMAP', localPort: imapPort, serverPort: bed.dovecot.ports.imaps }),
        bed.accountSection('web@example.test', { redirect_uri: callback }),
        // The test bed's default redirect_uri, where nothing listens: the person pastes the address.
        bed.accountSection('paste@example.test'),
        bed.accountSection('device@example.test', {
          permission_url: bed.oauth.deviceAuthorizationEndpoint,
          oauth2_flow: 'device',
        }),
        bed.accountSection('fresh@example.test', { redirect_uri: callback }),
      ].join('\n'),
      { mode: 0o600 },
    );
    mailbridge = await startMailbridge({
      args: ['--no-gui', '--config-file', configPath, '--web-console', `127.0.0.1:${consolePort}`],
      caCertPath: bed.certs.caCertPath,
    });
    await mailbridge.waitForLog('mailbridge ready');
    const printed = /web console at (\S+) - sign in once with (\S+)/.exec(mailbridge.stderr());
    assert.ok(printed, `the console's address is printed at start:\n${mailbridge.stderr()}`);
    assert.equal(printed[1], `${base}/`);
    signInUrl = printed[2] as string;
    context = await chromium.launchPersistentContext(join(bed.dir, 'chromium-profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 900 },
      timezoneId: 'UTC',
      locale: 'en-GB',
    });
    page = context.pages()[0] ?? (await context.newPage());
    // The other origin: another port of the same host, which a browser counts as the same *site*.
    other = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(req.url === '/form' ? hostileForm(base) : hostileScript(base));
    });
    await new Promise<void>((resolve) => other.listen(otherPort, '127.0.0.1', resolve));
  });

  after(async () => {
    await context?.close();
    await new Promise<void>((resolve) => (other ? other.close(() => resolve()) : resolve()));
    await stopMailbridgeAndBed(mailbridge, bed);
  });

  it('signs in with the printed URL: the secret leaves the address bar for an HttpOnly, SameSite=Strict cookie', async () => {
    await page.goto(signInUrl);
    assert.equal(page.url(), `${base}/`);
    await page.locator('#live[data-state="live"]').waitFor();
    const cookies = await context.cookies(base);
    assert.equal(cookies.length, 1);
    assert.equal(cookies[0]?.httpOnly, true);
    assert.equal(cookies[0]?.sameSite, 'Strict');
    assert.ok(!cookies[0]?.value.includes(new URL(signInUrl).searchParams.get('secret') as string));
    assert.equal(await row('web@example.test').getAttribute('data-state'), 'none');
    await remember();
  });

  it("authorises a waiting client's login through the console's own callback, and the page updates live", async () => {
    // Set once: still there at the end only if the page was never reloaded.
    // (Browser code is passed as text: this project's TypeScript has no DOM types.)
    await page.evaluate("document.body.dataset.marker = 'same page'");
    const loggingIn = login('web@example.test');
    await pendingItem('web@example.test').waitFor();
    assert.equal(await page.locator('#pending > *').count(), 1, 'the request replaces "nothing waiting"');
    await remember();
    const [provider] = await Promise.all([
      context.waitForEvent('page'),
      pendingItem('web@example.test').locator('a.authorise').click(),
    ]);
    // The test bed's OAuth server signs the user in at once and redirects to the console's callback.
    await provider.waitForURL(/\/callback\?/);
    assert.match(
      (await provider.locator('h1').textContent()) ?? '',
      /received the authorisation of web@example\.test/,
    );
    seen.push(await provider.content());
    await provider.close();
    const result = await loggingIn;
    assert.equal(result.code, 0, `${result.stderr}\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, message);
    await page.locator('#accounts tr[data-account="web@example.test"][data-state="valid"]').waitFor();
    await pendingItem('web@example.test').waitFor({ state: 'detached' });
    await page.locator('#pending-none').waitFor();
    assert.equal(await page.evaluate('document.body.dataset.marker'), 'same page');
    assert.match((await row('web@example.test').textContent()) ?? '', /refresh token: present/);
    await remember();
  });

  it('shows a device code with a countdown and a paste field for a redirect that reaches nothing; both complete', async () => {
    bed.oauth.setDevicePendingPolls(Number.POSITIVE_INFINITY);
    const device = login('device@example.test');
    const paste = login('paste@example.test');
    await pendingItem('device@example.test').waitFor();
    await pendingItem('paste@example.test').waitFor();
    const userCode =
      (await pendingItem('device@example.test').locator('.user-code code').textContent()) ?? '';
    assert.match(userCode, /^[A-Z0-9-]+$/);
    await page.locator('.countdown', { hasText: / min$/ }).waitFor();
    assert.match(
      (await pendingItem('device@example.test').locator('.countdown').textContent()) ?? '',
      /^\d+:\d\d min$/,
    );
    await remember();
    await page.screenshot({
      path: process.env.MAILBRIDGE_SCREENSHOT ?? join(bed.dir, 'web-console.png'),
      fullPage: true,
    });

    // The person signs in elsewhere and pastes the address the browser ended on.
    const url = (await pendingItem('paste@example.test')
      .locator('a.authorise')
      .getAttribute('href')) as string;
    const redirect = await bed.oauth.authorize(url);
    await pendingItem('paste@example.test').locator('input[name="redirect"]').fill(redirect);
    await pendingItem('paste@example.test').getByRole('button', { name: 'Complete' }).click();
    await page
      .locator('.flash-ok', { hasText: 'Received the authorisation of paste@example.test' })
      .waitFor();
    const pasted = await paste;
    assert.equal(pasted.code, 0, `${pasted.stderr}\n${mailbridge.stderr()}`);

    bed.oauth.approveDevice(userCode);
    const approved = await device;
    assert.equal(approved.code, 0, `${approved.stderr}\n${mailbridge.stderr()}`);
    await pendingItem('device@example.test').waitFor({ state: 'detached' });
    await page.locator('#accounts tr[data-account="device@example.test"][data-state="valid"]').waitFor();
    await page.locator('#accounts tr[data-account="paste@example.test"][data-state="valid"]').waitFor();
    await remember();
  });

  it('authorises an account from the page with the mail client password, no client waiting; then a client logs in with it', async () => {
    await row('fresh@example.test').locator('input[name="password"]').fill(PASSWORD);
    await row('fresh@example.test').getByRole('button', { name: 'Authorise' }).click();
    await page.locator('.flash-ok', { hasText: 'Authorisation of fresh@example.test' }).waitFor();
    const [provider] = await Promise.all([
      context.waitForEvent('page'),
      pendingItem('fresh@example.test').locator('a.authorise').click(),
    ]);
    await provider.waitForURL(/\/callback\?/);
    await provider.close();
    await page.locator('#accounts tr[data-account="fresh@example.test"][data-state="valid"]').waitFor();
    const authorizeCalls = bed.oauth.counts.endpoints.authorize;
    const result = await login('fresh@example.test');
    assert.equal(result.code, 0, `${result.stderr}\n${mailbridge.stderr()}`);
    assert.deepEqual(result.stdout, message);
    assert.equal(
      bed.oauth.counts.endpoints.authorize,
      authorizeCalls,
      'the tokens made from the page served',
    );
    await remember();
  });

  it('a page of another origin can neither act (CSRF) nor read /api/status (no CORS)', async () => {
    const before = await cachedTokens('web@example.test');
    assert.equal(before.clear.length, 2);
    const reloadsBefore = mailbridge.stderr().split('web console: reloading').length;
    const hostile = await context.newPage();
    await hostile.goto(`http://127.0.0.1:${otherPort}/script`);
    await hostile.waitForFunction('document.body.dataset.result !== undefined');
    const outcome = JSON.parse((await hostile.evaluate('document.body.dataset.result')) as string) as Record<
      string,
      string
    >;
    assert.equal(outcome.read, 'blocked: TypeError', 'the response is not readable from another origin');
    // Framed by the other origin (with the cookie, as the same site), the console shows nothing.
    const frame = hostile.frames().find((candidate) => candidate !== hostile.mainFrame());
    assert.ok(frame);
    await frame.waitForLoadState();
    assert.equal(await frame.locator('#accounts').count(), 0, 'the console refuses to be framed');
    // The blind POST reached the console and was refused (its answer is withheld from the page by CORP).
    assert.match(outcome.post as string, /^(sent|blocked: TypeError)$/);
    await mailbridge.waitForLog(/web console: refused a cross-origin POST \/reload/);
    assert.equal(mailbridge.stderr().split('web console: reloading').length, reloadsBefore);

    // A form on the other origin posting to the console with the cookie (same site) but no CSRF token.
    const [answer] = await Promise.all([
      hostile.waitForResponse((response) => response.url() === `${base}/accounts/forget`),
      hostile.goto(`http://127.0.0.1:${otherPort}/form`),
    ]);
    assert.equal(answer.status(), 403);
    await hostile.close();
    assert.deepEqual(await cachedTokens('web@example.test'), before, 'the tokens are still there');
  });

  it('answers a request without the secret with 401 or 403', async () => {
    for (const path of ['/', '/api/status', '/metrics', '/events']) {
      assert.equal((await fetch(`${base}${path}`)).status, 401, path);
    }
    assert.equal((await fetch(`${base}/login?secret=guessed`)).status, 403);
    const forget = await fetch(`${base}/accounts/forget`, {
      method: 'POST',
      body: new URLSearchParams({ account: 'web@example.test', confirm: 'yes' }),
    });
    assert.equal(forget.status, 401);
  });

  it('reloads the configuration and forgets tokens after confirmation, from the page', async () => {
    await page.getByRole('button', { name: 'Reload configuration' }).click();
    await page
      .locator('.flash-ok', { hasText: /Configuration reloaded: 0 added, 0 removed, 0 changed, 1 unchanged/ })
      .waitFor();
    const paste = row('paste@example.test');
    await paste.locator('summary', { hasText: 'Forget tokens' }).click();
    await paste.locator('input[name="confirm"]').check();
    await paste.getByRole('button', { name: 'Forget tokens' }).click();
    await page.locator('.flash-ok', { hasText: 'Forgot the tokens of paste@example.test' }).waitFor();
    await page.locator('#accounts tr[data-account="paste@example.test"][data-state="none"]').waitFor();
    const doc = IniDocument.parse(await readFile(configPath, 'utf8'), configPath);
    assert.equal(doc.get('paste@example.test', 'access_token'), undefined);
    assert.equal(doc.get('paste@example.test', 'refresh_token'), undefined);
    await remember();
  });

  it('never shows a token: not in any page, /api/status, /metrics or the live updates', async () => {
    const status = (await page.evaluate(
      "fetch('/api/status').then((response) => response.text())",
    )) as string;
    const metrics = (await page.evaluate("fetch('/metrics').then((response) => response.text())")) as string;
    assert.match(metrics, /mailbridge_accounts\{token_state="valid"\} 3/);
    const live = (await page.evaluate(`new Promise((resolve) => {
      const source = new EventSource('/events');
      source.addEventListener('update', (event) => {
        source.close();
        resolve(event.data);
      });
    })`)) as string;
    const texts = [...seen, await page.content(), status, metrics, live];
    const secrets: string[] = ['test-secret', PASSWORD];
    for (const account of ['web@example.test', 'device@example.test', 'fresh@example.test']) {
      const tokens = await cachedTokens(account);
      assert.equal(tokens.clear.length, 2, `${account} has an access and a refresh token`);
      secrets.push(...tokens.clear, ...tokens.encrypted);
    }
    for (const text of texts) {
      for (const secret of secrets)
        assert.ok(!text.includes(secret), `a page or answer contains '${secret}'`);
    }
  });
});

/** Frames the console and tries to read its status and to reload it; reports in data-result. */
function hostileScript(base: string): string {
  return `<!doctype html><title>elsewhere</title><body><iframe id="frame" src="${base}/"></iframe><script>
(async () => {
  const outcome = {};
  try {
    const response = await fetch('${base}/api/status', { credentials: 'include' });
    outcome.read = 'read: ' + (await response.text()).slice(0, 80);
  } catch (error) {
    outcome.read = 'blocked: ' + error.name;
  }
  try {
    await fetch('${base}/reload', { method: 'POST', credentials: 'include', mode: 'no-cors', body: new URLSearchParams({ csrf: 'guess' }) });
    outcome.post = 'sent';
  } catch (error) {
    outcome.post = 'blocked: ' + error.name;
  }
  document.body.dataset.result = JSON.stringify(outcome);
})();
</script></body>`;
}

/** A form that posts to the console as soon as it loads, with everything but the CSRF token. */
function hostileForm(base: string): string {
  return `<!doctype html><title>elsewhere</title><body>
<form id="f" method="post" action="${base}/accounts/forget">
<input name="account" value="web@example.test"><input name="confirm" value="yes"><input name="csrf" value="guess">
</form><script>document.getElementById('f').submit();</script></body>`;
}
