import { isIP } from 'node:net';
import { GLOBAL_SECTION } from '../config/accounts.ts';
import type { IniDocument } from '../config/ini.ts';
import { parseBoolean } from '../config/ini.ts';
import { ErrorCode, MailbridgeError } from '../errors.ts';

/**
 * Where the web console listens: `--web-console ADDRESS`, else `web_console = ADDRESS` in `[emailproxy]`;
 * off when neither is set. ADDRESS is `host:port`, `[v6]:port` or a bare port (loopback IPv4).
 *
 * Only loopback addresses are accepted unless `web_console_allow_remote = True`: whoever reaches the console
 * with its secret can authorise accounts. With `web_console_certificate_path` and `web_console_key_path` it
 * speaks HTTPS, which a console beyond loopback needs (else its secret and the passwords typed into it cross
 * the network in clear); an SSH tunnel to a loopback console does as well.
 */
export interface WebConsoleSettings {
  /** The address to bind, without brackets. */
  host: string;
  port: number;
  loopback: boolean;
  /** PEM files for HTTPS; plain HTTP without them. */
  tls?: { certificatePath: string; keyPath: string };
  /** Keeps the secret across restarts (for Prometheus and scripts); a new secret at each start without it. */
  secretFile?: string;
}

export const WEB_CONSOLE_OPTION = 'web_console';
export const WEB_CONSOLE_REMOTE_OPTION = 'web_console_allow_remote';
export const WEB_CONSOLE_CERTIFICATE_OPTION = 'web_console_certificate_path';
export const WEB_CONSOLE_KEY_OPTION = 'web_console_key_path';
export const WEB_CONSOLE_SECRET_FILE_OPTION = 'web_console_secret_file';

export function webConsoleSettings(
  flag: string | undefined,
  doc: IniDocument,
): WebConsoleSettings | undefined {
  const option = (key: string) =>
    doc.hasSection(GLOBAL_SECTION) ? doc.get(GLOBAL_SECTION, key)?.trim() || undefined : undefined;
  const text = flag?.trim() || option(WEB_CONSOLE_OPTION);
  if (!text) return undefined;
  const source = flag?.trim() ? '--web-console' : `[${GLOBAL_SECTION}] ${WEB_CONSOLE_OPTION}`;
  const settings = parseAddress(text, source);
  const remoteText = option(WEB_CONSOLE_REMOTE_OPTION);
  const remote = remoteText === undefined ? false : parseBoolean(remoteText);
  if (remote === undefined) {
    throw new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `[${GLOBAL_SECTION}] ${WEB_CONSOLE_REMOTE_OPTION} = '${remoteText}' is not a boolean: use True or False`,
    );
  }
  if (!settings.loopback && !remote) {
    throw new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `${source} '${text}' is not a loopback address: the web console listens on 127.0.0.1 or ::1 only, unless [${GLOBAL_SECTION}] ${WEB_CONSOLE_REMOTE_OPTION} = True (then also give it ${WEB_CONSOLE_CERTIFICATE_OPTION} and ${WEB_CONSOLE_KEY_OPTION}; or keep it on loopback and use an SSH tunnel, e.g. ssh -L 8025:127.0.0.1:8025)`,
    );
  }
  const certificatePath = option(WEB_CONSOLE_CERTIFICATE_OPTION);
  const keyPath = option(WEB_CONSOLE_KEY_OPTION);
  if ((certificatePath === undefined) !== (keyPath === undefined)) {
    throw new MailbridgeError(
      ErrorCode.CONFIG_INVALID,
      `[${GLOBAL_SECTION}] has only one of ${WEB_CONSOLE_CERTIFICATE_OPTION} and ${WEB_CONSOLE_KEY_OPTION}: give both for HTTPS, or neither`,
    );
  }
  const secretFile = option(WEB_CONSOLE_SECRET_FILE_OPTION);
  return {
    ...settings,
    ...(certificatePath && keyPath ? { tls: { certificatePath, keyPath } } : {}),
    ...(secretFile ? { secretFile } : {}),
  };
}

/** `http` or `https`, as the console's URLs and a browser's Origin header spell it. */
export function consoleScheme(settings: WebConsoleSettings): 'http' | 'https' {
  return settings.tls ? 'https' : 'http';
}

export function parseAddress(text: string, source = 'web console address'): WebConsoleSettings {
  const invalid = (why: string) =>
    new MailbridgeError(ErrorCode.CONFIG_INVALID, `${source} '${text}' ${why}: use e.g. 127.0.0.1:8025`);
  let host = '127.0.0.1';
  let portText = text;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracketed) {
    host = bracketed[1] as string;
    portText = bracketed[2] as string;
    if (isIP(host) !== 6) throw invalid('does not hold an IPv6 address in brackets');
  } else if (text.includes(':')) {
    const colon = text.lastIndexOf(':');
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) throw invalid('has an IPv6 address without brackets');
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
    throw invalid('has no valid port (1-65535)');
  }
  // localhost may resolve to either family, or to something else entirely: bind what it must mean.
  if (host === 'localhost') host = '127.0.0.1';
  if (!host || (isIP(host) === 0 && !/^[a-zA-Z0-9.-]+$/.test(host))) throw invalid('has no valid host');
  return { host, port: Number(portText), loopback: isLoopbackHost(host) };
}

export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1');
  return bare === 'localhost' || bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare);
}

/** `host:port` as it appears in a URL and in a Host header. */
export function formatAuthority(host: string, port: number): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}
