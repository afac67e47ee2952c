import type { Socket } from 'node:net';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { ServerConfig } from '../config/servers.ts';
import { describeError } from '../errors.ts';
import { formatHostPort } from '../net/listener.ts';
import type { HostResolver } from '../net/resolve.ts';
import { connectTcp, startTls, type UpstreamAddress } from '../net/upstream.ts';
import {
  explainConnectFailure,
  explainFollowUpFailure,
  explainLoginRefusal,
  explainMissingGreeting,
  explainNoOAuthMechanism,
  explainTlsFailure,
  explainWrongGreeting,
  isCertificateFailure,
  type PresentedCertificate,
} from './explain.ts';
import { DoctorTimeoutError, LineConnection } from './line-connection.ts';
import {
  type Capabilities,
  driverFor,
  hasOAuthMechanism,
  type ProtocolDriver,
  WrongGreetingError,
} from './protocols.ts';
import type { Check, ServerReport } from './report.ts';
import {
  claimProblems,
  isMicrosoftMailAudience,
  MICROSOFT_PROTOCOL_SCOPES,
  type TokenClaims,
} from './token-claims.ts';

/**
 * One server section checked end to end, the way the proxy will connect: resolve, connect, TLS (implicit or
 * after STARTTLS) with the proxy's own functions, greeting, capabilities, the bearer-token login, and a
 * command after login. It stops at the first step that fails: later steps could only fail for the same reason.
 */
export interface ServerCheckOptions {
  resolver: HostResolver;
  timeoutMs: number;
  /** The token to log in with; a string says why there is none (the login steps are skipped). */
  login: { username: string; accessToken: string; claims: TokenClaims | undefined } | string;
  now?: () => number;
}

/** Certificates expiring sooner than this get a warning: renewals usually happen a month ahead. */
const CERTIFICATE_WARNING_DAYS = 14;

