import { randomBytes } from 'node:crypto';
import type { AccountConfig } from '../config/accounts.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { type AuthorisationRequest, parseRedirect } from '../oauth/authorisation-url.ts';

/**
 * An authorisation a person has to complete, shared by every client that waits for the account.
 *
 * For the authorisation-code grant it waits for the redirect URL, which any front end may deliver (a pasted
 * URL, the local redirect listener); for the device grant it only shows the code, and the token service polls.
 * It stays open after a waiting client has given up, until it is completed, fails or expires.
 */
export type PendingDetails =
  | { kind: 'code'; request: AuthorisationRequest }
  | {
      kind: 'device';
      userCode: string;
      verificationUri: string;
      verificationUriComplete: string | undefined;
    };

export class PendingAuthorisation {
  readonly id = randomBytes(8).toString('hex');
  readonly createdAt = Date.now();
  /** The callback parameters of a code request; resolves with none for a device request's completion. */
  readonly result: Promise<URLSearchParams>;
  private settle!: { resolve: (parameters: URLSearchParams) => void; reject: (error: unknown) => void };
  private done = false;

  constructor(
    readonly account: AccountConfig,
    readonly details: PendingDetails,
    readonly expiresAt: number,
  ) {
    this.result = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
    // Nobody may be waiting when it fails (every client gave up): that is not an unhandled rejection.
    this.result.catch(() => undefined);
  }

  get settled(): boolean {
    return this.done;
  }

  /** The URL the person should open: the authorisation URL, or the device verification page. */
  get url(): string {
    return this.details.kind === 'code'
      ? this.details.request.url
      : (this.details.verificationUriComplete ?? this.details.verificationUri);
  }

  /**
   * Completes a code request with the URL the browser was redirected to. Throws OAUTH_REDIRECT_MISMATCH (and
   * stays open) when the URL is not this request's redirect, so a stray or stale URL costs nothing.
   */
  complete(redirectUrl: string): void {
    if (this.details.kind !== 'code') {
      throw new MailbridgeError(
        ErrorCode.OAUTH_REDIRECT_MISMATCH,
        'a device authorisation takes no redirect URL',
      );
    }
    if (this.done) {
      throw new MailbridgeError(
        ErrorCode.OAUTH_REDIRECT_MISMATCH,
        `the authorisation of '${this.account.username}' is already complete`,
      );
    }
    const parameters = parseRedirect(this.account, redirectUrl, this.details.request.state);
    this.done = true;
    this.settle.resolve(parameters);
  }

  /** Ends a device request once its tokens arrived. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.settle.resolve(new URLSearchParams());
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.settle.reject(error);
  }
}

/** A way for a person to see, and for code requests to answer, pending authorisations. */
export interface FrontEnd {
  /** Whether it can deliver the redirect URL of a code request (a terminal or a listener can; a log cannot). */
  readonly completesCodeRequests: boolean;
  offer(pending: PendingAuthorisation): void;
  withdraw(pending: PendingAuthorisation): void;
}

/**
 * The registry of open authorisations: one per account, however many clients wait, so nobody is asked twice
 * and no authorisation code is redeemed twice (Microsoft's AADSTS54005).
 */
export class Authorisations {
  private readonly open = new Map<
    string,
    { job: Promise<string>; pending: PendingAuthorisation | undefined }
  >();

  constructor(private readonly frontEnds: readonly FrontEnd[]) {}

  /** Whether anyone can complete a code request: otherwise asking would only make clients wait in vain. */
  get canCompleteCodeRequests(): boolean {
    return this.frontEnds.some((frontEnd) => frontEnd.completesCodeRequests);
  }

  /**
   * The account's open authorisation, or a new one run by `run` (which calls `publish` once it knows what to
   * show). Resolves with the access token when the account is authorised.
   */
  join(
    key: string,
    run: (publish: (pending: PendingAuthorisation) => void) => Promise<string>,
  ): Promise<string> {
    const existing = this.open.get(key);
    if (existing) return existing.job;
    const entry: { job: Promise<string>; pending: PendingAuthorisation | undefined } = {
      job: Promise.resolve(''),
      pending: undefined,
    };
    const publish = (pending: PendingAuthorisation) => {
      entry.pending = pending;
      for (const frontEnd of this.frontEnds) frontEnd.offer(pending);
    };
    entry.job = run(publish).finally(() => {
      this.open.delete(key);
      if (entry.pending) {
        entry.pending.fail(new MailbridgeError(ErrorCode.SHUTTING_DOWN, 'the authorisation ended'));
        for (const frontEnd of this.frontEnds) frontEnd.withdraw(entry.pending);
      }
    });
    entry.job.catch(() => undefined);
    this.open.set(key, entry);
    return entry.job;
  }

  /** The authorisations waiting for a person, oldest first. */
  pending(): PendingAuthorisation[] {
    return [...this.open.values()]
      .map((entry) => entry.pending)
      .filter((pending): pending is PendingAuthorisation => pending !== undefined && !pending.settled)
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  /** Fails every open authorisation, at shutdown. */
  cancelAll(reason: string): void {
    for (const entry of this.open.values())
      entry.pending?.fail(new MailbridgeError(ErrorCode.SHUTTING_DOWN, reason));
  }
}
