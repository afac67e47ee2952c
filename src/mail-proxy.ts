import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { Protocol, type ServerConfig } from './config/servers.ts';
import type { ConfigStore } from './config/store.ts';
import { describeError } from './errors.ts';
import type { Logger } from './log.ts';
import { Limits } from './net/limits.ts';
import { type Listener, type LocalTls, listen, listenerBinding, loadLocalTls } from './net/listener.ts';
import type { HostResolver } from './net/resolve.ts';
import { createUpstreamTlsContext } from './net/upstream.ts';
import { NO_OBSERVER, type Observer } from './observer.ts';
import { ImapSession } from './protocols/imap/session.ts';
import { Pop3Session } from './protocols/pop3/session.ts';
import type { ProxySession, SessionOptions } from './protocols/proxy-session.ts';
import { SmtpSession } from './protocols/smtp/session.ts';
import type { TokenService } from './tokens/token-service.ts';

/**
 * The running proxy: one listener per server section, one session per accepted connection.
 *
 * A reload (SIGHUP) compares the new server sections with the running ones by section name. Unchanged
 * sections are not touched at all. A section whose settings changed keeps its listening sockets when its
 * address, port and local TLS mode are the same (new connections get the new settings, the certificate is
 * swapped in place); otherwise it is closed and opened again. Removed sections stop listening. Sessions
 * already open always finish with the settings they started with: cutting a mail client's IDLE connection
 * because a neighbouring section was edited would be worse than a stale setting until it reconnects.
 */
export interface MailProxyOptions {
  store: ConfigStore;
  tokens: TokenService;
  resolver: HostResolver;
  logger: Logger;
  observer?: Observer;
}

const SESSIONS: Record<Protocol, new (client: Socket, options: SessionOptions) => ProxySession> = {
  [Protocol.IMAP]: ImapSession,
  [Protocol.POP]: Pop3Session,
  [Protocol.SMTP]: SmtpSession,
};

/** One server section as it runs: mutable, so a reload can change what new connections get. */
interface Endpoint {
  server: ServerConfig;
  localTls: LocalTls | undefined;
  listener: Listener;
}

/** What a reload did, section names in each list. */
export interface ReloadSummary {
  added: string[];
  removed: string[];
  changed: string[];
  unchanged: string[];
  /** Sections that should listen but could not (the port is taken…): each was logged with its reason. */
  failed: string[];
}

export class MailProxy {
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly sessions = new Set<ProxySession>();
  private nextConnectionId = 1;
  private reloading: Promise<unknown> = Promise.resolve();
  /** One for every upstream connection, for the life of the proxy: a reload does not change trusted roots. */
  private readonly upstreamTls = createUpstreamTlsContext();

  constructor(private readonly options: MailProxyOptions) {}

  async start(): Promise<void> {
    const servers = this.options.store.servers();
    if (servers.length === 0) this.warnNoServers();
    try {
      for (const server of servers) await this.open(server, await loadLocalTls(server));
    } catch (error: unknown) {
      await this.stop();
      throw error;
    }
  }

  /**
   * Applies the configuration file as it is now. Throws, changing nothing, when the file is unusable; a
   * listener that cannot be opened is logged and listed as failed, and the others are applied.
   */
  reload(): Promise<ReloadSummary> {
    // Two SIGHUPs in a row apply one after the other, never interleaved.
    const run = this.reloading.then(() => this.applyReload());
    this.reloading = run.catch(() => undefined);
    return run;
  }

  /**
   * Stops accepting, gives every client still logging in its protocol's goodbye and ends relayed sessions,
   * then waits a little for the connections to close before cutting the rest.
   */
  async stop(): Promise<void> {
    const listeners = [...this.endpoints.values()].map((endpoint) => endpoint.listener);
    this.endpoints.clear();
    const closed = Promise.all(listeners.map((listener) => listener.close()));
    for (const session of this.sessions) session.shutdown();
    this.sessions.clear();
    const grace = new AbortController();
    await Promise.race([
      closed,
      sleep(Limits.shutdownGraceMs, undefined, { signal: grace.signal }).catch(() => undefined),
    ]);
    grace.abort();
    for (const listener of listeners) listener.destroyConnections();
    await closed;
  }

