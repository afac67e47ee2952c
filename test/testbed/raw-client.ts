import { once } from 'node:events';
import net from 'node:net';

/**
 * A scripted client on a raw socket, for what real clients never send: literals of every kind, pipelined
 * commands, garbage, oversized lines, connections dropped half-way. Every wait is bounded.
 */
export class RawClient {
  private received = Buffer.alloc(0);
  private ended = false;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    const socket = net.connect({ port, host });
    await once(socket, 'connect');
    return new RawClient(socket);
  }

  send(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Everything received so far, as latin1 text. */
  text(): string {
    return this.received.toString('latin1');
  }

  get closed(): boolean {
    return this.ended;
  }

  /** Waits until the received text matches, and returns all of it. */
  async waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
    await this.until(() => pattern.test(this.text()), `${pattern}`, timeoutMs);
    return this.text();
  }

  /** Waits for the tagged completion of `tag` and returns the text received up to it, then forgets it. */
  async command(tag: string, line: string | Buffer, timeoutMs = 10_000): Promise<string> {
    if (line.length > 0) this.send(line);
    const done = new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r\\n]*\\r\\n`);
    const text = await this.waitFor(done, timeoutMs);
    const match = done.exec(text);
    const end = (match?.index ?? 0) + (match?.[0].length ?? 0);
    this.received = this.received.subarray(end);
    return text.slice(0, end);
  }

  async waitClosed(timeoutMs = 10_000): Promise<void> {
    await this.until(() => this.ended, 'the connection to close', timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }

  private until(condition: () => boolean, what: string, timeoutMs: number): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!condition()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${what}; received:\n${this.text().slice(-2000)}`,
          ),
        );
      }, timeoutMs);
      this.waiters.add(check);
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
