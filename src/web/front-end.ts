import type { FrontEnd, PendingAuthorisation } from '../authorise/pending.ts';
import { ErrorCode, isMailbridgeError } from '../errors.ts';
import type { AccountActivity } from './activity.ts';

/**
 * The console as one of the Authoriser's front ends: it completes code requests (pasted URL, or its own
 * callback), and every offer and withdrawal updates open pages at once. A request that fails for a reason
 * other than ending (expired unanswered, refused at the provider) becomes the account's last error.
 */
export class ConsoleFrontEnd implements FrontEnd {
  readonly completesCodeRequests = true;
  private readonly offerWaiters = new Set<(pending: PendingAuthorisation) => void>();

  constructor(
    private readonly activity: AccountActivity,
    private readonly changed: () => void,
  ) {}

  offer(pending: PendingAuthorisation): void {
    pending.result.catch((error: unknown) => {
      if (!isMailbridgeError(error, ErrorCode.SHUTTING_DOWN)) {
        this.activity.failure(pending.account.username, error);
      }
      this.changed();
    });
    for (const waiter of this.offerWaiters) waiter(pending);
    this.changed();
  }

  withdraw(_pending: PendingAuthorisation): void {
    this.changed();
  }

  /**
   * Watches for the next request offered for `account`, from now on (register before starting it: a request
   * may be offered before the call that starts it returns).
   */
  watchOffer(account: string): { offered: Promise<PendingAuthorisation>; stop: () => void } {
    let waiter: ((pending: PendingAuthorisation) => void) | undefined;
    const offered = new Promise<PendingAuthorisation>((resolve) => {
      waiter = (pending) => {
        if (pending.account.username !== account) return;
        this.offerWaiters.delete(waiter as (pending: PendingAuthorisation) => void);
        resolve(pending);
      };
      this.offerWaiters.add(waiter);
    });
    return {
      offered,
      stop: () => this.offerWaiters.delete(waiter as (pending: PendingAuthorisation) => void),
    };
  }
}
