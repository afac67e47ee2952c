import { Protocol } from '../config/servers.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { parseCapabilityLine } from '../protocols/imap/capability.ts';
import { saslMechanisms } from '../protocols/pop3/capa.ts';
import { ehloMechanisms } from '../protocols/smtp/replies.ts';
import {
  abortResponse,
  type BearerError,
  decodeBearerError,
  encodeBearerResponse,
  OAuthMechanism,
} from '../sasl/oauth.ts';
import type { LineConnection } from './line-connection.ts';

/**
 * The doctor's own short conversations with a mail server, one small function per step and protocol: greeting,
 * capabilities, STARTTLS, a bearer-token login done the way the proxy does it (same mechanism choice, the
 * error challenge answered), a harmless command after login, and goodbye.
 */
export interface Capabilities {
  /** SASL mechanisms offered, upper-case. */
  mechanisms: string[];
  startTls: boolean;
  /** IMAP SASL-IR (RFC 4959): the initial response may go on the AUTHENTICATE line. */
  initialResponse: boolean;
}

export interface LoginOutcome {
  accepted: boolean;
  mechanism: OAuthMechanism;
  /** The server's final reply, e.g. `NO [AUTHENTICATIONFAILED] …`; never contains the token. */
  reply: string;
  bearerError: BearerError | undefined;
}

export interface FollowUpOutcome {
  ok: boolean;
  /** What was sent, for the report (`EXAMINE INBOX`). */
  command: string;
  reply: string;
  /** e.g. `INBOX has 2 messages`. */
  summary: string;
}

export interface ProtocolDriver {
  /** Throws a WrongGreetingError when the first line is not this protocol's greeting. */
  greeting(connection: LineConnection): Promise<string>;
  capabilities(connection: LineConnection): Promise<Capabilities>;
  /** The protocol's STARTTLS command, up to the server's go-ahead. */
  startTls(connection: LineConnection): Promise<void>;
  login(
    connection: LineConnection,
    capabilities: Capabilities,
    username: string,
    token: string,
  ): Promise<LoginOutcome>;
  followUp(connection: LineConnection, username: string): Promise<FollowUpOutcome>;
  quit(connection: LineConnection): Promise<void>;
}

export class WrongGreetingError extends MailbridgeError {
  constructor(readonly greeting: string) {
    super(ErrorCode.UPSTREAM_PROTOCOL, `unexpected greeting: ${greeting.slice(0, 200)}`);
    this.name = 'WrongGreetingError';
  }
}

/** The proxy's choice: XOAUTH2 (what Microsoft offers and what the original always sent) unless only OAUTHBEARER is there. */
export function chooseMechanism(mechanisms: readonly string[]): OAuthMechanism {
  return !mechanisms.includes('XOAUTH2') && mechanisms.includes('OAUTHBEARER')
    ? OAuthMechanism.OAUTHBEARER
    : OAuthMechanism.XOAUTH2;
}

export function hasOAuthMechanism(mechanisms: readonly string[]): boolean {
  return mechanisms.includes('XOAUTH2') || mechanisms.includes('OAUTHBEARER');
}

// ---- IMAP (RFC 9051) ----------------------------------------------------------------------------------------

interface ImapCompletion {
  status: 'OK' | 'NO' | 'BAD';
  text: string;
  untagged: string[];
}

async function imapCommand(
  connection: LineConnection,
  tag: string,
  command: string,
  onContinuation?: (text: string) => void,
): Promise<ImapCompletion> {
  connection.send(`${tag} ${command}`);
  const untagged: string[] = [];
  for (;;) {
    const line = await connection.readLine(`answer to ${command.split(' ')[0]}`);
    if (line.startsWith('+') && onContinuation) {
      onContinuation(line.replace(/^\+ ?/, ''));
      continue;
    }
    if (line.startsWith(`${tag} `)) {
      const match = /^\S+ (OK|NO|BAD)\b ?(.*)$/i.exec(line);
      const status = (match?.[1]?.toUpperCase() ?? 'BAD') as ImapCompletion['status'];
      return { status, text: match?.[2] ?? line, untagged };
    }
    untagged.push(line);
  }
}

