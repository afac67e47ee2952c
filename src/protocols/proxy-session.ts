import { once } from 'node:events';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { ServerConfig } from '../config/servers.ts';
import { describeError, ErrorCode, isMailbridgeError, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { Limits } from '../net/limits.ts';
import type { Line } from '../net/line-buffer.ts';
import { relayBytes } from '../net/relay.ts';
import type { HostResolver } from '../net/resolve.ts';
import { ServerConnection } from '../net/server-connection.ts';
import { connectTcp, startTls } from '../net/upstream.ts';
import { NO_OBSERVER, type Observer } from '../observer.ts';
import type { TokenService } from '../tokens/token-service.ts';

/**
 * What every protocol session shares, from accept to the moment it becomes a pipe: the upstream connection
 * (opened at accept, so the client sees the real server's greeting), local and upstream STARTTLS, the token
 * login with one transparent retry, the switch to relaying, timeouts, and closing exactly once.
 *
 * A protocol subclass supplies the greeting exchange, its client command handling, and its reply lines.
 */
export interface SessionOptions {
  server: ServerConfig;
  tokens: TokenService;
  resolver: HostResolver;
  /** The client TLS context every upstream connection of the proxy shares (createUpstreamTlsContext). */
  upstreamTls: tls.SecureContext;
  logger: Logger;
  /** The local certificate when the listener offers STARTTLS (local_starttls = True). */
  localTls: tls.SecureContext | undefined;
  observer?: Observer;
}

export type SessionState = 'connecting' | 'not-authenticated' | 'authenticating' | 'relaying' | 'closed';

/** The outcome of one login attempt upstream with a given access token. */
export interface UpstreamLogin {
  accepted: boolean;
  /** Why the server refused, in words for the client's reply and the log. */
  reason: string;
  /** The mechanism used, for the log. */
  mechanism: string;
  /** The server's final reply line (for IMAP without its tag), passed on to the client on success. */
  reply: string;
}

export abstract class ProxySession {
  protected state: SessionState = 'connecting';
  protected client: Socket;
  protected upstream: ServerConnection | undefined;
  protected readonly logger: Logger;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly onClientData = (chunk: Buffer) => {
    this.touch();
    if (this.state === 'relaying' || this.state === 'closed') return;
    this.receive(chunk);
  };

  constructor(
    client: Socket,
    protected readonly options: SessionOptions,
  ) {
    this.client = client;
    this.logger = options.logger;
    client.setNoDelay(true);
    client.setKeepAlive(true, Limits.keepAliveDelayMs);
    this.listenToClient(client);
    client.on('close', () => this.close('client disconnected'));
    // Nothing the client sends is read until the server's greeting has been passed on.
    client.pause();
    this.touch();
  }

  /** Bytes from the client before login. */
  protected abstract receive(chunk: Buffer): void;
  /** Reads the server's greeting (and upgrades with STARTTLS if configured); returns the greeting to send. */
  protected abstract greet(): Promise<string | Buffer>;
  /** A server line that answers one of the client's own commands. */
  protected abstract onServerLine(line: Line): void;
  /** Logs in upstream with an access token. */
  protected abstract loginUpstream(username: string, accessToken: string): Promise<UpstreamLogin>;
  /** The line(s) that tell the client the server cannot be reached (then the connection closes). */
  protected abstract unavailableReply(reason: string): string;
  /** The goodbye a client gets when mailbridge stops before it logged in. */
  protected abstract shutdownReply(): string;
  /** Whatever the client sent and the session has not handled yet. */
  protected abstract unhandledClientBytes(): Buffer;

  async start(): Promise<void> {
    const { server } = this.options;
    const target = { host: server.serverAddress, port: server.serverPort };
    try {
      const socket = await connectTcp(target, { resolver: this.options.resolver });
      if (this.closed) {
        socket.destroy();
        return;
      }
      const connection = server.serverStartTls
        ? socket
        : await startTls(socket, target, { secureContext: this.options.upstreamTls });
      if (this.closed) {
        connection.destroy();
        return;
      }
      this.upstream = new ServerConnection(
        connection,
        `${server.serverAddress}:${server.serverPort}`,
        (line) => this.onServerLine(line),
        (error) => this.failUpstream(error),
      );
      connection.on('error', (error) => this.failUpstream(error));
      connection.on('close', () => this.failUpstream(new Error('the server closed the connection')));
      const greeting = await this.greet();
      if (this.closed) return;
      this.send(greeting);
    } catch (error: unknown) {
      this.logger.warn({ error: describeError(error) }, 'could not open the upstream connection');
      this.send(this.unavailableReply(describeError(error)));
      this.close('upstream unavailable');
      return;
    }
    if (this.closed) return;
    this.state = 'not-authenticated';
    this.server().resume();
    this.client.resume();
  }

  /** Upstream STARTTLS, once the protocol's own exchange has had the server's go-ahead. */
  protected async upgradeUpstream(): Promise<void> {
    const upstream = this.server();
    const { server } = this.options;
    const secure = await startTls(
      upstream.connection,
      { host: server.serverAddress, port: server.serverPort },
      { secureContext: this.options.upstreamTls },
    );
    secure.on('error', (error) => this.failUpstream(error));
    upstream.replaceSocket(secure);
  }

  /** Whether mailbridge can offer STARTTLS to this client now. */
  protected get canStartTls(): boolean {
    return this.options.localTls !== undefined && !(this.client instanceof tls.TLSSocket);
  }

  /**
   * Local STARTTLS, after the protocol has sent its go-ahead. Anything the client pipelined in clear behind
   * the STARTTLS command is discarded, not executed (STARTTLS injection, RFC 3207 §6).
   */
  protected async upgradeClient(discardPlaintext: () => void): Promise<void> {
    const plain = this.client;
    plain.off('data', this.onClientData);
    plain.pause();
    discardPlaintext();
    const secure = new tls.TLSSocket(plain, {
      isServer: true,
      secureContext: this.options.localTls,
      minVersion: 'TLSv1.2',
    });
    this.listenToClient(secure);
    this.client = secure;
    const timer = setTimeout(
      () => secure.destroy(new Error('TLS handshake timed out')),
      Limits.tlsHandshakeMs,
    );
    try {
      await once(secure, 'secure');
    } finally {
      clearTimeout(timer);
    }
    this.logger.debug('local STARTTLS complete');
  }

  /**
   * The client's login: an access token for the account, a login upstream with it, and when the server
   * refuses a token that came from the cache (revoked, or expired early), one more try with a new one.
   */
  protected async login(username: string, password: string): Promise<UpstreamLogin> {
    const { protocol, section } = this.options.server;
    const observer = this.options.observer ?? NO_OBSERVER;
    try {
      const result = await this.loginWithToken(username, password);
      if (result.accepted) observer.loginSucceeded(protocol, username, section);
      else observer.loginFailed(protocol, username, new Error(result.reason));
      return result;
    } catch (error: unknown) {
      observer.loginFailed(protocol, username, error);
      throw error;
    }
  }

  private async loginWithToken(username: string, password: string): Promise<UpstreamLogin> {
    const logger = this.logger.child({ account: username });
    let grant = await this.options.tokens.accessToken(username, password);
    this.assertOpen();
    let result = await this.loginUpstream(username, grant.accessToken);
    if (!result.accepted && grant.fromCache && !this.closed) {
      logger.info(`the server refused the cached token of '${username}' (${result.reason}); refreshing it`);
      grant = await this.options.tokens.accessToken(username, password, {
        rejectedAccessToken: grant.accessToken,
      });
      this.assertOpen();
      result = await this.loginUpstream(username, grant.accessToken);
    }
    if (result.accepted)
      logger.info(`authenticated '${username}' upstream with ${result.mechanism}; relaying`);
    else logger.warn(`${this.serverName} refused '${username}': ${result.reason}`);
    return result;
  }

  /**
   * From here on both sockets are one pipe: the server's success reply has been sent, and anything either
   * side sent meanwhile is passed on first, so pipelined commands are never lost.
   */
  protected relay(): void {
    const { socket, rest } = this.server().handOver();
    this.state = 'relaying';
    clearTimeout(this.idleTimer);
    if (rest.length > 0) this.client.write(rest);
    const pipelined = this.unhandledClientBytes();
    if (pipelined.length > 0) socket.write(pipelined);
    this.client.off('data', this.onClientData);
    relayBytes(socket, this.client);
    relayBytes(this.client, socket);
    socket.resume();
    this.client.resume();
  }

  /**
   * Stops reading the client while a login is under way; what it sends meanwhile waits in the buffer. The
   * idle timer stops too: a person may take minutes to authorise, and the client is waiting on us, not idle.
   */
  protected holdClient(): void {
    this.state = 'authenticating';
    clearTimeout(this.idleTimer);
    this.client.pause();
  }

  /** Reads the client again after a login that did not succeed. */
  protected releaseClient(): void {
    if (this.closed) return;
    this.state = 'not-authenticated';
    this.touch();
    this.upstream?.resume();
    this.client.resume();
  }

  /** Whether a login error means the upstream connection is no longer usable. */
  protected isFatal(error: unknown): boolean {
    return isMailbridgeError(error, ErrorCode.UPSTREAM_PROTOCOL);
  }

  protected send(data: string | Buffer): void {
    if (this.closed || this.client.destroyed) return;
    this.client.write(data);
  }

  /**
   * A line of the server's, possibly rewritten: its text was read as latin1 (one character a byte), so it is
   * written back the same way and 8-bit bytes pass unchanged.
   */
  protected sendServerLine(text: string): void {
    this.send(Buffer.from(`${text}\r\n`, 'latin1'));
  }

  /** One protocol line; line breaks inside `text` (from a provider's message) are folded, never passed on. */
  protected sendLine(text: string): void {
    this.send(`${text.replace(/[\r\n]+/g, ' ')}\r\n`);
  }

  /** A login whose client has gone stops here rather than starting work upstream for nobody. */
  private assertOpen(): void {
    if (this.closed)
      throw new MailbridgeError(ErrorCode.SHUTTING_DOWN, 'the client disconnected during login');
  }

  protected server(): ServerConnection {
    if (!this.upstream) throw new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, 'no upstream connection');
    return this.upstream;
  }

  protected get serverName(): string {
    return this.options.server.serverAddress;
  }

  /** A getter, so TypeScript does not narrow `state` across the awaits that may close the session. */
  protected get closed(): boolean {
    return this.state === 'closed';
  }

  /** Polite goodbye at shutdown for a client still logging in; a relayed session just ends. */
  shutdown(): void {
    if (this.state !== 'relaying') this.send(this.shutdownReply());
    this.close('shutdown');
  }

  /** Ends the session: both sockets, once, with the reason logged. */
  close(reason: string): void {
    if (this.closed) return;
    const wasRelaying = this.state === 'relaying';
    this.state = 'closed';
    clearTimeout(this.idleTimer);
    this.logger.debug(`session closed: ${reason}`);
    this.upstream?.fail(new MailbridgeError(ErrorCode.SHUTTING_DOWN, 'session closed'));
    const upstreamSocket = this.upstream?.connection;
    // end() flushes what is queued before FIN; destroy() later frees sockets whose peer never answers.
    this.client.end();
    if (wasRelaying) upstreamSocket?.end();
    else upstreamSocket?.destroy();
    setTimeout(() => {
      this.client.destroy();
      upstreamSocket?.destroy();
    }, 5000).unref();
  }

  private failUpstream(error: unknown): void {
    if (this.closed) return;
    this.upstream?.fail(error);
    if (this.state === 'relaying') {
      this.close(`server connection ended: ${describeError(error)}`);
      return;
    }
    if (this.state === 'connecting') return;
    this.send(this.unavailableReply(`connection to ${this.serverName} lost: ${describeError(error)}`));
    this.close('server connection lost before login');
  }

  private listenToClient(socket: Socket): void {
    socket.on('data', this.onClientData);
    socket.on('error', (error) => this.close(`client connection failed: ${error.message}`));
  }

  private touch(): void {
    if (this.state === 'relaying' || this.state === 'closed') return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.send(this.unavailableReply('idle for too long before login'));
      this.close('idle before login');
    }, Limits.preAuthIdleMs);
    this.idleTimer.unref();
  }
}
