/**
 * Every size and time limit of the proxy, in one place, each with the reason for its value.
 * Protocol limits apply before authentication only: afterwards mailbridge is a pipe and the server's own limits
 * rule, so nothing here may ever cut a long IMAP IDLE.
 */
export const Limits = {
  /** A pre-auth command line: LOGIN, AUTHENTICATE, ID, CAPABILITY. Dovecot allows 64 KiB for a whole command. */
  preAuthLineBytes: 64 * 1024,
  /** A literal before login holds a user name or a password: 64 KiB is generous and stops memory abuse. */
  preAuthLiteralBytes: 64 * 1024,
  /** Client silent before login: RFC 9051 §5.4 asks 30 min only of authenticated sessions; 3 min is common. */
  preAuthIdleMs: 3 * 60 * 1000,
  /** A TLS handshake with a local client or the upstream server. */
  tlsHandshakeMs: 30 * 1000,
  /** TCP connect to the upstream server, all addresses together. */
  upstreamConnectMs: 30 * 1000,
  /** The upstream server's answer to one command of ours (STARTTLS, CAPABILITY, AUTHENTICATE). */
  upstreamReplyMs: 60 * 1000,
  /** TCP keepalive probes start after this idle time, so dead peers behind NAT are noticed. */
  keepAliveDelayMs: 60 * 1000,
  /** A daemon stuck on an old glibc would log the stale-resolver warning at every connection: once in this. */
  staleResolverWarningIntervalMs: 10 * 60 * 1000,
  /** Kernel accept queue: bursts of connects must not overflow it (the original's 5 left clients hanging). */
  listenBacklog: 511,
  /** At SIGTERM, clients get this long to read their goodbye before their connections are cut. */
  shutdownGraceMs: 5 * 1000,
  /** Another process saving to the same token cache holds its lock for milliseconds; wait this long at most. */
  cacheLockWaitMs: 10 * 1000,
  /** Pause between attempts to take a held cache lock: short, as saves are short. */
  cacheLockRetryMs: 25,
  /** A lock we cannot check by process id (another host, unreadable) is abandoned after this long. */
  cacheLockStaleMs: 60 * 1000,
} as const;
