import type { Socket } from 'node:net';
import { describeError, ErrorCode, MailbridgeError } from '../../errors.ts';
import type { Line } from '../../net/line-buffer.ts';
import {
  abortResponse,
  decodeBearerError,
  encodeBearerResponse,
  explainBearerError,
  OAuthMechanism,
} from '../../sasl/oauth.ts';
import { decodePlain } from '../../sasl/plain.ts';
import { LineSession } from '../line-session.ts';
import { type LoginFailure, loginFailure } from '../login-failure.ts';
import type { SessionOptions, UpstreamLogin } from '../proxy-session.ts';
import {
  ehloMechanisms,
  explainSmtpRefusal,
  formatReply,
  type Reply,
  replyCollector,
  rewriteEhlo,
} from './replies.ts';

/**
 * One SMTP client connection (RFC 5321) before AUTH.
 *
 * EHLO goes to the server and its reply comes back offering AUTH PLAIN LOGIN; AUTH PLAIN and AUTH LOGIN
 * (RFC 4954, inline or in steps) are answered by logging in upstream with AUTH XOAUTH2 (or OAUTHBEARER);
 * STARTTLS is answered by mailbridge when it has a certificate. With server_starttls the upstream connection
 * is upgraded before the client is even greeted, so nothing of the client's ever crosses it in clear.
 */
type Pending = { kind: 'plain' } | { kind: 'login-username' } | { kind: 'login-password'; username: string };

const USERNAME_PROMPT = Buffer.from('Username:').toString('base64');
const PASSWORD_PROMPT = Buffer.from('Password:').toString('base64');

export class SmtpSession extends LineSession {
  private pending: Pending | undefined;
  private greeted = false;
  private upstreamMechanisms: string[] = [];

  constructor(client: Socket, options: SessionOptions) {
    super(client, options);
  }

  protected async greet(): Promise<Buffer> {
    const greeting = await this.request(undefined);
    if (greeting.code !== 220) {
      throw new MailbridgeError(
        ErrorCode.UPSTREAM_PROTOCOL,
        `the server refused the connection: ${greeting.lines.join(' ')}`,
      );
    }
    if (this.options.server.serverStartTls) {
      const ehlo = await this.request(`EHLO ${this.ehloName()}\r\n`);
      if (ehlo.code !== 250 || !ehlo.lines.some((keyword) => /^STARTTLS\b/i.test(keyword))) {
        throw new MailbridgeError(
          ErrorCode.UPSTREAM_PROTOCOL,
          'the server does not offer STARTTLS (server_starttls = True)',
        );
      }
      const reply = await this.request('STARTTLS\r\n');
      if (reply.code !== 220) {
        throw new MailbridgeError(
          ErrorCode.UPSTREAM_PROTOCOL,
          `the server refused STARTTLS: ${reply.lines.join(' ')}`,
        );
      }
      await this.upgradeUpstream();
    }
    return greeting.raw;
  }

  protected unavailableReply(reason: string): string {
    return `421 4.4.2 mailbridge: ${reason}\r\n`;
  }

  protected shutdownReply(): string {
    return '421 4.3.2 mailbridge is shutting down\r\n';
  }

  protected lineTooLongReply(limit: number): string {
    return `500 5.5.2 mailbridge: line longer than ${limit} bytes before AUTH\r\n`;
  }

  protected onServerLine(line: Line): void {
    this.send(line.raw);
  }

  protected async onLine(line: Line): Promise<void> {
    if (this.pending) {
      await this.continueAuth(this.pending, line.text);
      return;
    }
    const [verb = '', ...rest] = line.text.split(' ');
    const command = verb.toUpperCase();
    this.logger.debug(
      `client: ${command === 'AUTH' ? 'AUTH [credentials removed]' : line.text.slice(0, 200)}`,
    );
    switch (command) {
      case 'EHLO':
      case 'HELO':
        await this.hello(line, command);
        return;
      case 'STARTTLS':
        await this.startTls();
        return;
      case 'AUTH':
        await this.auth(rest);
        return;
      case 'DATA':
      case 'BDAT':
        this.sendLine('530 5.7.0 Authentication required: log in with AUTH PLAIN or AUTH LOGIN first');
        return;
      default: {
        // MAIL, RCPT, NOOP, RSET, QUIT…: the server's to answer.
        const reply = await this.request(line.raw);
        this.send(reply.raw);
      }
    }
  }

  private async hello(line: Line, command: string): Promise<void> {
    const reply = await this.request(line.raw);
    if (reply.code !== 250) {
      this.send(reply.raw);
      return;
    }
    this.greeted = true;
    if (command === 'HELO') {
      // HELO has no extensions (RFC 5321 §4.1.1.1); AUTH still works if the client sends it.
      this.send(reply.raw);
      return;
    }
    this.upstreamMechanisms = ehloMechanisms(reply.lines);
    this.send(
      Buffer.from(formatReply(250, rewriteEhlo(reply.lines, { localStartTls: this.canStartTls })), 'latin1'),
    );
  }

  private async startTls(): Promise<void> {
    if (!this.canStartTls) {
      this.sendLine('454 4.7.0 TLS not available: mailbridge has no local certificate for it');
      return;
    }
    this.sendLine('220 2.0.0 Ready to start TLS');
    await this.upgradeClient(() => this.lines.drain());
    // RFC 3207 §4.2: the client starts over with EHLO.
    this.greeted = false;
  }

