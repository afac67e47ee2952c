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
import { rewriteCapa, saslMechanisms } from './capa.ts';

/**
 * One POP3 client connection (RFC 1939) in the AUTHORIZATION state.
 *
 * USER/PASS and AUTH PLAIN (RFC 5034) are answered by logging in upstream with AUTH XOAUTH2 (or OAUTHBEARER)
 * in two steps, as Microsoft requires; CAPA is passed through rewritten; STLS (RFC 2595) is answered by
 * mailbridge when it has a certificate; other commands go to the server. Commands are handled one at a time,
 * in order, so replies can never overtake each other.
 */
type Handler = (argument: string) => Promise<void> | void;

export class Pop3Session extends LineSession {
  private pendingUser: string | undefined;
  private awaitingPlainResponse = false;
  private upstreamMechanisms: string[] | undefined;
  private readonly commands: Record<string, Handler> = {
    USER: (argument) => this.user(argument),
    PASS: (argument) => this.pass(argument),
    AUTH: (argument) => this.auth(argument),
    CAPA: () => this.capa(),
    STLS: () => this.stls(),
  };

  constructor(client: Socket, options: SessionOptions) {
    super(client, options);
  }

  protected async greet(): Promise<Buffer> {
    const greeting = await this.server().exchange(undefined, (line) => line);
    if (!/^\+OK\b/i.test(greeting.text)) {
      throw new MailbridgeError(
        ErrorCode.UPSTREAM_PROTOCOL,
        `the server refused the connection: ${greeting.text}`,
      );
    }
    if (this.options.server.serverStartTls) {
      // The original could not do this; providers' POP3 on port 110 needs it.
      const reply = await this.server().exchange('STLS\r\n', (line) => line);
      if (!/^\+OK\b/i.test(reply.text)) {
        throw new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `the server refused STLS: ${reply.text}`);
      }
      await this.upgradeUpstream();
    }
    return greeting.raw;
  }

  protected unavailableReply(reason: string): string {
    return `-ERR [SYS/TEMP] mailbridge: ${reason}\r\n`;
  }

  protected shutdownReply(): string {
    return '-ERR [SYS/TEMP] mailbridge is shutting down\r\n';
  }

  protected lineTooLongReply(limit: number): string {
    return `-ERR mailbridge: line longer than ${limit} bytes before login\r\n`;
  }

  protected onServerLine(line: Line): void {
    this.send(line.raw);
  }

  protected async onLine(line: Line): Promise<void> {
    if (this.awaitingPlainResponse) {
      this.awaitingPlainResponse = false;
      await this.plainResponse(line.text);
      return;
    }
    const [verb = '', ...rest] = line.text.split(' ');
    const command = verb.toUpperCase();
    const handler = this.commands[command];
    const credentials = command === 'PASS' || command === 'AUTH';
    this.logger.debug(
      `client: ${credentials ? `${command} [credentials removed]` : line.text.slice(0, 200)}`,
    );
    if (command !== 'PASS') this.pendingUser = undefined;
    if (handler) {
      await handler(rest.join(' '));
      return;
    }
    // Anything else (QUIT, APOP, NOOP…) is the server's to answer; its one-line reply is passed back.
    const reply = await this.server().exchange(line.raw, (answer) => answer);
    this.send(reply.raw);
    this.server().resume();
  }

  private user(name: string): void {
    if (!name) {
      this.sendLine('-ERR USER needs a name');
      return;
    }
    // Lines are read as latin1; user names and passwords are UTF-8, as in IMAP and SMTP.
    this.pendingUser = fromLatin1(name);
    this.sendLine('+OK send PASS');
  }

  private async pass(password: string): Promise<void> {
    const username = this.pendingUser;
    this.pendingUser = undefined;
    if (!username) {
      this.sendLine('-ERR send USER first');
      return;
    }
    await this.authenticate(username, fromLatin1(password));
  }

  private async auth(argument: string): Promise<void> {
    const [mechanism = '', initial] = argument.split(' ');
    if (!mechanism) {
      // The list of mechanisms, as RFC 5034 §4 allows for a bare AUTH.
      this.send('+OK\r\nPLAIN\r\n.\r\n');
      return;
    }
    if (mechanism.toUpperCase() !== 'PLAIN') {
      this.sendLine(`-ERR mailbridge accepts AUTH PLAIN or USER/PASS, not ${mechanism}`);
      return;
    }
    if (initial === undefined) {
      this.awaitingPlainResponse = true;
      this.sendLine('+ ');
      return;
    }
    // "=" is an empty initial response (RFC 5034 §4).
    await this.plainResponse(initial === '=' ? '' : initial);
  }

  private async plainResponse(response: string): Promise<void> {
    if (response.trim() === '*') {
      this.sendLine('-ERR authentication cancelled');
      return;
    }
    const credentials = decodePlain(response);
    if (!credentials) {
      this.sendLine('-ERR the AUTH PLAIN response is not base64 of authzid NUL user NUL password');
      return;
    }
    await this.authenticate(credentials.username, credentials.password);
  }

  private async capa(): Promise<void> {
    const lines = await this.readCapa();
    if (!lines) {
      this.sendLine('-ERR the server lists no capabilities');
      return;
    }
    const rewritten = rewriteCapa(lines, { localStartTls: this.canStartTls });
    this.send(`+OK Capability list follows\r\n${rewritten.map((line) => `${line}\r\n`).join('')}.\r\n`);
  }

  /** The server's CAPA lines (without the status line and the final dot), or undefined after -ERR. */
  private async readCapa(): Promise<string[] | undefined> {
    const collected: string[] = [];
    const result = await this.server().exchange('CAPA\r\n', (line): { ok: boolean } | undefined => {
      if (collected.length === 0 && line.text.startsWith('-')) return { ok: false };
      if (line.text === '.') return { ok: true };
      collected.push(line.text);
      return undefined;
    });
    this.server().resume();
    if (!result.ok) return undefined;
    const capabilities = collected.slice(1);
    this.upstreamMechanisms = saslMechanisms(capabilities);
    return capabilities;
  }

  private async stls(): Promise<void> {
    if (!this.canStartTls) {
      this.sendLine('-ERR STLS is not available: mailbridge has no local certificate for it');
      return;
    }
    this.sendLine('+OK Begin TLS negotiation');
    await this.upgradeClient(() => this.lines.drain());
  }

  private async authenticate(username: string, password: string): Promise<void> {
    this.holdClient();
    try {
      const result = await this.login(username, password);
      if (this.closed) return;
      if (result.accepted) {
        this.sendServerLine(result.reply);
        this.relay();
        return;
      }
      this.sendLine(
        `-ERR [AUTH] mailbridge: ${this.serverName} refused the login of ${username}: ${result.reason}`,
      );
    } catch (error: unknown) {
      if (this.closed) return;
      this.logger.warn({ account: username, error: describeError(error) }, `login failed for '${username}'`);
      this.sendLine(
        `-ERR [${RESPONSE_CODE[loginFailure(error)]}] mailbridge: login failed for ${username}: ${describeError(error)}`,
      );
      if (this.isFatal(error)) {
        this.close('upstream protocol failure');
        return;
      }
    }
    this.releaseClient();
  }

  /** AUTH in two steps (the mechanism, then the response after `+`), which Microsoft requires. */
  protected async loginUpstream(username: string, accessToken: string): Promise<UpstreamLogin> {
    if (this.upstreamMechanisms === undefined) await this.readCapa();
    const mechanisms = this.upstreamMechanisms ?? [];
    const mechanism =
      !mechanisms.includes('XOAUTH2') && mechanisms.includes('OAUTHBEARER')
        ? OAuthMechanism.OAUTHBEARER
        : OAuthMechanism.XOAUTH2;
    const upstream = this.server();
    const response = encodeBearerResponse(mechanism, username, accessToken);
    let sent = false;
    let challenge: string | undefined;
    const reply = await upstream.exchange(`AUTH ${mechanism}\r\n`, (line) => {
      if (/^\+OK\b/i.test(line.text) || line.text.startsWith('-')) return line;
      if (!sent) {
        sent = true;
        upstream.write(`${response}\r\n`);
      } else {
        // The server's error challenge (RFC 7628 §3.2.2): answer it so the -ERR follows.
        challenge = line.text.replace(/^\+ ?/, '');
        upstream.write(`${abortResponse(mechanism)}\r\n`);
      }
      return undefined;
    });
    if (/^\+OK\b/i.test(reply.text)) return { accepted: true, reason: '', mechanism, reply: reply.text };
    const bearerError = challenge === undefined ? undefined : decodeBearerError(challenge);
    return {
      accepted: false,
      reason: `${explainBearerError(bearerError)}: ${reply.text}`,
      mechanism,
      reply: reply.text,
    };
  }
}

/** RFC 3206 response codes: [AUTH] for credentials, [SYS/TEMP] for what may work later. */
const RESPONSE_CODE: Record<LoginFailure, string> = {
  credentials: 'AUTH',
  configuration: 'SYS/PERM',
  authorisation: 'SYS/TEMP',
  temporary: 'SYS/TEMP',
};

function fromLatin1(text: string): string {
  return Buffer.from(text, 'latin1').toString('utf8');
}
