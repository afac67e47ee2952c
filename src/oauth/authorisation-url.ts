import { createHash, randomBytes } from 'node:crypto';
import type { AccountConfig } from '../config/accounts.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';

/**
 * The authorisation-code request (RFC 6749 §4.1.1, PKCE RFC 7636) and the check of the redirect the user
 * pastes back. Parameter order and escaping follow email-oauth2-proxy (§5.2), so a provider that accepted
 * its URLs accepts ours.
 */
export interface AuthorisationRequest {
  url: string;
  state: string;
  codeVerifier: string | undefined;
}

/** Python's urllib.parse.quote(value, safe='~-._'): everything else percent-encoded, space as %20. */
function quote(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

export function buildAuthorisationRequest(account: AccountConfig): AuthorisationRequest {
  if (!account.permissionUrl) {
    throw new MailbridgeError(
      ErrorCode.ACCOUNT_INCOMPLETE,
      `account '${account.username}' has no permission_url`,
    );
  }
  const state = randomBytes(16).toString('base64url');
  const parameters: [string, string][] = [['client_id', account.clientId]];
  if (account.redirectUri) parameters.push(['redirect_uri', account.redirectUri]);
  parameters.push(
    ['scope', account.scope],
    ['response_type', 'code'],
    ['access_type', 'offline'],
    ['login_hint', account.username],
    ['state', state],
  );
  let codeVerifier: string | undefined;
  if (account.usePkce) {
    codeVerifier = randomBytes(64).toString('base64url');
    const challenge = createHash('sha256').update(codeVerifier).digest('base64url');
    parameters.push(['code_challenge', challenge], ['code_challenge_method', 'S256']);
  }
  const query = parameters.map(([key, value]) => `${key}=${quote(value)}`).join('&');
  // A permission_url that already has a query keeps it; the original appended a second '?'.
  const separator = account.permissionUrl.includes('?') ? '&' : '?';
  return { url: `${account.permissionUrl}${separator}${query}`, state, codeVerifier };
}

/**
 * The query parameters of the URL the browser was redirected to, after checking it is the configured
 * redirect_uri (same host, port and path; http or https) and carries our state.
 */
export function parseRedirect(
  account: AccountConfig,
  pasted: string,
  expectedState: string,
): URLSearchParams {
  const mismatch = (why: string) =>
    new MailbridgeError(
      ErrorCode.OAUTH_REDIRECT_MISMATCH,
      `the URL given for account '${account.username}' ${why}; paste the whole address the browser shows after signing in (it starts with ${account.redirectUri ?? 'the redirect_uri'})`,
    );
  let url: URL;
  try {
    url = new URL(pasted.trim());
  } catch {
    throw mismatch('is not a URL');
  }
  if (account.redirectUri) {
    const expected = new URL(account.redirectUri);
    const samePath = url.pathname.replace(/\/+$/, '') === expected.pathname.replace(/\/+$/, '');
    if (url.host !== expected.host || !samePath)
      throw mismatch(`does not match redirect_uri ${account.redirectUri}`);
  }
  const parameters = url.searchParams;
  const error = parameters.get('error');
  if (error) {
    const description = parameters.get('error_description');
    throw new MailbridgeError(
      ErrorCode.OAUTH_PROVIDER,
      `the provider refused authorisation of account '${account.username}': ${error}${description ? `; ${description}` : ''}`,
    );
  }
  if (parameters.get('state') !== expectedState) {
    throw mismatch('belongs to another authorisation request (its state differs): use the newest link');
  }
  if (!parameters.get('code')) throw mismatch('has no authorisation code in it');
  return parameters;
}
