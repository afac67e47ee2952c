import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { describeError, ErrorCode, MailbridgeError } from '../../errors.ts';
import { Limits } from '../../net/limits.ts';
import { type Line, LineTooLongError } from '../../net/line-buffer.ts';
import {
  abortResponse,
  decodeBearerError,
  encodeBearerResponse,
  explainBearerError,
  OAuthMechanism,
} from '../../sasl/oauth.ts';
import { decodePlain } from '../../sasl/plain.ts';
import { type LoginFailure, loginFailure } from '../login-failure.ts';
import { ProxySession, type SessionOptions, type UpstreamLogin } from '../proxy-session.ts';
import { ArgumentError, type CommandPart, loginCredentials, parseAstrings } from './arguments.ts';
import { parseCapabilityLine, rewriteCapabilityLine, withCapabilityCode } from './capability.ts';
import { type ClientFrame, CommandFramer, LiteralTooLargeError } from './command-framer.ts';
import { readGreeting, runCommand } from './upstream-commands.ts';

/**
 * One IMAP client connection (RFC 9051) before login.
 *
 * The server's greeting and capabilities reach the client rewritten to offer AUTH=PLAIN; LOGIN and
 * AUTHENTICATE PLAIN are answered by logging in upstream with an OAuth 2.0 bearer token; STARTTLS is answered
 * by mailbridge itself when it has a certificate; every other command goes to the server as it is.
 */
type Intercepted =
  | { kind: 'login'; tag: string; parts: CommandPart[]; literal: Buffer[] }
  | { kind: 'sasl-plain'; tag: string }
  | { kind: 'forward' };

interface Credentials {
  username: string;
  password: string;
}

