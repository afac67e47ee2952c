import net from 'node:net';
import tls from 'node:tls';

/**
 * The benchmark's own IMAP client on a raw socket: the same code talks to Dovecot directly (implicit TLS,
 * AUTHENTICATE XOAUTH2) and to mailbridge (plain, LOGIN), so the two figures differ only by the path.
 *
 * It parses just enough of RFC 9051 to find the end of each response: lines, and literals `{n}` whose bytes
 * are counted, never copied or kept. One command at a time; every wait is bounded.
 */
export interface ImapConnectOptions {
  host: string;
  port: number;
  /** Implicit TLS (Dovecot's imaps port), checked against this CA. */
  tls?: { ca: Buffer };
  /** Source address, so that many sessions spread over several loopback addresses (ephemeral ports). */
  localAddress?: string;
  timeoutMs?: number;
}

export interface ImapResult {
  status: 'OK' | 'NO' | 'BAD';
  /** The tagged line without tag and status. */
  text: string;
  /** Bytes of literal data the response carried (message contents for FETCH). */
  literalBytes: number;
  /** Untagged responses received while the command ran. */
  untagged: number;
}

const LF = 0x0a;
const DEFAULT_TIMEOUT_MS = 60_000;

interface Pending {
  tag: string;
  resolve: (result: ImapResult) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
  literalBytes: number;
  untagged: number;
}

export class ImapClient {
  /** Pieces of the line being read (lines are short: joined only at LF). */
  private line: Buffer[] = [];
  private lineLength = 0;
  /** Literal bytes still to skip before the line goes on. */
  private literalLeft = 0;
  private pending: Pending | undefined;
  private greeting: { resolve: (text: string) => void; reject: (error: Error) => void } | undefined;
  private nextTag = 1;
  private failure: Error | undefined;
  /** Reads so far ('data' events): with the bytes, how the stream arrives in pieces. */
  reads = 0;

  private constructor(
    readonly socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  /** Connects and reads the greeting; resolves with the client and the greeting line. */
  static async connect(options: ImapConnectOptions): Promise<{ client: ImapClient; greeting: string }> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const address = {
      host: options.host,
      port: options.port,
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
    };
    const socket = options.tls ? tls.connect({ ...address, ca: options.tls.ca }) : net.connect(address);
    socket.setNoDelay(true);
    const client = new ImapClient(socket, timeoutMs);
    const greeting = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no greeting from ${options.host}:${options.port} within ${timeoutMs} ms`));
      }, timeoutMs);
      client.greeting = {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
    });
    return { client, greeting };
  }

  /** Sends `command` under a fresh tag and resolves at its tagged completion. */
  command(command: string, timeoutMs = this.timeoutMs): Promise<ImapResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.pending) return Promise.reject(new Error('one command at a time'));
    const tag = `b${this.nextTag++}`;
    return new Promise<ImapResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        this.socket.destroy();
        reject(new Error(`no completion of '${command.split(' ')[0]}' within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending = { tag, resolve, reject, timer, literalBytes: 0, untagged: 0 };
      this.socket.write(`${tag} ${command}\r\n`);
    });
  }

  /** A command that must succeed. */
  async ok(command: string, timeoutMs?: number): Promise<ImapResult> {
    const result = await this.command(command, timeoutMs);
    if (result.status !== 'OK') {
      throw new Error(`${command.split(' ')[0]} failed: ${result.status} ${result.text}`);
    }
    return result;
  }

  /** LOGOUT, then waits (bounded) for the server to close; the socket is gone afterwards either way. */
  async logout(): Promise<void> {
    try {
      await this.ok('LOGOUT');
    } finally {
      this.socket.destroy();
    }
  }

  close(): void {
    this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    this.reads += 1;
    let offset = 0;
    while (offset < chunk.length) {
      if (this.literalLeft > 0) {
        const skip = Math.min(this.literalLeft, chunk.length - offset);
        this.literalLeft -= skip;
        if (this.pending) this.pending.literalBytes += skip;
        offset += skip;
        continue;
      }
      const lf = chunk.indexOf(LF, offset);
      if (lf === -1) {
        this.appendLine(chunk.subarray(offset));
        return;
      }
      this.appendLine(chunk.subarray(offset, lf + 1));
      offset = lf + 1;
      this.endOfLinePart();
    }
  }

  private appendLine(part: Buffer): void {
    this.line.push(part);
    this.lineLength += part.length;
    if (this.lineLength > 1024 * 1024) this.fail(new Error('response line longer than 1 MiB'));
  }

  /** A line part ended at LF: either a literal follows (`{n}`), or the response is complete. */
  private endOfLinePart(): void {
    const text =
      this.line.length === 1
        ? (this.line[0] as Buffer).toString('latin1')
        : Buffer.concat(this.line, this.lineLength).toString('latin1');
    const literal = /\{(\d+)\}\r?\n$/.exec(text);
    if (literal) {
      // Only the start of the response is kept to classify it; the part after the literal is not needed.
      this.line = [Buffer.from(text.slice(0, 64), 'latin1')];
      this.lineLength = this.line[0]?.length ?? 0;
      this.literalLeft = Number(literal[1]);
      return;
    }
    this.line = [];
    this.lineLength = 0;
    this.response(text.replace(/\r?\n$/, ''));
  }

  private response(text: string): void {
    if (this.greeting) {
      const greeting = this.greeting;
      this.greeting = undefined;
      if (/^\* (OK|PREAUTH)\b/i.test(text)) greeting.resolve(text);
      else greeting.reject(new Error(`unusable greeting: ${text}`));
      return;
    }
    const pending = this.pending;
    if (!pending) return;
    if (text.startsWith('*') || text.startsWith('+')) {
      pending.untagged += 1;
      return;
    }
    if (!text.startsWith(`${pending.tag} `)) return;
    const match = /^\S+ (OK|NO|BAD)\b ?(.*)$/i.exec(text);
    clearTimeout(pending.timer);
    this.pending = undefined;
    pending.resolve({
      status: (match?.[1]?.toUpperCase() ?? 'BAD') as ImapResult['status'],
      text: match?.[2] ?? text,
      literalBytes: pending.literalBytes,
      untagged: pending.untagged,
    });
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.greeting?.reject(error);
    this.greeting = undefined;
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.socket.destroy();
  }
}

/** An IMAP quoted string (RFC 9051 §4.3) for a user name or password without CR, LF or NUL. */
export function quoted(text: string): string {
  if (/[\r\n\0]/.test(text)) throw new Error('cannot quote CR, LF or NUL');
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** The XOAUTH2 initial response (Google's and Microsoft's format). */
export function xoauth2(user: string, accessToken: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${accessToken}\x01\x01`).toString('base64');
}
