import { Command } from 'commander';
import { ConfigStore } from '../config/store.ts';
import { formatListener, reviewConfig } from '../doctor/config-review.ts';
import { describeError } from '../errors.ts';
import { silentLogger } from '../log.ts';
import { addFileOptions, CommandExit, exitCodeFor, type FileFlags } from './command-support.ts';

/**
 * `mailbridge check-config`: reads the configuration exactly as `serve` would, then says what will listen
 * where, which accounts exist, and what looks wrong. Exit 2 when `serve` would refuse the file or a login
 * could never work; warnings alone leave the exit status 0.
 */
export function checkConfigCommand(): Command {
  const command = new Command('check-config').description(
    'validate the configuration file and show what will listen where and which accounts exist',
  );
  addFileOptions(command);
  command.action(async (flags: FileFlags) => {
    process.exitCode = await runCheckConfig(flags, process.stdout, process.stderr);
  });
  return command;
}

export async function runCheckConfig(
  flags: FileFlags,
  stdout: NodeJS.WritableStream,
  stderr: NodeJS.WritableStream,
): Promise<number> {
  let store: ConfigStore;
  try {
    store = await ConfigStore.load({
      configPath: flags.configFile,
      cachePath: flags.cacheStore,
      logger: silentLogger(),
    });
  } catch (error: unknown) {
    // ConfigStore's messages already name the file, the line and the problem.
    stderr.write(`mailbridge check-config: ${describeError(error)}\n`);
    return exitCodeFor(error);
  }
  const review = await reviewConfig(store);
  const lines = [`${review.configFile}: read`];
  if (review.cacheFile !== review.configFile) lines.push(`token cache: ${review.cacheFile}`);
  lines.push('', 'listeners:');
  lines.push(
    ...(review.listeners.length === 0 ? ['  none'] : review.listeners.map((l) => `  ${formatListener(l)}`)),
  );
  lines.push('', 'accounts:');
  if (review.accounts.length === 0) lines.push('  none');
  for (const account of review.accounts) {
    const kind = account.kind === 'catch-all' ? ' (catch-all)' : '';
    const how = account.problem ? 'unusable (see below)' : `${account.flow} via ${account.tokenHost}`;
    lines.push(`  ${account.section}${kind}: ${how}`);
  }
  const errors = review.findings.filter((finding) => finding.severity === 'error');
  const warnings = review.findings.filter((finding) => finding.severity === 'warning');
  const format = (finding: (typeof review.findings)[number]) =>
    `  ${finding.where ? `[${finding.where}] ` : ''}${finding.message}`;
  if (warnings.length > 0) lines.push('', 'warnings:', ...warnings.map(format));
  if (errors.length > 0) lines.push('', 'errors:', ...errors.map(format));
  lines.push(
    '',
    errors.length > 0 ? `${errors.length} error(s): mailbridge cannot use this file as it is` : 'OK',
  );
  stdout.write(`${lines.join('\n')}\n`);
  if (errors.length > 0) {
    stderr.write(
      `mailbridge check-config: ${review.configFile}: ${errors.length} error(s); the first: ${format(errors[0] as (typeof errors)[number]).trim()}\n`,
    );
    return CommandExit.CONFIG;
  }
  return CommandExit.OK;
}
