import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ErrorCode, isMailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { FrontEnd, PendingAuthorisation } from './pending.ts';

/**
 * `--local-server-auth`: an HTTP listener on the host and port of redirect_uri (or redirect_listen_address)
 * that catches the browser's redirect and completes the authorisation by itself.
 *
 * It listens only while a request for that address is pending, and answers only the callback path with a
 * pending request's `state`: a stray request (a favicon, a probe, a stale tab) gets 404 and consumes nothing,
 * where the original took the first request of any kind as the answer.
 */
interface Listening {
  server: Server;
  pending: Set<PendingAuthorisation>;
}

export class RedirectListener implements FrontEnd {
  readonly completesCodeRequests = true;
  private readonly listeners = new Map<string, Listening>();

  constructor(private readonly logger: Logger) {}

  offer(pending: PendingAuthorisation): void {
    if (pending.details.kind !== 'code') return;
    const target = listenAddress(pending);
    if (!target) {
      this.logger.warn(
        { account: pending.account.username },
        `cannot listen for the redirect of '${pending.account.username}': redirect_uri (or redirect_listen_address) must be an http URL`,
      );
      return;
    }
    const key = `${target.host}:${target.port}`;
    const existing = this.listeners.get(key);
    if (existing) {
      existing.pending.add(pending);
      return;
    }
    const listening: Listening = {
      server: createServer((req, res) => this.handle(listening, req, res)),
      pending: new Set([pending]),
    };
    this.listeners.set(key, listening);
    listening.server.on('error', (error: NodeJS.ErrnoException) => {
      this.listeners.delete(key);
      this.logger.error(
        { account: pending.account.username, error: error.message },
        `cannot listen for the authorisation redirect on ${key}: ${error.code === 'EADDRINUSE' ? 'the port is in use - give each account a unique redirect_uri port, or set redirect_listen_address' : error.message}`,
      );
    });
    listening.server.listen(target.port, target.host, () => {
      this.logger.info(`listening for authorisation redirects on http://${key}/ while a request is pending`);
    });
  }

  withdraw(pending: PendingAuthorisation): void {
    for (const [key, listening] of this.listeners) {
      if (!listening.pending.delete(pending) || listening.pending.size > 0) continue;
      this.listeners.delete(key);
      listening.server.close();
      listening.server.closeAllConnections();
    }
  }

  close(): void {
    for (const listening of this.listeners.values()) {
      listening.server.close();
      listening.server.closeAllConnections();
    }
    this.listeners.clear();
  }

  private handle(listening: Listening, req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://placeholder');
    const state = url.searchParams.get('state');
    const pending = [...listening.pending].find(
      (candidate) =>
        candidate.details.kind === 'code' &&
        candidate.details.request.state === state &&
        samePath(candidate, url.pathname),
    );
    if (req.method !== 'GET' || !pending) {
      page(res, 404, 'Not found', 'This address only receives mailbridge authorisation redirects.');
      return;
    }
    // The redirect as the provider addressed it: the configured redirect_uri's origin, this path and query.
    const redirect = `${new URL(pending.account.redirectUri as string).origin}${url.pathname}${url.search}`;
    const account = pending.account.username;
    try {
      pending.complete(redirect);
      page(
        res,
        200,
        `mailbridge authorised ${account}`,
        `mailbridge received the authorisation of ${account}. You can close this window.`,
      );
    } catch (error: unknown) {
      if (isMailbridgeError(error, ErrorCode.OAUTH_REDIRECT_MISMATCH)) {
        page(res, 400, 'Authorisation not accepted', error.message);
        return;
      }
      pending.fail(error);
      page(res, 200, `Authorisation of ${account} refused`, (error as Error).message);
    }
  }
}

function listenAddress(pending: PendingAuthorisation): { host: string; port: number } | undefined {
  const address = pending.account.redirectListenAddress ?? pending.account.redirectUri;
  if (!address) return undefined;
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:') return undefined;
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  return { host, port: url.port ? Number(url.port) : 80 };
}

function samePath(pending: PendingAuthorisation, pathname: string): boolean {
  const expected = new URL(pending.account.redirectUri ?? 'http://localhost/').pathname;
  return expected.replace(/\/+$/, '') === pathname.replace(/\/+$/, '');
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res: ServerResponse, status: number, title: string, message: string): void {
  res.writeHead(status, {
    'Content-Type': 'text/html; charset=utf-8',
    'Content-Security-Policy': "default-src 'none'",
    'Cache-Control': 'no-store',
  });
  res.end(
    `<!doctype html><meta charset="utf-8"><title>${escapeHtml(title)}</title><h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>\n`,
  );
}
