import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { authoriseCommand } from './authorise-command.ts';
import { checkConfigCommand } from './check-config-command.ts';
import { doctorCommand } from './doctor-command.ts';
import { initCommand } from './init-command.ts';
import { type ServeFlags, serve } from './serve.ts';
import { statusCommand } from './status-command.ts';
import { threadCommand } from './thread-command.ts';
import { tokenCommand } from './token-command.ts';

/**
 * The whole command line. `serve` is the default command and takes email-oauth2-proxy's flags as they are,
 * so an existing service definition keeps working with only the program name changed.
 */
export function buildProgram(): Command {
  const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };

  const program = new Command('mailbridge')
    .description('Local IMAP proxy that turns plain logins into OAuth 2.0 (XOAUTH2) logins upstream')
    .version(`mailbridge ${version}`, '--version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help');

  const serveCommand = program
    .command('serve', { isDefault: true })
    .description('run the proxy (the default command)')
    .option('--config-file <path>', 'configuration file (email-oauth2-proxy format)', 'emailproxy.config')
    .option('--cache-store <path>', 'keep cached tokens in this file instead of the configuration file')
    .option('--no-gui', 'accepted for compatibility; mailbridge never shows a GUI')
    .option(
      '--external-auth',
      'authorise accounts in this terminal: open the printed URL, paste the redirect URL back',
    )
    .option(
      '--local-server-auth',
      'catch the authorisation redirect with a local web server on the redirect_uri port',
    )
    .option('--log-file <path>', 'append logs to this file instead of standard error')
    .option('--log-format <format>', 'log format: text or json', 'text')
    .option('--debug', 'log protocol traffic (credentials removed) and more detail')
    .option('--web-console <address>', 'serve the local web console on ADDRESS, e.g. 127.0.0.1:8025')
    .action(async (options: ServeFlags) => {
      process.exitCode = await serve(options);
    });

  program.addCommand(threadCommand());

  program.addCommand(authoriseCommand());

  program.addCommand(tokenCommand());
  program.addCommand(statusCommand());
  program.addCommand(checkConfigCommand());
  program.addCommand(doctorCommand());
  program.addCommand(initCommand());

  // `mailbridge --help` shows the proxy's flags too, as email-oauth2-proxy's --help does.
  program.addHelpText('after', () => `\nmailbridge serve (the default):\n${serveCommand.helpInformation()}`);

  return program;
}
