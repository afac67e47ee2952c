import { type AccountConfig, DIRECT_FLOWS, findAccount, isAccountSection } from '../config/accounts.ts';
import { Protocol, type ServerConfig } from '../config/servers.ts';
import type { ConfigStore } from '../config/store.ts';
import { describeError } from '../errors.ts';
import { formatHostPort, loadLocalTls } from '../net/listener.ts';
import { identityPlatform } from '../oauth/providers.ts';

/**
 * A configuration read the way mailbridge will use it: what will listen where, which accounts exist, and the
 * mistakes that load fine but fail later (a STARTTLS port without server_starttls, a scope without
 * offline_access, a sample client ID left in). Shared by `check-config`, `status` and `doctor`.
 */
export interface ListenerDescription {
  section: string;
  protocol: Protocol;
  /** Where mailbridge listens: `local_address`, or loopback IPv4 and IPv6 when it is unset. */
  local: string[];
  localSecurity: 'none' | 'tls' | 'starttls';
  upstream: { host: string; port: number; security: 'tls' | 'starttls' };
}

export function describeListener(server: ServerConfig): ListenerDescription {
  const hosts = server.localAddress ? [server.localAddress] : ['127.0.0.1', '::1'];
  return {
    section: server.section,
    protocol: server.protocol,
    local: hosts.map((host) => formatHostPort(host, server.localPort)),
    localSecurity: !server.localCertificatePath ? 'none' : server.localStartTls ? 'starttls' : 'tls',
    upstream: {
      host: server.serverAddress,
      port: server.serverPort,
      security: server.serverStartTls ? 'starttls' : 'tls',
    },
  };
}

const SECURITY_WORDS = { none: 'plain', tls: 'TLS', starttls: 'STARTTLS' } as const;

/** One line: `IMAP  127.0.0.1:1993, [::1]:1993 (plain) -> outlook.office365.com:993 (TLS)  [IMAP-1993]`. */
export function formatListener(listener: ListenerDescription): string {
  const { upstream } = listener;
  return `${listener.protocol.padEnd(4)}  ${listener.local.join(', ')} (${SECURITY_WORDS[listener.localSecurity]}) -> ${formatHostPort(upstream.host, upstream.port)} (${SECURITY_WORDS[upstream.security]})  [${listener.section}]`;
}

export interface AccountDescription {
  section: string;
  /** `[@example.com]` and `[@]` sections stand for every address of a domain (or every address). */
  kind: 'account' | 'catch-all';
  flow: string | undefined;
  /** The token endpoint's host, e.g. login.microsoftonline.com. */
  tokenHost: string | undefined;
  /** Why the account cannot be used as it is; undefined when it can. */
  problem: string | undefined;
}

export function describeAccounts(store: ConfigStore): {
  accounts: AccountDescription[];
  configs: AccountConfig[];
} {
  const accounts: AccountDescription[] = [];
  const configs: AccountConfig[] = [];
  const cacheOnly = new Set(store.cacheOnlyAccounts());
  for (const section of [...store.document.sections().filter(isAccountSection), ...cacheOnly]) {
    const kind = section.startsWith('@') ? 'catch-all' : 'account';
    try {
      // A catch-all user known only to the token cache takes its settings from its [@domain] section.
      const config = cacheOnly.has(section) ? store.account(section) : findAccount(store.document, section);
      if (!config) continue;
      configs.push(config);
      accounts.push({
        section,
        kind,
        flow: config.flow,
        tokenHost: hostOf(config.tokenUrl),
        problem: undefined,
      });
    } catch (error: unknown) {
      accounts.push({ section, kind, flow: undefined, tokenHost: undefined, problem: describeError(error) });
    }
  }
  return { accounts, configs };
}

export interface Finding {
  severity: 'error' | 'warning';
  /** The section it is about, e.g. `IMAP-1993` or `you@example.com`; empty for the file as a whole. */
  where: string;
  message: string;
}

export interface ConfigReview {
  configFile: string;
  cacheFile: string;
  listeners: ListenerDescription[];
  accounts: AccountDescription[];
  findings: Finding[];
}

/** Usual ports, to spot a protocol or TLS mode that cannot work with the port configured. */
const IMPLICIT_TLS_PORTS: Readonly<Record<number, Protocol>> = { 993: 'IMAP', 995: 'POP', 465: 'SMTP' };
const STARTTLS_PORTS: Readonly<Record<number, Protocol>> = {
  143: 'IMAP',
  110: 'POP',
  587: 'SMTP',
  25: 'SMTP',
};
const PROTOCOL_NAMES: Readonly<Record<Protocol, string>> = { IMAP: 'IMAP', POP: 'POP3', SMTP: 'SMTP' };

export async function reviewConfig(store: ConfigStore): Promise<ConfigReview> {
  const findings: Finding[] = [];
  const servers = store.servers();
  const listeners = servers.map(describeListener);
  for (const server of servers) findings.push(...(await reviewServer(server)));
  findings.push(...reviewLocalPorts(listeners));
  if (servers.length === 0) {
    findings.push({
      severity: 'warning',
      where: '',
      message:
        'no [IMAP-<port>], [POP-<port>] or [SMTP-<port>] section: the proxy has nothing to listen on (fine if you only use `mailbridge token`)',
    });
  }

  const { accounts, configs } = describeAccounts(store);
  for (const account of accounts) {
    if (account.problem)
      findings.push({ severity: 'error', where: account.section, message: account.problem });
  }
  const catchAllAllowed = store.globals().allowCatchAllAccounts;
  for (const config of configs) findings.push(...reviewAccount(config, catchAllAllowed));
  if (accounts.length === 0) {
    findings.push({
      severity: 'warning',
      where: '',
      message:
        'no account section (a section named after an address, e.g. [you@example.com]): nobody can log in',
    });
  }
  return { configFile: store.configPath, cacheFile: store.cachePath, listeners, accounts, findings };
}

