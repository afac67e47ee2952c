import { ThreadLimits } from './limits.ts';
import { fieldValues, type MessageHeader } from './message.ts';

/**
 * Message-IDs as RFC 5322 §3.6.4 writes them (`<left@right>`, one or more per field, with comments and
 * folding whitespace around them) and as real software writes them (an In-Reply-To phrase around the ID, a
 * client that folded inside the brackets, an ID without brackets). An ID is kept without its brackets; IDs
 * are compared exactly, byte for byte, never as substrings.
 */

// Only the whitespace RFC 5322 folds with. \s would also match U+00A0, which in latin1-decoded text is the
// byte 0xA0 — a continuation byte of many UTF-8 characters.
const FOLDING_WHITESPACE = /[ \t\r\n]+/g;
const SEPARATORS = /[ \t\r\n,]+/;
const EDGE_WHITESPACE = /^[ \t\r\n]+|[ \t\r\n]+$/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this rejects
const INVALID_ID = /[ <>\x00-\x1f\x7f]/;
// Without brackets, only a token shaped like local@domain is taken for an ID.
const BARE_ID = /^[^<>()",;\\[\]@]+@[^<>()",;\\[\]@]+$/;

/**
 * The ID in `text`, or undefined if it is not one: between angle brackets anything without spaces or
 * control characters, without them only local@domain. Surrounding whitespace is ignored.
 */
export function normaliseId(text: string): string | undefined {
  let id = text.replace(EDGE_WHITESPACE, '');
  if (id.startsWith('<') && id.endsWith('>')) id = id.slice(1, -1).replace(FOLDING_WHITESPACE, '');
  else if (!BARE_ID.test(id)) return undefined;
  if (id.length === 0 || id.length > ThreadLimits.idChars || INVALID_ID.test(id)) return undefined;
  return id;
}

/** `<id>`, the form mail headers and the import file use. */
export function formatId(id: string): string {
  return `<${id}>`;
}

/** Every ID in one unfolded field value, in order. */
export function extractIds(value: string): string[] {
  const ids: string[] = [];
  let outside = '';
  let sawBracket = false;
  let index = 0;
  while (index < value.length) {
    const char = value[index];
    if (char === '(') {
      index = skipComment(value, index);
    } else if (char === '"') {
      index = skipQuoted(value, index);
      outside += ' ';
    } else if (char === '<') {
      sawBracket = true;
      const close = value.indexOf('>', index + 1);
      if (close === -1) break; // cut off: a partial ID would only ever match by accident
      const inner = value.slice(index + 1, close);
      // `<junk <id@host>`: an unclosed bracket before the ID is not part of it.
      const id = normaliseId(`<${inner.slice(inner.lastIndexOf('<') + 1)}>`);
      if (id !== undefined) ids.push(id);
      index = close + 1;
    } else {
      outside += char;
      index += 1;
    }
  }
  if (!sawBracket) {
    for (const token of outside.split(SEPARATORS)) {
      const id = normaliseId(token);
      if (id !== undefined) ids.push(id);
    }
  }
  return ids;
}

// RFC 5322 §3.2.2: comments nest and may contain quoted pairs. An unclosed comment runs to the end.
function skipComment(value: string, start: number): number {
  let depth = 0;
  for (let index = start; index < value.length; index += 1) {
    const char = value[index];
    if (char === '\\') index += 1;
    else if (char === '(') depth += 1;
    else if (char === ')' && --depth === 0) return index + 1;
  }
  return value.length;
}

function skipQuoted(value: string, start: number): number {
  for (let index = start + 1; index < value.length; index += 1) {
    const char = value[index];
    if (char === '\\') index += 1;
    else if (char === '"') return index + 1;
  }
  return value.length;
}

export interface ThreadIds {
  /** The message's own Message-ID (more than one only when the message carries several Message-ID fields). */
  own: string[];
  /** Its ancestors from References and In-Reply-To, without its own IDs, oldest first. */
  related: string[];
}

/** The IDs that place a message in a thread. */
export function threadIds(header: MessageHeader): ThreadIds {
  const own = unique(
    fieldValues(header, 'Message-ID').flatMap((value) => extractIds(value).slice(0, 1).map(decode)),
  ).slice(0, ThreadLimits.ownIdsPerMessage);
  const ownSet = new Set(own);
  let related = unique(
    [
      ...fieldValues(header, 'References').flatMap(extractIds),
      ...fieldValues(header, 'In-Reply-To').flatMap(extractIds),
    ].map(decode),
  ).filter((id) => !ownSet.has(id));
  const limit = ThreadLimits.relatedIdsPerMessage;
  if (related.length > limit) related = [related[0] as string, ...related.slice(-(limit - 1))];
  return { own, related };
}

// Header text is read as latin1 (one character per byte); IDs are stored as the UTF-8 they are on the wire,
// so an ID with 8-bit characters matches the same ID given on the command line or in an import file.
function decode(id: string): string {
  return Buffer.from(id, 'latin1').toString('utf8');
}

function unique(ids: string[]): string[] {
  return [...new Set(ids)];
}
