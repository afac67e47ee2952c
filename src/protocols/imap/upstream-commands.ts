import type { Line } from '../../net/line-buffer.ts';
import type { ServerConnection } from '../../net/server-connection.ts';

/**
 * IMAP exchanges of mailbridge's own with the server (RFC 9051 §2.2): the greeting, and tagged commands
 * whose completion is awaited, with continuation requests and untagged data handed to the caller.
 */
export interface Completion {
  status: 'OK' | 'NO' | 'BAD';
  /** Everything after the status word, e.g. `[CAPABILITY …] Logged in`; the whole line for a greeting. */
  text: string;
  /** Untagged lines received while the command ran. */
  untagged: string[];
}

export interface CommandHandlers {
  onContinuation?: (text: string) => void;
  onUntagged?: (line: Line) => void;
}

/** `* OK …` is a usable greeting; `* PREAUTH` and `* BYE` are not, for a proxy that must log in itself. */
export function readGreeting(server: ServerConnection): Promise<Completion> {
  return server.exchange(undefined, (line) => {
    const status = /^\* OK\b/i.test(line.text) ? 'OK' : 'NO';
    return { status, text: line.text, untagged: [] } satisfies Completion;
  });
}

/**
 * Runs one command under `tag`, a tag of mailbridge's own: never the client's, which could repeat one still
 * in flight and so take the completion of its own command for ours.
 */
export function runCommand(
  server: ServerConnection,
  tag: string,
  command: string,
  handlers: CommandHandlers = {},
): Promise<Completion> {
  const untagged: string[] = [];
  return server.exchange(`${tag} ${command}\r\n`, (line) => {
    if (line.text.startsWith('+') && handlers.onContinuation) {
      handlers.onContinuation(line.text.replace(/^\+ ?/, ''));
      return undefined;
    }
    if (line.text.startsWith(`${tag} `)) {
      const match = /^\S+ (OK|NO|BAD)\b ?(.*)$/i.exec(line.text);
      const status = (match?.[1]?.toUpperCase() ?? 'BAD') as Completion['status'];
      return { status, text: match?.[2] ?? line.text, untagged } satisfies Completion;
    }
    untagged.push(line.text);
    handlers.onUntagged?.(line);
    return undefined;
  });
}
