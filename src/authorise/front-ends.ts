import type { GlobalOptions } from '../config/accounts.ts';
import { describeError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { type ControlHooks, ControlSocket } from './control-socket.ts';
import { NotifyCommand } from './notify.ts';
import { Authorisations, type FrontEnd } from './pending.ts';
import { RedirectListener } from './redirect-listener.ts';
import { LogFrontEnd, TerminalFrontEnd } from './terminal.ts';

/**
 * The ways a person learns of, and answers, a pending authorisation in this process: always the log; the
 * terminal with --external-auth; the redirect listener with --local-server-auth (both may run together, the
 * first answer wins); the notification command when one is configured; the control socket through which
 * `mailbridge authorise` answers requests while the daemon runs; and the web console, when enabled.
 */
export interface FrontEndOptions {
  externalAuth: boolean;
  localServerAuth: boolean;
  globals: GlobalOptions;
  logger: Logger;
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
}

export interface AuthorisationFrontEnds {
  authorisations: Authorisations;
  /**
   * The daemon's control socket for `mailbridge authorise`. Fails when another daemon serves the same
   * configuration; any other trouble only costs that command, and is logged.
   */
  openControlSocket(path: string, hooks?: ControlHooks): Promise<void>;
  /** A front end that starts later (the web console): offered every request from now on, closed with the rest. */
  add(frontEnd: FrontEnd, close: () => void): void;
  /** Stops listening and reading: pending requests fail for their waiting clients. */
  close(): void;
}

export function createAuthorisations(options: FrontEndOptions): AuthorisationFrontEnds {
  const { logger } = options;
  const frontEnds: FrontEnd[] = [new LogFrontEnd(logger)];
  const closers: (() => void)[] = [];
  if (options.externalAuth) {
    const terminal = new TerminalFrontEnd({
      input: (options.input ?? process.stdin) as NodeJS.ReadStream,
      output: (options.output ?? process.stdout) as NodeJS.WriteStream,
      logger,
    });
    frontEnds.push(terminal);
    closers.push(() => terminal.close());
  }
  if (options.localServerAuth) {
    const listener = new RedirectListener(logger);
    frontEnds.push(listener);
    closers.push(() => listener.close());
  }
  const command = options.globals.authorisationNotifyCommand;
  if (command) {
    frontEnds.push(
      new NotifyCommand(command, options.globals.authorisationNotifyIntervalSeconds * 1000, logger),
    );
  }
  const authorisations = new Authorisations(frontEnds);
  return {
    authorisations,
    openControlSocket: async (path, hooks) => {
      const control = new ControlSocket(() => authorisations, path, logger, hooks);
      try {
        await control.listen();
      } catch (error: unknown) {
        if (/already serves/.test(describeError(error))) throw error;
        logger.warn(
          `no control socket, so 'mailbridge authorise' cannot reach this daemon: ${describeError(error)}`,
        );
        return;
      }
      // The registry holds this very array: a front end added now is offered every later request.
      frontEnds.push(control);
      closers.push(() => control.close());
    },
    add: (frontEnd, close) => {
      frontEnds.push(frontEnd);
      closers.push(close);
    },
    close: () => {
      authorisations.cancelAll('mailbridge is stopping');
      for (const close of closers) close();
    },
  };
}
