#!/usr/bin/env node
import { Command } from 'commander';
import { describeError } from '../errors.ts';
import { threadCommand } from './thread-command.ts';

/**
 * The entry point. procmail and maildrop run `mailbridge thread match` once for every incoming message, so
 * that command is parsed on its own, without loading the proxy, the OAuth client and the logger every other
 * command needs (about 120 ms of each message); everything else goes through the whole program.
 */
async function program(argv: readonly string[]): Promise<Command> {
  if (argv[2] === 'thread') return new Command('mailbridge').addCommand(threadCommand());
  const { buildProgram } = await import('./program.ts');
  return buildProgram();
}

program(process.argv)
  .then((command) => command.parseAsync(process.argv))
  .catch((error: unknown) => {
    process.stderr.write(`mailbridge: ${describeError(error)}\n`);
    process.exitCode = 2;
  });
