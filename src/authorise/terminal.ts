import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { ErrorCode, isMailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { FrontEnd, PendingAuthorisation } from './pending.ts';

/**
 * `--external-auth`: the authorisation URL is printed, the person opens it in any browser (on any machine),
 * signs in, and pastes the address the browser was redirected to. Works on headless servers and over SSH.
 *
 * Standard input is one shared line stream, so code requests are asked one at a time, oldest first. A paste
 * that does not fit is explained and asked for again rather than failing the waiting clients. Device codes
 * are only shown: the token service polls for them.
 */
export interface TerminalOptions {
  input: Readable;
  output: Writable;
  logger: Logger;
}

export class TerminalFrontEnd implements FrontEnd {
  private readonly queue: PendingAuthorisation[] = [];
  private readonly lines: Interface;
  private closed = false;

  constructor(private readonly options: TerminalOptions) {
    this.lines = createInterface({ input: options.input, terminal: false });
    this.lines.on('line', (line) => this.onLine(line));
    this.lines.on('close', () => this.onClose());
  }

  get completesCodeRequests(): boolean {
    return !this.closed;
  }

  offer(pending: PendingAuthorisation): void {
    if (pending.details.kind === 'device') {
      this.options.output.write(
        `\nTo authorise account ${pending.account.username}, visit ${pending.details.verificationUri} and enter the code ${pending.details.userCode}` +
          `${pending.details.verificationUriComplete ? `\n(or open ${pending.details.verificationUriComplete})` : ''}\n`,
      );
      return;
    }
    if (this.closed) return;
    this.queue.push(pending);
    if (this.queue.length === 1) this.prompt();
  }

  withdraw(pending: PendingAuthorisation): void {
    const index = this.queue.indexOf(pending);
    if (index === -1) return;
    this.queue.splice(index, 1);
    if (index === 0) this.prompt();
  }

  close(): void {
    this.lines.close();
  }

  private prompt(): void {
    const current = this.queue[0];
    if (!current) return;
    const start = current.account.redirectUri ?? 'your redirect_uri';
    this.options.output.write(
      `\nPlease visit the following URL to authenticate account ${current.account.username}:\n${current.url}\n` +
        `then paste here the full post-authentication URL from the browser's address bar (it should start with ${start}):\n`,
    );
  }

  private onLine(line: string): void {
    const current = this.queue[0];
    if (!current) return;
    if (line.trim() === '') {
      this.prompt();
      return;
    }
    try {
      current.complete(line);
      this.queue.shift();
    } catch (error: unknown) {
      if (!isMailbridgeError(error, ErrorCode.OAUTH_REDIRECT_MISMATCH)) {
        // The provider's refusal carried by the redirect: this request has its answer.
        this.queue.shift();
        current.fail(error);
      } else {
        this.options.output.write(`${error.message}\n`);
      }
    }
    this.prompt();
  }

  private onClose(): void {
    this.closed = true;
    if (this.queue.length > 0) {
      this.options.logger.warn(
        `standard input closed with ${this.queue.length} authorisation(s) waiting; they stay open for other ways to authorise`,
      );
    }
    this.queue.splice(0);
  }
}

/** Every pending authorisation in the log, for daemons whose only window on the world is the journal. */
export class LogFrontEnd implements FrontEnd {
  readonly completesCodeRequests = false;

  constructor(private readonly logger: Logger) {}

  offer(pending: PendingAuthorisation): void {
    const account = pending.account.username;
    if (pending.details.kind === 'device') {
      this.logger.warn(
        { account, url: pending.details.verificationUri, userCode: pending.details.userCode },
        `account '${account}' needs authorising: visit ${pending.details.verificationUri} and enter the code ${pending.details.userCode}`,
      );
      return;
    }
    this.logger.warn(
      { account, url: pending.url },
      `account '${account}' needs authorising: open the URL, sign in, and give mailbridge the redirect URL (terminal with --external-auth, or the redirect listener with --local-server-auth)`,
    );
  }

  withdraw(): void {}
}
