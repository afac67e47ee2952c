import type { Protocol } from './config/servers.ts';

/**
 * What the daemon's parts report as they work, for whoever watches (the metrics and the web console): a
 * narrow interface, so the protocols and the token service know nothing of either.
 */
export interface Observer {
  connectionOpened(protocol: Protocol): void;
  connectionClosed(protocol: Protocol): void;
  loginSucceeded(protocol: Protocol, account: string, serverSection: string): void;
  loginFailed(protocol: Protocol, account: string, error: unknown): void;
  tokenRefreshed(succeeded: boolean): void;
  /** A login found the account unauthorised and waited for a person. */
  authorisationWaited(): void;
}

/** For the parts of a program that nobody watches (tests, the token helper). */
export const NO_OBSERVER: Observer = {
  connectionOpened: () => undefined,
  connectionClosed: () => undefined,
  loginSucceeded: () => undefined,
  loginFailed: () => undefined,
  tokenRefreshed: () => undefined,
  authorisationWaited: () => undefined,
};
