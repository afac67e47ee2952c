import type { Socket } from 'node:net';
import { Protocol, type ServerConfig } from './config/servers.ts';
import type { ConfigStore } from './config/store.ts';
import type { Logger } from './log.ts';
import { type Listener, type LocalTls, listen, loadLocalTls } from './net/listener.ts';
import type { HostResolver } from './net/resolve.ts';
import { ImapSession } from './protocols/imap/session.ts';
import { Pop3Session } from './protocols/pop3/session.ts';
import type { ProxySession, SessionOptions } from './protocols/proxy-session.ts';
import { SmtpSession } from './protocols/smtp/session.ts';
import type { TokenService } from './tokens/token-service.ts';

/**
 * The running proxy: one listener per server section, one session per accepted connection.
 */
export interface MailProxyOptions {
  store: ConfigStore;
  tokens: TokenService;
  resolver: HostResolver;
  logger: Logger;
}

const SESSIONS: Record<Protocol, new (client: Socket, options: SessionOptions) => ProxySession> = {
  [Protocol.IMAP]: ImapSession,
  [Protocol.POP]: Pop3Session,
  [Protocol.SMTP]: SmtpSession,
};

export class MailProxy {
  private readonly listeners: Listener[] = [];
  private readonly sessions = new Set<ProxySession>();
  private nextConnectionId = 1;

  constructor(private readonly options: MailProxyOptions) {}

  async start(): Promise<void> {
    const servers = this.options.store.servers();
    if (servers.length === 0) {
      this.options.logger.warn(
        `no [IMAP-<port>], [POP-<port>] or [SMTP-<port>] section in ${this.options.store.configPath}: nothing to listen on`,
      );
    }
    try {
      for (const server of servers) {
        const localTls = await loadLocalTls(server);
        const listener = await listen(
          server,
          localTls,
          (socket) => this.accept(server, localTls, socket),
          this.options.logger,
        );
        this.listeners.push(listener);
        this.options.logger.info(
          `${server.protocol} server at ${listener.addresses.join(', ')} (${describeLocalSecurity(server)}) proxying ${server.serverAddress}:${server.serverPort} (${server.serverStartTls ? 'STARTTLS' : 'TLS'})`,
        );
      }
    } catch (error: unknown) {
      await this.stop();
      throw error;
    }
  }

  async stop(): Promise<void> {
    const closing = this.listeners.splice(0).map((listener) => listener.close());
    for (const session of this.sessions) session.shutdown();
    this.sessions.clear();
    await Promise.all(closing);
  }

  private accept(server: ServerConfig, localTls: LocalTls | undefined, socket: Socket): void {
    const cid = this.nextConnectionId++;
    const logger = this.options.logger.child({ server: server.section, cid });
    logger.debug(`connection from ${socket.remoteAddress}:${socket.remotePort}`);
    const Session = SESSIONS[server.protocol];
    const session = new Session(socket, {
      server,
      tokens: this.options.tokens,
      resolver: this.options.resolver,
      logger,
      localTls: server.localStartTls ? localTls?.context : undefined,
    });
    this.sessions.add(session);
    socket.once('close', () => this.sessions.delete(session));
    void session.start();
  }
}

function describeLocalSecurity(server: ServerConfig): string {
  if (!server.localCertificatePath) return 'unsecured';
  return server.localStartTls ? 'STARTTLS' : 'TLS';
}
