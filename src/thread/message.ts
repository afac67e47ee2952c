/**
 * The header block of one RFC 5322 message, read without changing a byte of it, and one way to change it:
 * insert a field at the end of the block. Everything else about the message (body, encodings, 8-bit text,
 * line endings) is opaque here, so a message always leaves the filter as it came in.
 */

export type LineEnding = '\r\n' | '\n';

export interface HeaderField {
  /** The field name as written (compare case-insensitively, RFC 5322 §1.2.2). */
  name: string;
  /**
   * The unfolded value after the colon (RFC 5322 §2.2.3: each line break before a space or tab removed), as
   * latin1 text so that every byte maps to one character and nothing is lost to decoding.
   */
  value: string;
}

export interface MessageHeader {
  /** The fields in message order, duplicates included; empty when the message has no header block. */
  fields: HeaderField[];
  /**
   * Where a new field can go: the byte offset just after the last header line, that is the start of the
   * empty line that ends the block, or the end of the input. Undefined when the message has no header block.
   */
  insertAt: number | undefined;
  /** The line ending of the last header line, which an inserted field copies. */
  lineEnding: LineEnding;
  /** The input ends inside the last header line (no line ending after it). */
  unterminated: boolean;
}

const LF = 0x0a;
const CR = 0x0d;
// RFC 5322 §3.6.8: field-name = 1*ftext, printable US-ASCII except colon. Whitespace before the colon is the
// obsolete syntax of §4.5, still seen from old software.
const FIELD_LINE = /^([!-9;-~]+)[ \t]*:/;
// The mbox postmark procmail and fetchmail put before the header ("From sender date"); part of the block.
const POSTMARK = 'From ';

/**
 * Reads the header block: from the start of `message` to the first empty line (or the end of the input).
 * A message whose first line is not a header field (nor the mbox postmark) has no header block: empty input,
 * a body without headers, binary garbage. Lines inside the block that are neither fields nor continuations
 * are skipped, as mail software does, rather than ending the block early.
 */
export function parseHeader(message: Buffer): MessageHeader {
  const fields: HeaderField[] = [];
  let lineEnding: LineEnding = '\n';
  let position = 0;
  let insertAt: number | undefined;
  let unterminated = false;
  let current: HeaderField | undefined;
  let first = true;

  while (position < message.length) {
    const newline = message.indexOf(LF, position);
    const next = newline === -1 ? message.length : newline + 1;
    const contentEnd =
      newline === -1
        ? message.length
        : newline > position && message[newline - 1] === CR
          ? newline - 1
          : newline;
    if (contentEnd === position && newline !== -1) break; // the empty line ending the block
    const line = message.toString('latin1', position, contentEnd);

    if (first && line.startsWith(POSTMARK)) {
      current = undefined;
    } else if (line.startsWith(' ') || line.startsWith('\t')) {
      if (first) return noHeader();
      if (current) current.value += line;
    } else {
      const match = FIELD_LINE.exec(line);
      if (match) {
        current = { name: match[1] as string, value: line.slice(match[0].length) };
        fields.push(current);
      } else if (first) {
        return noHeader();
      } else {
        current = undefined;
      }
    }

    first = false;
    insertAt = next;
    unterminated = newline === -1;
    if (newline !== -1) lineEnding = contentEnd < newline ? '\r\n' : '\n';
    position = next;
  }
  return { fields, insertAt, lineEnding, unterminated };
}

function noHeader(): MessageHeader {
  return { fields: [], insertAt: undefined, lineEnding: '\n', unterminated: false };
}

/** The values of every field called `name` (any case), in message order. */
export function fieldValues(header: MessageHeader, name: string): string[] {
  const wanted = name.toLowerCase();
  return header.fields.filter((field) => field.name.toLowerCase() === wanted).map((field) => field.value);
}

/**
 * `message` with `field` (one line, no line ending, e.g. `X-Muted: true`) added as the last header field,
 * ended with the message's own line ending. A message with no header block comes back unchanged: a field put
 * in front of a body would turn the body's first line into part of a header.
 */
export function insertField(message: Buffer, header: MessageHeader, field: string): Buffer {
  if (header.insertAt === undefined) return message;
  const line = header.unterminated ? `${header.lineEnding}${field}` : `${field}${header.lineEnding}`;
  return Buffer.concat([
    message.subarray(0, header.insertAt),
    Buffer.from(line, 'utf8'),
    message.subarray(header.insertAt),
  ]);
}
