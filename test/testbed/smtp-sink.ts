import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';

/**
 * A small SMTP server of our own (RFC 5321) that Dovecot's submission service relays to: it accepts every
 * sender and recipient, stores each message byte for byte as a file, and keeps a list of what arrived.
 *
 * It offers no CHUNKING, so Dovecot's relay client uses DATA (it sends BDAT only to servers that advertise
 * CHUNKING), and no STARTTLS or AUTH (the relay is trusted loopback). Only a transaction ended by the final
 * `.` is stored: a relay connection that breaks mid-DATA leaves nothing behind.
 */
export interface SinkMessage {
  /** The MAIL FROM reverse-path, without angle brackets (empty for the null sender `<>`). */
  from: string;
  /** The RCPT TO forward-paths, without angle brackets, in order. */
  to: string[];
  /** The message after dot-unstuffing (RFC 5321 §4.5.2), line ends exactly as received. */
  data: Buffer;
  /** The file the message was written to. */
  path: string;
  /** The MAIL FROM parameters as sent, e.g. `BODY=8BITMIME SIZE=123`. */
  mailParameters: string;
}

export interface SmtpSinkOptions {
  /** Where messages are written; created if missing. */
  dir: string;
  /** Largest message accepted (after unstuffing); larger ones get 552. Default 64 MiB. */
  maxMessageBytes?: number;
  /** The name in the greeting and EHLO reply. */
  hostname?: string;
}

export interface SmtpSink {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly dir: string;
  /** Every stored message, in arrival order. */
  readonly messages: readonly SinkMessage[];
  /** Each command line received (DATA content excluded), oldest first; bounded. */
  readonly commands: readonly string[];
  /** Transactions whose DATA was cut off by a closed connection, or refused as too big. */
  readonly abortedTransactions: number;
  /** Resolves with all messages once at least `count` have arrived; rejects after `timeoutMs`. */
  waitForMessages(count: number, timeoutMs?: number): Promise<readonly SinkMessage[]>;
  /** Forgets the stored list (the files stay), so a test can count from zero. */
  clear(): void;
  /** Stops listening and drops every open connection. */
  close(): Promise<void>;
}

const HOST = '127.0.0.1';
const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const MAX_LINE_BYTES = 4096;
const MAX_RECIPIENTS = 1000;
const MAX_COMMAND_LOG = 10_000;
const DEFAULT_WAIT_MS = 10_000;
const CRLF = Buffer.from('\r\n');

type Transaction = { from: string; mailParameters: string; to: string[] };

/** Receives DATA content: strips the leading dot of stuffed lines and finds the terminating `.` line. */
class DataReader {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private atLineStart = true;
  private pending: Buffer = Buffer.alloc(0);
  tooBig = false;

  constructor(private readonly maxBytes: number) {}

  /** Feeds bytes; returns how many were consumed if the terminator was found in them, else undefined. */
  feed(chunk: Buffer): number | undefined {
    const buffer = this.pending.length > 0 ? Buffer.concat([this.pending, chunk]) : chunk;
    const consumedBefore = this.pending.length;
    this.pending = Buffer.alloc(0);
    let position = 0;
    while (position < buffer.length) {
      if (this.atLineStart) {
        const rest = buffer.length - position;
        if (buffer[position] === 0x2e) {
          // ".\r\n" ends the data; "." or ".\r" alone may still become it.
          if (rest < 3) {
            this.pending = buffer.subarray(position);
            return undefined;
          }
          if (buffer[position + 1] === 0x0d && buffer[position + 2] === 0x0a) {
            return position + 3 - consumedBefore;
          }
          position += 1;
        }
        this.atLineStart = false;
      }
      const end = buffer.indexOf(CRLF, position);
      if (end === -1) {
        // Keep a trailing CR back: with the LF of the next chunk it ends the line.
        const cut = buffer[buffer.length - 1] === 0x0d ? buffer.length - 1 : buffer.length;
        this.append(buffer.subarray(position, cut));
        this.pending = buffer.subarray(cut);
        return undefined;
      }
      this.append(buffer.subarray(position, end + 2));
      position = end + 2;
      this.atLineStart = true;
    }
    return undefined;
  }

  message(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }

  private append(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.size += bytes.length;
    if (this.size > this.maxBytes) {
      this.tooBig = true;
      this.chunks.length = 0;
      return;
    }
    if (!this.tooBig) this.chunks.push(Buffer.from(bytes));
  }
}

