import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Authorisations, FrontEnd } from '../authorise/pending.ts';
import type { ConfigStore } from '../config/store.ts';
import { describeError, ErrorCode, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Metrics } from '../metrics.ts';
import { loadCertificatePair } from '../net/certificate-pair.ts';
import { AccountActivity } from './activity.ts';
import { LiveUpdates } from './events.ts';
import { ConsoleFrontEnd } from './front-end.ts';
import { renderSections } from './page.ts';
import { ConsoleRoutes } from './routes.ts';
import { loadConsoleSecret } from './secret-file.ts';
import { ConsoleSessions } from './sessions.ts';
import {
  consoleScheme,
  formatAuthority,
  WEB_CONSOLE_CERTIFICATE_OPTION,
  WEB_CONSOLE_KEY_OPTION,
  type WebConsoleSettings,
  webConsoleSettings,
} from './settings.ts';

/**
 * The local web console: accounts and their token state, pending authorisations (answered in the page, or
 * by the console's own callback when redirect_uri points at it), re-authorise, forget tokens, reload, and
 * `/api/status` and `/metrics` for scripts.
 *
 * A page can start an authorisation without a client login: it asks for the account's mail-client password,
 * because cached tokens are encrypted with that password (a request started with another one would save
 * tokens the client cannot open). The password goes over loopback in a POST with the CSRF token, straight to
 * the token service, and is neither kept nor logged.
 */
export interface WebConsoleOptions {
  settings: WebConsoleSettings;
  store: ConfigStore;
  authorisations: Authorisations;
  /** What a client login does: obtain a token for account and password (starting an authorisation if needed). */
  authorise: (account: string, password: string) => Promise<unknown>;
  /** Reloads the configuration and describes the outcome; without it the console offers no reload. */
  reload?: () => Promise<string>;
  metrics?: Metrics;
  activity?: AccountActivity;
  logger: Logger;
  /** From web_console_secret_file (or a test); a random one per start otherwise. */
  secret?: string;
  now?: () => number;
  /** How often open pages look for token changes made elsewhere (2 s). */
  pollMs?: number;
  /** How long an Authorise button waits for its request to appear before answering (15 s). */
  offerWaitMs?: number;
}

export interface WebConsole {
  /** The console's address, e.g. http://127.0.0.1:8025/ */
  url: string;
  /** The sign-in URL with this run's secret: it gives a browser its session cookie. */
  signInUrl: string;
  frontEnd: FrontEnd;
  metrics: Metrics;
  activity: AccountActivity;
  /**
   * Reads the certificate files again, as a renewal leaves them (the same paths; other console settings
   * take a restart). Throws CONFIG_INVALID, keeping the certificate in use, when they do not load.
   */
  reloadCertificate(): Promise<void>;
  close(): Promise<void>;
}

/** The longest a client may take over its TLS handshake, then over its request's headers. */
const HEADERS_TIMEOUT_MS = 10_000;

