import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ErrorCode, MailbridgeError } from '../errors.ts';
import { Limits } from '../net/limits.ts';
import { LineBuffer, LineTooLongError } from '../net/line-buffer.ts';

/**
 * The doctor's side of a conversation with a mail server: send a line, read lines, each read bounded by the
 * doctor's own timeout (shorter than the proxy's: a person is waiting at the terminal), and STARTTLS with the
 * plaintext received after the go-ahead thrown away, as the proxy does.
 */
export class DoctorTimeoutError extends MailbridgeError {
  constructor(
    readonly waitingFor: string,
    readonly timeoutMs: number,
    server: string,
  ) {
    super(ErrorCode.UPSTREAM_PROTOCOL, `${server} sent no ${waitingFor} within ${timeoutMs / 1000} s`);
    this.name = 'DoctorTimeoutError';
  }
}

export class LineConnection {
  private readonly lines = new LineBuffer(Limits.preAuthLineBytes);
  private waiter: (() => void) | undefined;
  private ended: Error | undefined;
  private readonly onData = (chunk: Buffer) => {
    this.lines.push(chunk);
    this.wake();
  };
  private readonly onEnd = () => {
    this.ended ??= new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `${this.name} closed the connection`);
    this.wake();
  };
  private readonly onError = (error: Error) => {
    this.ended ??= new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `${this.name}: ${error.message}`, {
      cause: error,
    });
    this.wake();
  };

  constructor(
    private socket: Socket,
    /** `host:port`, for messages. */
    readonly name: string,
    readonly timeoutMs: number,
  ) {
    this.listen(socket);
  }

  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }

  get tlsSocket(): TLSSocket | undefined {
    return 'getPeerCertificate' in this.socket ? (this.socket as TLSSocket) : undefined;
  }

  send(line: string): void {
    this.socket.write(`${line}\r\n`);
  }

  /** The next line, without its terminator; `waitingFor` names it in the timeout message ("greeting"). */
  async readLine(waitingFor = 'reply'): Promise<string> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      let line: ReturnType<LineBuffer['nextLine']>;
      try {
        line = this.lines.nextLine();
      } catch (error: unknown) {
        const reason = error instanceof LineTooLongError ? error.message : String(error);
        throw new MailbridgeError(ErrorCode.UPSTREAM_PROTOCOL, `${this.name} sent a ${reason}`);
      }
      if (line !== undefined) return line.text;
      if (this.ended) throw this.ended;
      const left = deadline - Date.now();
      if (left <= 0) throw new DoctorTimeoutError(waitingFor, this.timeoutMs, this.name);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }

  /**
   * Replaces the socket with its TLS upgrade. Anything the server sent in clear after its go-ahead is
   * discarded: honouring it is the STARTTLS injection flaw (RFC 3207 §6).
   */
  async upgrade(start: (socket: Socket) => Promise<TLSSocket>): Promise<TLSSocket> {
    this.unlisten(this.socket);
    this.lines.drain();
    const secure = await start(this.socket);
    this.socket = secure;
    this.listen(secure);
    return secure;
  }

  close(): void {
    this.unlisten(this.socket);
    this.socket.on('error', () => undefined);
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  private unlisten(socket: Socket): void {
    socket.off('data', this.onData);
    socket.off('end', this.onEnd);
    socket.off('close', this.onEnd);
    socket.off('error', this.onError);
  }

  private wake(): void {
    this.waiter?.();
  }
}