export async function checkServer(server: ServerConfig, options: ServerCheckOptions): Promise<ServerReport> {
  const target: UpstreamAddress = { host: server.serverAddress, port: server.serverPort };
  const checks: Check[] = [];
  const report: ServerReport = {
    section: server.section,
    protocol: server.protocol,
    upstream: `${formatHostPort(target.host, target.port)} (${server.serverStartTls ? 'STARTTLS' : 'TLS'})`,
    checks,
  };
  const driver = driverFor(server.protocol);
  const fail = (step: string, summary: string, advice?: string) => {
    checks.push({ step, status: 'fail', summary, ...(advice ? { advice } : {}) });
    return report;
  };

  // resolve
  try {
    const addresses = await options.resolver.resolve(target.host);
    checks.push({
      step: 'resolve',
      status: 'ok',
      summary:
        net.isIP(target.host) !== 0
          ? `${target.host} is an address: nothing to resolve`
          : `${target.host} -> ${addresses.map((a) => a.address).join(', ')}`,
    });
  } catch (error: unknown) {
    return fail('resolve', describeError(error), explainConnectFailure(error, server));
  }

  // connect
  let socket: Socket;
  try {
    socket = await connectTcp(target, { resolver: options.resolver, timeoutMs: options.timeoutMs });
  } catch (error: unknown) {
    return fail('connect', describeError(error), explainConnectFailure(error, server));
  }
  checks.push({
    step: 'connect',
    status: 'ok',
    summary: `connected to ${formatHostPort(socket.remoteAddress ?? target.host, socket.remotePort ?? target.port)}`,
  });

  const name = formatHostPort(target.host, target.port);
  let connection: LineConnection | undefined;
  try {
    if (server.serverStartTls) connection = new LineConnection(socket, name, options.timeoutMs);
    else {
      const secure = await tlsStep(server, driver, options, checks, () =>
        startTls(socket, target, { timeoutMs: options.timeoutMs }),
      );
      if (!secure) return report;
      connection = new LineConnection(secure, name, options.timeoutMs);
    }

    const conn = connection;
    const greeting = await greetingStep(server, driver, conn, checks);
    if (!greeting) return report;

    if (server.serverStartTls) {
      const before = await driver.capabilities(conn).catch((error: unknown) => error as Error);
      if (before instanceof Error) return fail('starttls', describeError(before));
      if (!before.startTls) {
        return fail(
          'starttls',
          'the server does not offer STARTTLS',
          `server_starttls = True, but this server cannot upgrade the connection: use its implicit-TLS port (${server.protocol === 'IMAP' ? 993 : server.protocol === 'POP' ? 995 : 465}) and remove server_starttls`,
        );
      }
      try {
        await driver.startTls(conn);
      } catch (error: unknown) {
        return fail('starttls', describeError(error));
      }
      const upgraded = await tlsStep(server, driver, options, checks, () =>
        conn.upgrade((plain) => startTls(plain, target, { timeoutMs: options.timeoutMs })),
      );
      if (!upgraded) return report;
    }

    // capabilities
    let capabilities: Capabilities;
    try {
      capabilities = await driver.capabilities(conn);
    } catch (error: unknown) {
      return fail('capabilities', describeError(error));
    }
    const offered =
      capabilities.mechanisms.length > 0 ? capabilities.mechanisms.join(' ') : 'no SASL mechanism';
    if (!hasOAuthMechanism(capabilities.mechanisms)) {
      return fail(
        'capabilities',
        `offers ${offered}`,
        explainNoOAuthMechanism(server, capabilities.mechanisms),
      );
    }
    checks.push({ step: 'capabilities', status: 'ok', summary: `offers ${offered}` });

    // login
    if (typeof options.login === 'string') {
      checks.push({ step: 'login', status: 'skip', summary: options.login });
      return report;
    }
    const { username, accessToken, claims } = options.login;
    let outcome: Awaited<ReturnType<ProtocolDriver['login']>>;
    try {
      outcome = await driver.login(conn, capabilities, username, accessToken);
    } catch (error: unknown) {
      return fail('login', describeError(error));
    }
    if (!outcome.accepted) {
      const hints = claims ? claimHints(server, claims, username, options.now) : [];
      return fail(
        'login',
        `${outcome.mechanism} refused: ${outcome.reply}`,
        [explainLoginRefusal(server, username, outcome.reply, outcome.bearerError), ...hints].join(' '),
      );
    }
    checks.push({
      step: 'login',
      status: 'ok',
      summary: `logged in as ${username} with ${outcome.mechanism}`,
    });

    // follow-up: Microsoft can accept a login whose token belongs to someone else, then refuse everything.
    try {
      const followUp = await driver.followUp(conn, username);
      if (!followUp.ok) {
        return fail(
          'follow-up',
          `${followUp.command}: ${followUp.reply}`,
          explainFollowUpFailure(server, username, followUp.command, followUp.reply),
        );
      }
      checks.push({ step: 'follow-up', status: 'ok', summary: `${followUp.command}: ${followUp.summary}` });
    } catch (error: unknown) {
      return fail('follow-up', describeError(error));
    }
    await driver.quit(conn).catch(() => undefined);
    return report;
  } finally {
    connection?.close();
    socket.destroy();
  }
}

async function greetingStep(
  server: ServerConfig,
  driver: ProtocolDriver,
  connection: LineConnection,
  checks: Check[],
): Promise<boolean> {
  try {
    const greeting = await driver.greeting(connection);
    checks.push({ step: 'greeting', status: 'ok', summary: truncate(greeting) });
    return true;
  } catch (error: unknown) {
    if (error instanceof WrongGreetingError) {
      checks.push({
        step: 'greeting',
        status: 'fail',
        summary: truncate(error.greeting),
        advice: explainWrongGreeting(server, error.greeting),
      });
    } else {
      checks.push({
        step: 'greeting',
        status: 'fail',
        summary: describeError(error),
        advice:
          error instanceof DoctorTimeoutError
            ? explainMissingGreeting(server, connection.tlsSocket !== undefined)
            : undefined,
      });
    }
    return false;
  }
}

/** Runs the handshake; on success records the certificate, on failure explains it. */
async function tlsStep(
  server: ServerConfig,
  driver: ProtocolDriver,
  options: ServerCheckOptions,
  checks: Check[],
  handshake: () => Promise<TLSSocket>,
): Promise<TLSSocket | undefined> {
  try {
    const secure = await handshake();
    checks.push(describeTls(secure, (options.now ?? Date.now)()));
    return secure;
  } catch (error: unknown) {
    const presented = isCertificateFailure(error)
      ? await presentedCertificate(server, driver, options)
      : undefined;
    checks.push({
      step: 'tls',
      status: 'fail',
      summary: withoutOpenSslNoise(describeError(error)),
      advice: explainTlsFailure(error, server, presented, server.serverStartTls),
    });
    return undefined;
  }
}

