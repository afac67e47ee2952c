import { spawn } from 'node:child_process';
import type { Logger } from '../log.ts';
import type { FrontEnd, PendingAuthorisation } from './pending.ts';

/**
 * `authorisation_notify_command`: a command of the user's (a desktop notification, a chat message, a mail to
 * a phone) run through /bin/sh when an account needs a person, and again every interval while it waits.
 * It learns what to show from its environment: MAILBRIDGE_ACCOUNT, MAILBRIDGE_AUTHORISATION_URL and, for the
 * device flow, MAILBRIDGE_USER_CODE and MAILBRIDGE_VERIFICATION_URI.
 */
export class NotifyCommand implements FrontEnd {
  readonly completesCodeRequests = false;
  private readonly timers = new Map<PendingAuthorisation, NodeJS.Timeout>();

  constructor(
    private readonly command: string,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  offer(pending: PendingAuthorisation): void {
    this.run(pending);
    const timer = setInterval(() => this.run(pending), this.intervalMs);
    timer.unref();
    this.timers.set(pending, timer);
  }

  withdraw(pending: PendingAuthorisation): void {
    clearInterval(this.timers.get(pending));
    this.timers.delete(pending);
  }

  private run(pending: PendingAuthorisation): void {
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      MAILBRIDGE_ACCOUNT: pending.account.username,
      MAILBRIDGE_AUTHORISATION_URL: pending.url,
    };
    if (pending.details.kind === 'device') {
      env.MAILBRIDGE_USER_CODE = pending.details.userCode;
      env.MAILBRIDGE_VERIFICATION_URI = pending.details.verificationUri;
    }
    const child = spawn('/bin/sh', ['-c', this.command], { env, stdio: 'ignore', timeout: 60_000 });
    child.on('error', (error) =>
      this.logger.warn({ error: error.message }, 'authorisation_notify_command could not run'),
    );
    child.on('exit', (code, signal) => {
      if (code !== 0) {
        this.logger.warn(
          `authorisation_notify_command exited with ${code ?? signal} for account '${pending.account.username}'`,
        );
      }
    });
  }
}
