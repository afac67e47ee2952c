import type { Socket } from 'node:net';
import { ErrorCode, MailbridgeError } from '../../errors.ts';
import { Limits } from '../../net/limits.ts';
import { type Line, LineBuffer } from '../../net/line-buffer.ts';

/**
 * The server side of an IMAP session before login: lines in, commands of our own out, with their tagged
 * completion awaited. Lines that answer none of our commands go to `onUnsolicited` (forwarded to the client).
 *
 * After each completion of ours the channel stops reading, so nothing the server sends next is handled
 * before the session decides what comes next (more pre-auth, or becoming a pipe).
 */
export interface Completion {
  status: 'OK' | 'NO' | 'BAD';
  /** Everything after the status word, e.g. `[CAPABILITY …] Logged in`. */
  text: string;
  /** Untagged lines received while the command ran. */
  untagged: string[];
}

interface PendingCommand {
  tag: string | undefined;
  resolve: (completion: Completion) => void;
  reject: (error: unknown) => void;
  onContinuation: ((text: string) => void) | undefined;
  onUntagged: ((line: Line) => void) | undefined;
  untagged: string[];
  timer: NodeJS.Timeout;
}

export class UpstreamChannel {
  private readonly lines = new LineBuffer(Limits.preAuthLineBytes);
  private pending: PendingCommand | undefined;
  private paused = false;
  private nextTag = 1;
  private readonly onData = (chunk: Buffer) => {
    this.lines.push(chunk);
    this.pump();
  };

  constructor(
    private socket: Socket,
    private readonly describe: string,
    private readonly onUnsolicited: (line: Line) => void,
    private readonly onFailure: (error: unknown) => void,
  ) {
    socket.on('data', this.onData);
  }

  get connection(): Socket {
    return this.socket;
  }

  /** The server greeting: the first line it sends. */
  greeting(): Promise<Completion> {
    return this.await(undefined, undefined, undefined);
  }

  /**
   * Sends a command with a tag of our own (never the client's, which could repeat one still in flight) and
   * waits for its completion. Untagged lines meanwhile are collected, and passed to `onUntagged` if given.
   */
  command(
    text: string,
    handlers: { onContinuation?: (text: string) => void; onUntagged?: (line: Line) => void } = {},
  ): Promise<Completion> {
    const tag = `mb${this.nextTag++}`;
    const done = this.await(tag, handlers.onContinuation, handlers.onUntagged);
    this.socket.write(`${tag} ${text}\r\n`);
    return done;
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Reads on after a completion. */
  resume(): void {
    this.paused = false;
    this.socket.resume();
    this.pump();
  }

  /**
   * Swaps in the TLS socket after STARTTLS. Whatever the server sent in clear after its OK is discarded:
   * it was not protected, and honouring it is the STARTTLS injection flaw (RFC 9051 §11.1, CVE-2011-0411).
   */
  replaceSocket(socket: Socket): void {
    this.socket.off('data', this.onData);
    this.lines.drain();
    this.socket = socket;
    socket.on('data', this.onData);
    this.resume();
  }

  /** Stops line handling for good; returns the socket and the bytes received but not yet handled. */
  handOver(): { socket: Socket; rest: Buffer } {
    this.socket.off('data', this.onData);
    return { socket: this.socket, rest: this.lines.drain() };
  }

  /** The upstream connection ended or failed: a command in flight fails. */
  fail(error: unknown): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
  }

  private await(
    tag: string | undefined,
    onContinuation: ((text: string) => void) | undefined,
    onUntagged: ((line: Line) => void) | undefined,
  ): Promise<Completion> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        const what = tag ? 'an answer' : 'a greeting';
        reject(
          new MailbridgeError(
            ErrorCode.UPSTREAM_PROTOCOL,
            `${this.describe} sent no ${what} within ${Limits.upstreamReplyMs / 1000} s`,
          ),
        );
      }, Limits.upstreamReplyMs);
      this.pending = { tag, resolve, reject, onContinuation, onUntagged, untagged: [], timer };
      this.resume();
    });
  }

  private pump(): void {
    try {
      while (!this.paused) {
        const line = this.lines.nextLine();
        if (line === undefined) return;
        this.handle(line);
      }
    } catch (error: unknown) {
      this.onFailure(
        new MailbridgeError(
          ErrorCode.UPSTREAM_PROTOCOL,
          `${this.describe} sent an unusable line: ${(error as Error).message}`,
        ),
      );
    }
  }

  private handle(line: Line): void {
    const pending = this.pending;
    if (!pending) {
      this.onUnsolicited(line);
      return;
    }
    if (pending.tag === undefined) {
      // The greeting: `* OK …`, `* PREAUTH …` or `* BYE …`.
      const greeting = /^\* (OK|PREAUTH|BYE)\b ?(.*)$/i.exec(line.text);
      const status = greeting?.[1]?.toUpperCase() === 'OK' ? 'OK' : 'NO';
      this.complete(pending, { status, text: line.text, untagged: [] });
      return;
    }
    if (line.text.startsWith('+') && pending.onContinuation) {
      pending.onContinuation(line.text.replace(/^\+ ?/, ''));
      return;
    }
    if (line.text.startsWith(`${pending.tag} `)) {
      const match = /^\S+ (OK|NO|BAD)\b ?(.*)$/i.exec(line.text);
      const status = (match?.[1]?.toUpperCase() ?? 'BAD') as Completion['status'];
      this.complete(pending, { status, text: match?.[2] ?? line.text, untagged: pending.untagged });
      return;
    }
    pending.untagged.push(line.text);
    pending.onUntagged?.(line);
  }

  private complete(pending: PendingCommand, completion: Completion): void {
    clearTimeout(pending.timer);
    this.pending = undefined;
    this.paused = true;
    this.socket.pause();
    pending.resolve(completion);
  }
}