async function reviewServer(server: ServerConfig): Promise<Finding[]> {
  const findings: Finding[] = [];
  const where = server.section;
  const warn = (message: string) => findings.push({ severity: 'warning', where, message });
  const port = server.serverPort;
  const implicitFor = IMPLICIT_TLS_PORTS[port];
  const startTlsFor = STARTTLS_PORTS[port];
  const usualFor = implicitFor ?? startTlsFor;
  if (usualFor !== undefined && usualFor !== server.protocol) {
    warn(
      `server_port ${port} is the usual ${PROTOCOL_NAMES[usualFor]} port, but this is a ${PROTOCOL_NAMES[server.protocol]} section: check server_port`,
    );
  } else if (implicitFor && server.serverStartTls) {
    warn(
      `server_port ${port} normally speaks TLS from the first byte, but server_starttls = True makes mailbridge wait for a plain greeting first: remove server_starttls (or use the STARTTLS port)`,
    );
  } else if (startTlsFor && !server.serverStartTls) {
    warn(
      `server_port ${port} normally starts in clear text and upgrades with STARTTLS, but mailbridge will start TLS at once: set server_starttls = True (or use the TLS port ${server.protocol === 'IMAP' ? 993 : server.protocol === 'POP' ? 995 : 465})`,
    );
  }
  if (server.protocol === Protocol.SMTP && port === 25) {
    warn(
      'port 25 is for mail between servers and rarely accepts logins: use the submission port 587 (STARTTLS) or 465',
    );
  }
  if (server.localAddress && !isLoopback(server.localAddress)) {
    warn(
      `local_address ${server.localAddress} is not loopback: anyone who can reach it may try passwords against your accounts; keep it behind a firewall or use 127.0.0.1`,
    );
  }
  if (server.localCertificatePath) {
    try {
      await loadLocalTls(server);
    } catch (error: unknown) {
      findings.push({ severity: 'error', where, message: describeError(error) });
    }
  }
  return findings;
}

/** Two sections on the same local port (IMAP-1993 and POP-1993) cannot both listen. */
function reviewLocalPorts(listeners: ListenerDescription[]): Finding[] {
  const findings: Finding[] = [];
  const seen = new Map<string, string>();
  for (const listener of listeners) {
    for (const address of listener.local) {
      const other = seen.get(address);
      if (other !== undefined && other !== listener.section) {
        findings.push({
          severity: 'error',
          where: listener.section,
          message: `[${listener.section}] and [${other}] both listen on ${address}: give one of them another port`,
        });
      }
      seen.set(address, listener.section);
    }
  }
  return findings;
}

const KNOWN_FLOWS: readonly string[] = ['authorization_code', 'device', ...DIRECT_FLOWS];

function reviewAccount(account: AccountConfig, catchAllAllowed: boolean): Finding[] {
  const findings: Finding[] = [];
  const where = account.section;
  const warn = (message: string) => findings.push({ severity: 'warning', where, message });
  if (account.section.startsWith('@') && !catchAllAllowed) {
    warn('a catch-all section is ignored unless [emailproxy] sets allow_catch_all_accounts = True');
  }
  // email-oauth2-proxy's sample values start with "*** your"; mailbridge init's with "*** ".
  for (const [key, value] of [
    ['client_id', account.clientId],
    ['client_secret', account.clientSecret],
  ] as const) {
    if (value?.includes('***')) warn(`${key} still holds the example value: put in your app's ${key}`);
  }
  if (!KNOWN_FLOWS.includes(account.flow)) {
    findings.push({
      severity: 'error',
      where,
      message: `oauth2_flow '${account.flow}' is not a grant mailbridge knows (${KNOWN_FLOWS.join(', ')}): logins to this account will fail`,
    });
  } else if (account.flow === 'authorization_code' && !account.redirectUri) {
    warn(
      'redirect_uri is missing: the provider cannot send the browser back; set it to the redirect URI registered for the app (usually http://localhost)',
    );
  }
  const platform = identityPlatform(account.tokenUrl);
  const scopes = account.scope.split(/\s+/);
  if (platform === 'microsoft') {
    if (
      !scopes.some((scope) => scope.toLowerCase() === 'offline_access') &&
      !/\.default$/.test(account.scope)
    ) {
      warn(
        'oauth2_scope lacks offline_access: Microsoft then issues no refresh token and the account must be authorised again every hour',
      );
    }
    if (!/IMAP\.AccessAsUser\.All|POP\.AccessAsUser\.All|SMTP\.Send|\.default/i.test(account.scope)) {
      warn(
        'oauth2_scope has no mail permission (https://outlook.office.com/IMAP.AccessAsUser.All, POP.AccessAsUser.All, SMTP.Send): the mail servers will refuse the token',
      );
    }
  }
  if (platform === 'google') {
    if (!scopes.includes('https://mail.google.com/')) {
      warn(
        'oauth2_scope lacks https://mail.google.com/, the only Google scope that allows IMAP, POP and SMTP',
      );
    }
    if (account.redirectUri?.startsWith('urn:ietf:wg:oauth:2.0:oob')) {
      warn(
        'Google blocked the out-of-band redirect (urn:ietf:wg:oauth:2.0:oob) in 2023: set redirect_uri = http://localhost and paste the address the browser ends up on',
      );
    }
  }
  return findings;
}

function isLoopback(address: string): boolean {
  return address === 'localhost' || address === '::1' || /^127\./.test(address);
}

function hostOf(url: string): string | undefined {
  try {
    return new URL(url).host;
  } catch {
    return undefined;
  }
}
