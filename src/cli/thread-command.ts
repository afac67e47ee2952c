import { Command } from 'commander';
import { runMatch, threadIo } from './thread-match.ts';

/**
 * `mailbridge thread …`: the mute/watch filter for procmail and maildrop. The actions import the thread
 * modules (and SQLite's native module) only when they run: the proxy and `--help` never load them, and
 * `match` has read the message before SQLite loads, so a broken installation still lets the message through.
 */

const DB_HELP =
  'thread database (default: $XDG_DATA_HOME/mailbridge/threads.sqlite, or ~/.local/share/mailbridge/threads.sqlite)';
const LIST_HELP = 'the list: muted, watched, or any name';

const load = () => import('../thread/commands.ts');

export function threadCommand(): Command {
  const thread = new Command('thread')
    .description('mute or watch mail threads: a filter for procmail and maildrop, fed from mutt')
    .addHelpText(
      'after',
      `
Examples:
  mutt:      macro index M "<pipe-message>mailbridge thread add --list muted<enter>"
  procmail:  :0 fhw
             | mailbridge thread match --list muted --header "X-Muted: true"
  maildrop:  xfilter "mailbridge thread match --list muted --header 'X-Muted: true'"`,
    );

  thread
    .command('match')
    .description(
      'copy the message on stdin to stdout, adding --header when it belongs to a thread in the list; ' +
        'always exits 0 and never loses the message',
    )
    .requiredOption('--list <name>', LIST_HELP)
    .requiredOption(
      '--header <field>',
      "the header field to add to a matching message, such as 'X-Muted: true'",
    )
    .option('--db <path>', DB_HELP)
    .action(runMatch);

  thread
    .command('add')
    .description("record the thread of the message on stdin (mutt's pipe-message), or of the IDs given")
    .argument('[ids...]', 'Message-IDs, with or without angle brackets, instead of a message')
    .requiredOption('--list <name>', LIST_HELP)
    .option('--db <path>', DB_HELP)
    .action(async (ids: string[], options: { list: string; db?: string }) => {
      process.exitCode = await (await load()).add(options, ids, threadIo());
    });

  thread
    .command('remove')
    .description('remove the thread of the message on stdin, or of the IDs given, from the list (unmute)')
    .argument('[ids...]', 'Message-IDs, with or without angle brackets, instead of a message')
    .requiredOption('--list <name>', LIST_HELP)
    .option('--db <path>', DB_HELP)
    .action(async (ids: string[], options: { list: string; db?: string }) => {
      process.exitCode = await (await load()).remove(options, ids, threadIo());
    });

  thread
    .command('list')
    .description(
      "print a list's threads, one per line as import reads them; without --list, a summary of all lists",
    )
    .option('--list <name>', LIST_HELP)
    .option('--db <path>', DB_HELP)
    .action(async (options: { list?: string; db?: string }) => {
      process.exitCode = await (await load()).list(options, threadIo());
    });

  thread
    .command('prune')
    .description('delete threads no message was added to or matched for the given time')
    .requiredOption('--older-than <age>', 'a whole number and h, d, w or y, such as 180d')
    .option('--list <name>', 'only this list (default: all lists)')
    .option('--db <path>', DB_HELP)
    .action(async (options: { olderThan: string; list?: string; db?: string }) => {
      process.exitCode = await (await load()).prune(options, threadIo());
    });

  thread
    .command('import')
    .description(
      'add the threads of FILE: one thread per line, Message-IDs separated by spaces (- for stdin)',
    )
    .argument('<file>', 'the file to import')
    .requiredOption('--list <name>', LIST_HELP)
    .option('--db <path>', DB_HELP)
    .action(async (file: string, options: { list: string; db?: string }) => {
      process.exitCode = await (await load()).importFile(options, file, threadIo());
    });

  return thread;
}
