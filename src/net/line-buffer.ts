/**
 * Splits a byte stream into CRLF-terminated lines without copying more than needed, and hands back whatever
 * is left when a session stops parsing (so bytes pipelined past the last parsed line are never lost).
 * A bare LF is accepted as a terminator, as most servers do; the line keeps its original terminator in `raw`.
 */
export interface Line {
  /** The line with its terminator, byte-exact, for forwarding. */
  raw: Buffer;
  /** The line without its terminator, decoded as latin1 so every byte maps to one character. */
  text: string;
}

export class LineTooLongError extends Error {
  constructor(readonly limit: number) {
    super(`line longer than ${limit} bytes`);
    this.name = 'LineTooLongError';
  }
}

export class LineBuffer {
  private buffer: Buffer = Buffer.alloc(0);

  constructor(private readonly maxLineBytes: number) {}

  push(chunk: Buffer): void {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
  }

  get length(): number {
    return this.buffer.length;
  }

  /** The next complete line, or undefined; throws LineTooLongError when a line exceeds the limit. */
  nextLine(): Line | undefined {
    const end = this.buffer.indexOf(0x0a);
    if (end === -1) {
      if (this.buffer.length > this.maxLineBytes) throw new LineTooLongError(this.maxLineBytes);
      return undefined;
    }
    if (end + 1 > this.maxLineBytes + 2) throw new LineTooLongError(this.maxLineBytes);
    const raw = this.buffer.subarray(0, end + 1);
    this.buffer = this.buffer.subarray(end + 1);
    const textEnd = end > 0 && raw[end - 1] === 0x0d ? end - 1 : end;
    return { raw, text: raw.toString('latin1', 0, textEnd) };
  }

  /** Up to `count` raw bytes (for literals), possibly fewer when not all have arrived. */
  take(count: number): Buffer {
    const taken = this.buffer.subarray(0, count);
    this.buffer = this.buffer.subarray(taken.length);
    return taken;
  }

  /** Everything not yet consumed; the buffer is empty afterwards. */
  drain(): Buffer {
    const rest = this.buffer;
    this.buffer = Buffer.alloc(0);
    return rest;
  }
}
