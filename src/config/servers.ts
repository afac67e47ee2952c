import { ErrorCode, MailbridgeError } from '../errors.ts';
import { type IniDocument, parseBoolean } from './ini.ts';

/**
 * The typed view of `[IMAP-<port>]`, `[POP-<port>]` and `[SMTP-<port>]` sections
 * (email-oauth2-proxy §2.2): the section name gives the protocol and the local port.
 */
export const Protocol = {
  IMAP: 'IMAP',
  POP: 'POP',
  SMTP: 'SMTP',
} as const;

export type Protocol = (typeof Protocol)[keyof typeof Protocol];

export interface ServerConfig {
  section: string;
  protocol: Protocol;
  localPort: number;
  /** Undefined means loopback (127.0.0.1 and ::1): a deliberate difference from the original's `::`. */
  localAddress: string | undefined;
  serverAddress: string;
  serverPort: number;
  serverStartTls: boolean;
  localStartTls: boolean;
  localCertificatePath: string | undefined;
  localKeyPath: string | undefined;
}

/** Case-sensitive, as the original's regular expression. */
const SERVER_SECTION = /^(IMAP|POP|SMTP)-(\d+)$/;

export function isServerSection(name: string): boolean {
  return SERVER_SECTION.test(name);
}

export function readServers(doc: IniDocument, source: string): ServerConfig[] {
  const servers: ServerConfig[] = [];
  for (const section of doc.sections()) {
    const match = SERVER_SECTION.exec(section);
    if (!match) continue;
    const protocol = match[1] as Protocol;
    const invalid = (problem: string) =>
      new MailbridgeError(ErrorCode.CONFIG_INVALID, `${source}: section [${section}]: ${problem}`);
    const localPort = Number(match[2]);
    if (!isPort(localPort)) throw invalid(`invalid local port ${match[2]}: use 1-65535`);
    const serverAddress = doc.get(section, 'server_address')?.trim();
    if (!serverAddress)
      throw invalid('server_address is missing: set the real mail server, e.g. outlook.office365.com');
    const portText = doc.get(section, 'server_port')?.trim();
    const serverPort = Number(portText);
    if (!portText || !isPort(serverPort))
      throw invalid(`invalid server_port '${portText ?? ''}': use 1-65535`);
    const bool = (key: string) => {
      const value = doc.get(section, key);
      if (value === undefined || value.trim() === '') return undefined;
      const parsed = parseBoolean(value);
      if (parsed === undefined) throw invalid(`${key} = '${value}' is not a boolean: use True or False`);
      return parsed;
    };
    const path = (key: string) => {
      const value = doc.get(section, key)?.trim();
      return value ? value : undefined;
    };
    const server: ServerConfig = {
      section,
      protocol,
      localPort,
      localAddress: path('local_address'),
      serverAddress,
      serverPort,
      // `starttls` is the original's legacy name for server_starttls.
      serverStartTls: bool('server_starttls') ?? bool('starttls') ?? false,
      localStartTls: bool('local_starttls') ?? false,
      localCertificatePath: path('local_certificate_path'),
      localKeyPath: path('local_key_path'),
    };
    if ((server.localCertificatePath === undefined) !== (server.localKeyPath === undefined)) {
      throw invalid('local TLS needs both local_certificate_path and local_key_path');
    }
    if (server.localStartTls && server.localCertificatePath === undefined) {
      throw invalid('local_starttls needs local_certificate_path and local_key_path');
    }
    servers.push(server);
  }
  return servers;
}

function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}
