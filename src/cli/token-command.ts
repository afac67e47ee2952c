import type { Readable, Writable } from 'node:stream';
import { Command, Option } from 'commander';
import { askDaemon, controlSocketPath } from '../authorise/control-socket.ts';
import { ConfigStore } from '../config/store.ts';
import { describeError, ErrorCode, isMailbridgeError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { encodeOAuthBearer, encodeXOAuth2 } from '../sasl/oauth.ts';
import {
  addFileOptions,
  addPasswordOption,
  CommandExit,
  exitCodeFor,
  type FileFlags,
  noPasswordError,
  type PasswordFlags,
  readPassword,
} from './command-support.ts';
import { LocalTokenSource, type TokenSource } from './token-source.ts';

/**
 * `mailbridge token ACCOUNT`: the OAuth helper for clients that speak XOAUTH2 or OAUTHBEARER themselves (mutt's
 * imap_oauth_refresh_command, msmtp's passwordeval, curl's --oauth2-bearer). Standard output gets the token and
 * a newline, nothing else, so `$(mailbridge token …)` is safe; everything else goes to standard error.
 */
export const TOKEN_FORMATS = ['raw', 'sasl-xoauth2', 'sasl-oauthbearer'] as const;
export type TokenFormat = (typeof TOKEN_FORMATS)[number];

export interface TokenFlags extends FileFlags, PasswordFlags {
  format: TokenFormat;
  externalAuth?: boolean;
  debug?: boolean;
}

export interface TokenIo {
  stdin: Readable;
  stdout: Writable;
  stderr: Writable;
  env: NodeJS.ProcessEnv;
}

export function tokenCommand(): Command {
  const command = new Command('token')
    .description(
      'print a fresh access token for ACCOUNT (refreshed when needed) and nothing else: the OAuth helper for mutt, msmtp, curl',
    )
    .argument('<account>', 'the account: its section name in the configuration file, e.g. you@example.com')
    .addOption(
      new Option('--format <format>', 'raw: the access token; sasl-*: the base64 SASL initial response')
        .choices(TOKEN_FORMATS)
        .default('raw'),
    );
  addFileOptions(command);
  addPasswordOption(command);
  command
    .option(
      '--external-auth',
      'if the account needs authorising, do it here: open the printed URL, paste the redirect URL back (prompts on standard error)',
    )
    .option('--debug', 'log what happens, to standard error')
    .addHelpText(
      'after',
      `
Exit status: 0 token printed; 2 configuration or flags unusable; 3 the account needs authorising
(run again with --external-auth in a terminal); 4 wrong password; 1 anything else (network, provider).

Examples:
  mutt:   set imap_oauth_refresh_command = "mailbridge token you@example.com --password-command 'pass show mailbridge'"
  msmtp:  passwordeval "mailbridge token you@example.com"    (with MAILBRIDGE_PASSWORD in the environment)
  curl:   curl --oauth2-bearer "$(mailbridge token you@example.com)" --user you@example.com: imaps://…`,
    )
    .action(async (account: string, flags: TokenFlags) => {
      process.exitCode = await runToken(account, flags, {
        stdin: process.stdin,
        stdout: process.stdout,
        stderr: process.stderr,
        env: process.env,
      });
    });
  return command;
}

export async function runToken(account: string, flags: TokenFlags, io: TokenIo): Promise<number> {
  const logger = createLogger({ debug: flags.debug });
  // A helper's standard error often lands in a curses screen (mutt): only errors, unless a person is at the
  // terminal authorising, when warnings such as "no refresh token was returned" matter.
  if (!flags.debug) logger.level = flags.externalAuth ? 'warn' : 'error';
  let source: TokenSource | undefined;
  let origin = '';
  try {
    // A running daemon holds the keys of the accounts its clients logged in to: no password needed.
    const fromDaemon = await askDaemon(controlSocketPath(flags.configFile), { op: 'token', account }).catch(
      () => undefined,
    );
    if (fromDaemon?.ok && fromDaemon.token) {
      io.stdout.write(`${formatToken(flags.format, account, fromDaemon.token)}\n`);
      return CommandExit.OK;
    }
    const password = await readPassword(flags, io.env);
    if (!password) throw noPasswordError(account);
    origin = password.origin;
    const store = await ConfigStore.load({
      configPath: flags.configFile,
      cachePath: flags.cacheStore,
      logger,
    });
    source = new LocalTokenSource({
      store,
      password: password.password,
      logger,
      interactive: flags.externalAuth ? { input: io.stdin, output: io.stderr } : undefined,
    });
    const accessToken = await source.accessToken(account);
    io.stdout.write(`${formatToken(flags.format, account, accessToken)}\n`);
    return CommandExit.OK;
  } catch (error: unknown) {
    // Naming the password's source saves a search when MAILBRIDGE_PASSWORD is stale in some environment.
    const from =
      isMailbridgeError(error, ErrorCode.TOKEN_WRONG_PASSWORD) && origin ? ` (password from ${origin})` : '';
    io.stderr.write(`mailbridge token: ${describeError(error)}${from}\n`);
    return exitCodeFor(error);
  } finally {
    source?.close();
  }
}

/** The SASL forms are what a client sends after AUTHENTICATE XOAUTH2 / OAUTHBEARER, for scripts that talk raw. */
export function formatToken(format: TokenFormat, account: string, accessToken: string): string {
  switch (format) {
    case 'sasl-xoauth2':
      return encodeXOAuth2(account, accessToken);
    case 'sasl-oauthbearer':
      return encodeOAuthBearer(account, accessToken);
    default:
      return accessToken;
  }
}
