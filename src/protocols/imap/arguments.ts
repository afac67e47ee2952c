/**
 * The astring arguments of LOGIN (RFC 9051 §6.2.3, §9 `astring`): atoms, quoted strings and literals.
 * Literal contents arrive separately from the text around them, so a command is given as its parts in order:
 * text segments (each ending where a `{n}` literal marker ended) and the literal bytes themselves.
 */
export type CommandPart = { kind: 'text'; text: string } | { kind: 'literal'; data: Buffer };

export class ArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArgumentError';
  }
}

/** A literal marker `{n}` or `{n+}` (RFC 7888) at the end of a line. */
export const LITERAL_MARKER = /\{(\d{1,10})(\+?)\}$/;

/**
 * Parses astrings from the parts after the command verb. Text is latin1 (one char a byte); strings are
 * returned decoded as UTF-8, since RFC 9051 §6.2.3 allows UTF-8 in LOGIN arguments of modern clients.
 */
export function parseAstrings(parts: readonly CommandPart[]): string[] {
  const values: string[] = [];
  for (const part of parts) {
    if (part.kind === 'literal') {
      values.push(part.data.toString('utf8'));
      continue;
    }
    let text = part.text.replace(LITERAL_MARKER, '');
    while (text.length > 0) {
      if (text.startsWith(' ')) {
        text = text.slice(1);
        continue;
      }
      if (text.startsWith('"')) {
        const { value, rest } = readQuoted(text);
        values.push(fromLatin1(value));
        text = rest;
        continue;
      }
      const end = text.indexOf(' ');
      const atom = end === -1 ? text : text.slice(0, end);
      if (/["{}\\]/.test(atom)) throw new ArgumentError(`unexpected character in '${atom}'`);
      values.push(fromLatin1(atom));
      text = end === -1 ? '' : text.slice(end);
    }
  }
  return values;
}

function readQuoted(text: string): { value: string; rest: string } {
  let value = '';
  for (let i = 1; i < text.length; i += 1) {
    const char = text[i];
    if (char === '\\') {
      const escaped = text[i + 1];
      if (escaped !== '"' && escaped !== '\\')
        throw new ArgumentError('a quoted string escapes only \\ and "');
      value += escaped;
      i += 1;
    } else if (char === '"') {
      return { value, rest: text.slice(i + 1) };
    } else {
      value += char;
    }
  }
  throw new ArgumentError('a quoted string is not closed');
}

function fromLatin1(text: string): string {
  return Buffer.from(text, 'latin1').toString('utf8');
}

/**
 * LOGIN's user name and password. Beyond the standard two astrings this accepts what email-oauth2-proxy
 * accepts, because clients in the field send it: unquoted passwords containing spaces (the rest of the line
 * is the password) and a single literal holding `user password`.
 */
export function loginCredentials(values: readonly string[]): { username: string; password: string } {
  if (values.length === 1) {
    const [only = ''] = values;
    const space = only.indexOf(' ');
    if (space > 0) return { username: only.slice(0, space), password: only.slice(space + 1) };
    throw new ArgumentError('LOGIN needs a user name and a password');
  }
  if (values.length < 2) throw new ArgumentError('LOGIN needs a user name and a password');
  const [username = '', ...rest] = values;
  return { username, password: rest.join(' ') };
}
