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
  '50194':
    'wrong tenant: the app is registered for one organisation only; replace "common" in permission_url and token_url with your Directory (tenant) ID',
  '90002':
    'wrong tenant: the tenant named in permission_url and token_url does not exist; use common, organizations, consumers or your Directory (tenant) ID',
  '50020':
    "wrong tenant: the account you signed in with is not part of the app's organisation; sign in with an account of that organisation, or register the app for any organisation",
  '500011':
    'wrong tenant or no mailbox: Exchange Online (https://outlook.office.com) does not exist in the tenant you signed in to; sign in with the account that has the mailbox',
  '70008': 'the refresh token or code has expired: authorise the account again',
  '50079': 'multi-factor authentication is now required: authorise the account again in a browser',
  '7000218':
    'the app is registered as a confidential ("Web") client: set client_secret, or register http://localhost under "Mobile and desktop applications" and allow public client flows',
  '9002326':
    'the redirect URI is registered as a single-page application: register it under "Mobile and desktop applications" instead',
  '700024': "clock skew: the request's time is outside the allowed window; synchronise this computer's clock",
  '70011':
    'the scope is invalid: check oauth2_scope (Microsoft: https://outlook.office.com/IMAP.AccessAsUser.All … offline_access)',
};

export function explainProviderError(error: string, description = ''): string | undefined {
  const aadsts = /AADSTS(\d+)/.exec(description)?.[1];
  if (aadsts && MICROSOFT[aadsts]) return MICROSOFT[aadsts];
  if (error === 'redirect_uri_mismatch' || /redirect_uri_mismatch/.test(description)) {
    return 'redirect URI mismatch: use a Google OAuth client of type "Desktop app" (it accepts http://localhost) and set redirect_uri = http://localhost';
  }
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
