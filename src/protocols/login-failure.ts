import { ErrorCode, isMailbridgeError } from '../errors.ts';

/**
 * What kind of failure a login met, so that each protocol answers with its own code for it (RFC 5530 for
 * IMAP, RFC 3206 for POP3, RFC 4954 for SMTP) and clients can tell "wrong password" from "try again later".
 */
export type LoginFailure = 'credentials' | 'configuration' | 'authorisation' | 'temporary';

export function loginFailure(error: unknown): LoginFailure {
  if (!isMailbridgeError(error)) return 'temporary';
  switch (error.code) {
    case ErrorCode.TOKEN_WRONG_PASSWORD:
    case ErrorCode.ACCOUNT_UNKNOWN:
      return 'credentials';
    case ErrorCode.ACCOUNT_INCOMPLETE:
    case ErrorCode.OAUTH_PROVIDER:
    case ErrorCode.CONFIG_INVALID:
      return 'configuration';
    case ErrorCode.OAUTH_GRANT_INVALID:
      return 'authorisation';
    default:
      return 'temporary';
  }
}
