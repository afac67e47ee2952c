import type { Line } from '../../net/line-buffer.ts';
import type { Collector } from '../../net/server-connection.ts';

/**
 * SMTP replies (RFC 5321 §4.2): one or more lines `ddd-text`, the last `ddd text`, and the EHLO keyword list
 * rewritten so clients log in with AUTH PLAIN or LOGIN (RFC 4954), which mailbridge answers.
 */
export interface Reply {
  code: number;
  /** The text of each line, without the code and separator. */
  lines: string[];
  /** The reply as received, byte-exact. */
  raw: Buffer;
}

/** A collector for ServerConnection.exchange that completes at the last line of a reply. */
export function replyCollector(): Collector<Reply> {
  const lines: string[] = [];
  const raw: Buffer[] = [];
  return (line: Line) => {
    raw.push(line.raw);
    lines.push(line.text.slice(4));
    const last = /^(\d{3})(?: |$)/.exec(line.text);
    if (!last) return undefined;
    return { code: Number(last[1]), lines, raw: Buffer.concat(raw) };
  };
}

export function formatReply(code: number, lines: readonly string[]): string {
  return lines.map((text, i) => `${code}${i === lines.length - 1 ? ' ' : '-'}${text}\r\n`).join('');
}

/**
 * The EHLO keywords with every AUTH line rewritten to what mailbridge answers — the legacy `AUTH=…` form some
 * servers add too (the original rewrote only the first line; its issue #427), kept for the old clients that
 * read only that form — and STARTTLS replaced by what mailbridge offers.
 */
export function rewriteEhlo(lines: readonly string[], options: { localStartTls: boolean }): string[] {
  const [domain = '', ...keywords] = lines;
  const legacy = keywords.some((keyword) => /^AUTH=/i.test(keyword));
  const kept = keywords.filter((keyword) => !/^(AUTH[ =]|AUTH$|STARTTLS\b)/i.test(keyword));
  kept.push('AUTH PLAIN LOGIN');
  if (legacy) kept.push('AUTH=PLAIN LOGIN');
  if (options.localStartTls) kept.push('STARTTLS');
  return [domain, ...kept];
}

/** The SASL mechanisms the server's EHLO reply offers, upper-cased, from both AUTH forms. */
export function ehloMechanisms(lines: readonly string[]): string[] {
  return lines
    .filter((keyword) => /^AUTH[ =]/i.test(keyword))
    .flatMap((keyword) => keyword.slice(5).trim().split(/\s+/))
    .map((mechanism) => mechanism.toUpperCase());
}

/** Microsoft's refusal when SMTP AUTH is off for the tenant or mailbox: not a token problem at all. */
export function explainSmtpRefusal(reply: string): string | undefined {
  if (/5\.7\.139/.test(reply) && /SmtpClientAuthentication/i.test(reply)) {
    return 'the Microsoft 365 tenant (or this mailbox) has SMTP AUTH disabled; the token is fine. An administrator must enable "Authenticated SMTP" for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false)';
  }
  return undefined;
}
