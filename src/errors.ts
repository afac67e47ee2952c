/**
 * One error base class with a stable string code, so callers branch on `code` and operators can grep logs.
 * Messages are lower-case, quote the identifier they are about, and say what to do where that is known.
 */
export const ErrorCode = {
  CONFIG_SYNTAX: 'CONFIG_SYNTAX',
  CONFIG_INVALID: 'CONFIG_INVALID',
  CONFIG_WRITE: 'CONFIG_WRITE',
  TOKEN_INVALID: 'TOKEN_INVALID',
  TOKEN_WRONG_PASSWORD: 'TOKEN_WRONG_PASSWORD',
  OAUTH_GRANT_INVALID: 'OAUTH_GRANT_INVALID',
  OAUTH_PROVIDER: 'OAUTH_PROVIDER',
  OAUTH_NETWORK: 'OAUTH_NETWORK',
  OAUTH_REDIRECT_MISMATCH: 'OAUTH_REDIRECT_MISMATCH',
  OAUTH_AUTHORISATION_TIMEOUT: 'OAUTH_AUTHORISATION_TIMEOUT',
  OAUTH_AUTHORISATION_UNAVAILABLE: 'OAUTH_AUTHORISATION_UNAVAILABLE',
  ACCOUNT_UNKNOWN: 'ACCOUNT_UNKNOWN',
  ACCOUNT_INCOMPLETE: 'ACCOUNT_INCOMPLETE',
  UPSTREAM_CONNECT: 'UPSTREAM_CONNECT',
  UPSTREAM_PROTOCOL: 'UPSTREAM_PROTOCOL',
  SHUTTING_DOWN: 'SHUTTING_DOWN',
  THREAD_DATABASE: 'THREAD_DATABASE',
  THREAD_NO_IDS: 'THREAD_NO_IDS',
  THREAD_INVALID_ARGUMENT: 'THREAD_INVALID_ARGUMENT',
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class MailbridgeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MailbridgeError';
    this.code = code;
  }
}

export function isMailbridgeError(error: unknown, code?: ErrorCode): error is MailbridgeError {
  return error instanceof MailbridgeError && (code === undefined || error.code === code);
}

/**
 * A one-line description of any thrown value, for logs and protocol replies. Line breaks are folded: provider
 * messages carry them (Microsoft's "…\r\nTrace ID: …"), and in a protocol reply they would end the line early
 * and let the rest pass for a line of its own.
 */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.replace(/[\r\n]+/g, ' ').trim();
}