  private async auth([mechanism = '', initial]: string[]): Promise<void> {
    if (!this.greeted) {
      this.sendLine('503 5.5.1 Send EHLO first');
      return;
    }
    const name = mechanism.toUpperCase();
    if (name === 'PLAIN') {
      if (initial === undefined) {
        this.pending = { kind: 'plain' };
        this.sendLine('334 ');
        return;
      }
      await this.plain(initial === '=' ? '' : initial);
      return;
    }
    if (name === 'LOGIN') {
      if (initial === undefined) {
        this.pending = { kind: 'login-username' };
        this.sendLine(`334 ${USERNAME_PROMPT}`);
        return;
      }
      this.pending = { kind: 'login-password', username: decodeText(initial) };
      this.sendLine(`334 ${PASSWORD_PROMPT}`);
      return;
    }
    this.sendLine(`504 5.5.4 mailbridge accepts AUTH PLAIN or AUTH LOGIN, not '${mechanism}'`);
  }

  private async continueAuth(pending: Pending, response: string): Promise<void> {
    this.pending = undefined;
    if (response.trim() === '*') {
      this.sendLine('501 5.7.0 Authentication cancelled');
      return;
    }
    if (pending.kind === 'plain') {
      await this.plain(response);
    } else if (pending.kind === 'login-username') {
      this.pending = { kind: 'login-password', username: decodeText(response) };
      this.sendLine(`334 ${PASSWORD_PROMPT}`);
    } else {
      await this.authenticate(pending.username, decodeText(response));
    }
  }

  private async plain(response: string): Promise<void> {
    const credentials = decodePlain(response);
    if (!credentials) {
      this.sendLine('501 5.5.2 the AUTH PLAIN response is not base64 of authzid NUL user NUL password');
      return;
    }
    await this.authenticate(credentials.username, credentials.password);
  }

  private async authenticate(username: string, password: string): Promise<void> {
    if (!username || !password) {
      this.sendLine('535 5.7.8 Authentication credentials invalid: a user name and a password are needed');
      return;
    }
    this.holdClient();
    try {
      const result = await this.login(username, password);
      if (this.closed) return;
      if (result.accepted) {
        this.sendServerLine(result.reply);
        this.relay();
        return;
      }
      const explanation = explainSmtpRefusal(result.reply) ?? result.reason;
      this.sendLine(
        `535 5.7.8 mailbridge: ${this.serverName} refused the login of ${username}: ${explanation}`,
      );
    } catch (error: unknown) {
      if (this.closed) return;
      this.logger.warn({ account: username, error: describeError(error) }, `login failed for '${username}'`);
      this.sendLine(
        `${REPLY_CODE[loginFailure(error)]} mailbridge: login failed for ${username}: ${describeError(error)}`,
      );
      if (this.isFatal(error)) {
        this.close('upstream protocol failure');
        return;
      }
    }
    this.releaseClient();
  }

  /** AUTH in two steps (the mechanism, then the response after 334), as the original and Outlook do it. */
  protected async loginUpstream(username: string, accessToken: string): Promise<UpstreamLogin> {
    const mechanism =
      !this.upstreamMechanisms.includes('XOAUTH2') && this.upstreamMechanisms.includes('OAUTHBEARER')
        ? OAuthMechanism.OAUTHBEARER
        : OAuthMechanism.XOAUTH2;
    const upstream = this.server();
    const response = encodeBearerResponse(mechanism, username, accessToken);
    // No reading on after the final reply: on success the next bytes belong to the relay.
    const step = (command: string) => upstream.exchange(command, replyCollector());
    let reply = await step(`AUTH ${mechanism}\r\n`);
    let challenge: string | undefined;
    if (reply.code === 334) reply = await step(`${response}\r\n`);
    if (reply.code === 334) {
      // The server's error challenge (RFC 7628 §3.2.2): answer it so the final 5xx follows.
      challenge = reply.lines.join('');
      reply = await step(`${abortResponse(mechanism)}\r\n`);
    }
    const text = reply.raw.toString('latin1').replace(/\r?\n$/, '');
    if (reply.code === 235) return { accepted: true, reason: '', mechanism, reply: text };
    const bearerError = challenge === undefined ? undefined : decodeBearerError(challenge);
    return {
      accepted: false,
      reason: `${explainBearerError(bearerError)}: ${reply.lines.join(' ')}`,
      mechanism,
      reply: text,
    };
  }

  /** One command and its whole reply; then the server's unsolicited lines (a 421 at idle) flow on. */
  private async request(command: string | Buffer | undefined): Promise<Reply> {
    const reply = await this.server().exchange(command, replyCollector());
    this.server().resume();
    return reply;
  }

  /** An address literal of our side of the connection, as RFC 5321 §4.1.4 allows when there is no name. */
  private ehloName(): string {
    const address = this.server().connection.localAddress ?? '127.0.0.1';
    return address.includes(':') ? `[IPv6:${address}]` : `[${address}]`;
  }
}

function decodeText(base64: string): string {
  return Buffer.from(base64.trim(), 'base64').toString('utf8');
}

/** 535 for what the client or its operator must fix, 454 (RFC 4954 §6) for what may work later. */
const REPLY_CODE: Record<LoginFailure, string> = {
  credentials: '535 5.7.8',
  configuration: '535 5.7.8',
  authorisation: '454 4.7.0',
  temporary: '454 4.7.0',
};