function imapDriver(): ProtocolDriver {
  let next = 1;
  const tag = () => `doc${next++}`;
  return {
    async greeting(connection) {
      const line = await connection.readLine('greeting');
      if (!/^\* OK\b/i.test(line)) throw new WrongGreetingError(line);
      return line;
    },
    async capabilities(connection) {
      const reply = await imapCommand(connection, tag(), 'CAPABILITY');
      const atoms = reply.untagged.map(parseCapabilityLine).find((found) => found !== undefined) ?? [];
      const upper = atoms.map((atom) => atom.toUpperCase());
      return {
        mechanisms: upper.filter((atom) => atom.startsWith('AUTH=')).map((atom) => atom.slice(5)),
        startTls: upper.includes('STARTTLS'),
        initialResponse: upper.includes('SASL-IR'),
      };
    },
    async startTls(connection) {
      const reply = await imapCommand(connection, tag(), 'STARTTLS');
      if (reply.status !== 'OK') throw refused('STARTTLS', reply.text);
    },
    async login(connection, capabilities, username, token) {
      const mechanism = chooseMechanism(capabilities.mechanisms);
      const response = encodeBearerResponse(mechanism, username, token);
      let sent = capabilities.initialResponse;
      let challenge: string | undefined;
      const reply = await imapCommand(
        connection,
        tag(),
        sent ? `AUTHENTICATE ${mechanism} ${response}` : `AUTHENTICATE ${mechanism}`,
        (text) => {
          if (!sent) {
            sent = true;
            connection.send(response);
            return;
          }
          // The error challenge (RFC 7628 §3.2.2): answer it so the tagged NO follows.
          challenge = text;
          connection.send(abortResponse(mechanism));
        },
      );
      return {
        accepted: reply.status === 'OK',
        mechanism,
        reply: `${reply.status} ${reply.text}`,
        bearerError: challenge === undefined ? undefined : decodeBearerError(challenge),
      };
    },
    async followUp(connection) {
      // EXAMINE is SELECT without write access: the check leaves \Recent flags and the mailbox untouched.
      const command = 'EXAMINE INBOX';
      const reply = await imapCommand(connection, tag(), command);
      const exists = reply.untagged
        .map((line) => /^\* (\d+) EXISTS/i.exec(line)?.[1])
        .find((n) => n !== undefined);
      return {
        ok: reply.status === 'OK',
        command,
        reply: `${reply.status} ${reply.text}`,
        summary:
          exists === undefined ? 'INBOX opened' : `INBOX has ${exists} message${exists === '1' ? '' : 's'}`,
      };
    },
    async quit(connection) {
      await imapCommand(connection, tag(), 'LOGOUT');
    },
  };
}

// ---- POP3 (RFC 1939, RFC 2449 CAPA, RFC 5034 AUTH) --------------------------------------------------------------

async function popLine(connection: LineConnection, command: string | undefined, waitingFor: string) {
  if (command !== undefined) connection.send(command);
  return connection.readLine(waitingFor);
}

function pop3Driver(): ProtocolDriver {
  return {
    async greeting(connection) {
      const line = await connection.readLine('greeting');
      if (!/^\+OK\b/i.test(line)) throw new WrongGreetingError(line);
      return line;
    },
    async capabilities(connection) {
      const first = await popLine(connection, 'CAPA', 'answer to CAPA');
      const lines: string[] = [];
      if (/^\+OK\b/i.test(first)) {
        for (;;) {
          const line = await connection.readLine('end of the CAPA list');
          if (line === '.') break;
          lines.push(line);
        }
      }
      return {
        mechanisms: saslMechanisms(lines),
        startTls: lines.some((line) => /^STLS\b/i.test(line)),
        initialResponse: false,
      };
    },
    async startTls(connection) {
      const reply = await popLine(connection, 'STLS', 'answer to STLS');
      if (!/^\+OK\b/i.test(reply)) throw refused('STLS', reply);
    },
    async login(connection, capabilities, username, token) {
      // In two steps (the mechanism, then the response after `+`), as Microsoft requires and the proxy does.
      const mechanism = chooseMechanism(capabilities.mechanisms);
      let reply = await popLine(connection, `AUTH ${mechanism}`, 'answer to AUTH');
      let challenge: string | undefined;
      if (reply.startsWith('+') && !/^\+OK\b/i.test(reply)) {
        reply = await popLine(connection, encodeBearerResponse(mechanism, username, token), 'answer to AUTH');
      }
      if (reply.startsWith('+') && !/^\+OK\b/i.test(reply)) {
        challenge = reply.replace(/^\+ ?/, '');
        reply = await popLine(connection, abortResponse(mechanism), 'answer to AUTH');
      }
      return {
        accepted: /^\+OK\b/i.test(reply),
        mechanism,
        reply,
        bearerError: challenge === undefined ? undefined : decodeBearerError(challenge),
      };
    },
    async followUp(connection) {
      const command = 'STAT';
      const reply = await popLine(connection, command, 'answer to STAT');
      const count = /^\+OK (\d+)/i.exec(reply)?.[1];
      return {
        ok: /^\+OK\b/i.test(reply),
        command,
        reply,
        summary:
          count === undefined
            ? 'maildrop opened'
            : `the maildrop has ${count} message${count === '1' ? '' : 's'}`,
      };
    },
    async quit(connection) {
      await popLine(connection, 'QUIT', 'answer to QUIT');
    },
  };
}

