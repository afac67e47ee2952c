import type { TestCertificates } from './certs.ts';
import type { DovecotPorts } from './dovecot-config.ts';

export interface ServerSectionOptions {
  protocol: 'IMAP' | 'POP' | 'SMTP';
  /** The port mailbridge listens on, which also names the section: `[IMAP-1993]`. */
  localPort: number;
  /** 127.0.0.1 unless given. */
  serverAddress?: string;
  serverPort: number;
  serverStarttls?: boolean;
  localAddress?: string;
  localStarttls?: boolean;
  /** mailbridge's own certificate and key: local TLS, or with `localStarttls` local STARTTLS. */
  localCertificate?: Pick<TestCertificates, 'certPath' | 'keyPath'>;
  /** Any other key, written after the rest as given. */
  extra?: Record<string, string>;
}

/**
 * One server section of an email-oauth2-proxy style configuration file, ending in a newline like
 * `Testbed.accountSection`, so that sections joined with '\n' stand a blank line apart.
 */
export function serverSection(options: ServerSectionOptions): string {
  const flag = (value: boolean) => (value ? 'True' : 'False');
  const values: Record<string, string | undefined> = {
    server_address: options.serverAddress ?? '127.0.0.1',
    server_port: String(options.serverPort),
    server_starttls: options.serverStarttls === undefined ? undefined : flag(options.serverStarttls),
    local_address: options.localAddress,
    local_starttls: options.localStarttls === undefined ? undefined : flag(options.localStarttls),
    local_certificate_path: options.localCertificate?.certPath,
    local_key_path: options.localCertificate?.keyPath,
    ...options.extra,
  };
  const lines = Object.entries(values)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => `${key} = ${value}`);
  return `[${options.protocol}-${options.localPort}]\n${lines.join('\n')}\n`;
}

/**
 * One loopback listener per protocol in front of the test bed Dovecot's implicit-TLS ports (IMAPS, POP3S,
 * submissions): what tests that treat the three protocols alike start from.
 */
export function sectionsForEveryProtocol(
  localPorts: { imap: number; pop: number; smtp: number },
  dovecotPorts: Pick<DovecotPorts, 'imaps' | 'pop3s' | 'submissions'>,
): string[] {
  const section = (protocol: ServerSectionOptions['protocol'], localPort: number, serverPort: number) =>
    serverSection({ protocol, localPort, serverPort, localAddress: '127.0.0.1' });
  return [
    section('IMAP', localPorts.imap, dovecotPorts.imaps),
    section('POP', localPorts.pop, dovecotPorts.pop3s),
    section('SMTP', localPorts.smtp, dovecotPorts.submissions),
  ];
}