export async function startWebConsole(options: WebConsoleOptions): Promise<WebConsole> {
  const { settings, logger } = options;
  const now = options.now ?? Date.now;
  const metrics = options.metrics ?? new Metrics();
  const activity = options.activity ?? new AccountActivity(now);
  const sessions = new ConsoleSessions({
    port: settings.port,
    secret: options.secret,
    secure: settings.tls !== undefined,
  });
  let routes: ConsoleRoutes | undefined;
  const live = new LiveUpdates({
    render: (session) => {
      const status = (routes as ConsoleRoutes).status();
      return JSON.stringify({
        sections: renderSections(status, session.csrf),
        pendingCount: status.pending.length,
      });
    },
    pollMs: options.pollMs ?? 2000,
    keepAliveMs: 25_000,
  });
  const frontEnd = new ConsoleFrontEnd(activity, () => live.changed());
  activity.onChange(() => live.changed());
  routes = new ConsoleRoutes({
    settings,
    sessions,
    store: options.store,
    authorisations: options.authorisations,
    activity,
    metrics,
    frontEnd,
    live,
    logger,
    authorise: options.authorise,
    reload: options.reload,
    now,
    offerWaitMs: options.offerWaitMs ?? 15_000,
  });
  const handler = routes;
  const serve = (req: IncomingMessage, res: ServerResponse) => {
    handler.handle(req, res).catch((error: unknown) => {
      logger.error(
        `web console: ${req.method} ${new URL(req.url ?? '/', 'http://x').pathname} failed: ${describeError(error)}`,
      );
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end('internal error: see the mailbridge log\n');
    });
  };
  const { tls } = settings;
  const loadCertificate = tls
    ? () =>
        loadCertificatePair(
          tls.certificatePath,
          tls.keyPath,
          `[emailproxy] ${WEB_CONSOLE_CERTIFICATE_OPTION}/${WEB_CONSOLE_KEY_OPTION}`,
        )
    : undefined;
  const certificate = await loadCertificate?.();
  // The TLS handshake gets the same short bound as the request headers that follow it.
  const server = certificate
    ? createHttpsServer({ ...certificate.options, handshakeTimeout: HEADERS_TIMEOUT_MS }, serve)
    : createServer(serve);
  // closeAllConnections() reaches only connections that finished their TLS handshake: stopping must not wait
  // for one that never will (a port scan, a health check).
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  // Slow or idle clients cannot hold sockets for ever; an event stream is long-lived by design.
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(
              `the web console cannot listen on ${formatAuthority(settings.host, settings.port)}: the port is in use (choose another with --web-console or web_console)`,
            )
          : new Error(
              `the web console cannot listen on ${formatAuthority(settings.host, settings.port)}: ${error.message}`,
            ),
      );
    });
    server.listen(settings.port, settings.host, () => resolve());
  });
  const url = `${consoleScheme(settings)}://${formatAuthority(settings.host, settings.port)}/`;
  const signInUrl = `${url}login?secret=${encodeURIComponent(sessions.secret)}`;
  if (!settings.loopback && !settings.tls) {
    logger.warn(
      `the web console listens on ${url}, beyond this machine, over plain HTTP: give it web_console_certificate_path and web_console_key_path, or keep it on loopback and use an SSH tunnel`,
    );
  }
  // A secret kept in a file lasts beyond this run, and logs are read by more people than that file.
  const shownSignIn = settings.secretFile
    ? `${url}login?secret=SECRET, SECRET being the first line of ${settings.secretFile}`
    : signInUrl;
  logger.info(`web console at ${url} - sign in once with ${shownSignIn}`);
  return {
    url,
    signInUrl,
    frontEnd,
    metrics,
    activity,
    reloadCertificate: async () => {
      if (!loadCertificate) return;
      (server as HttpsServer).setSecureContext((await loadCertificate()).options);
      logger.info(`web console: certificate reloaded from ${tls?.certificatePath}`);
    },
    close: async () => {
      live.close();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

/** What a reload did, as MailProxy.reload() reports it. */
export interface ReloadOutcome {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: string[];
  failed: string[];
}

export function describeReload(summary: ReloadOutcome): string {
  const list = (names: string[]) => (names.length > 0 ? ` (${names.join(', ')})` : '');
  const text =
    `Configuration reloaded: ${summary.added.length} added${list(summary.added)}, ` +
    `${summary.removed.length} removed${list(summary.removed)}, ` +
    `${summary.changed.length} changed${list(summary.changed)}, ${summary.unchanged.length} unchanged`;
  if (summary.failed.length === 0) return `${text}.`;
  return `${text}; ${summary.failed.length} not listening${list(summary.failed)}: see the log.`;
}

export interface DaemonConsoleOptions extends Omit<WebConsoleOptions, 'settings'> {
  /** `--web-console`, which wins over `web_console` in the configuration. */
  flag: string | undefined;
  /** Where the console's front end joins the daemon's (and how it is closed with them). */
  addFrontEnd: (frontEnd: FrontEnd, close: () => void) => void;
}

/**
 * The daemon's console, when `--web-console` or `web_console` asks for one: started and joined to the
 * authorisation front ends. Throws CONFIG_INVALID for an unusable address.
 */
export async function openWebConsole(options: DaemonConsoleOptions): Promise<WebConsole | undefined> {
  const settings = webConsoleSettings(options.flag, options.store.document);
  if (!settings) return undefined;
  let web: WebConsole;
  try {
    const secret = settings.secretFile ? await loadConsoleSecret(settings.secretFile) : undefined;
    web = await startWebConsole({ ...options, settings, ...(secret ? { secret } : {}) });
  } catch (error: unknown) {
    throw new MailbridgeError(ErrorCode.CONFIG_INVALID, describeError(error), { cause: error });
  }
  options.addFrontEnd(web.frontEnd, () => {
    void web.close();
  });
  return web;
}
