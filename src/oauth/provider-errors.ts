/**
 * What a provider's error means for the person who has to fix it. Microsoft answers with AADSTS codes in
 * error_description; Google with its own phrases. Each remedy is one sentence an operator can act on.
 */
const MICROSOFT: Record<string, string> = {
  '700082':
    'the refresh token expired after 90 days without use; authorise the account again (mailbridge refreshes tokens at every login, so keep a client polling)',
  '70043':
    "the refresh token expired under the tenant's Conditional Access sign-in frequency; authorise again, or ask an administrator to relax the policy for this app",
  '70000': 'the grant is invalid (revoked, or its scopes changed); authorise the account again',
  '65001':
    'the user or an administrator has not consented to this app for these scopes; authorise again and accept, or ask an administrator to grant tenant-wide consent',
  '53003': 'Conditional Access blocked the sign-in; an administrator must allow this app or device',
  '50076': 'multi-factor authentication is required; authorise again interactively and complete MFA',
  '900144': "the request lacks a parameter Microsoft requires (often 'scope'); check oauth2_scope",
  '7000215': 'the client_secret is wrong or expired; create a new secret in the app registration',
  '7000222': 'the client_secret has expired; create a new secret in the app registration',
  '700016': 'the client_id is not known in this tenant; check client_id and the tenant in token_url',
  '50011': 'the redirect_uri does not match the app registration; register it exactly as configured',
  '54005': 'the authorisation code was already redeemed; paste a fresh redirect URL',
  '50173': 'the grant is no longer valid (the password changed or a session was revoked); authorise again',
};

export function explainProviderError(error: string, description = ''): string | undefined {
  const aadsts = /AADSTS(\d+)/.exec(description)?.[1];
  if (aadsts && MICROSOFT[aadsts]) return MICROSOFT[aadsts];
  if (error === 'invalid_client') {
    return 'the provider does not accept the client credentials: check client_id and client_secret (or the certificate)';
  }
  if (error === 'invalid_grant' && /expired or revoked/i.test(description)) {
    return 'Google refuses the refresh token: apps in "Testing" publishing status get 7-day refresh tokens; publish the app or authorise again weekly';
  }
  if (/oob|out-of-band/i.test(description)) {
    return 'Google blocked the out-of-band redirect (urn:ietf:wg:oauth:2.0:oob); use redirect_uri = http://localhost';
  }
  if (error === 'invalid_scope')
    return 'the provider refuses oauth2_scope; check the scopes the app is allowed';
  if (error === 'unauthorized_client') {
    return 'the app is not allowed this grant type; enable it in the app registration (e.g. "Allow public client flows" for the device flow)';
  }
  return undefined;
}
