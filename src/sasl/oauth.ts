/**
 * The two bearer-token SASL mechanisms we speak upstream.
 * XOAUTH2: Google's and Microsoft's format. OAUTHBEARER: RFC 7628 §3.1 (GS2 header, then key=value pairs).
 */
export const OAuthMechanism = {
  XOAUTH2: 'XOAUTH2',
  OAUTHBEARER: 'OAUTHBEARER',
} as const;

export type OAuthMechanism = (typeof OAuthMechanism)[keyof typeof OAuthMechanism];

export function encodeXOAuth2(username: string, accessToken: string): string {
  return Buffer.from(`user=${username}\x01auth=Bearer ${accessToken}\x01\x01`, 'utf8').toString('base64');
}

/** RFC 7628 §3.1; a comma or equals sign in the authzid is escaped per RFC 5801 §4 (saslname). */
export function encodeOAuthBearer(username: string, accessToken: string): string {
  const saslname = username.replaceAll('=', '=3D').replaceAll(',', '=2C');
  return Buffer.from(`n,a=${saslname},\x01auth=Bearer ${accessToken}\x01\x01`, 'utf8').toString('base64');
}

export function encodeBearerResponse(
  mechanism: OAuthMechanism,
  username: string,
  accessToken: string,
): string {
  return mechanism === OAuthMechanism.XOAUTH2
    ? encodeXOAuth2(username, accessToken)
    : encodeOAuthBearer(username, accessToken);
}

/**
 * What a client sends to end a failed exchange after the server's error challenge: XOAUTH2 takes an empty
 * response; OAUTHBEARER a single ^A (RFC 7628 §3.2.3), base64 "AQ==".
 */
export function abortResponse(mechanism: OAuthMechanism): string {
  return mechanism === OAuthMechanism.XOAUTH2 ? '' : 'AQ==';
}

export interface BearerError {
  status?: string;
  scope?: string;
  schemes?: string;
  raw: string;
}

/**
 * Decodes the base64 JSON a server sends as its challenge when it rejects a bearer token
 * (RFC 7628 §3.2.2; Google and Microsoft use the same shape for XOAUTH2). Undefined when it is not that.
 */
export function decodeBearerError(challenge: string): BearerError | undefined {
  const text = Buffer.from(challenge.trim(), 'base64').toString('utf8');
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    const fields = parsed as Record<string, unknown>;
    const pick = (key: string) => (typeof fields[key] === 'string' ? (fields[key] as string) : undefined);
    return { status: pick('status'), scope: pick('scope'), schemes: pick('schemes'), raw: text };
  } catch {
    return undefined;
  }
}

/** A sentence for logs and client replies. */
export function explainBearerError(error: BearerError | undefined): string {
  if (!error) return 'the server rejected the access token';
  const status = error.status ?? 'unknown';
  const scope = error.scope ? `; it expects scope '${error.scope}'` : '';
  return `the server rejected the access token (status ${status}${scope})`;
}
