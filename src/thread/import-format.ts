import { formatId, normaliseId } from './message-id.ts';

/**
 * The flat file of the shell scripts mailbridge replaces, and what `thread list` prints: one thread per line,
 * its Message-IDs separated by spaces, with or without angle brackets.
 */

export interface ParsedThreadFile {
  threads: string[][];
  /** Line numbers (from 1) with text that is not an ID; their IDs are still taken. */
  badLines: number[];
}

export function parseThreadFile(text: string): ParsedThreadFile {
  const threads: string[][] = [];
  const badLines: number[] = [];
  text.split(/\r?\n/).forEach((line, index) => {
    const tokens = line.split(/[ \t]+/).filter((token) => token.length > 0);
    if (tokens.length === 0 || tokens[0]?.startsWith('#')) return;
    const ids = tokens.map((token) => normaliseId(token));
    if (ids.includes(undefined)) badLines.push(index + 1);
    const valid = [...new Set(ids.filter((id): id is string => id !== undefined))];
    if (valid.length > 0) threads.push(valid);
  });
  return { threads, badLines };
}

export function formatThreadLine(ids: readonly string[]): string {
  return ids.map(formatId).join(' ');
}
