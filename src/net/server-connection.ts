import type { Socket } from 'node:net';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { Limits } from './limits.ts';
import { type Line, LineBuffer, LineTooLongError } from './line-buffer.ts';

/**
 * The mail server's side of a session before login, for every protocol: lines in, and exchanges of ours —
 * send a command, hand each reply line to a collector until it says the reply is complete. Lines that belong
 * to no exchange of ours go to `onUnsolicited` (they answer the client's own commands).
 *
 * After each completed exchange reading stops, so nothing the server sends next is handled before the
 * session decides what comes next (more commands, TLS, or becoming a pipe).
 */
export type Collector<T> = (line: Line) => T | undefined;

interface PendingExchange {
  collect: Collector<unknown>;
  resolve: (result: unknown) => void;
  reject: (error: unknown) => void;
  timer: NodeJS.Timeout;
}

export class ServerConnection {
  private readonly lines = new LineBuffer(Limits.preAuthLineBytes);
  private pending: PendingExchange | undefined;
  private paused = false;
  private readonly onData = (chunk: Buffer) => {
    this.lines.push(chunk);
    this.pump();
  };

  constructor(
    private socket: Socket,
    /** `host:port`, for messages. */
    readonly name: string,
    private readonly onUnsolicited: (line: Line) => void,
    private readonly onFailure: (error: unknown) => void,
  ) {
    socket.on('data', this.onData);
  }

  get connection(): Socket {
    return this.socket;
  }

  /** Sends `command` (none to await a greeting) and resolves with what `collect` makes of the reply. */
  exchange<T>(command: string | Buffer | undefined, collect: Collector<T>): Promise<T> {
    if (this.socket.destroyed) {
      return Promise.reject(
        new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `the connection to ${this.name} is closed`),
      );
    }
    const done = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending?.timer === timer) this.pending = undefined;
        reject(
          new MailbridgeError(
            ErrorCode.UPSTREAM_PROTOCOL,
            `${this.name} did not answer ${command === undefined ? 'with a greeting' : 'a command'} within ${Limits.upstreamReplyMs / 1000} s`,
          ),
        );
      }, Limits.upstreamReplyMs);
      this.pending = { collect, resolve: resolve as (result: unknown) => void, reject, timer };
    });
    if (command !== undefined) this.socket.write(command);
    this.resume();
    return done;
  }

  /** False when the socket's buffer is full: the caller should wait for 'drain' before writing more. */
  write(data: string | Buffer): boolean {
    return this.socket.write(data);
  }

  /** Reads on after an exchange completed. */
  resume(): void {
    this.paused = false;
    this.socket.resume();
    this.pump();
  }

  /**
   * Swaps in the TLS socket after STARTTLS. Whatever the server sent in clear after its go-ahead is discarded:
   * it was not protected, and honouring it is the STARTTLS injection flaw (RFC 3207 §6, CVE-2011-0411).
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

  /** The connection ended or failed: an exchange in flight fails with `error`. */
  fail(error: unknown): void {
    const pending = this.pending;
    this.pending = undefined;
    if (!pending) return;
    clearTimeout(pending.timer);
    pending.reject(error);
  }

  private pump(): void {
    while (!this.paused) {
      let line: Line | undefined;
      try {
        line = this.lines.nextLine();
      } catch (error: unknown) {
        const reason = error instanceof LineTooLongError ? error.message : String(error);
        this.onFailure(new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `${this.name} sent a ${reason}`));
        return;
      }
      if (line === undefined) return;
      this.handle(line);
    }
  }

  private handle(line: Line): void {
    const pending = this.pending;
    if (!pending) {
      this.onUnsolicited(line);
      return;
    }
    let result: unknown;
    try {
      result = pending.collect(line);
    } catch (error: unknown) {
      clearTimeout(pending.timer);
      this.pending = undefined;
      pending.reject(error);
      return;
    }
    if (result === undefined) return;
    clearTimeout(pending.timer);
    this.pending = undefined;
    this.paused = true;
    this.socket.pause();
    pending.resolve(result);
  }
}
