import { createWriteStream } from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Secrets never reach a log line: these paths are replaced wherever they appear in a log object.
 * Protocol traces replace credentials themselves before logging (see the protocol sessions).
 */
const REDACT_PATHS = [
  'password',
  '*.password',
  'accessToken',
  '*.accessToken',
  'refreshToken',
  '*.refreshToken',
  'access_token',
  '*.access_token',
  'refresh_token',
  '*.refresh_token',
  'client_secret',
  '*.client_secret',
  'code',
  '*.code',
  'code_verifier',
  'sasl',
];

export type LogFormat = 'text' | 'json';

export interface LoggerOptions {
  debug?: boolean;
  /** A file to append to; stderr otherwise (stdout belongs to `token` and the thread filter). */
  file?: string;
  /** `text` (default) reads well in a terminal and the journal; `json` suits log collectors. */
  format?: LogFormat;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const sink = options.file ? createWriteStream(options.file, { flags: 'a', mode: 0o600 }) : process.stderr;
  const destination: DestinationStream = options.format === 'json' ? sink : textDestination(sink);
  return pino(
    {
      name: 'mailbridge',
      level: options.debug ? 'debug' : 'info',
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A logger that drops everything; for tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
/** Context fields shown as a bracketed prefix, in this order, rather than as key=value pairs. */
const CONTEXT = ['server', 'cid', 'account'] as const;
const OMIT = new Set(['time', 'level', 'msg', 'name', ...CONTEXT]);

/** One line per record: `time LEVEL [server cid account] message key=value…`. */
export function formatRecord(record: Record<string, unknown>): string {
  const level = LEVELS[Number(record.level)] ?? String(record.level);
  const context = CONTEXT.map((key) => record[key])
    .filter((value) => value !== undefined)
    .join(' ');
  const extras = Object.entries(record)
    .filter(([key]) => !OMIT.has(key))
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join(' ');
  return `${record.time} ${level.padEnd(5)} ${context ? `[${context}] ` : ''}${record.msg ?? ''}${extras ? ` ${extras}` : ''}\n`;
}

function textDestination(sink: NodeJS.WritableStream): DestinationStream {
  return {
    write(line: string) {
      try {
        sink.write(formatRecord(JSON.parse(line) as Record<string, unknown>));
      } catch {
        sink.write(line);
      }
    },
  };
}
