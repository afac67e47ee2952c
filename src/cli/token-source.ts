import type { Readable, Writable } from 'node:stream';
import { Authorisations } from '../authorise/pending.ts';
import { TerminalFrontEnd } from '../authorise/terminal.ts';
import type { ConfigStore } from '../config/store.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { TokenClient } from '../oauth/token-client.ts';
import { KeyDeriver } from '../tokens/key-derivation.ts';
import { TokenService } from '../tokens/token-service.ts';

/**
 * Where `mailbridge token` and `mailbridge doctor` get an access token from.
 *
 * Today that is the files: the cache is decrypted with a password the user supplies, and a refreshed token is
 * written back (under the store's file lock, so a running daemon sharing the cache loses nothing). A running
 * daemon holds the key already: once its control socket answers a token request, a `DaemonTokenSource`
 * implementing this interface can ask it first (no password needed, and an authorisation request is raised in
 * the daemon, where any of its front ends can complete it) and fall back to this one when no daemon answers.
 * The commands only see `TokenSource`.
 */
export interface TokenSource {
  /** A usable access token for the account: cached, refreshed, or (interactive only) newly authorised. */
  accessToken(account: string): Promise<string>;
  close(): void;
}

export interface LocalTokenSourceOptions {
  store: ConfigStore;
  password: string;
  logger: Logger;
  /**
   * Authorise accounts that need it in this terminal (`--external-auth`). The prompt goes to `output`
   * (standard error), so standard output carries nothing but the token.
   */
  interactive?: { input: Readable; output: Writable };
}

export class LocalTokenSource implements TokenSource {
  private readonly service: TokenService;
  private readonly closeFrontEnds: () => void;

  constructor(private readonly options: LocalTokenSourceOptions) {
    const { interactive, logger, store } = options;
    let authorisations: Authorisations;
    if (interactive) {
      // The terminal alone: the log's copy of the prompt would only repeat it on the same standard error.
      const terminal = new TerminalFrontEnd({ input: interactive.input, output: interactive.output, logger });
      authorisations = new Authorisations([terminal]);
      this.closeFrontEnds = () => {
        authorisations.cancelAll('mailbridge token is done');
        terminal.close();
      };
    } else {
      authorisations = new NonInteractiveAuthorisations();
      this.closeFrontEnds = () => undefined;
    }
    this.service = new TokenService({
      store,
      deriver: new KeyDeriver(),
      tokenClient: new TokenClient(),
      authorisations,
      logger,
    });
  }

  async accessToken(account: string): Promise<string> {
    const grant = await this.service.accessToken(account, this.options.password);
    return grant.accessToken;
  }

  close(): void {
    // The terminal prompt reads standard input; left open it would keep the process alive.
    this.closeFrontEnds();
  }
}

/**
 * Outside a terminal nobody can sign in: refuse at once, saying what to run, rather than start a request
 * (a device flow would poll for minutes) that nobody will see. A helper run by mutt or msmtp has no terminal
 * of its own to prompt in.
 */
export class NonInteractiveAuthorisations extends Authorisations {
  constructor() {
    super([]);
  }

  // True so that code requests reach join() below too, and every flow gets the same advice.
  override get canCompleteCodeRequests(): boolean {
    return true;
  }

  override join(account: string): Promise<string> {
    return Promise.reject(
      new MailbridgeError(
        ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE,
        `account '${account}' needs authorising: run 'mailbridge token ${account} --external-auth' in a terminal and follow the prompt`,
      ),
    );
  }
}
