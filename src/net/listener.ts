import net from 'node:net';
import tls from 'node:tls';
import type { ServerConfig } from '../config/servers.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type CertificatePair, loadCertificatePair } from './certificate-pair.ts';
import { Limits } from './limits.ts';

/**
 * The local listening sockets of one server section. Without local_address mailbridge listens on loopback
 * only, IPv4 and IPv6: a deliberate difference from the original, which listens on every interface.
 */
export interface Listener {
  /** Where it listens, e.g. ['127.0.0.1:1993', '[::1]:1993']. */
  addresses: string[];
  /** Replaces the certificate of an implicit-TLS listener; connections from now on get the new one. */
  setTls(localTls: LocalTls): void;
  /**
   * Stops accepting: the port is free when this returns. The promise resolves once every connection accepted
   * here has ended, which for a relayed IMAP IDLE may be hours: reload does not wait for it, stop does.
   */
  close(): Promise<void>;
  /** Cuts the connections still open, TLS handshakes in progress included: the end of a shutdown. */
  destroyConnections(): void;
}

/**
 * What a listener's sockets depend on: a reload that changes only this section's other settings (the server,
 * the certificate files' content) keeps the listening sockets, so no connection is refused meanwhile.
 */
export function listenerBinding(config: ServerConfig): string {
  const implicitTls = config.localCertificatePath !== undefined && !config.localStartTls;
  return `${config.localAddress ?? 'loopback'} ${config.localPort} ${implicitTls ? 'tls' : 'plain'}`;
}

export async function listen(
  config: ServerConfig,
  localTls: LocalTls | undefined,
  onConnection: (socket: net.Socket) => void,
  logger: Logger,
): Promise<Listener> {
  // Keepalive is set on the accepted TCP socket itself, before any TLS layer: dead clients behind NAT or a
  // suspended laptop are noticed even in a relayed session that is silent for hours (IMAP IDLE).
  const socketOptions: net.ServerOpts = {
    keepAlive: true,
    keepAliveInitialDelay: Limits.keepAliveDelayMs,
    noDelay: true,
  };
  const tlsOptions: tls.TlsOptions | undefined =
    localTls && !config.localStartTls
      ? { ...socketOptions, ...localTls.options, handshakeTimeout: Limits.tlsHandshakeMs }
      : undefined;
  const hosts = config.localAddress ? [config.localAddress] : ['127.0.0.1', '::1'];
  const servers: net.Server[] = [];
  const addresses: string[] = [];
  const connections = new Set<net.Socket>();
  for (const host of hosts) {
    const server = tlsOptions ? tls.createServer(tlsOptions) : net.createServer(socketOptions);
    server.on('connection', (socket: net.Socket) => {
      connections.add(socket);
      socket.once('close', () => connections.delete(socket));
    });
    server.on(tlsOptions ? 'secureConnection' : 'connection', onConnection);
    server.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => {
      logger.info(
        { error: error.message, peer: socket.remoteAddress },
        'local TLS handshake with a client failed',
      );
    });
    try {
      await bind(server, host, config.localPort);
    } catch (error: unknown) {
      // A host without IPv6 on loopback still serves IPv4 when no address was asked for explicitly.
      const code = (error as NodeJS.ErrnoException).code;
      if (!config.localAddress && host === '::1' && (code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT'))
        continue;
      await Promise.all(servers.map((s) => closeServer(s)));
      throw new MailbridgeError(
        ErrorCode.CONFIG_INVALID,
        `cannot listen on ${formatHostPort(host, config.localPort)} for [${config.section}]: ${(error as Error).message}${code === 'EADDRINUSE' ? ' - is mailbridge (or email-oauth2-proxy) already running?' : ''}`,
        { cause: error },
      );
    }
    servers.push(server);
    addresses.push(formatHostPort(host, config.localPort));
  }
  return {
    addresses,
    setTls: (next) => {
      if (!tlsOptions) return;
      for (const server of servers) (server as tls.Server).setSecureContext(next.options);
    },
    close: async () => {
      await Promise.all(servers.map((s) => closeServer(s)));
    },
    destroyConnections: () => {
      for (const socket of connections) socket.destroy();
    },
  };
}

function bind(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // ipv6Only: an explicit `::` stays dual-stack as in the original, but `::1` must not claim 127.0.0.1.
    server.listen({ host, port, backlog: Limits.listenBacklog, ipv6Only: host === '::1' }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Closes the listening socket at once (server.close() does so synchronously) and waits for its connections. */
function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
  });
}

/**
 * The local certificate of a server section, or undefined without one. Loaded once per listener: for implicit
 * TLS it is the listener's own; with local_starttls each session upgrades with it.
 */
export type LocalTls = CertificatePair;

export async function loadLocalTls(config: ServerConfig): Promise<LocalTls | undefined> {
  if (!config.localCertificatePath || !config.localKeyPath) return undefined;
  return loadCertificatePair(
    config.localCertificatePath,
    config.localKeyPath,
    `[${config.section}] local_certificate_path/local_key_path`,
  );
}

export function formatHostPort(host: string, port: number): string {
  return net.isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}
