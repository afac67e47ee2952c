import type { Protocol, ServerConfig } from '../config/servers.ts';
import { describeError, ErrorCode, isMailbridgeError } from '../errors.ts';
import { explainProviderError } from '../oauth/provider-errors.ts';
import { isMicrosoftMailHost } from '../oauth/providers.ts';
import { explainSmtpRefusal } from '../protocols/smtp/replies.ts';
import type { BearerError } from '../sasl/oauth.ts';

/**
 * Plain-language diagnoses: from an error code, a provider's error text or a server's refusal to what it
 * means and what to change. Each function returns advice for the operator, or undefined when it has none
 * beyond the message itself.
 */

/** Why no token could be had for the account. `passwordOrigin` names where the password came from. */
export function explainTokenFailure(
  error: unknown,
  account: string,
  passwordOrigin: string,
): string | undefined {
  if (!isMailbridgeError(error)) return undefined;
  const message = describeError(error);
  switch (error.code) {
    case ErrorCode.TOKEN_WRONG_PASSWORD:
      return `wrong password: the password from ${passwordOrigin} does not decrypt the cached tokens of ${account}; it must be the password your mail client uses with mailbridge (the one given when the account was first authorised). The tokens were kept.`;
    case ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE:
    case ErrorCode.OAUTH_AUTHORISATION_TIMEOUT:
      return `the account needs authorising: run \`mailbridge token ${account} --external-auth\` in a terminal`;
    case ErrorCode.OAUTH_PROVIDER:
    case ErrorCode.OAUTH_GRANT_INVALID: {
      // The token client puts the provider's remedy into its message already: say it only when it is not there.
      const advice = explainProviderError('', message);
      return advice && !message.includes(advice) ? advice : undefined;
    }
    case ErrorCode.OAUTH_NETWORK:
      return 'the token endpoint could not be reached or failed: check the network (and a proxy or firewall); the cached tokens were kept';
    default:
      return undefined;
  }
}

const USUAL_PORTS = 'IMAP 993, POP3 995, SMTP 587 (server_starttls = True) or 465';

/** Why the TCP connection failed, from the code of the underlying socket error. */
export function explainConnectFailure(error: unknown, server: ServerConfig): string | undefined {
  const code = socketCode(error);
  const where = `${server.serverAddress}:${server.serverPort}`;
  switch (code) {
    case 'ECONNREFUSED':
      return `nothing accepts connections on ${where}: server_port is probably wrong (usual ports: ${USUAL_PORTS}), or the server is down`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `server_address '${server.serverAddress}' does not resolve: check its spelling and the DNS`;
    case 'ETIMEDOUT':
    case undefined:
      return `no answer from ${where}: a firewall may drop the connection (many networks block ports 25, 465 or 587), or the address is wrong`;
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
      return 'this computer has no route to the server: is the network up (or a VPN needed)?';
    default:
      return undefined;
  }
}

/** Certificate verification failures, by OpenSSL's error code. */
const CERTIFICATE_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT',
  'CERT_UNTRUSTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'CERT_REVOKED',
]);

export function isCertificateFailure(error: unknown): boolean {
  const code = socketCode(error);
  return code !== undefined && CERTIFICATE_CODES.has(code);
}

export interface PresentedCertificate {
  subject: string;
  issuer: string;
  validFrom: string;
  validTo: string;
  altNames: string;
}

/** Why TLS failed, with the certificate the server presented when verification was the problem. */
export function explainTlsFailure(
  error: unknown,
  server: ServerConfig,
  presented: PresentedCertificate | undefined,
  startTls: boolean,
): string | undefined {
  const code = socketCode(error);
  const message = describeError(error);
  const shown = presented
    ? ` The server presented "${presented.subject}" issued by "${presented.issuer}", valid ${presented.validFrom} to ${presented.validTo}.`
    : '';
  if (/wrong version number|packet length too long|http request|unknown protocol/i.test(message)) {
    return startTls
      ? 'the server did not switch to TLS after STARTTLS: it is misbehaving, or something between you and it interferes'
      : `the server answered in clear text, not TLS: port ${server.serverPort} probably expects STARTTLS; set server_starttls = True (or use the TLS port: ${USUAL_PORTS})`;
  }
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'CERT_UNTRUSTED':
      return `certificate problem: the server's certificate is not signed by a certificate authority this computer trusts (${code}).${shown} If the issuer is an antivirus or a company proxy, it intercepts TLS: exempt the mail server from it. For a server with a private CA, start mailbridge with NODE_EXTRA_CA_CERTS=/path/to/ca.pem.`;
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return `certificate problem: the certificate does not name '${server.serverAddress}'.${shown} server_address should be the name the provider documents (an alias or an IP address does not match the certificate).`;
    case 'CERT_HAS_EXPIRED':
      return `certificate problem: the server's certificate has expired, or this computer's clock is ahead (it reads ${new Date().toISOString()}).${shown}`;
    case 'CERT_NOT_YET_VALID':
      return `certificate problem: the certificate is not valid yet: this computer's clock is probably behind (it reads ${new Date().toISOString()}); turn on time synchronisation.${shown}`;
    case 'ECONNRESET':
      return startTls
        ? 'the server closed the connection during the TLS handshake'
        : `the server closed the connection during the TLS handshake: port ${server.serverPort} may expect STARTTLS (server_starttls = True) or another protocol`;
    default:
      if (/did not finish within/.test(message)) {
        return `no TLS handshake: port ${server.serverPort} probably starts in clear text (set server_starttls = True), or something filters the connection`;
      }
      return undefined;
  }
}

