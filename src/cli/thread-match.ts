import { homedir } from 'node:os';
import { describeError } from '../errors.ts';
import type { MatchFlags, ThreadIo } from '../thread/commands.ts';

/**
 * `mailbridge thread match`, kept apart from the commander definitions in thread-command.ts: procmail runs it
 * once per message, and the entry point calls it without loading commander (see main.ts).
 */

export function threadIo(): ThreadIo {
  return {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    homedir: homedir(),
  };
}

/** `thread match`, also run by the entry point directly when its options are plain (see main.ts). */
export async function runMatch(options: MatchFlags): Promise<void> {
  let commands: typeof import('../thread/commands.ts');
  try {
    commands = await import('../thread/commands.ts');
  } catch (error: unknown) {
    // Nothing has been read or written: a non-zero exit makes procmail (flag w) keep the message as it was.
    process.stderr.write(`mailbridge thread match: ${describeError(error)}\n`);
    process.exitCode = 75;
    return;
  }
  process.exitCode = await commands.match(options, threadIo());
}
