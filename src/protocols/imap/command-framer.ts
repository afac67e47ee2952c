import { LineBuffer } from '../../net/line-buffer.ts';
import { LITERAL_MARKER } from './arguments.ts';

/**
 * Frames what an IMAP client sends before login into lines and literals (RFC 9051 §4.3, RFC 7888): after a
 * line ending in `{n}` or `{n+}` the next n bytes are literal data, whatever they contain.
 */
export type ClientFrame =
  | { kind: 'line'; raw: Buffer; text: string; literal: LiteralAnnouncement | undefined }
  | { kind: 'literal'; data: Buffer; remaining: number };

export interface LiteralAnnouncement {
  size: number;
  /** `{n}` waits for a continuation request; `{n+}` (LITERAL+) does not. */
  synchronising: boolean;
}

export class LiteralTooLargeError extends Error {
  constructor(
    readonly announcement: LiteralAnnouncement,
    readonly limit: number,
    readonly line: string,
  ) {
    super(`literal of ${announcement.size} bytes is larger than the ${limit} bytes accepted before login`);
    this.name = 'LiteralTooLargeError';
  }
}

export class CommandFramer {
  private readonly lines: LineBuffer;
  private literalRemaining = 0;
  private emptyLiteralDue = false;

  constructor(
    maxLineBytes: number,
    private readonly maxLiteralBytes: number,
  ) {
    this.lines = new LineBuffer(maxLineBytes);
  }

  push(chunk: Buffer): void {
    this.lines.push(chunk);
  }

  /**
   * The next frame, or undefined until more bytes arrive. Literal data is returned as it arrives.
   * Throws LineTooLongError, or LiteralTooLargeError (the literal is then not expected: see its handling).
   */
  next(): ClientFrame | undefined {
    if (this.emptyLiteralDue) {
      this.emptyLiteralDue = false;
      return { kind: 'literal', data: Buffer.alloc(0), remaining: 0 };
    }
    if (this.literalRemaining > 0) {
      if (this.lines.length === 0) return undefined;
      const data = this.lines.take(this.literalRemaining);
      this.literalRemaining -= data.length;
      return { kind: 'literal', data, remaining: this.literalRemaining };
    }
    const line = this.lines.nextLine();
    if (!line) return undefined;
    const marker = LITERAL_MARKER.exec(line.text);
    const literal = marker ? { size: Number(marker[1]), synchronising: marker[2] !== '+' } : undefined;
    if (literal && literal.size > this.maxLiteralBytes)
      throw new LiteralTooLargeError(literal, this.maxLiteralBytes, line.text);
    this.literalRemaining = literal?.size ?? 0;
    // A {0} literal has no bytes to wait for, but it is still an argument: an empty literal frame follows.
    if (literal?.size === 0) this.emptyLiteralDue = true;
    return { kind: 'line', raw: line.raw, text: line.text, literal };
  }

  /** Everything received and not yet framed; used when the session becomes a pipe. */
  drain(): Buffer {
    this.literalRemaining = 0;
    this.emptyLiteralDue = false;
    return this.lines.drain();
  }
}
