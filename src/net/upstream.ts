import net from 'node:net';
import tls from 'node:tls';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { Limits } from './limits.ts';
import type { HostResolver } from './resolve.ts';

/**
 * Opening the connection to the real mail server: resolve every address afresh, try them all (Happy
 * Eyeballs), bound the time, and verify the server's certificate and name with TLS >= 1.2.
 */
export interface UpstreamAddress {
  host: string;
  port: number;
}

export interface ConnectOptions {
  resolver: HostResolver;
  timeoutMs?: number;
}

export async function connectTcp(target: UpstreamAddress, options: ConnectOptions): Promise<net.Socket> {
  const timeoutMs = options.timeoutMs ?? Limits.upstreamConnectMs;
  return new Promise((resolve, reject) => {
    const socket = net.connect({
      host: target.host,
      port: target.port,
      lookup: options.resolver.lookup,
      autoSelectFamily: true,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: Limits.keepAliveDelayMs,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(upstreamError(target, `no connection within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      // Later errors reach the caller through the TLS socket wrapping this one, or as 'close'; without a
      // listener here an error in between would crash the process.
      socket.on('error', () => undefined);
      resolve(socket);
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(upstreamError(target, describeSocketError(error), error));
    });
  });
}

/**
 * The client TLS context for upstream connections: the trusted roots (with NODE_EXTRA_CA_CERTS) and TLS >= 1.2.
 * Share one: without it tls.connect() builds an OpenSSL context per connection, about 10 KiB more for each
 * session held open and more CPU at each connect (measured in bench/results). Host name checks stay per
 * connection.
 */
export function createUpstreamTlsContext(): tls.SecureContext {
  return tls.createSecureContext({ minVersion: 'TLSv1.2' });
}

export interface TlsOptions {
  /** A context from createUpstreamTlsContext(), shared by many connections; a new one when omitted. */
  secureContext?: tls.SecureContext;
  timeoutMs?: number;
}

/** Starts TLS on a connected socket: right away for implicit TLS, or after a STARTTLS exchange. */
export async function startTls(
  socket: net.Socket,
  target: UpstreamAddress,
  options: TlsOptions = {},
): Promise<tls.TLSSocket> {
  const timeoutMs = options.timeoutMs ?? Limits.tlsHandshakeMs;
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      host: target.host,
      // SNI takes a host name only (RFC 6066 §3); certificate checks still use `host`.
      servername: net.isIP(target.host) === 0 ? target.host : undefined,
      secureContext: options.secureContext ?? createUpstreamTlsContext(),
    });
    const timer = setTimeout(() => {
      secure.destroy();
      reject(upstreamError(target, `TLS handshake did not finish within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    secure.once('secureConnect', () => {
      clearTimeout(timer);
      secure.removeAllListeners('error');
      resolve(secure);
    });
    secure.once('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      secure.destroy();
      reject(upstreamError(target, `TLS failed: ${describeSocketError(error)}`, error));
    });
  });
}

function upstreamError(target: UpstreamAddress, reason: string, cause?: unknown): MailbridgeError {
  return new MailbridgeError(
    ErrorCode.UPSTREAM_CONNECT,
    `cannot reach ${target.host}:${target.port}: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

/** Socket errors in words an operator can act on. */
export function describeSocketError(error: NodeJS.ErrnoException): string {
  const aggregate = error as NodeJS.ErrnoException & { errors?: ConnectAttemptError[] };
  if (Array.isArray(aggregate.errors) && aggregate.errors.length > 0)
    return describeAttempts(aggregate.errors);
  switch (error.code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `the name does not resolve (${error.code}) - check DNS or the server_address setting`;
    case 'ECONNREFUSED':
      return 'connection refused - check server_port and that the server is up';
    case 'ETIMEDOUT':
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
      return `the network is unreachable (${error.code}) - is there a network connection?`;
    case 'ECONNRESET':
      return 'the server reset the connection';
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
      return `the server's certificate is not trusted (${error.code}); for a private CA set NODE_EXTRA_CA_CERTS`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `the server's certificate does not name this host (${error.message})`;
    case 'CERT_HAS_EXPIRED':
      return "the server's certificate has expired";
    default:
      return error.code ? `${error.message} (${error.code})` : error.message;
  }
}

/** Node's error for one address of several: a system error that names the address. */
type ConnectAttemptError = NodeJS.ErrnoException & { address?: string };

/** How one address of several failed, in a word. */
const ATTEMPT_OUTCOMES: Record<string, string> = {
  ETIMEDOUT: 'no answer',
  ENETUNREACH: 'unreachable',
  EHOSTUNREACH: 'unreachable',
  ECONNREFUSED: 'refused',
  ECONNRESET: 'reset',
};

/**
 * Happy Eyeballs tried several addresses and each failed its own way (an IPv6 address with no route, an IPv4
 * one refused): name every address, so the operator sees which one to fix.
 */
function describeAttempts(attempts: ConnectAttemptError[]): string {
  const outcomes = attempts.map((attempt) => {
    const address = attempt.address === undefined ? 'an address' : formatHost(attempt.address);
    const code = attempt.code ?? 'error';
    return `${address} ${ATTEMPT_OUTCOMES[code] ?? attempt.message} (${code})`;
  });
  // A refusal proves the network reaches the server's host: then the port or the server is what to check.
  const advice = attempts.some((attempt) => attempt.code === 'ECONNREFUSED')
    ? 'check server_port and that the server is up'
    : 'is there a network connection?';
  return `no address answered: ${outcomes.join(', ')} - ${advice}`;
}

function formatHost(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