function unbracket(path: string): string {
  const trimmed = path.trim();
  return trimmed.startsWith('<') && trimmed.endsWith('>') ? trimmed.slice(1, -1) : trimmed;
}

/** Splits `<path> PARAM=VALUE …` after `FROM:`/`TO:`; tolerates a space after the colon. */
function parsePath(argument: string): { path: string; parameters: string } | undefined {
  const text = argument.trimStart();
  if (text.startsWith('<')) {
    const close = text.indexOf('>');
    if (close === -1) return undefined;
    return { path: text.slice(1, close), parameters: text.slice(close + 1).trim() };
  }
  const [path = '', ...parameters] = text.split(' ');
  if (path === '') return undefined;
  return { path: unbracket(path), parameters: parameters.join(' ') };
}

class SmtpSinkImpl implements SmtpSink {
  readonly host = HOST;
  readonly messages: SinkMessage[] = [];
  readonly commands: string[] = [];
  abortedTransactions = 0;
  readonly #sockets = new Set<Socket>();
  readonly #waiters = new Set<() => void>();
  readonly #maxBytes: number;
  readonly #hostname: string;
  #fileNumber = 0;

  constructor(
    private readonly server: Server,
    readonly port: number,
    readonly dir: string,
    options: SmtpSinkOptions,
  ) {
    this.#maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.#hostname = options.hostname ?? 'sink.localhost';
  }

  accept(socket: Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => undefined);
    socket.setTimeout(120_000, () => socket.destroy());
    const reply = (text: string): true => {
      if (!socket.destroyed) socket.write(`${text}\r\n`);
      return true;
    };
    let transaction: Transaction | undefined;
    let data: DataReader | undefined;
    let buffered: Buffer = Buffer.alloc(0);
    // Commands are handled one after another, also when pipelined, and storing a message is asynchronous:
    // input that arrives meanwhile waits in `buffered`.
    let busy = false;

