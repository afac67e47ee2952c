/**
 * What an access token says about itself, when it is a JWT (Microsoft's tokens for work and school accounts
 * are; Google's and Microsoft's personal-account tokens are opaque). Read without verifying the signature:
 * the claims only explain a refusal (wrong user, wrong audience, missing scope, clock skew); the mail server
 * decides. The token itself is never shown, only these claims.
 */
export interface TokenClaims {
  audience: string | undefined;
  scopes: string[];
  /** upn, unique_name, preferred_username or email, whichever the token carries. */
  user: string | undefined;
  tenant: string | undefined;
  /** Unix seconds. */
  issuedAt: number | undefined;
  notBefore: number | undefined;
  expiresAt: number | undefined;
}

export function peekClaims(accessToken: string): TokenClaims | undefined {
  const parts = accessToken.split('.');
  if (parts.length !== 3 || !parts[1]) return undefined;
  let payload: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (typeof parsed !== 'object' || parsed === null) return undefined;
    payload = parsed as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const text = (key: string) => (typeof payload[key] === 'string' ? (payload[key] as string) : undefined);
  const number = (key: string) => (typeof payload[key] === 'number' ? (payload[key] as number) : undefined);
  const audience = Array.isArray(payload.aud)
    ? payload.aud.filter((a) => typeof a === 'string').join(' ')
    : text('aud');
  return {
    audience,
    scopes: (text('scp') ?? text('scope') ?? '').split(' ').filter((scope) => scope !== ''),
    user: text('upn') ?? text('unique_name') ?? text('preferred_username') ?? text('email'),
    tenant: text('tid'),
    issuedAt: number('iat'),
    notBefore: number('nbf'),
    expiresAt: number('exp'),
  };
}

/** Audiences of Microsoft's mail servers (the resource URL, or Exchange Online's application ID). */
const MICROSOFT_MAIL_AUDIENCES = [
  'https://outlook.office.com',
  'https://outlook.office365.com',
  '00000002-0000-0ff1-ce00-000000000000',
];
const MICROSOFT_GRAPH_AUDIENCES = ['https://graph.microsoft.com', '00000003-0000-0000-c000-000000000000'];

/** Problems the claims alone reveal, in words for the report. */
export function claimProblems(claims: TokenClaims, account: string, nowSeconds: number): string[] {
  const problems: string[] = [];
  if (claims.user && claims.user.toLowerCase() !== account.toLowerCase()) {
    problems.push(
      `the token belongs to ${claims.user}, not ${account}: someone signed in with another account when authorising; authorise again and sign in as ${account}`,
    );
  }
  const audience = claims.audience?.replace(/\/$/, '');
  if (audience && MICROSOFT_GRAPH_AUDIENCES.includes(audience)) {
    problems.push(
      'the token is for Microsoft Graph, not the mail servers: oauth2_scope must use https://outlook.office.com/ scopes (IMAP.AccessAsUser.All, POP.AccessAsUser.All, SMTP.Send), then authorise again',
    );
  }
  const skewLimit = 300;
  const earliest = claims.notBefore ?? claims.issuedAt;
  if (earliest !== undefined && earliest - nowSeconds > skewLimit) {
    problems.push(
      `the token was issued ${Math.round((earliest - nowSeconds) / 60)} min in this computer's future: its clock is behind; turn on time synchronisation (timedatectl set-ntp true)`,
    );
  }
  return problems;
}

export function isMicrosoftMailAudience(claims: TokenClaims): boolean {
  const audience = claims.audience?.replace(/\/$/, '');
  return audience !== undefined && MICROSOFT_MAIL_AUDIENCES.includes(audience);
}

/** The scope a Microsoft token needs for each protocol (scp holds them without the resource prefix). */
export const MICROSOFT_PROTOCOL_SCOPES = {
  IMAP: 'IMAP.AccessAsUser.All',
  POP: 'POP.AccessAsUser.All',
  SMTP: 'SMTP.Send',
} as const;

export function describeClaims(claims: TokenClaims): string {
  const parts = [];
  if (claims.user) parts.push(`for ${claims.user}`);
  if (claims.audience) parts.push(`audience ${claims.audience}`);
  if (claims.scopes.length > 0) parts.push(`scopes ${claims.scopes.join(' ')}`);
  if (claims.tenant) parts.push(`tenant ${claims.tenant}`);
  return parts.join(', ');
}
