import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Authorisations, PendingAuthorisation } from '../authorise/pending.ts';
import type { ConfigStore } from '../config/store.ts';
import { describeError, ErrorCode, isMailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { METRICS_CONTENT_TYPE, type Metrics } from '../metrics.ts';
import { type AccountActivity, remedyFor } from './activity.ts';
import { CONSOLE_CSS, CONSOLE_JS } from './assets.ts';
import type { LiveUpdates } from './events.ts';
import type { ConsoleFrontEnd } from './front-end.ts';
import { HttpInputError, readForm, redirect, send, sendJson } from './http.ts';
import { renderMessagePage, renderPage } from './page.ts';
import type { ConsoleSession, ConsoleSessions } from './sessions.ts';
import { consoleScheme, formatAuthority, type WebConsoleSettings } from './settings.ts';
import { type ConsoleStatus, collectStatus, completesHere } from './status.ts';

/**
 * Every request to the console, in this order: the Host header must name the console (so a DNS-rebinding
 * page cannot talk to it under another name); a provider's redirect to a pending request's callback is
 * answered without a session (its `state` is the proof, and a SameSite=Strict cookie does not come along on
 * a redirect from another site); the script and stylesheet are public; everything else needs the session
 * cookie (or, for `/api/status` and `/metrics`, the secret as a bearer token), and every POST needs the
 * session's CSRF token and no foreign Origin or Sec-Fetch-Site.
 */
export interface RouteContext {
  settings: WebConsoleSettings;
  sessions: ConsoleSessions;
  store: ConfigStore;
  authorisations: Authorisations;
  activity: AccountActivity;
  metrics: Metrics;
  frontEnd: ConsoleFrontEnd;
  live: LiveUpdates;
  logger: Logger;
  authorise: (account: string, password: string) => Promise<unknown>;
  reload: (() => Promise<string>) | undefined;
  now: () => number;
  /** How long an Authorise action waits for its request to appear before answering the browser. */
  offerWaitMs: number;
}

const HTML = 'text/html; charset=utf-8';

export class ConsoleRoutes {
  private readonly hosts: Set<string> | undefined;

  constructor(private readonly context: RouteContext) {
    const { host, port, loopback } = context.settings;
    // Bound to every address, the console cannot know the names it is reached by: the secret must do.
    this.hosts =
      host === '0.0.0.0' || host === '::'
        ? undefined
        : new Set([
            formatAuthority(host, port).toLowerCase(),
            ...(loopback ? [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`] : []),
          ]);
  }

  status(): ConsoleStatus {
    const { context } = this;
    return collectStatus({
      store: context.store,
      authorisations: context.authorisations,
      activity: context.activity,
      console: context.settings,
      reloadAvailable: context.reload !== undefined,
      now: context.now(),
    });
  }

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const host = (req.headers.host ?? '').toLowerCase();
    if (this.hosts && !this.hosts.has(host)) {
      send(
        res,
        421,
        'text/plain; charset=utf-8',
        'this is the mailbridge console: use the address it printed\n',
      );
      return;
    }
    const url = new URL(req.url ?? '/', 'http://console.invalid');
    const method = req.method ?? 'GET';
    if (method === 'GET' && this.callback(url, res)) return;
    if (method === 'GET' && url.pathname === '/console.js') {
      send(res, 200, 'text/javascript; charset=utf-8', CONSOLE_JS);
      return;
    }
    if (method === 'GET' && url.pathname === '/console.css') {
      send(res, 200, 'text/css; charset=utf-8', CONSOLE_CSS);
      return;
    }
    if (method === 'GET' && url.pathname === '/login') {
      this.signIn(url, res);
      return;
    }
    const { sessions } = this.context;
    const session = sessions.fromCookies(req.headers.cookie);
    const machine = url.pathname === '/api/status' || url.pathname === '/metrics';
    if (!session && !(machine && method === 'GET' && sessions.checkBearer(req.headers.authorization))) {
      this.unauthorised(url, res);
      return;
    }
    if (method === 'GET') {
      // Reading is for the console's own pages (or a script without a browser): another origin's page that
      // sends the cookie along (another port is the same site) is refused before anything is produced. Only
      // following a link to the console itself is let through (a frame is not: no clickjacking).
      const site = header(req, 'sec-fetch-site');
      const navigation =
        url.pathname === '/' &&
        header(req, 'sec-fetch-mode') === 'navigate' &&
        header(req, 'sec-fetch-dest') === 'document';
      if (site !== undefined && site !== 'same-origin' && site !== 'none' && !navigation) {
        send(res, 403, 'text/plain; charset=utf-8', 'cross-origin requests are refused\n');
        return;
      }
      await this.read(url, res, session);
      return;
    }
    if (method !== 'POST') {
      send(res, 405, 'text/plain; charset=utf-8', 'method not allowed\n', { Allow: 'GET, POST' });
      return;
    }
    if (!session) {
      this.unauthorised(url, res);
      return;
    }
    await this.act(req, url, res, session);
  }

  private async read(url: URL, res: ServerResponse, session: ConsoleSession | undefined): Promise<void> {
    switch (url.pathname) {
      case '/': {
        if (!session) break;
        const flash = session.flash;
        session.flash = [];
        send(res, 200, HTML, renderPage(this.status(), session.csrf, flash));
        return;
      }
      case '/api/status':
        sendJson(res, 200, this.status());
        return;
      case '/metrics':
        send(res, 200, METRICS_CONTENT_TYPE, this.renderMetrics());
        return;
      case '/events':
        if (!session) break;
        this.context.live.open(res, session);
        return;
    }
    send(
      res,
      404,
      HTML,
      renderMessagePage('Not found', 'The console has no such page.', {
        href: '/',
        text: 'Back to the console',
      }),
    );
  }

  private async act(
    req: IncomingMessage,
    url: URL,
    res: ServerResponse,
    session: ConsoleSession,
  ): Promise<void> {
    const actions: Record<string, (form: URLSearchParams, session: ConsoleSession) => Promise<void>> = {
      '/pending/complete': (form, s) => this.complete(form, s),
      '/accounts/authorise': (form, s) => this.startAuthorisation(form, s),
      '/accounts/forget': (form, s) => this.forget(form, s),
      '/reload': (_form, s) => this.reload(s),
    };
    const action = actions[url.pathname];
    if (!action || (url.pathname === '/reload' && !this.context.reload)) {
      send(res, 404, 'text/plain; charset=utf-8', 'no such action\n');
      return;
    }
    // Browsers send Origin with every POST; a page of another origin (another port of this host included)
    // shows itself there and in Sec-Fetch-Site. Without either (a script), the CSRF token alone decides.
    const origin = header(req, 'origin');
    const site = header(req, 'sec-fetch-site');
    if (
      (origin !== undefined && origin !== `${consoleScheme(this.context.settings)}://${req.headers.host}`) ||
      (site !== undefined && site !== 'same-origin')
    ) {
      req.resume();
      this.context.logger.warn(
        `web console: refused a cross-origin POST ${url.pathname} (Origin ${origin ?? 'none'}, Sec-Fetch-Site ${site ?? 'none'})`,
      );
      send(res, 403, 'text/plain; charset=utf-8', 'cross-origin requests are refused\n');
      return;
    }
    let form: URLSearchParams;
    try {
      form = await readForm(req);
    } catch (error: unknown) {
      const status = error instanceof HttpInputError ? error.status : 400;
      send(res, status, 'text/plain; charset=utf-8', `${describeError(error)}\n`);
      return;
    }
    if (!this.context.sessions.checkCsrf(session, form.get('csrf') ?? undefined)) {
      this.context.logger.warn(
        `web console: refused a POST ${url.pathname} without this session's CSRF token`,
      );
      send(
        res,
        403,
        'text/plain; charset=utf-8',
        'the form is stale or not from this console: reload the page\n',
      );
      return;
    }
    await action(form, session);
    this.context.live.changed();
    redirect(res, '/');
  }

  /** A provider's redirect to a request whose redirect_uri points at this console. */
  private callback(url: URL, res: ServerResponse): boolean {
    const state = url.searchParams.get('state');
    if (!state) return false;
    const pending = this.context.authorisations
      .pending()
      .find(
        (item) =>
          item.details.kind === 'code' &&
          item.details.request.state === state &&
          completesHere(item, this.context.settings) &&
          samePath(item.account.redirectUri as string, url.pathname),
      );
    if (!pending) return false;
    const account = pending.account.username;
    // The redirect as the provider addressed it: the configured redirect_uri's origin, this path and query.
    const redirectUrl = `${new URL(pending.account.redirectUri as string).origin}${url.pathname}${url.search}`;
    const back = { href: '/', text: 'Back to the console' };
    try {
      pending.complete(redirectUrl);
      this.context.logger.info({ account }, `authorisation of '${account}' received by the web console`);
      send(
        res,
        200,
        HTML,
        renderMessagePage(
          `mailbridge received the authorisation of ${account}`,
          'mailbridge is fetching the tokens now. You can close this window.',
          back,
        ),
      );
    } catch (error: unknown) {
      if (isMailbridgeError(error, ErrorCode.OAUTH_REDIRECT_MISMATCH)) {
        send(res, 400, HTML, renderMessagePage('Authorisation not accepted', error.message, back));
      } else {
        pending.fail(error);
        send(
          res,
          200,
          HTML,
          renderMessagePage(`Authorisation of ${account} refused`, describeError(error), back),
        );
      }
    }
    this.context.live.changed();
    return true;
  }

  private signIn(url: URL, res: ServerResponse): void {
    const { sessions, logger } = this.context;
    if (!sessions.checkSecret(url.searchParams.get('secret'))) {
      logger.warn('web console: a sign-in with a wrong or missing secret was refused');
      send(
        res,
        403,
        HTML,
        renderMessagePage(
          'Not signed in',
          'This sign-in link does not hold the secret of the running mailbridge: use the one it printed when it started (the secret is new at every start unless web_console_secret_file keeps it).',
        ),
      );
      return;
    }
    const session = sessions.create();
    // Off the address bar and out of the history at once: the secret is only ever in this one request.
    redirect(res, '/', { 'Set-Cookie': sessions.setCookie(session) });
  }

  private unauthorised(url: URL, res: ServerResponse): void {
    const message =
      'Sign in with the URL mailbridge printed when it started (it holds a secret that is new at every start unless web_console_secret_file keeps it).';
    if (url.pathname === '/api/status') {
      sendJson(res, 401, { error: 'unauthorised', message });
    } else if (url.pathname === '/' || url.pathname === '') {
      send(res, 401, HTML, renderMessagePage('Not signed in', message));
    } else {
      send(res, 401, 'text/plain; charset=utf-8', `${message}\n`);
    }
  }

  private renderMetrics(): string {
    const { metrics } = this.context;
    const status = this.status();
    metrics.clear('mailbridge_authorisations_pending');
    for (const kind of ['code', 'device'] as const) {
      metrics.gauge(
        'mailbridge_authorisations_pending',
        status.pending.filter((item) => item.kind === kind).length,
        { kind },
      );
    }
    metrics.clear('mailbridge_accounts');
    for (const state of ['valid', 'refresh-due', 'expired', 'none'] as const) {
      const count = status.accounts.filter((account) => account.token.state === state).length;
      metrics.gauge('mailbridge_accounts', count, { token_state: state });
    }
    return metrics.render();
  }

  private async complete(form: URLSearchParams, session: ConsoleSession): Promise<void> {
    const pending = this.context.authorisations.pending().find((item) => item.id === form.get('id'));
    if (!pending) {
      session.flash.push({
        kind: 'error',
        text: 'That authorisation is no longer waiting (it was completed, failed or expired).',
      });
      return;
    }
    const account = pending.account.username;
    try {
      pending.complete(form.get('redirect') ?? '');
      this.context.logger.info({ account }, `authorisation of '${account}' answered through the web console`);
      session.flash.push({
        kind: 'ok',
        text: `Received the authorisation of ${account}: mailbridge is fetching its tokens.`,
      });
    } catch (error: unknown) {
      if (!isMailbridgeError(error, ErrorCode.OAUTH_REDIRECT_MISMATCH)) pending.fail(error);
      session.flash.push({ kind: 'error', text: describeError(error) });
    }
  }

  private async startAuthorisation(form: URLSearchParams, session: ConsoleSession): Promise<void> {
    const { context } = this;
    const account = form.get('account') ?? '';
    const password = form.get('password') ?? '';
    const again = form.get('again') === 'yes';
    const fail = (text: string) => session.flash.push({ kind: 'error', text });
    let flow: string | undefined;
    try {
      flow = context.store.account(account)?.flow;
    } catch (error: unknown) {
      fail(describeError(error));
      return;
    }
    if (flow !== 'authorization_code' && flow !== 'device') {
      fail(
        flow === undefined
          ? `There is no account '${account}' in the configuration.`
          : `Account '${account}' uses oauth2_flow '${flow}', which needs nobody to authorise it: its next login fetches a token.`,
      );
      return;
    }
    if (!password) {
      fail('Enter the password your mail client uses for this account: its tokens are encrypted with it.');
      return;
    }
    if (this.pendingFor(account)) {
      session.flash.push({ kind: 'ok', text: `An authorisation of ${account} is already waiting below.` });
      return;
    }
    context.logger.info({ account }, `web console: ${again ? 're-authorising' : 'authorising'} '${account}'`);
    let outcome = await this.attempt(account, password);
    if (outcome.kind === 'authorised' && again) {
      // The password opened the current tokens (or refreshed them): only now are they discarded.
      await this.discardTokens(account);
      outcome = await this.attempt(account, password);
    }
    switch (outcome.kind) {
      case 'offered':
        session.flash.push({
          kind: 'ok',
          text: `Authorisation of ${account} started: complete it under Pending authorisations.`,
        });
        return;
      case 'starting':
        session.flash.push({
          kind: 'ok',
          text: `Authorisation of ${account} is starting: it appears under Pending authorisations in a moment.`,
        });
        return;
      case 'authorised':
        session.flash.push({ kind: 'ok', text: `${account} is authorised: its tokens are valid.` });
        return;
      case 'failed':
        fail(`${describeError(outcome.error)} ${remedyFor(outcome.error)}`);
        return;
    }
  }

  /** Starts what a client's login would start, and waits until a request is offered or the attempt ends. */
  private async attempt(
    account: string,
    password: string,
  ): Promise<{ kind: 'offered' | 'starting' | 'authorised' } | { kind: 'failed'; error: unknown }> {
    const { context } = this;
    const watch = context.frontEnd.watchOffer(account);
    const attempt = context.authorise(account, password);
    attempt.then(
      () => {
        context.activity.resolved(account);
        context.live.changed();
      },
      (error: unknown) => {
        // A client's wait ends while the request stays open for the person: that is not an error.
        if (!(isMailbridgeError(error, ErrorCode.OAUTH_AUTHORISATION_TIMEOUT) && this.pendingFor(account))) {
          context.activity.failure(account, error);
        }
        context.live.changed();
      },
    );
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<{ kind: 'starting' }>((resolve) => {
      timer = setTimeout(() => resolve({ kind: 'starting' }), context.offerWaitMs);
    });
    try {
      return await Promise.race([
        watch.offered.then(() => ({ kind: 'offered' }) as const),
        attempt.then(
          () => ({ kind: 'authorised' }) as const,
          (error: unknown) => ({ kind: 'failed', error }) as const,
        ),
        waited,
      ]);
    } finally {
      clearTimeout(timer);
      watch.stop();
    }
  }

  private async forget(form: URLSearchParams, session: ConsoleSession): Promise<void> {
    const account = form.get('account') ?? '';
    if (form.get('confirm') !== 'yes') {
      session.flash.push({
        kind: 'error',
        text: `Tick the confirmation to forget the tokens of ${account}.`,
      });
      return;
    }
    const known = this.status().accounts.some((item) => item.account === account);
    if (!known) {
      session.flash.push({ kind: 'error', text: `There is no account '${account}' in the configuration.` });
      return;
    }
    try {
      await this.discardTokens(account);
      session.flash.push({
        kind: 'ok',
        text: `Forgot the tokens of ${account}: its mail clients cannot log in until it is authorised again.`,
      });
    } catch (error: unknown) {
      session.flash.push({
        kind: 'error',
        text: `The tokens of ${account} are forgotten here but not on disk: ${describeError(error)}`,
      });
    }
  }

  /**
   * Removes the tokens, keeping token_salt (and token_iterations): an encrypted client secret needs them, and
   * it still opens only with the password it was encrypted with.
   */
  private async discardTokens(account: string): Promise<void> {
    this.context.logger.info({ account }, `web console: forgetting the cached tokens of '${account}'`);
    this.context.activity.resolved(account);
    await this.context.store.saveTokens(account, {
      access_token: undefined,
      access_token_expiry: undefined,
      refresh_token: undefined,
    });
  }

  private async reload(session: ConsoleSession): Promise<void> {
    const reload = this.context.reload as () => Promise<string>;
    this.context.logger.info('web console: reloading the configuration');
    try {
      session.flash.push({ kind: 'ok', text: await reload() });
    } catch (error: unknown) {
      session.flash.push({
        kind: 'error',
        text: `Configuration not reloaded, the running one stays in force: ${describeError(error)}`,
      });
    }
  }

  private pendingFor(account: string): PendingAuthorisation | undefined {
    return this.context.authorisations.pending().find((item) => item.account.username === account);
  }
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function samePath(redirectUri: string, pathname: string): boolean {
  return new URL(redirectUri).pathname.replace(/\/+$/, '') === pathname.replace(/\/+$/, '');
}