    const finishData = async (reader: DataReader) => {
      const current = transaction;
      transaction = undefined;
      if (reader.tooBig || current === undefined) {
        this.abortedTransactions += 1;
        reply('552 5.3.4 Message too big for the sink');
        return;
      }
      const bytes = reader.message();
      this.#fileNumber += 1;
      const path = join(this.dir, `${String(this.#fileNumber).padStart(4, '0')}.eml`);
      await writeFile(path, bytes);
      this.messages.push({
        from: current.from,
        to: current.to,
        data: bytes,
        path,
        mailParameters: current.mailParameters,
      });
      for (const waiter of [...this.#waiters]) waiter();
      reply(`250 2.0.0 Stored as ${path}`);
    };

    const command = (line: string): boolean => {
      if (this.commands.length < MAX_COMMAND_LOG) this.commands.push(line);
      const space = line.indexOf(' ');
      const verb = (space === -1 ? line : line.slice(0, space)).toUpperCase();
      const argument = space === -1 ? '' : line.slice(space + 1);
      switch (verb) {
        case 'EHLO':
          transaction = undefined;
          return reply(
            `250-${this.#hostname} greets ${argument}\r\n250-PIPELINING\r\n250-8BITMIME\r\n` +
              `250-SIZE ${this.#maxBytes}\r\n250 ENHANCEDSTATUSCODES`,
          );
        case 'HELO':
          transaction = undefined;
          return reply(`250 ${this.#hostname}`);
        case 'MAIL': {
          if (!/^FROM:/i.test(argument)) return reply('501 5.5.4 Syntax: MAIL FROM:<address>');
          if (transaction) return reply('503 5.5.1 Nested MAIL command');
          const parsed = parsePath(argument.slice(5));
          if (!parsed) return reply('501 5.1.7 Bad sender address syntax');
          const size = /(?:^|\s)SIZE=(\d+)/i.exec(parsed.parameters);
          if (size && Number(size[1]) > this.#maxBytes) return reply('552 5.3.4 Message too big');
          transaction = { from: parsed.path, mailParameters: parsed.parameters, to: [] };
          return reply('250 2.1.0 Ok');
        }
        case 'RCPT': {
          if (!transaction) return reply('503 5.5.1 MAIL first');
          if (!/^TO:/i.test(argument)) return reply('501 5.5.4 Syntax: RCPT TO:<address>');
          const parsed = parsePath(argument.slice(3));
          if (!parsed || parsed.path === '') return reply('501 5.1.3 Bad recipient address syntax');
          if (transaction.to.length >= MAX_RECIPIENTS) return reply('452 4.5.3 Too many recipients');
          transaction.to.push(parsed.path);
          return reply('250 2.1.5 Ok');
        }
        case 'DATA':
          if (!transaction) return reply('503 5.5.1 MAIL first');
          if (transaction.to.length === 0) return reply('554 5.5.1 No valid recipients');
          data = new DataReader(this.#maxBytes);
          return reply('354 End data with <CR><LF>.<CR><LF>');
        case 'RSET':
          transaction = undefined;
          return reply('250 2.0.0 Ok');
        case 'NOOP':
          return reply('250 2.0.0 Ok');
        case 'QUIT':
          reply('221 2.0.0 Bye');
          socket.end();
          return false;
        default:
          return reply(`502 5.5.2 Command not implemented: ${verb.slice(0, 20)}`);
      }
    };

    const pump = async () => {
      if (busy) return;
      busy = true;
      try {
        while (buffered.length > 0 && !socket.destroyed) {
          if (data) {
            const reader = data;
            const used = reader.feed(buffered);
            if (used === undefined) {
              buffered = Buffer.alloc(0);
              break;
            }
            buffered = buffered.subarray(used);
            data = undefined;
            await finishData(reader);
            continue;
          }
          const end = buffered.indexOf(CRLF);
          if (end === -1) {
            if (buffered.length > MAX_LINE_BYTES) {
              reply('500 5.5.6 Line too long');
              socket.destroy();
            }
            break;
          }
          const line = buffered.subarray(0, end).toString('latin1');
          buffered = buffered.subarray(end + 2);
          if (!command(line)) break;
        }
      } finally {
        busy = false;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      buffered = buffered.length > 0 ? Buffer.concat([buffered, chunk]) : chunk;
      void pump().catch(() => socket.destroy());
    });
    socket.on('close', () => {
      if (data) this.abortedTransactions += 1;
      data = undefined;
    });
    reply(`220 ${this.#hostname} ESMTP mailbridge test sink`);
  }

  waitForMessages(count: number, timeoutMs = DEFAULT_WAIT_MS): Promise<readonly SinkMessage[]> {
    if (this.messages.length >= count) return Promise.resolve(this.messages);
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.messages.length < count) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(this.messages);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(
          new Error(
            `the SMTP sink holds ${this.messages.length} message(s), not ${count}, after ${timeoutMs} ms; ` +
              `last commands: ${this.commands.slice(-10).join(' | ')}`,
          ),
        );
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  clear(): void {
    this.messages.length = 0;
    this.commands.length = 0;
    this.abortedTransactions = 0;
  }

  close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Starts the sink on a free port of 127.0.0.1. */
export async function startSmtpSink(options: SmtpSinkOptions): Promise<SmtpSink> {
  await mkdir(options.dir, { recursive: true });
  let sink: SmtpSinkImpl | undefined;
  const server = createServer((socket) => {
    if (sink) sink.accept(socket);
    else socket.destroy();
  });
  server.maxConnections = 100;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('smtp sink: listener has no port');
  sink = new SmtpSinkImpl(server, address.port, options.dir, options);
  return sink;
}

/**
 * Dovecot's submission service (2.3.19) prepends exactly one trace field to every message it relays and changes
 * nothing else but bare LF line ends, which it turns into CRLF (a bare CR, NUL, 8-bit bytes, long lines and lines
 * of dots pass through). The field is
 * `Received: from <EHLO name> ([<client IP>])\r\n\tby <hostname> with ESMTPSA\r\n\tid <id>\r\n` +
 * `\t(envelope-from <sender>)\r\n\tfor <recipient>; <date>\r\n`, where the `for` part appears only for exactly one
 * recipient (otherwise `(envelope-from <sender>); <date>`). This splits it off, so that a test can compare the
 * rest with the bytes the client sent.
 */
export function splitReceivedHeader(data: Buffer): { received: string; rest: Buffer } {
  if (!data.subarray(0, 10).equals(Buffer.from('Received: '))) {
    throw new Error(`relayed message does not start with Dovecot's Received field: ${data.subarray(0, 80)}`);
  }
  let end = data.indexOf(CRLF);
  // Continuation lines start with a space or a tab (RFC 5322 §2.2.3 folding).
  while (end !== -1 && (data[end + 2] === 0x20 || data[end + 2] === 0x09)) end = data.indexOf(CRLF, end + 2);
  if (end === -1) throw new Error('relayed message has an unterminated Received field');
  return { received: data.subarray(0, end + 2).toString('latin1'), rest: data.subarray(end + 2) };
}
