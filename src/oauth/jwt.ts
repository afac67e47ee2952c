import { createHash, randomUUID, sign, X509Certificate } from 'node:crypto';

/**
 * RS256 JSON Web Tokens (RFC 7519) for the two places OAuth needs them: a client proving itself with a
 * certificate instead of a secret (RFC 7523 §2.2, `private_key_jwt`, Microsoft's certificate credentials), and
 * a Google service account asking for a token on a user's behalf (RFC 7523 §2.1, the JWT bearer grant).
 */
function encode(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function signJwt(
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
  privateKeyPem: string,
): string {
  const body = `${encode({ alg: 'RS256', typ: 'JWT', ...header })}.${encode(claims)}`;
  return `${body}.${sign('sha256', Buffer.from(body), privateKeyPem).toString('base64url')}`;
}

/**
 * A client assertion for certificate credentials: Microsoft identifies the certificate by the SHA-256
 * thumbprint of its DER form in `x5t#S256`; the claims are those email-oauth2-proxy sends.
 */
export function clientAssertion(options: {
  clientId: string;
  tokenUrl: string;
  certificatePem: string;
  privateKeyPem: string;
  now: number;
}): string {
  const der = new X509Certificate(options.certificatePem).raw;
  return signJwt(
    { 'x5t#S256': createHash('sha256').update(der).digest('base64url') },
    {
      aud: options.tokenUrl,
      iss: options.clientId,
      sub: options.clientId,
      jti: randomUUID(),
      nbf: options.now,
      exp: options.now + 300,
    },
    options.privateKeyPem,
  );
}

/** Google's service-account assertion: the service account asks for `scope` as `subject`. */
export function serviceAccountAssertion(options: {
  clientEmail: string;
  privateKeyPem: string;
  privateKeyId?: string;
  tokenUrl: string;
  scope: string;
  subject: string;
  now: number;
}): string {
  return signJwt(
    options.privateKeyId ? { kid: options.privateKeyId } : {},
    {
      iss: options.clientEmail,
      sub: options.subject,
      scope: options.scope,
      aud: options.tokenUrl,
      iat: options.now,
      exp: options.now + 3600,
    },
    options.privateKeyPem,
  );
}