/** tag SP verb [SP rest]; a tag is any ASTRING-CHAR but "+" (RFC 9051 §9), `]` included. */
const COMMAND = /^([^\s(){%*"\\+]+) ([A-Za-z]+)(?: (.*))?$/;

export class ImapSession extends ProxySession {
  private readonly framer = new CommandFramer(Limits.preAuthLineBytes, Limits.preAuthLiteralBytes);
  private current: Intercepted | undefined;
  private upstreamCapabilities: string[] | undefined;
  private nextTag = 1;
  /** Our tags are unguessable, so no tag a client forwards can complete a command of ours. */
  private readonly tagPrefix = `mb${randomBytes(6).toString('hex')}.`;

  constructor(client: Socket, options: SessionOptions) {
    super(client, options);
  }

  protected async greet(): Promise<Buffer> {
    const greeting = await readGreeting(this.server());
    if (greeting.status !== 'OK') {
      throw new MailbridgeError(
        ErrorCode.UPSTREAM_PROTOCOL,
        `the server refused the connection: ${greeting.text}`,
      );
    }
    if (!this.options.server.serverStartTls)
      return Buffer.from(`${this.rewrite(greeting.text)}\r\n`, 'latin1');
    // Upstream STARTTLS (RFC 9051 §6.2.1): capabilities announced in clear are stale after it, so the greeting
    // the client sees carries the ones the server lists over TLS.
    const reply = await runCommand(this.server(), this.tag(), 'STARTTLS');
    if (reply.status !== 'OK') {
      throw new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `the server refused STARTTLS: ${reply.text}`);
    }
    await this.upgradeUpstream();
    const atoms = await this.probeCapabilities();
    return Buffer.from(`${this.rewrite(withCapabilityCode(greeting.text, atoms))}\r\n`, 'latin1');
  }

  protected unavailableReply(reason: string): string {
    return `* BYE [UNAVAILABLE] mailbridge: ${reason}\r\n`;
  }

  protected shutdownReply(): string {
    return '* BYE mailbridge is shutting down\r\n';
  }

  protected unhandledClientBytes(): Buffer {
    return this.framer.drain();
  }

  // ---- client side -------------------------------------------------------------------------------------

  protected receive(chunk: Buffer): void {
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
      this.forward(frame.kind === 'line' ? frame.raw : frame.data);
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
    if (tag && verb === 'AUTHENTICATE') {
      // Other mechanisms would carry the client's secrets to the server in exchanges we cannot read.
      this.sendLine(`${tag} NO [CANNOT] mailbridge accepts LOGIN or AUTHENTICATE PLAIN`);
      return;
    }
    if (tag && verb === 'STARTTLS') {
      this.startTls(tag);
      return;
    }
    // Only tag and verb: a command we do not recognise might still carry a password.
    this.logger.debug(`client: ${tag ?? '?'} ${verb ?? '(unparsable line)'}`);
    this.forward(frame.raw);
    if (frame.literal) this.current = { kind: 'forward' };
  }

  /**
   * A client command for the server. When the server reads slower than the client pipelines (a flood before
   * login), the client is not read until the server has caught up, so the backlog waits in TCP, not here.
   */
  private forward(data: Buffer): void {
    if (this.server().write(data)) return;
    this.client.pause();
    this.server().connection.once('drain', () => {
      if (this.state === 'not-authenticated') this.client.resume();
    });
  }

  /** Local STARTTLS (RFC 9051 §6.2.1); the client must ask for capabilities again afterwards. */
  private startTls(tag: string): void {
    if (!this.canStartTls) {
      this.sendLine(`${tag} BAD STARTTLS is not available: mailbridge has no local certificate for it`);
      return;
    }
    this.sendLine(`${tag} OK Begin TLS negotiation now`);
    this.holdClient();
    this.upgradeClient(() => this.framer.drain()).then(
      () => {
        this.releaseClient();
        this.processClient();
      },
      (error: unknown) => this.close(`local STARTTLS failed: ${describeError(error)}`),
    );
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

  private async authenticate(
    tag: string,
    command: string,
    { username, password }: Credentials,
  ): Promise<void> {
    this.holdClient();
    try {
      const result = await this.login(username, password);
      if (this.closed) return;
      if (result.accepted) {
        // The server's own OK text: it carries the capabilities after login.
        this.sendServerLine(`${tag} OK ${result.reply || 'Logged in'}`);
        this.relay();
        return;
      }
      this.sendLine(
        `${tag} NO [AUTHENTICATIONFAILED] mailbridge: ${this.serverName} refused the login of ${username}: ${result.reason}`,
      );
    } catch (error: unknown) {
      if (this.closed) return;
      this.logger.warn({ account: username, error: describeError(error) }, `login failed for '${username}'`);
      this.sendLine(
        `${tag} NO [${RESPONSE_CODE[loginFailure(error)]}] mailbridge: ${command} failed for ${username}: ${describeError(error)}`,
      );
      if (this.isFatal(error)) {
        this.close('upstream protocol failure');
        return;
      }
    }
    this.releaseClient();
    this.processClient();
  }

  protected async loginUpstream(username: string, accessToken: string): Promise<UpstreamLogin> {
    const upstream = this.server();
    const capabilities = this.upstreamCapabilities ?? (await this.probeCapabilities());
    const has = (atom: string) => capabilities.some((c) => c.toUpperCase() === atom);
    // Microsoft offers XOAUTH2 only; Dovecot and Google both. XOAUTH2 is also the blind guess of the original.
    const mechanism =
      !has('AUTH=XOAUTH2') && has('AUTH=OAUTHBEARER') ? OAuthMechanism.OAUTHBEARER : OAuthMechanism.XOAUTH2;
    const response = encodeBearerResponse(mechanism, username, accessToken);
    const initialResponse = has('SASL-IR');
    let sent = initialResponse;
    let challenge: string | undefined;
    const completion = await runCommand(
      upstream,
      this.tag(),
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
    if (completion.status === 'OK') return { accepted: true, reason: '', mechanism, reply: completion.text };
    const bearerError = challenge === undefined ? undefined : decodeBearerError(challenge);
    const reason = `${explainBearerError(bearerError)}: ${completion.text}`;
    return { accepted: false, reason, mechanism, reply: completion.text };
  }

  private async probeCapabilities(): Promise<string[]> {
    const reply = await runCommand(this.server(), this.tag(), 'CAPABILITY');
    this.server().resume();
    const atoms = reply.untagged.map(parseCapabilityLine).find((found) => found !== undefined) ?? [];
    this.upstreamCapabilities = atoms;
    return atoms;
  }

  // ---- server side ---------------------------------------------------------------------------------------

  protected onServerLine(line: Line): void {
    if (this.closed) return;
    const rewritten = rewriteCapabilityLine(line.text, { localStartTls: this.canStartTls });
    if (rewritten === undefined) {
      this.send(line.raw);
      return;
    }
    this.upstreamCapabilities = parseCapabilityLine(line.text);
    this.sendServerLine(rewritten);
  }

  private rewrite(text: string): string {
    const atoms = parseCapabilityLine(text);
    if (atoms) this.upstreamCapabilities = atoms;
    return rewriteCapabilityLine(text, { localStartTls: this.canStartTls }) ?? text;
  }

  private tag(): string {
    return `${this.tagPrefix}${this.nextTag++}`;
  }
}

/** RFC 5530 response codes for each kind of login failure. */
const RESPONSE_CODE: Record<LoginFailure, string> = {
  credentials: 'AUTHENTICATIONFAILED',
  configuration: 'CONTACTADMIN',
  authorisation: 'AUTHORIZATIONFAILED',
  temporary: 'UNAVAILABLE',
};
