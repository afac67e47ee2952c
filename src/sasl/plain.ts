/**
 * SASL PLAIN (RFC 4616) as clients send it to us: base64 of `authzid NUL authcid NUL passwd`.
 * The authorisation identity is ignored, as email-oauth2-proxy does: the account is the authentication identity.
 */
export interface PlainCredentials {
  username: string;
  password: string;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Decodes a PLAIN response; undefined when it is not valid base64 or not exactly three NUL-separated parts. */
export function decodePlain(response: string): PlainCredentials | undefined {
  const text = response.trim();
  if (!BASE64.test(text) || text.length % 4 === 1) return undefined;
  const parts = Buffer.from(text, 'base64').toString('utf8').split('\0');
  if (parts.length !== 3) return undefined;
  const [, username = '', password = ''] = parts;
  return { username, password };
}

export function encodePlain(credentials: PlainCredentials, authzid = ''): string {
  return Buffer.from(`${authzid}\0${credentials.username}\0${credentials.password}`, 'utf8').toString(
    'base64',
  );
}