  private async applyReload(): Promise<ReloadSummary> {
    const { logger, store } = this.options;
    // Every certificate is loaded before anything changes: one that does not load refuses the whole reload.
    const next = await store.reload((servers) =>
      Promise.all(servers.map(async (server) => ({ server, localTls: await loadLocalTls(server) }))),
    );
    const summary: ReloadSummary = { added: [], removed: [], changed: [], unchanged: [], failed: [] };
    const sections = new Set(next.map(({ server }) => server.section));
    // Removals first, so a port moving from one section to another is free when the other opens.
    for (const [section, endpoint] of this.endpoints) {
      if (sections.has(section)) continue;
      this.endpoints.delete(section);
      void endpoint.listener.close();
      summary.removed.push(section);
      logger.info(`[${section}] removed: no longer listening on ${endpoint.listener.addresses.join(', ')}`);
    }
    for (const { server, localTls } of next) {
      const current = this.endpoints.get(server.section);
      if (!current) continue;
      if (isDeepStrictEqual(current.server, server) && sameTls(current.localTls, localTls)) {
        summary.unchanged.push(server.section);
        continue;
      }
      summary.changed.push(server.section);
      if (listenerBinding(current.server) === listenerBinding(server)) {
        current.server = server;
        current.localTls = localTls;
        if (localTls) current.listener.setTls(localTls);
        logger.info(`[${server.section}] changed: new connections ${describeEndpoint(server)}`);
        continue;
      }
      this.endpoints.delete(server.section);
      void current.listener.close();
    }
    for (const { server, localTls } of next) {
      if (this.endpoints.has(server.section)) continue;
      const isNew = !summary.changed.includes(server.section);
      try {
        await this.open(server, localTls);
        if (isNew) summary.added.push(server.section);
      } catch (error: unknown) {
        summary.failed.push(server.section);
        if (!isNew) summary.changed.splice(summary.changed.indexOf(server.section), 1);
        logger.error(
          `[${server.section}] not listening: ${describeError(error)}; fix the configuration and send SIGHUP again`,
        );
      }
    }
    if (next.length === 0) this.warnNoServers();
    return summary;
  }

  private async open(server: ServerConfig, localTls: LocalTls | undefined): Promise<void> {
    const endpoint: Endpoint = { server, localTls, listener: undefined as unknown as Listener };
    endpoint.listener = await listen(
      server,
      localTls,
      (socket) => this.accept(endpoint, socket),
      this.options.logger,
    );
    this.endpoints.set(server.section, endpoint);
    this.options.logger.info(
      `${server.protocol} server at ${endpoint.listener.addresses.join(', ')} ${describeEndpoint(server)}`,
    );
  }

  private accept(endpoint: Endpoint, socket: Socket): void {
    // Read at accept time: a reload may have changed the section since the listener opened.
    const { server, localTls } = endpoint;
    const cid = this.nextConnectionId++;
    const logger = this.options.logger.child({ server: server.section, cid });
    logger.debug(`connection from ${socket.remoteAddress}:${socket.remotePort}`);
    const Session = SESSIONS[server.protocol];
    const observer = this.options.observer ?? NO_OBSERVER;
    const session = new Session(socket, {
      server,
      tokens: this.options.tokens,
      resolver: this.options.resolver,
      upstreamTls: this.upstreamTls,
      logger,
      localTls: server.localStartTls ? localTls?.context : undefined,
      observer,
    });
    this.sessions.add(session);
    observer.connectionOpened(server.protocol);
    socket.once('close', () => {
      this.sessions.delete(session);
      observer.connectionClosed(server.protocol);
    });
    void session.start();
  }

  private warnNoServers(): void {
    this.options.logger.warn(
      `no [IMAP-<port>], [POP-<port>] or [SMTP-<port>] section in ${this.options.store.configPath}: nothing to listen on`,
    );
  }
}

function describeEndpoint(server: ServerConfig): string {
  const local = !server.localCertificatePath ? 'unsecured' : server.localStartTls ? 'STARTTLS' : 'TLS';
  return `(${local}) proxying ${server.serverAddress}:${server.serverPort} (${server.serverStartTls ? 'STARTTLS' : 'TLS'})`;
}

/** Same certificate and key content: a renewed certificate at the same path counts as a change. */
function sameTls(a: LocalTls | undefined, b: LocalTls | undefined): boolean {
  if (!a || !b) return a === b;
  return sameBytes(a.options.cert, b.options.cert) && sameBytes(a.options.key, b.options.key);
}

function sameBytes(a: unknown, b: unknown): boolean {
  return Buffer.isBuffer(a) && Buffer.isBuffer(b) ? a.equals(b) : a === b;
}
