/**
 * Pre-authentication capability rewriting (RFC 9051 §7.2.2). The client must see that it can log in with a
 * plain password, and must not be lured into mechanisms mailbridge does not intercept or a STARTTLS it
 * would pass to the server.
 */

/** Matches an untagged CAPABILITY response or a `[CAPABILITY …]` response code in any status response. */
const CAPABILITY_RESPONSE = /^\* CAPABILITY /i;
const CAPABILITY_CODE = /\[CAPABILITY ([^\]]*)\]/i;

export interface CapabilityRewriteOptions {
  /** Whether mailbridge itself offers STARTTLS to the client (a local certificate is configured). */
  localStartTls: boolean;
}

/** Rewrites one list of capability atoms. */
export function rewriteCapabilities(atoms: readonly string[], options: CapabilityRewriteOptions): string[] {
  const kept = atoms.filter((atom) => {
    const upper = atom.toUpperCase();
    return (
      !upper.startsWith('AUTH=') && upper !== 'LOGINDISABLED' && upper !== 'STARTTLS' && upper !== 'SASL-IR'
    );
  });
  // AUTH=PLAIN and SASL-IR go right after the IMAP4rev1/IMAP4rev2 atoms, where clients and humans look first.
  let insertAt = 0;
  while (insertAt < kept.length && /^IMAP4/i.test(kept[insertAt] ?? '')) insertAt += 1;
  const added = options.localStartTls ? ['STARTTLS', 'AUTH=PLAIN', 'SASL-IR'] : ['AUTH=PLAIN', 'SASL-IR'];
  kept.splice(insertAt, 0, ...added);
  return kept;
}

/** The capability atoms a server line announces, or undefined when the line announces none. */
export function parseCapabilityLine(text: string): string[] | undefined {
  if (CAPABILITY_RESPONSE.test(text)) return splitAtoms(text.slice('* CAPABILITY '.length));
  const code = CAPABILITY_CODE.exec(text);
  return code ? splitAtoms(code[1] ?? '') : undefined;
}

/** The line with its capabilities rewritten, or undefined when it announces none (forward it untouched). */
export function rewriteCapabilityLine(text: string, options: CapabilityRewriteOptions): string | undefined {
  if (CAPABILITY_RESPONSE.test(text)) {
    const atoms = splitAtoms(text.slice('* CAPABILITY '.length));
    return `${text.slice(0, '* CAPABILITY'.length)} ${rewriteCapabilities(atoms, options).join(' ')}`;
  }
  const code = CAPABILITY_CODE.exec(text);
  if (!code) return undefined;
  const atoms = rewriteCapabilities(splitAtoms(code[1] ?? ''), options);
  // A replacer function: the server's text must never be read as a replacement pattern (`$&` and kin).
  return text.replace(CAPABILITY_CODE, () => `[CAPABILITY ${atoms.join(' ')}]`);
}

/** Replaces (or inserts) the `[CAPABILITY …]` code of a greeting, e.g. after an upstream STARTTLS. */
export function withCapabilityCode(greeting: string, atoms: readonly string[]): string {
  const code = `[CAPABILITY ${atoms.join(' ')}]`;
  if (CAPABILITY_CODE.test(greeting)) return greeting.replace(CAPABILITY_CODE, () => code);
  return greeting.replace(/^\* OK ?/i, () => `* OK ${code} `);
}

function splitAtoms(list: string): string[] {
  return list.split(' ').filter((atom) => atom.length > 0);
}
