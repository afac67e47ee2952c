import net from 'node:net';
import tls from 'node:tls';

/**
 * The benchmark's own SMTP client (RFC 5321) on a raw socket, used both directly against Dovecot's submissions
 * port and through mailbridge: replies are read line by line, the message goes out as one write.
 */
export interface SmtpConnectOptions {
  host: string;
  port: number;
  tls?: { ca: Buffer };
  timeoutMs?: number;
}

export interface SmtpReply {
  code: number;
  text: string;
}

const DEFAULT_TIMEOUT_MS = 120_000;

export class SmtpClient {
  private buffered = '';
  private waiter: { resolve: (reply: SmtpReply) => void; reject: (error: Error) => void } | undefined;
  private readonly replies: SmtpReply[] = [];
  private failure: Error | undefined;

  private constructor(
    readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => this.receive(text));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static async connect(options: SmtpConnectOptions): Promise<SmtpClient> {
    const socket = options.tls
      ? tls.connect({ host: options.host, port: options.port, ca: options.tls.ca })
      : net.connect({ host: options.host, port: options.port });
    socket.setNoDelay(true);
    const client = new SmtpClient(socket, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    await client.expect(220);
    return client;
  }

  /** Sends a command line (or nothing) and waits for a reply with the expected code. */
  async send(line: string | undefined, expected: number): Promise<SmtpReply> {
    if (line !== undefined) this.socket.write(`${line}\r\n`);
    return this.expect(expected);
  }

  /**
   * DATA with `message` (CRLF line ends, no line starting with a dot, ending in CRLF): resolves with the
   * milliseconds from the first byte of the message written to the server's 250.
   */
  async data(message: Buffer): Promise<number> {
    await this.send('DATA', 354);
    const started = performance.now();
    this.socket.write(message);
    this.socket.write('.\r\n');
    await this.expect(250);
    return performance.now() - started;
  }

  async quit(): Promise<void> {
    try {
      await this.send('QUIT', 221);
    } finally {
      this.socket.destroy();
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private async expect(code: number): Promise<SmtpReply> {
    const reply = await this.next();
    if (reply.code !== code) throw new Error(`expected ${code}, got ${reply.code} ${reply.text}`);
    return reply;
  }

  private next(): Promise<SmtpReply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.socket.destroy();
        reject(new Error(`no SMTP reply within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      this.waiter = {
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
  }

  private receive(text: string): void {
    this.buffered += text;
    for (;;) {
      // A reply ends at its last line, `ddd text` (RFC 5321 §4.2.1); `ddd-` lines continue it.
      const last = /^(?:\d{3}-[^\n]*\n)*(\d{3})(?: [^\n]*)?\r?\n/.exec(this.buffered);
      if (!last) return;
      this.buffered = this.buffered.slice(last[0].length);
      const reply = { code: Number(last[1]), text: last[0].trim() };
      const waiter = this.waiter;
      this.waiter = undefined;
      if (waiter) waiter.resolve(reply);
      else this.replies.push(reply);
    }
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(error);
  }
}

export function plainResponse(user: string, password: string): string {
  return Buffer.from(`\0${user}\0${password}`).toString('base64');
}