function describeTls(secure: TLSSocket, nowMs: number): Check {
  const certificate = secure.getPeerCertificate();
  const validTo = Date.parse(certificate.valid_to);
  const daysLeft = Math.floor((validTo - nowMs) / 86_400_000);
  const summary = `${secure.getProtocol() ?? 'TLS'}, certificate for ${nameOf(certificate.subject)} issued by ${nameOf(certificate.issuer)}, valid until ${new Date(validTo).toISOString().slice(0, 10)}`;
  if (daysLeft < CERTIFICATE_WARNING_DAYS) {
    return {
      step: 'tls',
      status: 'warn',
      summary: `${summary} (${daysLeft} day${daysLeft === 1 ? '' : 's'} left)`,
      advice:
        "the server's certificate expires soon: if it is not renewed in time, connections will fail with a certificate error",
    };
  }
  return { step: 'tls', status: 'ok', summary };
}

/**
 * The certificate the server presents, fetched on a second connection without verification, only to show who
 * issued it when verification failed (an antivirus or company proxy that intercepts TLS shows up here).
 * Nothing is sent over it.
 */
async function presentedCertificate(
  server: ServerConfig,
  driver: ProtocolDriver,
  options: ServerCheckOptions,
): Promise<PresentedCertificate | undefined> {
  const target = { host: server.serverAddress, port: server.serverPort };
  let connection: LineConnection | undefined;
  try {
    const socket = await connectTcp(target, { resolver: options.resolver, timeoutMs: options.timeoutMs });
    connection = new LineConnection(socket, formatHostPort(target.host, target.port), options.timeoutMs);
    if (server.serverStartTls) {
      await driver.greeting(connection);
      await driver.capabilities(connection);
      await driver.startTls(connection);
    }
    const secure = await connection.upgrade((plain) => unverifiedTls(plain, target, options.timeoutMs));
    const certificate = secure.getPeerCertificate();
    return {
      subject: nameOf(certificate.subject),
      issuer: nameOf(certificate.issuer),
      validFrom: new Date(Date.parse(certificate.valid_from)).toISOString().slice(0, 10),
      validTo: new Date(Date.parse(certificate.valid_to)).toISOString().slice(0, 10),
      altNames: certificate.subjectaltname ?? '',
    };
  } catch {
    return undefined;
  } finally {
    connection?.close();
  }
}

function unverifiedTls(socket: Socket, target: UpstreamAddress, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      servername: net.isIP(target.host) === 0 ? target.host : undefined,
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(new Error('TLS handshake timed out'));
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(secure);
    });
    secure.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Extra hints from the token's own claims when a login is refused. */
function claimHints(
  server: ServerConfig,
  claims: TokenClaims,
  username: string,
  now: (() => number) | undefined,
): string[] {
  const hints = claimProblems(claims, username, Math.floor((now ?? Date.now)() / 1000)).map(
    (problem) => `The token says: ${problem}.`,
  );
  const needed = MICROSOFT_PROTOCOL_SCOPES[server.protocol];
  if (
    isMicrosoftMailAudience(claims) &&
    !claims.scopes.some((scope) => scope.toLowerCase() === needed.toLowerCase())
  ) {
    hints.push(
      `The token's scopes (${claims.scopes.join(' ') || 'none'}) lack ${needed}: add https://outlook.office.com/${needed} to oauth2_scope and authorise again.`,
    );
  }
  return hints;
}

function nameOf(entity: tls.Certificate | undefined): string {
  // A field repeated in the certificate comes as an array.
  const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
  return first(entity?.CN) ?? first(entity?.O) ?? 'unknown';
}

function truncate(text: string): string {
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

/**
 * OpenSSL's error strings carry a thread id, library codes and a source path ("808C…:error:0A00010B:SSL
 * routines:ssl3_get_record:wrong version number:../deps/openssl/…:350:"): only the reason means anything.
 */
export function withoutOpenSslNoise(message: string): string {
  return message.replace(/[0-9A-F]{8,}:error:[0-9A-F]+:[^:]+:[^:]+:([^:]+):\S*:\d+:\s*/g, '$1 ');
}
