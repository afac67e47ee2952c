#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { describeError } from '../errors.ts';
import type { MatchFlags } from '../thread/commands.ts';

/**
 * The entry point. procmail and maildrop run `mailbridge thread match` once for every incoming message, and
 * Node's own start-up is most of what that costs, so the entry loads as little as it can:
 * - `thread match` with well-formed options skips even the option parser (commander alone is 15 ms);
 * - other `thread` commands load commander and the thread commands only;
 * - everything else loads the whole program: proxy, OAuth client, logger.
 * Anything unusual about `thread match` (--help, an unknown or missing option) goes the commander way, so
 * help and usage errors read the same as for every other command.
 */
async function main(argv: readonly string[]): Promise<void> {
  const matchFlags = argv[2] === 'thread' && argv[3] === 'match' ? parseMatchFlags(argv.slice(4)) : undefined;
  if (matchFlags) {
    const { runMatch } = await import('./thread-match.ts');
    await runMatch(matchFlags);
    return;
  }
  const { Command } = await import('commander');
  let program: InstanceType<typeof Command>;
  if (argv[2] === 'thread') {
    const { threadCommand } = await import('./thread-command.ts');
    program = new Command('mailbridge').addCommand(threadCommand());
  } else {
    program = (await import('./program.ts')).buildProgram();
  }
  await program.parseAsync(argv);
}

/**
 * The options of `thread match` as thread-command.ts declares them (keep the two alike), or undefined to
 * leave the command line to commander.
 */
function parseMatchFlags(args: readonly string[]): MatchFlags | undefined {
  try {
    const { values } = parseArgs({
      args: [...args],
      options: { list: { type: 'string' }, header: { type: 'string' }, db: { type: 'string' } },
      strict: true,
      allowPositionals: false,
    });
    if (values.list === undefined || values.header === undefined) return undefined;
    return { list: values.list, header: values.header, db: values.db };
  } catch {
    return undefined;
  }
}

main(process.argv).catch((error: unknown) => {
  process.stderr.write(`mailbridge: ${describeError(error)}\n`);
  process.exitCode = 2;
});