/** The greeting never came (in clear): with server_starttls on a TLS port the server waits for our ClientHello. */
export function explainMissingGreeting(server: ServerConfig, secure: boolean): string {
  if (!secure && server.serverStartTls) {
    return `the server sent nothing in clear text: port ${server.serverPort} probably expects TLS from the first byte; remove server_starttls (or set it to False)`;
  }
  return `the server sent no greeting: port ${server.serverPort} may belong to another service (usual ports: ${USUAL_PORTS})`;
}

const PROTOCOL_NAMES: Readonly<Record<Protocol, string>> = { IMAP: 'IMAP', POP: 'POP3', SMTP: 'SMTP' };

export function explainWrongGreeting(server: ServerConfig, greeting: string): string {
  return `the server's greeting is not ${PROTOCOL_NAMES[server.protocol]} ('${greeting.slice(0, 80)}'): server_port ${server.serverPort} belongs to another service; check the port of the [${server.section}] section`;
}

export function explainNoOAuthMechanism(server: ServerConfig, mechanisms: readonly string[]): string {
  const offered =
    mechanisms.length > 0 ? `it offers only ${mechanisms.join(' ')}` : 'it offers no SASL mechanism at all';
  const smtp25 =
    server.protocol === 'SMTP' && server.serverPort === 25
      ? ' Port 25 is for mail between servers: use 587 or 465.'
      : '';
  return `the server does not offer XOAUTH2 or OAUTHBEARER (${offered}): mailbridge can only log in with OAuth 2.0. Check server_address and server_port (a provider's OAuth-capable servers: see \`mailbridge init --help\`), or, if this server takes passwords, point your mail client at it directly.${smtp25}`;
}

/** Why the server refused the token. */
export function explainLoginRefusal(
  server: ServerConfig,
  account: string,
  reply: string,
  bearerError: BearerError | undefined,
): string {
  const smtpDisabled = explainSmtpRefusal(reply);
  if (smtpDisabled) return smtpDisabled;
  const microsoft = isMicrosoftMailHost(server.serverAddress);
  const scope = bearerError?.scope ? ` The server expects scope '${bearerError.scope}'.` : '';
  if (microsoft) {
    const protocolScope = { IMAP: 'IMAP.AccessAsUser.All', POP: 'POP.AccessAsUser.All', SMTP: 'SMTP.Send' }[
      server.protocol
    ];
    const switchedOff =
      server.protocol === 'SMTP'
        ? 'SMTP AUTH is enabled for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false)'
        : `${PROTOCOL_NAMES[server.protocol]} is enabled for the mailbox (Set-CASMailbox -${server.protocol === 'IMAP' ? 'Imap' : 'Pop'}Enabled $true)`;
    return `Microsoft refused the token for ${account}: check that oauth2_scope includes https://outlook.office.com/${protocolScope}, that ${switchedOff}, and that whoever authorised signed in as ${account}; then authorise again if the scope changed.${scope}`;
  }
  return `the server refused the token for ${account}: it has expired or been revoked, was issued for another user or application, or lacks a scope this server needs.${scope} Run \`mailbridge token ${account} --external-auth\` to authorise again if it persists.`;
}

/** Microsoft can accept a login whose token belongs to another user, then refuse every command. */
export function explainFollowUpFailure(
  server: ServerConfig,
  account: string,
  command: string,
  reply: string,
): string {
  if (/authenticated but not connected/i.test(reply)) {
    return `Microsoft accepted the login but will not open the mailbox ('${reply}'): the token belongs to another user than ${account} (whoever authorised signed in with another account), or the mailbox has no licence or ${PROTOCOL_NAMES[server.protocol]} access. Authorise again, signing in as ${account}.`;
  }
  const smtpDisabled = explainSmtpRefusal(reply);
  if (smtpDisabled) return smtpDisabled;
  if (/5\.7\.(60|708)|SendAsDenied|not allowed to send/i.test(reply)) {
    return `the server accepted the login but refuses mail from ${account}: the token belongs to another user, or that user may not send as ${account}`;
  }
  return `the server accepted the login but refused ${command}: '${reply}'. Logins may work for some commands only: check the mailbox's permissions with the provider.`;
}

/** The socket error code behind a MailbridgeError from src/net/upstream.ts (it keeps the original as cause). */
function socketCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current; depth += 1) {
    const candidate = current as { code?: unknown; errors?: unknown[]; cause?: unknown };
    if (
      typeof candidate.code === 'string' &&
      !Object.values(ErrorCode).includes(candidate.code as ErrorCode)
    ) {
      return candidate.code;
    }
    if (Array.isArray(candidate.errors) && candidate.errors.length > 0) current = candidate.errors[0];
    else current = candidate.cause;
  }
  return undefined;
}