// ---- SMTP (RFC 5321, RFC 4954 AUTH, RFC 3207 STARTTLS) ----------------------------------------------------------

interface SmtpReply {
  code: number;
  /** Each line's text after the code and separator. */
  lines: string[];
  /** The whole reply on one line, for messages. */
  text: string;
}

async function smtpReply(
  connection: LineConnection,
  command: string | undefined,
  waitingFor: string,
): Promise<SmtpReply> {
  if (command !== undefined) connection.send(command);
  const lines: string[] = [];
  const raw: string[] = [];
  for (;;) {
    const line = await connection.readLine(waitingFor);
    raw.push(line);
    lines.push(line.slice(4));
    const last = /^(\d{3})(?: |$)/.exec(line);
    if (last) return { code: Number(last[1]), lines, text: raw.join(' ') };
    if (!/^\d{3}-/.test(line)) throw new WrongGreetingError(line);
  }
}

function smtpDriver(): ProtocolDriver {
  // An address literal of our side (RFC 5321 §4.1.4), as the proxy sends when it must greet by itself.
  const ehloName = (connection: LineConnection) => {
    const address = connection.localAddress ?? '127.0.0.1';
    return address.includes(':') ? `[IPv6:${address}]` : `[${address}]`;
  };
  return {
    async greeting(connection) {
      const reply = await smtpReply(connection, undefined, 'greeting');
      if (reply.code !== 220) throw new WrongGreetingError(reply.text);
      return reply.text;
    },
    async capabilities(connection) {
      const reply = await smtpReply(connection, `EHLO ${ehloName(connection)}`, 'answer to EHLO');
      if (reply.code !== 250) throw refused('EHLO', reply.text);
      return {
        mechanisms: ehloMechanisms(reply.lines),
        startTls: reply.lines.some((keyword) => /^STARTTLS\b/i.test(keyword)),
        initialResponse: false,
      };
    },
    async startTls(connection) {
      const reply = await smtpReply(connection, 'STARTTLS', 'answer to STARTTLS');
      if (reply.code !== 220) throw refused('STARTTLS', reply.text);
    },
    async login(connection, capabilities, username, token) {
      const mechanism = chooseMechanism(capabilities.mechanisms);
      let reply = await smtpReply(connection, `AUTH ${mechanism}`, 'answer to AUTH');
      let challenge: string | undefined;
      if (reply.code === 334) {
        reply = await smtpReply(
          connection,
          encodeBearerResponse(mechanism, username, token),
          'answer to AUTH',
        );
      }
      if (reply.code === 334) {
        challenge = reply.lines.join('');
        reply = await smtpReply(connection, abortResponse(mechanism), 'answer to AUTH');
      }
      return {
        accepted: reply.code === 235,
        mechanism,
        reply: reply.text,
        bearerError: challenge === undefined ? undefined : decodeBearerError(challenge),
      };
    },
    async followUp(connection, username) {
      // MAIL FROM is where a server that took a mismatched token refuses (SendAsDenied); RSET ends the
      // transaction before any recipient, so nothing is ever sent.
      const command = `MAIL FROM:<${username}>`;
      const reply = await smtpReply(connection, command, 'answer to MAIL FROM');
      if (reply.code !== 250) return { ok: false, command, reply: reply.text, summary: '' };
      const reset = await smtpReply(connection, 'RSET', 'answer to RSET');
      return {
        ok: reset.code === 250,
        command: `${command} + RSET`,
        reply: reset.text,
        summary: `the server accepts mail from ${username}`,
      };
    },
    async quit(connection) {
      await smtpReply(connection, 'QUIT', 'answer to QUIT');
    },
  };
}

function refused(command: string, reply: string): MailbridgeError {
  return new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `the server refused ${command}: ${reply}`);
}

export function driverFor(protocol: Protocol): ProtocolDriver {
  switch (protocol) {
    case Protocol.IMAP:
      return imapDriver();
    case Protocol.POP:
      return pop3Driver();
    default:
      return smtpDriver();
  }
}
