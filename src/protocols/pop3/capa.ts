/**
 * The CAPA reply (RFC 2449) before login, rewritten so the client logs in with USER/PASS or SASL PLAIN, which
 * mailbridge answers, and sees STLS only when mailbridge itself offers it.
 */
export function rewriteCapa(capabilities: readonly string[], options: { localStartTls: boolean }): string[] {
  const kept = capabilities.filter((line) => !/^(SASL|STLS|USER)\b/i.test(line));
  kept.push('USER', 'SASL PLAIN');
  if (options.localStartTls) kept.push('STLS');
  return kept;
}

/** The SASL mechanisms a server's CAPA lines announce (`SASL XOAUTH2 OAUTHBEARER`), upper-cased. */
export function saslMechanisms(capabilities: readonly string[]): string[] {
  const line = capabilities.find((capability) => /^SASL\b/i.test(capability));
  return line
    ? line
        .split(/\s+/)
        .slice(1)
        .map((mechanism) => mechanism.toUpperCase())
    : [];
}
