import { Command } from 'commander';
import { askDaemon, controlSocketPath } from '../authorise/control-socket.ts';
import { ConfigStore } from '../config/store.ts';
import { collectStatus, formatStatus } from '../doctor/status.ts';
import { describeError } from '../errors.ts';
import { silentLogger } from '../log.ts';
import { addFileOptions, CommandExit, exitCodeFor, type FileFlags } from './command-support.ts';

/**
 * `mailbridge status`: accounts, token expiry and listeners, read from the configuration and the token cache,
 * and the pending authorisations of the running daemon when one answers. It needs no password (expiry and
 * presence are stored in clear) and never prints a token or a secret.
 */
export interface StatusFlags extends FileFlags {
  json?: boolean;
}

export function statusCommand(): Command {
  const command = new Command('status').description(
    'show accounts (token expiry, refresh token, last activity), what mailbridge listens on, and pending authorisations',
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
    // A running daemon adds what only it knows; without one the files alone answer.
    const daemon = await askDaemon(controlSocketPath(flags.configFile), { op: 'list' }).catch(
      () => undefined,
    );
    const pending = daemon?.ok ? (daemon.pending ?? []) : null;
    const report = collectStatus(store, Date.now(), pending);
    stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    return CommandExit.OK;
  } catch (error: unknown) {
    stderr.write(`mailbridge status: ${describeError(error)}\n`);
    return exitCodeFor(error);
  }
}
