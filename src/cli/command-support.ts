import { spawn } from 'node:child_process';
import type { Command } from 'commander';
import { ErrorCode, isMailbridgeError, MailbridgeError } from '../errors.ts';

/**
 * What the management commands (token, status, check-config, doctor) share: the file options, where the
 * cache password comes from, and how errors become exit codes.
 */

/** Exit codes of the management commands; 3 and 4 let scripts tell "authorise it" from "wrong password". */
export const CommandExit = {
  OK: 0,
  FAILED: 1,
  /** Unusable configuration or flags. */
  CONFIG: 2,
  NEEDS_AUTHORISATION: 3,
  WRONG_PASSWORD: 4,
} as const;

export type CommandExit = (typeof CommandExit)[keyof typeof CommandExit];

export interface FileFlags {
  configFile: string;
  cacheStore?: string;
}

export interface PasswordFlags {
  passwordCommand?: string;
}

/** The environment variable that may hold the password; a command-line argument would show in `ps`. */
export const PASSWORD_ENV = 'MAILBRIDGE_PASSWORD';

export function addFileOptions(command: Command): Command {
  return command
    .option('--config-file <path>', 'configuration file (email-oauth2-proxy format)', 'emailproxy.config')
    .option('--cache-store <path>', 'cached tokens are in this file instead of the configuration file');
}

export function addPasswordOption(command: Command): Command {
  return command.option(
    '--password-command <command>',
    `run this shell command and use the first line it prints as the password that encrypts the cached tokens (default: the ${PASSWORD_ENV} environment variable)`,
  );
}

/** How long a password command may take: long enough to type a passphrase into pinentry. */
const PASSWORD_COMMAND_TIMEOUT_MS = 120_000;
/** A password is one line; more than this is a command printing something else. */
const PASSWORD_COMMAND_MAX_BYTES = 64 * 1024;

export interface PasswordSource {
  password: string;
  /** Where it came from, for messages ("--password-command", "MAILBRIDGE_PASSWORD"). */
  origin: string;
}

/**
 * The password from `--password-command` or the environment; undefined when neither gives one. The command
 * runs through /bin/sh with the terminal on stdin and stderr, so a pinentry or `pass` prompt works.
 */
export async function readPassword(
  flags: PasswordFlags,
  env: NodeJS.ProcessEnv = process.env,
): Promise<PasswordSource | undefined> {
  if (flags.passwordCommand !== undefined) {
    return { password: await runPasswordCommand(flags.passwordCommand), origin: '--password-command' };
  }
  const fromEnv = env[PASSWORD_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return { password: fromEnv, origin: PASSWORD_ENV };
  return undefined;
}

export function noPasswordError(account: string): MailbridgeError {
  return new MailbridgeError(
    ErrorCode.CONFIG_INVALID,
    `no password for account '${account}', and no running mailbridge has it unlocked: set ${PASSWORD_ENV} or pass --password-command (the password your mail client uses with mailbridge; it encrypts the cached tokens)`,
  );
}

function runPasswordCommand(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const fail = (why: string, cause?: unknown) =>
      reject(
        new MailbridgeError(
          ErrorCode.CONFIG_INVALID,
          `--password-command ${why}`,
          cause === undefined ? undefined : { cause },
        ),
      );
    const child = spawn('/bin/sh', ['-c', command], { stdio: ['inherit', 'pipe', 'inherit'] });
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(`did not finish within ${PASSWORD_COMMAND_TIMEOUT_MS / 1000} s`);
    }, PASSWORD_COMMAND_TIMEOUT_MS);
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= PASSWORD_COMMAND_MAX_BYTES) chunks.push(chunk);
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      fail(`could not be started: ${error.message}`, error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        fail(`failed (${signal ? `killed by ${signal}` : `exit status ${code}`}); its output was not used`);
        return;
      }
      const firstLine = Buffer.concat(chunks).toString('utf8').split(/\r?\n/, 1)[0] ?? '';
      if (firstLine === '') fail('printed an empty first line: it must print the password');
      else resolve(firstLine);
    });
  });
}

/** The exit code for an error that ended a command. */
export function exitCodeFor(error: unknown): CommandExit {
  if (!isMailbridgeError(error)) return CommandExit.FAILED;
  switch (error.code) {
    case ErrorCode.CONFIG_SYNTAX:
    case ErrorCode.CONFIG_INVALID:
    case ErrorCode.ACCOUNT_UNKNOWN:
    case ErrorCode.ACCOUNT_INCOMPLETE:
      return CommandExit.CONFIG;
    case ErrorCode.OAUTH_AUTHORISATION_UNAVAILABLE:
    case ErrorCode.OAUTH_AUTHORISATION_TIMEOUT:
    case ErrorCode.OAUTH_GRANT_INVALID:
      return CommandExit.NEEDS_AUTHORISATION;
    case ErrorCode.TOKEN_WRONG_PASSWORD:
      return CommandExit.WRONG_PASSWORD;
    default:
      return CommandExit.FAILED;
  }
}
