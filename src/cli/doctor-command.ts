import { Command, InvalidArgumentError } from 'commander';
import { ConfigStore } from '../config/store.ts';
import { describeAccounts } from '../doctor/config-review.ts';
import { formatReport } from '../doctor/report.ts';
import { runDoctor } from '../doctor/run.ts';
import { describeError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { HostResolver } from '../net/resolve.ts';
import {
  addFileOptions,
  addPasswordOption,
  CommandExit,
  exitCodeFor,
  type FileFlags,
  PASSWORD_ENV,
  type PasswordFlags,
  readPassword,
} from './command-support.ts';
import { LocalTokenSource } from './token-source.ts';

/**
 * `mailbridge doctor [ACCOUNT]`: checks every server section end to end (resolve, connect, TLS, capabilities,
 * token, login, a command after login) and says in plain words what is wrong and what to change.
 */
export interface DoctorFlags extends FileFlags, PasswordFlags {
  timeout: number;
  json?: boolean;
  debug?: boolean;
}

const DEFAULT_TIMEOUT_S = 15;

export function doctorCommand(): Command {
  const command = new Command('doctor')
    .description(
      'check each configured server end to end (resolve, connect, TLS, capabilities, token, login, a command after login) and explain what is wrong',
    )
    .argument('[account]', 'the account to log in as (default: the only account configured)');
  addFileOptions(command);
  addPasswordOption(command);
  command
    .option('--timeout <seconds>', 'how long to wait for each answer', parseSeconds, DEFAULT_TIMEOUT_S)
    .option('--json', 'print the report as JSON')
    .option('--debug', 'log what happens, to standard error')
    .addHelpText(
      'after',
      `
Without a password (${PASSWORD_ENV} or --password-command) the servers are checked up to their capabilities.
Exit status: 0 everything works (warnings allowed); 1 a check failed; 2 the configuration cannot be read.`,
    )
    .action(async (account: string | undefined, flags: DoctorFlags) => {
      process.exitCode = await runDoctorCommand(account, flags, process.stdout, process.stderr);
    });
  return command;
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds <= 0)
    throw new InvalidArgumentError('a number of seconds above 0');
  return seconds;
}

export async function runDoctorCommand(
  accountArgument: string | undefined,
  flags: DoctorFlags,
  stdout: NodeJS.WritableStream,
  stderr: NodeJS.WritableStream,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const logger = createLogger({ debug: flags.debug });
  // The report says everything the log would; the log is for --debug.
  if (!flags.debug) logger.level = 'silent';
  let store: ConfigStore;
  try {
    store = await ConfigStore.load({ configPath: flags.configFile, cachePath: flags.cacheStore, logger });
  } catch (error: unknown) {
    stderr.write(`mailbridge doctor: ${describeError(error)}\n`);
    return exitCodeFor(error);
  }

  let account = accountArgument;
  let noAccount = '';
  if (account === undefined) {
    const usable = describeAccounts(store).accounts.filter((a) => a.kind === 'account' && !a.problem);
    if (usable.length === 1) account = usable[0]?.section;
    else {
      noAccount =
        usable.length === 0
          ? 'no usable account section to log in with'
          : `${usable.length} accounts are configured: name the one to log in as (mailbridge doctor ACCOUNT)`;
    }
  }

  let source: LocalTokenSource | undefined;
  let tokens: Parameters<typeof runDoctor>[0]['tokens'];
  try {
    const password = account === undefined ? undefined : await readPassword(flags, env);
    if (account === undefined) tokens = noAccount;
    else if (!password) {
      tokens = `no password: set ${PASSWORD_ENV} or --password-command to check the token and the logins`;
    } else {
      source = new LocalTokenSource({ store, password: password.password, logger });
      tokens = { provider: source, passwordOrigin: password.origin };
    }
  } catch (error: unknown) {
    tokens = `no password: ${describeError(error)}`;
  }

  try {
    const report = await runDoctor({
      store,
      account,
      tokens,
      resolver: new HostResolver({ logger }),
      timeoutMs: flags.timeout * 1000,
    });
    stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
    return report.problems === 0 ? CommandExit.OK : CommandExit.FAILED;
  } finally {
    source?.close();
  }
}
