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

const EMPTY = Buffer.alloc(0);

/**
 * Appending copies into spare room at the end (capacity doubles when it runs out) and each byte is searched
 * for LF once, so a line trickled in one byte per packet costs O(n), not the O(n²) of concatenating and
 * rescanning at every packet: 64 KiB sent a byte at a time would otherwise copy about 2 GB.
 *
 * Bytes handed out (a line's `raw`, `take`, `drain`) are never written again: callers pass them to
 * socket.write(), which may hold on to them. Only room past the last byte received is ever written into.
 */
export class LineBuffer {
  private storage: Buffer = EMPTY;
  private start = 0;
  private end = 0;
  /** No LF between `start` and this offset: the search for the next line resumes here. */
  private searched = 0;

  constructor(private readonly maxLineBytes: number) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.start === this.end) {
      // Nothing buffered (the usual case: whole lines in each packet): use the chunk itself, no copy.
      this.storage = chunk;
      this.start = 0;
      this.end = chunk.length;
      this.searched = 0;
      return;
    }
    if (this.end + chunk.length > this.storage.length) this.grow(chunk.length);
    chunk.copy(this.storage, this.end);
    this.end += chunk.length;
  }

  get length(): number {
    return this.end - this.start;
  }

  /** The next complete line, or undefined; throws LineTooLongError when a line exceeds the limit. */
  nextLine(): Line | undefined {
    const from = Math.max(this.searched, this.start);
    const found = this.storage.subarray(from, this.end).indexOf(0x0a);
    if (found === -1) {
      this.searched = this.end;
      if (this.length > this.maxLineBytes) throw new LineTooLongError(this.maxLineBytes);
      return undefined;
    }
    const lineEnd = from + found + 1;
    if (lineEnd - this.start > this.maxLineBytes + 2) throw new LineTooLongError(this.maxLineBytes);
    const raw = this.storage.subarray(this.start, lineEnd);
    this.consumeTo(lineEnd);
    const end = raw.length - 1;
    const textEnd = end > 0 && raw[end - 1] === 0x0d ? end - 1 : end;
    return { raw, text: raw.toString('latin1', 0, textEnd) };
  }

  /** Up to `count` raw bytes (for literals), possibly fewer when not all have arrived. */
  take(count: number): Buffer {
    const taken = this.storage.subarray(this.start, this.start + Math.min(count, this.length));
    this.consumeTo(this.start + taken.length);
    return taken;
  }

  /** Everything not yet consumed; the buffer is empty afterwards. */
  drain(): Buffer {
    const rest = this.storage.subarray(this.start, this.end);
    this.consumeTo(this.end);
    return rest;
  }

  private consumeTo(offset: number): void {
    this.start = offset;
    this.searched = Math.max(this.searched, offset);
    if (this.start === this.end) {
      // Let go of the storage: what was handed out keeps only its own part alive.
      this.storage = EMPTY;
      this.start = 0;
      this.end = 0;
      this.searched = 0;
    }
  }

  /** Moves the unconsumed bytes to new, larger storage; the old one stays as it is for what was handed out. */
  private grow(extra: number): void {
    const live = this.length;
    const capacity = Math.max(live + extra, live * 2, 1024);
    const next = Buffer.allocUnsafe(capacity);
    this.storage.copy(next, 0, this.start, this.end);
    this.searched -= this.start;
    this.storage = next;
    this.start = 0;
    this.end = live;
  }
}
