import type { AccountConfig } from '../config/accounts.ts';
import type { AuthorisationRequest } from '../oauth/authorisation-url.ts';

/**
 * A front end that lets a person authorise an account: it shows the authorisation URL and returns the
 * parameters of the redirect that came back (already checked against redirect_uri and state).
 */
export interface Authoriser {
  authorise(
    account: AccountConfig,
    request: AuthorisationRequest,
    signal: AbortSignal,
  ): Promise<URLSearchParams>;
}
