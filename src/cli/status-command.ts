import { Command } from 'commander';
import { ConfigStore } from '../config/store.ts';
import { collectStatus, formatStatus } from '../doctor/status.ts';
import { describeError } from '../errors.ts';
import { silentLogger } from '../log.ts';
import { addFileOptions, CommandExit, exitCodeFor, type FileFlags } from './command-support.ts';

/**
 * `mailbridge status`: accounts, token expiry and listeners, read from the configuration and the token cache.
 * It needs no password (expiry and presence are stored in clear) and never prints a token or a secret.
 */
export interface StatusFlags extends FileFlags {
  json?: boolean;
}

export function statusCommand(): Command {
  const command = new Command('status').description(
    'show accounts (token expiry, refresh token, last activity) and what mailbridge listens on, from the files',
  );
  addFileOptions(command);
  command.option('--json', 'print the report as JSON').action(async (flags: StatusFlags) => {
    process.exitCode = await runStatus(flags, process.stdout, process.stderr);
  });
  return command;
}

export async function runStatus(
  flags: StatusFlags,
  stdout: NodeJS.WritableStream,
  stderr: NodeJS.WritableStream,
): Promise<number> {
  try {
    const store = await ConfigStore.load({
      configPath: flags.configFile,
      cachePath: flags.cacheStore,
      logger: silentLogger(),
    });
    const report = collectStatus(store);
    stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    return CommandExit.OK;
  } catch (error: unknown) {
    stderr.write(`mailbridge status: ${describeError(error)}\n`);
    return exitCodeFor(error);
  }
}
