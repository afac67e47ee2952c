import type { Socket } from 'node:net';
import type { ServerConfig } from '../../config/servers.ts';
import { describeError, ErrorCode, isMailbridgeError, MailbridgeError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { Limits } from '../../net/limits.ts';
import { type Line, LineTooLongError } from '../../net/line-buffer.ts';
import type { HostResolver } from '../../net/resolve.ts';
import { connectTcp, startTls } from '../../net/upstream.ts';
import {
  abortResponse,
  decodeBearerError,
  encodeBearerResponse,
  explainBearerError,
  OAuthMechanism,
} from '../../sasl/oauth.ts';
import { decodePlain } from '../../sasl/plain.ts';
import type { TokenService } from '../../tokens/token-service.ts';
import { ArgumentError, type CommandPart, loginCredentials, parseAstrings } from './arguments.ts';
import { parseCapabilityLine, rewriteCapabilityLine, withCapabilityCode } from './capability.ts';
import { type ClientFrame, CommandFramer, LiteralTooLargeError } from './command-framer.ts';
import { type Completion, UpstreamChannel } from './upstream-channel.ts';

/**
 * One IMAP client connection (RFC 9051), from accept to the moment it becomes a pipe.
 *
 * Not authenticated state: the server's greeting and capabilities reach the client rewritten to offer
 * AUTH=PLAIN; LOGIN and AUTHENTICATE PLAIN are answered by logging in upstream with an OAuth 2.0 bearer token;
 * every other command goes to the server as it is. After a successful login both sockets are piped: bytes flow
 * untouched, with back-pressure, and anything either side pipelined meanwhile is passed on first.
 */
export interface ImapSessionOptions {
  server: ServerConfig;
  tokens: TokenService;
  resolver: HostResolver;
  logger: Logger;
}

type State = 'connecting' | 'not-authenticated' | 'authenticating' | 'relaying' | 'closed';

/** A LOGIN or AUTHENTICATE PLAIN whose arguments are still arriving. */
type Intercepted =
  | { kind: 'login'; tag: string; parts: CommandPart[]; literal: Buffer[] }
  | { kind: 'sasl-plain'; tag: string }
  | { kind: 'forward' };

interface Credentials {
  username: string;
  password: string;
}

const COMMAND = /^([^\s(){%*"\\\]]+) ([A-Za-z]+)(?: (.*))?$/;

export class ImapSession {
  private state: State = 'connecting';
  private readonly framer = new CommandFramer(Limits.preAuthLineBytes, Limits.preAuthLiteralBytes);
  private upstream: UpstreamChannel | undefined;
  private current: Intercepted | undefined;
  private upstreamCapabilities: string[] | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly logger: Logger;

  constructor(
    private readonly client: Socket,
    private readonly options: ImapSessionOptions,
  ) {
    this.logger = options.logger;
    client.setNoDelay(true);
    client.setKeepAlive(true, Limits.keepAliveDelayMs);
    client.on('data', (chunk: Buffer) => this.onClientData(chunk));
    client.on('error', (error) => this.close(`client connection failed: ${error.message}`));
    client.on('close', () => this.close('client disconnected'));
    // Nothing the client sends is read until the server's greeting has been passed on.
    client.pause();
    this.touch();
  }

  async start(): Promise<void> {
    const { server } = this.options;
    const target = { host: server.serverAddress, port: server.serverPort };
    try {
      const socket = await connectTcp(target, { resolver: this.options.resolver });
      if (this.closed) {
        socket.destroy();
        return;
      }
      const upstream = server.serverStartTls ? socket : await startTls(socket, target);
      this.attachUpstream(upstream);
      const greeting = await this.requireUpstream().greeting();
      if (greeting.status !== 'OK') {
        this.sendLine(greeting.text);
        this.close(`server refused the connection: ${greeting.text}`);
        return;
      }
      this.sendLine(
        server.serverStartTls ? await this.upgradeUpstream(greeting.text) : this.rewrite(greeting.text),
      );
    } catch (error: unknown) {
      this.logger.warn({ error: describeError(error) }, 'could not open the upstream connection');
      this.sendLine(`* BYE [UNAVAILABLE] mailbridge: ${describeError(error)}`);
      this.close('upstream unavailable');
      return;
    }
    if (this.closed) return;
    this.state = 'not-authenticated';
    this.requireUpstream().resume();
    this.client.resume();
  }

  private attachUpstream(socket: Socket): void {
    const describe = `${this.options.server.serverAddress}:${this.options.server.serverPort}`;
    this.upstream = new UpstreamChannel(
      socket,
      describe,
      (line) => this.onServerLine(line),
      (error) => this.failUpstream(error),
    );
    socket.on('error', (error) => this.failUpstream(error));
    socket.on('close', () => this.failUpstream(new Error('the server closed the connection')));
  }

  /** Upstream STARTTLS (RFC 9051 §6.2.1); the greeting the client sees carries the post-TLS capabilities. */
  private async upgradeUpstream(greeting: string): Promise<string> {
    const upstream = this.requireUpstream();
    const reply = await upstream.command('STARTTLS');
    if (reply.status !== 'OK') {
      throw new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `the server refused STARTTLS: ${reply.text}`);
    }
    const { server } = this.options;
    const secure = await startTls(upstream.connection, {
      host: server.serverAddress,
      port: server.serverPort,
    });
    secure.on('error', (error) => this.failUpstream(error));
    upstream.replaceSocket(secure);
    const atoms = await this.probeCapabilities();
    return this.rewrite(withCapabilityCode(greeting, atoms));
  }

  private async probeCapabilities(): Promise<string[]> {
    const reply = await this.requireUpstream().command('CAPABILITY');
    const atoms = reply.untagged.map(parseCapabilityLine).find((found) => found !== undefined) ?? [];
    this.upstreamCapabilities = atoms;
    return atoms;
  }

  // ---- client side -------------------------------------------------------------------------------------

  private onClientData(chunk: Buffer): void {
    this.touch();
    if (this.state === 'relaying' || this.state === 'closed') return;
    this.framer.push(chunk);
    this.processClient();
  }

  private processClient(): void {
    while (this.state === 'not-authenticated') {
      let frame: ClientFrame | undefined;
      try {
        frame = this.framer.next();
      } catch (error: unknown) {
        this.onFramingError(error);
        return;
      }
      if (!frame) return;
      this.onClientFrame(frame);
    }
  }

  private onFramingError(error: unknown): void {
    if (error instanceof LiteralTooLargeError && error.announcement.synchronising) {
      // The client waits for our go-ahead, so refusing is enough: it will not send the literal.
      const tag = COMMAND.exec(error.line)?.[1] ?? '*';
      this.framer.drain();
      this.current = undefined;
      this.sendLine(`${tag} BAD [TOOBIG] ${error.message}`);
      return;
    }
    const reason =
      error instanceof LineTooLongError ? `line longer than ${error.limit} bytes` : describeError(error);
    this.sendLine(`* BYE [TOOBIG] mailbridge: ${reason} before login`);
    this.close(`client sent a ${reason}`);
  }

  private onClientFrame(frame: ClientFrame): void {
    const current = this.current;
    if (!current) {
      if (frame.kind === 'line') this.onCommand(frame);
      return;
    }
    if (current.kind === 'forward') {
      this.requireUpstream().write(frame.kind === 'line' ? frame.raw : frame.data);
      if (frame.kind === 'line' && !frame.literal) this.current = undefined;
      return;
    }
    if (current.kind === 'sasl-plain') {
      this.current = undefined;
      if (frame.kind === 'line') this.onSaslPlainResponse(current.tag, frame.text);
      return;
    }
    if (frame.kind === 'literal') {
      current.literal.push(frame.data);
      if (frame.remaining === 0) {
        current.parts.push({ kind: 'literal', data: Buffer.concat(current.literal) });
        current.literal = [];
      }
      return;
    }
    current.parts.push({ kind: 'text', text: frame.text });
    this.continueLogin(current, frame);
  }

  private onCommand(frame: Extract<ClientFrame, { kind: 'line' }>): void {
    const command = COMMAND.exec(frame.text);
    const tag = command?.[1];
    const verb = command?.[2]?.toUpperCase();
    const rest = command?.[3] ?? '';
    if (tag && verb === 'LOGIN') {
      this.logger.debug(`client: ${tag} LOGIN [credentials removed]`);
      const login: Intercepted = { kind: 'login', tag, parts: [{ kind: 'text', text: rest }], literal: [] };
      this.current = login;
      this.continueLogin(login, frame);
      return;
    }
    if (tag && verb === 'AUTHENTICATE' && /^PLAIN(\s|$)/i.test(rest)) {
      this.logger.debug(`client: ${tag} AUTHENTICATE PLAIN [credentials removed]`);
      const initial = rest.slice('PLAIN'.length).trim();
      if (initial) this.onSaslPlainResponse(tag, initial);
      else {
        this.current = { kind: 'sasl-plain', tag };
        this.sendLine('+ ');
      }
      return;
    }
    if (tag && verb === 'STARTTLS') {
      this.sendLine(
        `${tag} BAD STARTTLS is not offered here: connect with TLS if a local certificate is configured`,
      );
      return;
    }
    this.logger.debug(`client: ${frame.text.slice(0, 200)}`);
    this.requireUpstream().write(frame.raw);
    if (frame.literal) this.current = { kind: 'forward' };
  }

  private continueLogin(
    login: Extract<Intercepted, { kind: 'login' }>,
    frame: Extract<ClientFrame, { kind: 'line' }>,
  ) {
    if (frame.literal) {
      if (frame.literal.synchronising) this.sendLine('+ Ready for literal data');
      return;
    }
    this.current = undefined;
    let credentials: Credentials;
    try {
      credentials = loginCredentials(parseAstrings(login.parts));
    } catch (error: unknown) {
      if (!(error instanceof ArgumentError)) throw error;
      this.sendLine(`${login.tag} BAD LOGIN: ${error.message}`);
      return;
    }
    void this.authenticate(login.tag, 'LOGIN', credentials);
  }

  private onSaslPlainResponse(tag: string, response: string): void {
    if (response.trim() === '*') {
      this.sendLine(`${tag} BAD AUTHENTICATE cancelled`);
      return;
    }
    const credentials = decodePlain(response);
    if (!credentials) {
      this.sendLine(
        `${tag} BAD AUTHENTICATE PLAIN: the response is not base64 of authzid NUL user NUL password`,
      );
      return;
    }
    void this.authenticate(tag, 'AUTHENTICATE', credentials);
  }

  // ---- authentication ------------------------------------------------------------------------------------

  private async authenticate(tag: string, command: string, credentials: Credentials): Promise<void> {
    const { username, password } = credentials;
    this.state = 'authenticating';
    this.client.pause();
    const logger = this.logger.child({ account: username });
    try {
      let grant = await this.options.tokens.accessToken(username, password);
      let result = await this.loginUpstream(username, grant.accessToken);
      if (result.completion.status !== 'OK' && grant.fromCache) {
        // A token that looked valid was refused (revoked, or expired early): refresh once before giving up.
        logger.info(`the server refused the cached token of '${username}' (${result.reason}); refreshing it`);
        this.requireUpstream().resume();
        grant = await this.options.tokens.accessToken(username, password, {
          rejectedAccessToken: grant.accessToken,
        });
        result = await this.loginUpstream(username, grant.accessToken);
      }
      if (this.closed) return;
      if (result.completion.status === 'OK') {
        logger.info(`authenticated '${username}' upstream with ${result.mechanism}; relaying`);
        this.relay(`${tag} OK ${result.completion.text}`);
        return;
      }
      logger.warn(`${this.upstreamName()} refused '${username}': ${result.reason}`);
      this.sendLine(
        `${tag} NO [AUTHENTICATIONFAILED] mailbridge: ${this.upstreamName()} refused the login of ${username}: ${result.reason}`,
      );
      this.requireUpstream().resume();
    } catch (error: unknown) {
      if (this.closed) return;
      logger.warn({ error: describeError(error) }, `login failed for '${username}'`);
      this.sendLine(
        `${tag} NO [${responseCode(error)}] mailbridge: ${command} failed for ${username}: ${describeError(error)}`,
      );
      if (isMailbridgeError(error, ErrorCode.UPSTREAM_PROTOCOL)) {
        this.close('upstream protocol failure');
        return;
      }
      this.upstream?.resume();
    }
    this.state = 'not-authenticated';
    this.client.resume();
    this.processClient();
  }

  private async loginUpstream(username: string, accessToken: string) {
    const upstream = this.requireUpstream();
    const capabilities = this.upstreamCapabilities ?? (await this.probeCapabilities());
    upstream.resume();
    const has = (atom: string) => capabilities.some((c) => c.toUpperCase() === atom);
    // Microsoft offers XOAUTH2 only; Dovecot and Google both. XOAUTH2 is also the blind guess of the original.
    const mechanism =
      !has('AUTH=XOAUTH2') && has('AUTH=OAUTHBEARER') ? OAuthMechanism.OAUTHBEARER : OAuthMechanism.XOAUTH2;
    const response = encodeBearerResponse(mechanism, username, accessToken);
    const initialResponse = has('SASL-IR');
    let sent = initialResponse;
    let challenge: string | undefined;
    const completion: Completion = await upstream.command(
      initialResponse ? `AUTHENTICATE ${mechanism} ${response}` : `AUTHENTICATE ${mechanism}`,
      {
        onContinuation: (text) => {
          if (!sent) {
            sent = true;
            upstream.write(`${response}\r\n`);
            return;
          }
          // The server's error challenge (RFC 7628 §3.2.2): answer it so the tagged NO follows.
          challenge = text;
          upstream.write(`${abortResponse(mechanism)}\r\n`);
        },
        onUntagged: (line) => this.onServerLine(line),
      },
    );
    const bearerError = challenge === undefined ? undefined : decodeBearerError(challenge);
    const reason = `${explainBearerError(bearerError)}: ${completion.text}`;
    return { completion, mechanism, reason };
  }

  // ---- server side ---------------------------------------------------------------------------------------

  private onServerLine(line: Line): void {
    if (this.state === 'closed') return;
    const rewritten = rewriteCapabilityLine(line.text, { localStartTls: false });
    if (rewritten === undefined) {
      this.client.write(line.raw);
      return;
    }
    this.upstreamCapabilities = parseCapabilityLine(line.text);
    this.sendLine(rewritten);
  }

  private rewrite(text: string): string {
    const atoms = parseCapabilityLine(text);
    if (atoms) this.upstreamCapabilities = atoms;
    return rewriteCapabilityLine(text, { localStartTls: false }) ?? text;
  }

  /** From here on both sockets are one pipe; nothing either side sent meanwhile is lost. */
  private relay(okLine: string): void {
    const upstream = this.requireUpstream();
    this.state = 'relaying';
    clearTimeout(this.idleTimer);
    this.sendLine(okLine);
    const { socket, rest } = upstream.handOver();
    if (rest.length > 0) this.client.write(rest);
    const pipelined = this.framer.drain();
    if (pipelined.length > 0) socket.write(pipelined);
    this.client.removeAllListeners('data');
    socket.pipe(this.client);
    this.client.pipe(socket);
    socket.resume();
    this.client.resume();
  }

  private failUpstream(error: unknown): void {
    if (this.state === 'closed') return;
    this.upstream?.fail(error);
    if (this.state === 'relaying') {
      this.close(`server connection ended: ${describeError(error)}`);
      return;
    }
    if (this.state === 'connecting') return;
    this.sendLine(
      `* BYE [UNAVAILABLE] mailbridge: connection to ${this.upstreamName()} lost: ${describeError(error)}`,
    );
    this.close('server connection lost before login');
  }

  // ---- plumbing -------------------------------------------------------------------------------------------

  private sendLine(text: string): void {
    if (this.state === 'closed' || this.client.destroyed) return;
    this.client.write(`${text}\r\n`);
  }

  private touch(): void {
    if (this.state === 'relaying' || this.state === 'closed') return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => {
      this.sendLine('* BYE mailbridge: idle for too long before login');
      this.close('idle before login');
    }, Limits.preAuthIdleMs);
    this.idleTimer.unref();
  }

  /** Ends the session: both sockets, once, with the reason logged. */
  close(reason: string): void {
    if (this.state === 'closed') return;
    const wasRelaying = this.state === 'relaying';
    this.state = 'closed';
    clearTimeout(this.idleTimer);
    this.logger.debug(`session closed: ${reason}`);
    this.upstream?.fail(new MailbridgeError(ErrorCode.SHUTTING_DOWN, 'session closed'));
    const upstreamSocket = this.upstream?.connection;
    if (wasRelaying) {
      // Let buffered bytes drain: end() flushes, then the peer sees FIN.
      this.client.end();
      upstreamSocket?.end();
      setTimeout(() => {
        this.client.destroy();
        upstreamSocket?.destroy();
      }, 5000).unref();
      return;
    }
    this.client.end();
    setTimeout(() => this.client.destroy(), 1000).unref();
    upstreamSocket?.destroy();
  }

  /** Polite goodbye at shutdown (RFC 9051 §7.1.5). */
  shutdown(): void {
    if (this.state !== 'relaying') this.sendLine('* BYE mailbridge is shutting down');
    this.close('shutdown');
  }

  /** A getter, so TypeScript does not narrow `state` across the awaits that may close the session. */
  private get closed(): boolean {
    return this.state === 'closed';
  }

  private requireUpstream(): UpstreamChannel {
    if (!this.upstream) throw new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, 'no upstream connection');
    return this.upstream;
  }

  private upstreamName(): string {
    return this.options.server.serverAddress;
  }
}

/** RFC 5530 response codes, so clients can tell "try later" from "wrong password". */
function responseCode(error: unknown): string {
  if (!isMailbridgeError(error)) return 'UNAVAILABLE';
  switch (error.code) {
    case ErrorCode.TOKEN_WRONG_PASSWORD:
    case ErrorCode.ACCOUNT_UNKNOWN:
      return 'AUTHENTICATIONFAILED';
    case ErrorCode.ACCOUNT_INCOMPLETE:
    case ErrorCode.OAUTH_PROVIDER:
    case ErrorCode.CONFIG_INVALID:
      return 'CONTACTADMIN';
    case ErrorCode.OAUTH_GRANT_INVALID:
      return 'AUTHORIZATIONFAILED';
    default:
      return 'UNAVAILABLE';
  }
}
