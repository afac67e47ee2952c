import { createInterface, type Interface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { AccountConfig } from '../config/accounts.ts';
import { ErrorCode, isMailbridgeError, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type AuthorisationRequest, parseRedirect } from '../oauth/authorisation-url.ts';
import type { Authoriser } from './authoriser.ts';

/**
 * `--external-auth`: the authorisation URL is printed, the person opens it in any browser (on any machine),
 * signs in, and pastes the address the browser was redirected to. Works on headless servers and over SSH.
 *
 * Standard input is one shared line stream, so requests are asked one at a time, oldest first. A paste that
 * does not fit is explained and asked for again rather than failing the waiting client.
 */
export interface TerminalAuthoriserOptions {
  input: Readable;
  output: Writable;
  logger: Logger;
}

interface Pending {
  account: AccountConfig;
  request: AuthorisationRequest;
  resolve: (parameters: URLSearchParams) => void;
  reject: (error: unknown) => void;
}

export class TerminalAuthoriser implements Authoriser {
  private readonly queue: Pending[] = [];
  private readonly lines: Interface;
  private closed = false;

  constructor(private readonly options: TerminalAuthoriserOptions) {
    this.lines = createInterface({ input: options.input, terminal: false });
    this.lines.on('line', (line) => this.onLine(line));
    this.lines.on('close', () => this.onClose());
  }

  authorise(
    account: AccountConfig,
    request: AuthorisationRequest,
    signal: AbortSignal,
  ): Promise<URLSearchParams> {
    if (this.closed) {
      return Promise.reject(
        new MailbridgeError(
          ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE,
          `account '${account.username}' needs authorising but standard input is closed; run mailbridge in a terminal with --external-auth`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      const pending: Pending = { account, request, resolve, reject };
      const onAbort = () => {
        this.remove(pending);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      pending.resolve = (parameters) => {
        signal.removeEventListener('abort', onAbort);
        resolve(parameters);
      };
      this.queue.push(pending);
      this.options.logger.info(
        { account: account.username },
        `authorisation needed for account '${account.username}': see the terminal prompt`,
      );
      if (this.queue.length === 1) this.prompt();
    });
  }

  close(): void {
    this.lines.close();
  }

  private prompt(): void {
    const current = this.queue[0];
    if (!current) return;
    const { account, request } = current;
    const start = account.redirectUri ?? 'your redirect_uri';
    this.options.output.write(
      `\nPlease visit the following URL to authenticate account ${account.username}:\n${request.url}\n` +
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
      const parameters = parseRedirect(current.account, line, current.request.state);
      this.queue.shift();
      current.resolve(parameters);
      this.prompt();
    } catch (error: unknown) {
      if (!isMailbridgeError(error, ErrorCode.OAUTH_REDIRECT_MISMATCH)) {
        this.queue.shift();
        current.reject(error);
        this.prompt();
        return;
      }
      this.options.output.write(`${error.message}\n`);
      this.prompt();
    }
  }

  private onClose(): void {
    this.closed = true;
    for (const pending of this.queue.splice(0)) {
      pending.reject(
        new MailbridgeError(
          ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE,
          `standard input closed before account '${pending.account.username}' was authorised`,
        ),
      );
    }
  }

  private remove(pending: Pending): void {
    const index = this.queue.indexOf(pending);
    if (index === -1) return;
    this.queue.splice(index, 1);
    if (index === 0) this.prompt();
  }
}

/** Without an interactive mode nobody can answer: say so at once and how to fix it, rather than hang. */
export class UnattendedAuthoriser implements Authoriser {
  constructor(private readonly logger: Logger) {}

  async authorise(account: AccountConfig, request: AuthorisationRequest): Promise<URLSearchParams> {
    this.logger.warn(
      { account: account.username, url: request.url },
      `account '${account.username}' needs authorising: restart mailbridge with --external-auth to paste the redirect URL in the terminal`,
    );
    throw new MailbridgeError(
      ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE,
      `account '${account.username}' needs authorising; run mailbridge with --external-auth and follow the prompt`,
    );
  }
}
