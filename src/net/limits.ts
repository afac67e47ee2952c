/**
 * Every size and time limit of the proxy, in one place, each with the reason for its value.
 * Limits apply before authentication only: afterwards mailbridge is a pipe and the server's own limits rule.
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
  /** How long a client waits for a person to authorise an account, as email-oauth2-proxy's 600 s. */
  authorisationWaitMs: 600 * 1000,
  /** TCP keepalive probes start after this idle time, so dead peers behind NAT are noticed. */
  keepAliveDelayMs: 60 * 1000,
  /** Kernel accept queue: bursts of connects must not overflow it (the original's 5 left clients hanging). */
  listenBacklog: 511,
} as const;
